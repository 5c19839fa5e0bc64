package signals

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fileModes are the two ways FileSource can run. With inotify the poll is an
// hour, so only an inotify event can make the test pass in time; poll-only
// is what NFS and Lustre effectively get.
var fileModes = []struct {
	name    string
	inotify bool
	poll    time.Duration
}{
	{"inotify", true, time.Hour},
	{"poll", false, 5 * time.Millisecond},
}

// newFileSource is newFile that fails the test on error, checks the mode
// and closes the source at cleanup.
func newFileSource(t *testing.T, path string, inotify bool, poll time.Duration) *FileSource {
	t.Helper()
	s, err := newFile(path, poll, inotify)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if inotify && s.inotify == nil {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			t.Skipf("inotify unavailable here: %v", err)
		}
		unix.Close(fd)
		t.Fatal("File did not use inotify although it is available")
	}
	if !inotify && s.inotify != nil {
		t.Fatal("poll-only source has an inotify instance")
	}
	return s
}

func TestFileFires(t *testing.T) {
	creators := []struct {
		name   string
		create func(path string) error
	}{
		{"create", func(path string) error {
			f, err := os.Create(path) // fires on IN_CREATE, before any close
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{"write", func(path string) error { return os.WriteFile(path, []byte("done\n"), 0o600) }},
		{"rename into place", func(path string) error {
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, nil, 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, path)
		}},
		{"symlink", func(path string) error { return os.Symlink("nowhere", path) }},
		{"mkdir", func(path string) error { return os.Mkdir(path, 0o700) }},
	}
	for _, mode := range fileModes {
		for _, c := range creators {
			t.Run(mode.name+"/"+c.name, func(t *testing.T) {
				path := filepath.Join(shortDir(t), "data.ready")
				s := newFileSource(t, path, mode.inotify, mode.poll)
				done := waitAsync(guardCtx(t), s)
				if err := c.create(path); err != nil {
					t.Fatal(err)
				}
				if err := recv(t, done); err != nil {
					t.Fatalf("Wait = %v, want nil", err)
				}
				if err := s.Wait(context.Background()); err != nil {
					t.Fatalf("second Wait = %v, want nil", err)
				}
			})
		}
	}
}

// TestFilePollBesideInotify covers what NFS does to the inotify mode: the
// file appears without an event, and the poll must notice it.
func TestFilePollBesideInotify(t *testing.T) {
	path := filepath.Join(shortDir(t), "data.ready")
	s := newFileSource(t, path, true, 5*time.Millisecond)
	rc, err := s.inotify.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		if _, err := unix.InotifyRmWatch(int(fd), uint32(s.wd)); err != nil {
			t.Fatal(err)
		}
	})
	done := waitAsync(guardCtx(t), s)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, done); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
}

// TestFileDirectoryRecreated removes the watched directory and makes it
// again: the watch is gone, and the poll still finds the file.
func TestFileDirectoryRecreated(t *testing.T) {
	for _, mode := range fileModes {
		t.Run(mode.name, func(t *testing.T) {
			dir := filepath.Join(shortDir(t), "out")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "data.ready")
			s := newFileSource(t, path, mode.inotify, 5*time.Millisecond)
			done := waitAsync(guardCtx(t), s)
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := recv(t, done); err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
		})
	}
}

// TestFileDirectoryRenamed renames the watched directory away: a file made
// in it under the ready name is not at the path and must not fire.
func TestFileDirectoryRenamed(t *testing.T) {
	root := shortDir(t)
	dir := filepath.Join(root, "out")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := newFileSource(t, filepath.Join(dir, "data.ready"), true, time.Hour)
	moved := filepath.Join(root, "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(moved, "data.ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want %v", err, context.DeadlineExceeded)
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(dir string) (path string)
		want    []string // substrings of the error
		isStale bool
	}{
		{"stale file", func(dir string) string {
			path := filepath.Join(dir, "data.ready")
			os.WriteFile(path, nil, 0o600)
			return path
		}, []string{"data.ready", "delete it first"}, true},
		{"stale dangling symlink", func(dir string) string {
			path := filepath.Join(dir, "data.ready")
			os.Symlink("nowhere", path)
			return path
		}, []string{"data.ready", "delete it first"}, true},
		{"missing parent", func(dir string) string {
			return filepath.Join(dir, "missing", "data.ready")
		}, []string{"missing", "parent directory", "no such file"}, false},
		{"parent is a file", func(dir string) string {
			os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600)
			return filepath.Join(dir, "plain", "data.ready")
		}, []string{"plain", "not a directory"}, false},
	}
	for _, mode := range fileModes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				path := tt.setup(shortDir(t))
				s, err := newFile(path, mode.poll, mode.inotify)
				if err == nil {
					s.Close()
					t.Fatal("no error")
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if errors.Is(err, ErrStale) != tt.isStale {
					t.Errorf("errors.Is(%q, ErrStale) = %v, want %v", err, !tt.isStale, tt.isStale)
				}
			})
		}
	}
}

func TestFileRelativePath(t *testing.T) {
	dir := shortDir(t)
	t.Chdir(dir)
	s, err := File("data.ready", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want, _ := filepath.Abs("data.ready")
	if s.Path() != want {
		t.Fatalf("Path() = %q, want %q", s.Path(), want)
	}
	t.Chdir(t.TempDir()) // the path stays the one resolved at construction
	done := waitAsync(guardCtx(t), s)
	if err := os.WriteFile(want, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, done); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
}

func TestFileCancelAndClose(t *testing.T) {
	for _, mode := range fileModes {
		t.Run(mode.name, func(t *testing.T) {
			// Polls are an hour apart: only the wake-ups under
			// test can end the Waits in time.
			path := filepath.Join(shortDir(t), "data.ready")
			s := newFileSource(t, path, mode.inotify, time.Hour)

			ctx, cancel := context.WithCancel(context.Background())
			done := waitAsync(ctx, s)
			cancel()
			if err := recv(t, done); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait after cancel = %v, want %v", err, context.Canceled)
			}
			// The source is still usable after a cancelled Wait.
			done = waitAsync(guardCtx(t), s)
			if err := s.Close(); err != nil {
				t.Fatalf("Close = %v", err)
			}
			if err := recv(t, done); !errors.Is(err, ErrClosed) {
				t.Fatalf("Wait after Close = %v, want %v", err, ErrClosed)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
			if err := s.Wait(context.Background()); !errors.Is(err, ErrClosed) {
				t.Fatalf("Wait on closed source = %v, want %v", err, ErrClosed)
			}
		})
	}
}

func TestFileConcurrentWaits(t *testing.T) {
	path := filepath.Join(shortDir(t), "data.ready")
	s := newFileSource(t, path, true, time.Hour)
	var dones []<-chan error
	for range 3 {
		dones = append(dones, waitAsync(guardCtx(t), s))
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, done := range dones {
		if err := recv(t, done); err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	}
}

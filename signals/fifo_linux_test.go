package signals

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newFIFOSource(t *testing.T, path string) *FIFOSource {
	t.Helper()
	s, err := FIFO(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openWriter opens the FIFO for writing without blocking; that fails with
// ENXIO unless someone holds it open for reading.
func openWriter(t *testing.T, path string) *os.File {
	t.Helper()
	w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open FIFO for writing: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func write(t *testing.T, w *os.File, s string) {
	t.Helper()
	if _, err := w.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// notFired asserts that Wait does not fire within a short while. A broken
// source might slip through on a slow machine, but a working one never
// fails this.
func notFired(t *testing.T, s Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want %v (not fired)", err, context.DeadlineExceeded)
	}
}

func TestFIFOCreated(t *testing.T) {
	path := filepath.Join(shortDir(t), "ready.fifo")
	old := syscall.Umask(0o277) // would leave 0400 without the chmod
	s := newFIFOSource(t, path)
	syscall.Umask(old)
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeNamedPipe || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want a FIFO with 0600", st.Mode())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("FIFO made by FIFO() still there after Close: %v", err)
	}
}

func TestFIFOExisting(t *testing.T) {
	path := filepath.Join(shortDir(t), "ready.fifo")
	if err := syscall.Mkfifo(path, 0o640); err != nil {
		t.Fatal(err)
	}
	s := newFIFOSource(t, path)
	done := waitAsync(guardCtx(t), s)
	write(t, openWriter(t, path), "ready\n")
	if err := recv(t, done); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	s.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("existing FIFO removed by Close: %v", err)
	}
}

func TestFIFONotAFIFO(t *testing.T) {
	dir := shortDir(t)
	for name, create := range map[string]func(string) error{
		"regular file": func(p string) error { return os.WriteFile(p, []byte("x\n"), 0o600) },
		"directory":    func(p string) error { return os.Mkdir(p, 0o700) },
		"socket": func(p string) error {
			_, err := net.Listen("unix", p)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := create(path); err != nil {
				t.Fatal(err)
			}
			s, err := FIFO(path)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a FIFO (it is a "+name+")") {
				t.Fatalf("error %q does not name %s as a %s, not a FIFO", err, path, name)
			}
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("existing file touched: %v", err)
			}
		})
	}
}

func TestFIFOLines(t *testing.T) {
	tests := []struct {
		name   string
		writes []string // one writer each, closed after writing
	}{
		{"line", []string{"ready\n"}},
		{"bare newline", []string{"\n"}},
		{"line in a later write", []string{"part", "ial line\n"}},
		{"line after partial writers", []string{"partial", "more partial", "done\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "ready.fifo")
			s := newFIFOSource(t, path)
			last := len(tt.writes) - 1
			for _, data := range tt.writes[:last] {
				w := openWriter(t, path)
				write(t, w, data)
				w.Close() // a writer leaving is no EOF and no line
				notFired(t, s)
			}
			done := waitAsync(guardCtx(t), s)
			write(t, openWriter(t, path), tt.writes[last])
			if err := recv(t, done); err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
		})
	}
}

func TestFIFOTwoWriters(t *testing.T) {
	path := filepath.Join(shortDir(t), "ready.fifo")
	s := newFIFOSource(t, path)
	w1, w2 := openWriter(t, path), openWriter(t, path)
	write(t, w1, "one ")
	write(t, w2, "two")
	notFired(t, s)
	write(t, w1, " three\n")
	if err := s.Wait(guardCtx(t)); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	write(t, w2, "still writable\n") // the writers never block
}

// TestFIFOBlockingWriter opens the FIFO the way a shell redirection does,
// before anyone calls Wait: the open must not block.
func TestFIFOBlockingWriter(t *testing.T) {
	path := filepath.Join(shortDir(t), "ready.fifo")
	s := newFIFOSource(t, path)
	opened := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			_, err = w.WriteString("ready\n")
			w.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(guard):
		t.Fatal("O_WRONLY open blocked")
	}
	if err := s.Wait(guardCtx(t)); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
}

func TestFIFOCancelAndClose(t *testing.T) {
	path := filepath.Join(shortDir(t), "ready.fifo")
	s := newFIFOSource(t, path)

	ctx, cancel := context.WithCancel(context.Background())
	done := waitAsync(ctx, s)
	cancel()
	if err := recv(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want %v", err, context.Canceled)
	}
	// A cancelled Wait leaves the source usable.
	done = waitAsync(guardCtx(t), s)
	write(t, openWriter(t, path), "half")
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := recv(t, done); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v, want %v", err, ErrClosed)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestFIFOConcurrentWaits(t *testing.T) {
	path := filepath.Join(shortDir(t), "ready.fifo")
	s := newFIFOSource(t, path)
	cancelled, cancel := context.WithCancel(context.Background())
	var dones []<-chan error
	for range 3 {
		dones = append(dones, waitAsync(guardCtx(t), s))
	}
	doneCancelled := waitAsync(cancelled, s)
	cancel()
	if err := recv(t, doneCancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait = %v, want %v", err, context.Canceled)
	}
	write(t, openWriter(t, path), "ready\n")
	for _, done := range dones {
		if err := recv(t, done); err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	}
}

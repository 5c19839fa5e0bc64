package signals

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// sink is where Copy writes in the kernel-path tests: a pipe, a file or a
// terminal, and what has arrived there so far.
type sink struct {
	f     *os.File // Copy's dst
	mu    sync.Mutex
	data  []byte
	done  chan struct{} // closed when the reader has seen EOF (pipe, tty)
	path  string        // file sinks
	close func()
}

func (s *sink) got() []byte {
	if s.path != "" {
		data, _ := os.ReadFile(s.path)
		return data
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.data...)
}

// read collects r until EOF or EIO (a terminal whose other side closed).
func (s *sink) read(r *os.File) {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		s.mu.Lock()
		s.data = append(s.data, buf[:n]...)
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// finish closes Copy's dst and returns everything that arrived.
func (s *sink) finish(t *testing.T) []byte {
	t.Helper()
	s.close()
	if s.done != nil {
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Fatal("sink reader never saw the end")
		}
	}
	return s.got()
}

func pipeSink(t *testing.T) *sink {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{f: w, done: make(chan struct{})}
	s.close = func() { w.Close() }
	go s.read(r)
	t.Cleanup(func() { r.Close() })
	return s
}

func fileSink(flag int) func(t *testing.T) *sink {
	return func(t *testing.T) *sink {
		path := filepath.Join(t.TempDir(), "out")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		return &sink{f: f, path: path, close: func() { f.Close() }}
	}
}

func ttySink(t *testing.T) *sink {
	master, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	// Raw output: the terminal passes newlines as they are.
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	s := &sink{f: tty, done: make(chan struct{})}
	s.close = func() { tty.Close() }
	go s.read(master)
	t.Cleanup(func() { master.Close() })
	return s
}

// TestMarkerKernelRelay relays through a real pipe into each kind of dst
// Copy treats differently: a pipe (tee, then splice), a file (read and
// write, then splice), a file opened for appending (no splice) and a
// terminal (no tee, no splice). Each chunk is written only once the one
// before has reached dst, so the marker is split across tee(2) calls and
// reads exactly where the test says.
func TestMarkerKernelRelay(t *testing.T) {
	huge := strings.Repeat("x", 3<<20) // one line, longer than any pipe
	streams := []struct {
		name   string
		chunks []string
		want   bool
	}{
		{"marker whole", []string{"log line\n", "step 1 KEEPGPU_READY go\n", "after\n"}, true},
		{"marker split in two", []string{"a KEEPGPU_", "READY b\n", "rest\n"}, true},
		{"marker split byte by byte", strings.Split("> KEEPGPU_READY <\n", ""), true},
		{"marker at the end of a huge line", []string{huge, "KEEPGPU_RE", "ADY\n", huge}, true},
		{"marker split by a newline", []string{"KEEPGPU_\n", "READY\n"}, false},
		{"EOF inside a partial marker", []string{"data KEEPGPU_RE"}, false},
		{"EOF at once", nil, false},
	}
	sinks := []struct {
		name string
		open func(*testing.T) *sink
	}{
		{"pipe", pipeSink},
		{"file", fileSink(os.O_TRUNC)},
		{"appending file", fileSink(os.O_APPEND)},
		{"terminal", ttySink},
	}
	for _, sk := range sinks {
		for _, st := range streams {
			t.Run(sk.name+"/"+st.name, func(t *testing.T) {
				dst := sk.open(t)
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				m := newMarker(t, testMarker)
				copied := make(chan error, 1)
				go func() { copied <- m.Copy(dst.f, r) }()
				var want string
				for _, c := range st.chunks {
					if _, err := w.WriteString(c); err != nil {
						t.Fatal(err)
					}
					want += c
					for deadline := time.Now().Add(10 * time.Second); len(dst.got()) < len(want); {
						if time.Now().After(deadline) {
							t.Fatalf("%d of %d bytes arrived", len(dst.got()), len(want))
						}
						select {
						case err := <-copied:
							t.Fatalf("Copy returned %v with %d of %d bytes relayed", err, len(dst.got()), len(want))
						default:
						}
						time.Sleep(100 * time.Microsecond)
					}
				}
				w.Close()
				if err := <-copied; err != nil {
					t.Fatalf("Copy = %v", err)
				}
				if got := dst.finish(t); string(got) != want {
					t.Fatalf("relayed %d bytes, want %d; equal prefix %d", len(got), len(want), commonPrefix(got, []byte(want)))
				}
				if m.hasFired() != st.want {
					t.Fatalf("fired = %v, want %v", m.hasFired(), st.want)
				}
			})
		}
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestMarkerKernelRelayBrokenPipe checks that a dst whose reader is gone
// ends Copy with EPIPE, before and after the match, as write(2) would.
func TestMarkerKernelRelayBrokenPipe(t *testing.T) {
	for _, fired := range []bool{false, true} {
		m := newMarker(t, testMarker)
		if fired {
			m.fire()
		}
		r, w, _ := os.Pipe()
		dr, dw, _ := os.Pipe()
		dr.Close()
		go func() {
			w.WriteString("output nobody reads\n")
			w.Close()
		}()
		err := m.Copy(dw, r)
		r.Close()
		dw.Close()
		if !errors.Is(err, unix.EPIPE) {
			t.Errorf("fired=%v: Copy into a pipe without reader = %v, want EPIPE", fired, err)
		}
	}
}

// TestFinder compares the rare-byte search with bytes.Contains on text
// where the anchor is rare, where it is everywhere, and at the edges.
func TestFinder(t *testing.T) {
	tests := []struct{ marker, text string }{
		{"ready for GPU", "epoch 1 loss 0.5 ready for GPU\n"},
		{"ready for GPU", "ready for GP"},
		{"ready for GPU", "ready for GPU"},
		{"ready for GPU", strings.Repeat("GGGGready for GPGPU", 200)},
		{"GGGGA", strings.Repeat("G", 10000) + "GGGGA"},
		{"GGGGA", strings.Repeat("G", 10000)},
		{"x", "abc"},
		{"x", "abx"},
		{"KEEPGPU_READY", strings.Repeat("KEEPGPU_READ\n", 1000) + "KEEPGPU_READY"},
	}
	for _, tt := range tests {
		f := newFinder([]byte(tt.marker))
		for cut := 0; cut <= len(tt.text); cut += max(1, len(tt.text)/50) {
			p := []byte(tt.text[cut:])
			if got, want := f.in(p), bytes.Contains(p, []byte(tt.marker)); got != want {
				t.Errorf("finder(%q).in(%.40q…) = %v, want %v", tt.marker, p, got, want)
			}
		}
	}
	if f := newFinder([]byte("ready for GPU")); f.b != 'G' && f.b != 'P' && f.b != 'U' {
		t.Errorf("anchor of %q is %q, not an upper-case letter", "ready for GPU", f.b)
	}
}

// TestMarkerGrowsPipe checks that a pipe dst smaller than 1 MiB is grown
// to 1 MiB and that a larger one (where this process may make one) is not
// shrunk.
func TestMarkerGrowsPipe(t *testing.T) {
	data, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		t.Skip(err)
	}
	if max, err := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || max < 1<<20 {
		t.Skipf("pipe-max-size %q below 1 MiB", data)
	}
	for _, tt := range []struct{ before, want int }{{64 << 10, 1 << 20}, {2 << 20, 2 << 20}} {
		dr, dw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(dw.Fd(), unix.F_SETPIPE_SZ, tt.before); err != nil {
			// Above pipe-max-size only with CAP_SYS_RESOURCE.
			t.Logf("F_SETPIPE_SZ %d: %v", tt.before, err)
			dr.Close()
			dw.Close()
			continue
		}
		r, w, _ := os.Pipe()
		w.WriteString("x KEEPGPU_READY\n")
		w.Close()
		if err := newMarker(t, testMarker).Copy(dw, r); err != nil {
			t.Fatal(err)
		}
		if n, err := unix.FcntlInt(dw.Fd(), unix.F_GETPIPE_SZ, 0); err != nil || n != tt.want {
			t.Errorf("pipe of %d bytes is %d (%v) after Copy, want %d", tt.before, n, err, tt.want)
		}
		r.Close()
		dr.Close()
		dw.Close()
	}
}

// TestMarkerCloseWakesCopy checks that closing src ends a Copy waiting for
// it, before and after the match, into a pipe and into a file: what the
// copy took from src is written out, the rest stays in the pipe for
// whoever holds another descriptor of it (wrap hands it to a relay).
func TestMarkerCloseWakesCopy(t *testing.T) {
	for _, fired := range []bool{false, true} {
		for _, sk := range []struct {
			name string
			open func(*testing.T) *sink
		}{{"pipe", pipeSink}, {"file", fileSink(os.O_TRUNC)}} {
			t.Run(fmt.Sprintf("%s/fired=%v", sk.name, fired), func(t *testing.T) {
				m := newMarker(t, testMarker)
				if fired {
					m.fire()
				}
				dst := sk.open(t)
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				w.WriteString("first\n")
				copied := make(chan error, 1)
				go func() { copied <- m.Copy(dst.f, r) }()
				for deadline := time.Now().Add(10 * time.Second); string(dst.got()) != "first\n"; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("relayed %q", dst.got())
					}
				}
				// The copy now waits for more; a second descriptor keeps the
				// pipe, as wrap's hand-over does.
				keep, err := dupFile(r)
				if err != nil {
					t.Fatal(err)
				}
				defer keep.Close()
				r.Close()
				select {
				case <-copied:
				case <-time.After(10 * time.Second):
					t.Fatal("Copy still waits after src was closed")
				}
				w.WriteString("rest\n")
				w.Close()
				rest, _ := io.ReadAll(keep)
				if got := dst.finish(t); string(got) != "first\n" || string(rest) != "rest\n" {
					t.Fatalf("relayed %q and left %q; want %q and %q", got, rest, "first\n", "rest\n")
				}
			})
		}
	}
}

// dupFile returns a new descriptor of f's file.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

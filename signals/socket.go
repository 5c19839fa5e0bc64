package signals

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// maxSocketPath is the longest path a Unix socket can portably bind
	// (sun_path is 108 bytes including the terminating NUL on Linux).
	maxSocketPath = 107
	// requestTimeout bounds how long a client may take to send its line.
	requestTimeout = 10 * time.Second
	// writeTimeout bounds each answer line; answers are tiny, so only a
	// wedged client ever hits it.
	writeTimeout = 10 * time.Second
	// maxRequest is the longest request line read; longer is unknown.
	maxRequest = 64
)

// Answers of the ready protocol, one line each.
const (
	answerAccepted = "accepted"
	answerReleased = "released"
	answerError    = "error"
)

// ReadySocket is the endpoint that `keepgpu ready` talks to: a Unix stream
// socket with a line-based protocol. The client sends "ready\n"; the server
// answers "accepted\n" at once and, once the wrapper calls
// [ReadySocket.Released], "released\n" or "error <message>\n", then closes
// the connection. Any other request gets "error unknown request\n". The
// source fires on the first "ready" request.
type ReadySocket struct {
	latch
	path string
	ln   *net.UnixListener

	released    chan struct{} // closed by Released once final is set
	releaseOnce sync.Once
	final       string // the last answer line, newline included

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open connections, for Close
	wg    sync.WaitGroup        // the accept loop and every connection
}

// Listen creates the ready socket at path (made absolute, so that it can be
// handed to a command that changes directory) with mode 0600 and starts
// serving it in the background. The parent directory must exist. A socket
// file already at path is removed if nothing listens on it; a live socket or
// any other kind of file is an error. The caller must Close the socket,
// which stops serving and removes the file.
func Listen(path string) (*ReadySocket, error) {
	if path == "" {
		return nil, errors.New("ready socket: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ready socket %s: %w", path, err)
	}
	if len(abs) > maxSocketPath {
		return nil, fmt.Errorf("ready socket %s: path is %d bytes, over the %d-byte limit of Unix sockets", abs, len(abs), maxSocketPath)
	}
	if st, err := os.Stat(filepath.Dir(abs)); err != nil {
		return nil, fmt.Errorf("ready socket %s: parent directory: %w", abs, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("ready socket %s: parent %s is not a directory", abs, filepath.Dir(abs))
	}
	if err := removeStaleSocket(abs); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: abs, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("ready socket: %w", err)
	}
	// Unlinked by ln.Close, which Close calls.
	if err := os.Chmod(abs, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ready socket: %w", err)
	}
	s := &ReadySocket{
		latch:    newLatch(),
		path:     abs,
		ln:       ln,
		released: make(chan struct{}),
		conns:    make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// removeStaleSocket removes a socket file at path that nothing listens on.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("ready socket: %w", err)
	case st.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("ready socket %s: exists and is not a socket; remove it or choose another path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("ready socket %s: another process is listening on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("ready socket %s: probe existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("ready socket: remove stale socket: %w", err)
	}
	return nil
}

// Name returns "ready".
func (s *ReadySocket) Name() string { return "ready" }

// Path returns the absolute path of the socket, the value for [ReadyEnv].
func (s *ReadySocket) Path() string { return s.path }

// Wait blocks until the first "ready" request arrives, ctx is done or s is
// closed.
func (s *ReadySocket) Wait(ctx context.Context) error { return s.wait(ctx) }

// Released tells every client that has sent "ready", and every later one,
// how releasing the GPUs went: "released" if err is nil, else "error" and
// err's message. The wrapper calls it once the holder has let go; later
// calls are ignored. It does not block.
func (s *ReadySocket) Released(err error) {
	s.releaseOnce.Do(func() {
		s.final = answerReleased + "\n"
		if err != nil {
			s.final = errorLine(err.Error())
		}
		close(s.released)
	})
}

// Close stops accepting, removes the socket file, answers clients still
// waiting for the release with an error line, closes every connection and
// waits for all of the socket's goroutines to end. It is safe to call twice
// and concurrently with Wait.
func (s *ReadySocket) Close() error {
	if !s.close() {
		return nil
	}
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		// Wake handlers still reading their request; waiting ones
		// wake on s.closed and write their last line first.
		c.SetReadDeadline(time.Unix(1, 0))
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("ready socket %s: close: %w", s.path, err)
	}
	return nil
}

// serve accepts connections until Close, handling each in its own
// goroutine.
func (s *ReadySocket) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			// Closed, or out of file descriptors: back off.
			select {
			case <-s.closed:
				return
			case <-time.After(50 * time.Millisecond):
				continue
			}
		}
		s.mu.Lock()
		if isClosed(s.closed) {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// handle serves one connection: one request, one or two answer lines.
func (s *ReadySocket) handle(c net.Conn) {
	defer s.wg.Done()
	drained := false
	defer func() {
		if !drained {
			drain(c)
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	line, err := bufio.NewReaderSize(c, maxRequest).ReadSlice('\n')
	switch {
	case err == nil, err == io.EOF && len(line) > 0:
	case errors.Is(err, bufio.ErrBufferFull):
		line = nil
	default:
		drained = true
		return // timed out, closed, or hung up without a request
	}
	if strings.TrimRight(string(line), "\r\n") != "ready" {
		writeLine(c, errorLine("unknown request"))
		return
	}
	s.fire()
	if writeLine(c, answerAccepted+"\n") != nil {
		return
	}
	select {
	case <-s.released:
		writeLine(c, s.final)
	case <-s.closed:
		writeLine(c, errorLine("keepgpu wrap stopped before releasing the GPUs"))
	}
}

// drain ends the answer and reads what the client sent beyond its request
// (at most 64 KiB, until the request deadline or Close): closing a Unix
// socket with unread data resets the connection, and the client would lose
// the answer it has not read yet.
func drain(c net.Conn) {
	if uc, ok := c.(*net.UnixConn); ok {
		uc.CloseWrite()
	}
	io.CopyN(io.Discard, c, 64<<10)
}

func writeLine(c net.Conn, line string) error {
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := io.WriteString(c, line)
	return err
}

// errorLine formats msg as an "error" answer on a single line.
func errorLine(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	if msg == "" {
		msg = "unknown failure"
	}
	return answerError + " " + msg + "\n"
}

// Ready is the client side of `keepgpu ready`: it tells the keepgpu wrap
// listening at path (the value of [ReadyEnv]) that the command is ready for
// its GPUs. It connects, sends "ready\n" and returns nil once the wrapper
// has accepted; with wait, it blocks further until the GPUs have actually
// been released, and returns an error carrying the wrapper's message if
// releasing failed. Cancelling ctx aborts the exchange and returns
// ctx.Err(). An empty path means the command is not running under keepgpu
// wrap.
//
// A Python command (import os, socket) can do the same as Ready with wait,
// without the binary; the read returns "accepted\nreleased\n" once the GPUs
// are released:
//
//	s = socket.socket(socket.AF_UNIX); s.connect(os.environ["KEEPGPU_READY"])
//	s.sendall(b"ready\n"); s.makefile().read()
func Ready(ctx context.Context, path string, wait bool) error {
	if path == "" {
		return errors.New("not inside keepgpu wrap: " + ReadyEnv + " is not set")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("keepgpu ready: no keepgpu wrap listening at %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("connection closed without an answer")
		}
		return fmt.Errorf("keepgpu ready: %s: %w", path, err)
	}
	if _, err := io.WriteString(c, "ready\n"); err != nil {
		return fail(err)
	}
	r := bufio.NewReader(c)
	want := []string{answerAccepted}
	if wait {
		want = append(want, answerReleased)
	}
	for _, w := range want {
		line, err := r.ReadString('\n')
		if err != nil {
			return fail(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if msg, ok := strings.CutPrefix(line, answerError+" "); ok {
			return fmt.Errorf("keepgpu ready: %s", msg)
		}
		if line != w {
			return fail(fmt.Errorf("unexpected answer %q, want %q", line, w))
		}
	}
	return nil
}

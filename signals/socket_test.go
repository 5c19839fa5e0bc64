package signals

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func newSocket(t *testing.T) *ReadySocket {
	t.Helper()
	s, err := Listen(filepath.Join(shortDir(t), "ready.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readyAsync runs Ready in a goroutine. Its result also says whether
// released had been set by the time Ready returned.
type readyResult struct {
	err          error
	afterRelease bool
}

func readyAsync(t *testing.T, path string, wait bool, released *atomic.Bool) <-chan readyResult {
	done := make(chan readyResult, 1)
	go func() {
		err := Ready(guardCtx(t), path, wait)
		done <- readyResult{err, released != nil && released.Load()}
	}()
	return done
}

func recvReady(t *testing.T, done <-chan readyResult) readyResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(guard):
		t.Fatal("Ready did not return")
		return readyResult{}
	}
}

// dial opens a raw connection to the socket.
func dial(t *testing.T, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(guard))
	return c, bufio.NewReader(c)
}

func TestListenSocketFile(t *testing.T) {
	s := newSocket(t)
	st, err := os.Lstat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want a socket with 0600", st.Mode())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	err = Ready(guardCtx(t), s.Path(), false)
	if err == nil || !strings.Contains(err.Error(), "no keepgpu wrap listening at "+s.Path()) {
		t.Fatalf("Ready after Close = %v, want no keepgpu wrap listening", err)
	}
}

func TestReadyNoWait(t *testing.T) {
	s := newSocket(t)
	if err := Ready(guardCtx(t), s.Path(), false); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	// Ready returned after "accepted", which is sent after firing.
	if err := s.Wait(context.Background()); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	// More requests are accepted too.
	if err := Ready(guardCtx(t), s.Path(), false); err != nil {
		t.Fatalf("second Ready = %v", err)
	}
}

func TestReadyWait(t *testing.T) {
	tests := []struct {
		name    string
		release error
		wantErr string // "" for success
	}{
		{"released", nil, ""},
		{"release failed", errors.New("cuda: context\nstill busy"), "keepgpu ready: cuda: context still busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSocket(t)
			var released atomic.Bool
			done := readyAsync(t, s.Path(), true, &released)
			if err := s.Wait(guardCtx(t)); err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
			released.Store(true)
			s.Released(tt.release)
			s.Released(errors.New("ignored")) // only the first call counts
			r := recvReady(t, done)
			if !r.afterRelease {
				t.Fatal("Ready(wait) returned before Released was called")
			}
			checkReadyErr(t, r.err, tt.wantErr)

			// Clients after the release get the same answer.
			checkReadyErr(t, Ready(guardCtx(t), s.Path(), true), tt.wantErr)
			if err := Ready(guardCtx(t), s.Path(), false); err != nil {
				t.Fatalf("Ready(no wait) after release = %v", err)
			}
		})
	}
}

func checkReadyErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("Ready = %v, want nil", err)
	case want != "" && (err == nil || err.Error() != want):
		t.Fatalf("Ready = %v, want %q", err, want)
	}
}

// TestReadyProtocol talks to the socket directly, the way the Python
// snippet in Ready's doc does.
func TestReadyProtocol(t *testing.T) {
	s := newSocket(t)
	c, r := dial(t, s.Path())
	io.WriteString(c, "ready\n")
	if line, err := r.ReadString('\n'); line != "accepted\n" {
		t.Fatalf("first answer %q, %v; want accepted", line, err)
	}
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		rest <- string(b)
	}()
	select {
	case got := <-rest:
		t.Fatalf("got %q before Released", got)
	default:
	}
	s.Released(nil)
	if got := <-rest; got != "released\n" {
		t.Fatalf("after Released got %q, want released and EOF", got)
	}
}

func TestReadyRequests(t *testing.T) {
	tests := []struct {
		name    string
		request string
		halfEnd bool // shut down writing after the request
		want    string
		fires   bool
	}{
		{"unknown", "hello\n", false, "error unknown request\n", false},
		{"empty line", "\n", false, "error unknown request\n", false},
		{"too long", strings.Repeat("x", 1000) + "\n", false, "error unknown request\n", false},
		{"ready with CRLF", "ready\r\n", false, "accepted\nreleased\n", true},
		{"ready then EOF", "ready", true, "accepted\nreleased\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSocket(t)
			s.Released(nil)
			c, r := dial(t, s.Path())
			io.WriteString(c, tt.request)
			if tt.halfEnd {
				c.(*net.UnixConn).CloseWrite()
			}
			got, err := io.ReadAll(r)
			if errors.Is(err, syscall.ECONNRESET) && tt.name == "too long" {
				err = nil // the server hung up on bytes it did not read
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("answer %q, %v; want %q", got, err, tt.want)
			}
			if s.hasFired() != tt.fires {
				t.Fatalf("fired = %v, want %v", s.hasFired(), tt.fires)
			}
		})
	}
}

func TestListenExistingPath(t *testing.T) {
	dir := shortDir(t)

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves a socket file nobody listens on
	s, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket = %v", err)
	}
	if err := Ready(guardCtx(t), stale, false); err != nil {
		t.Fatalf("Ready = %v", err)
	}

	// s now listens: a second Listen must not steal its path.
	if s2, err := Listen(stale); err == nil || !strings.Contains(err.Error(), "listening") {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("Listen over a live socket = %v, want an error", err)
	}
	if err := Ready(guardCtx(t), stale, false); err != nil {
		t.Fatalf("Ready after failed second Listen = %v", err)
	}
	s.Close()

	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("keep me"), 0o600)
	if s, err := Listen(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Listen over a regular file = %v, want an error", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep me" {
		t.Fatal("regular file was touched")
	}
}

func TestListenErrors(t *testing.T) {
	dir := shortDir(t)
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing parent", filepath.Join(dir, "missing", "s.sock"), filepath.Join(dir, "missing")},
		{"too long", filepath.Join(dir, strings.Repeat("x", 120)), "limit"},
		{"empty", "", "empty path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Listen(tt.path)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestReadyClientErrors(t *testing.T) {
	err := Ready(context.Background(), "", false)
	if err == nil || err.Error() != "not inside keepgpu wrap: KEEPGPU_READY is not set" {
		t.Fatalf("Ready(\"\") = %v", err)
	}

	dir := shortDir(t)
	missing := filepath.Join(dir, "nobody.sock")
	err = Ready(guardCtx(t), missing, false)
	if err == nil || !strings.HasPrefix(err.Error(), "keepgpu ready: no keepgpu wrap listening at "+missing+": ") {
		t.Fatalf("Ready(missing) = %v", err)
	}

	// A server that accepts and never answers: only ctx can end Ready.
	mute := filepath.Join(dir, "mute.sock")
	ln, err := net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c) // until the client hangs up
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Ready(ctx, mute, true) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Ready = %v, want %v", err, context.Canceled)
		}
	case <-time.After(guard):
		t.Fatal("cancelled Ready did not return")
	}
}

// TestReadySocketCloseNoLeak closes the socket with clients in every state
// and checks that all of its goroutines are done when Close returns.
func TestReadySocketCloseNoLeak(t *testing.T) {
	s, err := Listen(filepath.Join(shortDir(t), "ready.sock"))
	if err != nil {
		t.Fatal(err)
	}
	waiting := readyAsync(t, s.Path(), true, nil)
	// Wait returns once the socket has read a request, and this client is
	// the only one yet: it has asked and now waits for the release. Without
	// this, Close may come before its request and it sees a broken pipe.
	if err := s.Wait(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	waitingRaw, _ := dial(t, s.Path())
	io.WriteString(waitingRaw, "ready\n")
	accepted := make([]byte, len("accepted\n"))
	if _, err := io.ReadFull(waitingRaw, accepted); err != nil || string(accepted) != "accepted\n" {
		t.Fatalf("answer %q, %v; want accepted", accepted, err)
	}
	silent, _ := dial(t, s.Path()) // connected, never sends a request
	half, _ := dial(t, s.Path())
	io.WriteString(half, "rea") // stuck in the middle of a request
	for range 3 {
		if err := Ready(guardCtx(t), s.Path(), false); err != nil {
			t.Fatal(err)
		}
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for every handler, so each has already written its
	// last line and hung up.
	conns := []struct {
		name string
		c    net.Conn
		want string
	}{
		{"waiting", waitingRaw, "error keepgpu wrap stopped before releasing the GPUs\n"},
		{"silent", silent, ""},
		{"half a request", half, ""},
	}
	for _, c := range conns {
		got, eof := readNow(t, c.c)
		if got != c.want || !eof {
			t.Errorf("%s connection right after Close: got %q, EOF %v; want %q and EOF", c.name, got, eof, c.want)
		}
	}
	for _, g := range goroutines("(*ReadySocket)") {
		if !strings.Contains(g, "[running]") && !strings.Contains(g, "[runnable]") {
			t.Fatalf("goroutine still blocked after Close returned:\n%s", g)
		}
	}
	if leaks := waitForNoGoroutines("(*ReadySocket)"); len(leaks) > 0 {
		t.Fatalf("goroutines left after Close:\n%s", strings.Join(leaks, "\n\n"))
	}
	r := recvReady(t, waiting)
	if r.err == nil || !strings.Contains(r.err.Error(), "stopped before releasing") {
		t.Fatalf("Ready waiting across Close = %v, want an error", r.err)
	}
	s.Released(nil) // after Close: harmless
}

// readNow returns what c has received so far without waiting for more, and
// whether the peer has hung up.
func readNow(t *testing.T, c net.Conn) (got string, eof bool) {
	t.Helper()
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			switch {
			case n > 0:
				got += string(buf[:n])
			case err == syscall.EAGAIN:
				return true
			case err != nil:
				rerr = err
				return true
			default: // n == 0: orderly shutdown
				eof = true
				return true
			}
		}
	})
	if err != nil || rerr != nil {
		t.Fatalf("read: %v %v", err, rerr)
	}
	return got, eof
}

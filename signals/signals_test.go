package signals

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// guard bounds every wait in these tests; it only turns a hang into a
// failure and is never expected to expire.
const guard = 10 * time.Second

func TestMain(m *testing.M) {
	if n := os.Getenv("KEEPGPU_TEST_CATCH"); n != "" {
		catchProbe(n) // a child of TestReadySignalCaught
	}
	code := m.Run()
	if code == 0 {
		if leaks := waitForNoGoroutines("keepgpu/signals."); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n\n%s\n", strings.Join(leaks, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// goroutines returns the stacks of all goroutines but the caller's that
// mention substr.
func goroutines(substr string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i > 0 && strings.Contains(g, substr) { // 0 is the caller
			found = append(found, g)
		}
	}
	return found
}

// waitForNoGoroutines gives goroutines that are on their way out up to
// guard to finish, then returns those still mentioning substr.
func waitForNoGoroutines(substr string) []string {
	deadline := time.Now().Add(guard)
	for {
		leaks := goroutines(substr)
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shortDir returns a fresh directory with a short path (Unix socket paths
// are limited to 107 bytes; t.TempDir paths can be longer).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// guardCtx is a context that ends after guard, so a broken Wait fails the
// test instead of hanging it.
func guardCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// waitAsync runs src.Wait(ctx) in a goroutine and returns its result
// channel.
func waitAsync(ctx context.Context, src Source) <-chan error {
	done := make(chan error, 1)
	go func() { done <- src.Wait(ctx) }()
	return done
}

// recv returns the result of a waitAsync, failing the test after guard.
func recv(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(guard):
		t.Fatal("Wait did not return")
		return nil
	}
}

// fakeSource fires when fire is closed, fails when failWith is set, and
// records that its Wait returned.
type fakeSource struct {
	name     string
	fire     chan struct{}
	failWith error
	returned atomic.Bool
}

func newFake(name string) *fakeSource {
	return &fakeSource{name: name, fire: make(chan struct{})}
}

func (f *fakeSource) Name() string { return f.name }
func (f *fakeSource) Close() error { return nil }
func (f *fakeSource) Wait(ctx context.Context) error {
	defer f.returned.Store(true)
	if f.failWith != nil {
		return f.failWith
	}
	select {
	case <-f.fire:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestFirst(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		setup   func(a, b, c *fakeSource, cancel context.CancelFunc)
		want    string // name of the source returned, "" for none
		wantErr error
	}{
		{"second fires", func(a, b, c *fakeSource, _ context.CancelFunc) { close(b.fire) }, "b", nil},
		{"last fires", func(a, b, c *fakeSource, _ context.CancelFunc) { close(c.fire) }, "c", nil},
		{"cancel", func(a, b, c *fakeSource, cancel context.CancelFunc) { cancel() }, "", context.Canceled},
		{"failure", func(a, b, c *fakeSource, _ context.CancelFunc) { a.failWith = boom }, "a", boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, c := newFake("a"), newFake("b"), newFake("c")
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			tt.setup(a, b, c, cancel)
			got, err := First(ctx, a, b, c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("First error = %v, want %v", err, tt.wantErr)
			}
			gotName := ""
			if got != nil {
				gotName = got.Name()
			}
			if gotName != tt.want {
				t.Errorf("First returned %q, want %q", gotName, tt.want)
			}
			for _, f := range []*fakeSource{a, b, c} {
				if !f.returned.Load() {
					t.Errorf("%s.Wait still running after First returned", f.name)
				}
			}
		})
	}
}

func TestFirstNoSources(t *testing.T) {
	if _, err := First(context.Background()); err == nil {
		t.Fatal("First() with no sources returned no error")
	}
}

func TestFirstRealSources(t *testing.T) {
	dir := shortDir(t)
	m, err := Marker("READY")
	if err != nil {
		t.Fatal(err)
	}
	sock, err := Listen(dir + "/s")
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	type result struct {
		src Source
		err error
	}
	done := make(chan result, 1)
	go func() {
		src, err := First(guardCtx(t), m, sock)
		done <- result{src, err}
	}()
	if err := Ready(guardCtx(t), sock.Path(), false); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.src != sock {
		t.Fatalf("First = %v, %v; want the ready socket", r.src, r.err)
	}
	// The others were not closed and can still fire.
	if err := m.Copy(io.Discard, strings.NewReader("READY\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(guardCtx(t)); err != nil {
		t.Fatalf("marker Wait after First: %v", err)
	}
	// A source that already fired wins at once.
	if src, err := First(guardCtx(t), newFake("never"), m); err != nil || src != m {
		t.Fatalf("First with a fired source = %v, %v; want the marker", src, err)
	}
}

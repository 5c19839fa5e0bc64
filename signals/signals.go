// Package signals detects a wrapped command's GPU-ready signal.
//
// Each way the command can say "GPU-ready" is a [Source]: a file that
// appears ([File]), a line written to a FIFO ([FIFO]), a marker in its output
// ([Marker]), a Unix signal sent to keepgpu ([Signal]) or a request on the
// keepgpu ready socket ([Listen], [Ready]). [First] waits on several at once.
// The package knows nothing of GPUs or of process supervision.
package signals

import (
	"context"
	"errors"
	"sync"
)

// ReadyEnv is the environment variable through which keepgpu wrap tells the
// wrapped command where its ready socket listens (see [Listen] and [Ready]).
const ReadyEnv = "KEEPGPU_READY"

// ErrStale is wrapped by [File] when the ready file already exists before the
// command has started: it is left over from an earlier run and would release
// the GPUs at once.
var ErrStale = errors.New("ready file already exists")

// ErrClosed is returned by Wait when the source was closed before it fired.
var ErrClosed = errors.New("ready source closed")

// Source is one way the wrapped command can say it is ready for its GPUs.
type Source interface {
	// Name is a short name for logs: "file", "fifo", "marker", "signal"
	// or "ready".
	Name() string
	// Wait blocks until the source fires and then returns nil, also on
	// every later call. It returns ctx.Err() if ctx is done first and
	// ErrClosed if the source is closed first; any other error is a real
	// failure of the source.
	Wait(ctx context.Context) error
	// Close releases the source's file descriptors, watches and sockets
	// and makes pending and later Waits return. It is safe to call twice
	// and concurrently with Wait.
	Close() error
}

// First waits on all srcs at once and returns the first that fires. It
// blocks until one fires, one fails or ctx is done; in the last case it
// returns ctx.Err(). When a source's Wait fails, First returns that source
// together with the error. Before returning, First cancels the other
// sources' Waits and waits for them to return, so no goroutine outlives the
// call; it does not Close any source, that is left to the caller.
func First(ctx context.Context, srcs ...Source) (Source, error) {
	if len(srcs) == 0 {
		return nil, errors.New("first: no ready sources")
	}
	waitCtx, cancel := context.WithCancel(ctx)
	type result struct {
		src Source
		err error
	}
	results := make(chan result, len(srcs))
	for _, src := range srcs {
		go func() { results <- result{src, src.Wait(waitCtx)} }()
	}
	first := <-results
	cancel()
	for range len(srcs) - 1 {
		<-results
	}
	switch {
	case first.err == nil:
		return first.src, nil
	case ctx.Err() != nil && errors.Is(first.err, ctx.Err()):
		// waitCtx was cancelled only after first arrived, so a context
		// error in first comes from the caller's ctx.
		return nil, ctx.Err()
	default:
		return first.src, first.err
	}
}

// latch records whether a source has fired or been closed; every source
// embeds one.
type latch struct {
	fired     chan struct{} // closed when the source fires
	closed    chan struct{} // closed by Close
	fireOnce  sync.Once
	closeOnce sync.Once
}

func newLatch() latch {
	return latch{fired: make(chan struct{}), closed: make(chan struct{})}
}

func (l *latch) fire() { l.fireOnce.Do(func() { close(l.fired) }) }

// close reports whether this call closed the latch (false on a second call).
func (l *latch) close() bool {
	first := false
	l.closeOnce.Do(func() { close(l.closed); first = true })
	return first
}

func (l *latch) hasFired() bool {
	select {
	case <-l.fired:
		return true
	default:
		return false
	}
}

// done returns what Wait must return without blocking: nil once fired,
// ErrClosed once closed, ctx.Err() once ctx is done. ok is false while none
// of these holds.
func (l *latch) done(ctx context.Context) (err error, ok bool) {
	switch {
	case l.hasFired():
		return nil, true
	case isClosed(l.closed):
		return ErrClosed, true
	case ctx.Err() != nil:
		return ctx.Err(), true
	}
	return nil, false
}

// wait blocks until the latch fires or closes or ctx is done. A fire wins
// over a simultaneous close or cancel.
func (l *latch) wait(ctx context.Context) error {
	select {
	case <-l.fired:
	case <-l.closed:
	case <-ctx.Done():
	}
	err, _ := l.done(ctx)
	return err
}

// acquire takes the one-slot semaphore sem, which serializes Waits that read
// from a shared file descriptor. It gives up, returning a nil release and
// Wait's result, when the latch fires or closes or ctx is done first.
func (l *latch) acquire(ctx context.Context, sem chan struct{}) (release func(), err error) {
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-l.fired:
	case <-l.closed:
	case <-ctx.Done():
	}
	return nil, l.wait(ctx)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

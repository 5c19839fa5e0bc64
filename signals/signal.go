package signals

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Name returns sig's name as keepgpu words it in its messages and events
// (SIGTERM, SIGUSR1), or Go's description of a signal without one.
func Name(sig os.Signal) string {
	if n, ok := sig.(syscall.Signal); ok {
		if name := unix.SignalName(n); name != "" {
			return name
		}
	}
	return sig.String()
}

// SignalSource fires when keepgpu itself receives a Unix signal. See
// [Signal].
type SignalSource struct {
	latch
	ch chan os.Signal
}

// Signal returns a source that fires when the process receives sig, for
// example when the command runs `kill -USR1 $KEEPGPU_PID`. It starts
// catching sig at once (a signal that arrives before Wait is kept), so sig
// no longer has its default effect; the wrapper must not forward it to the
// command. The caller must Close the source, which stops catching sig.
func Signal(sig os.Signal) *SignalSource {
	s := &SignalSource{latch: newLatch(), ch: make(chan os.Signal, 1)}
	signal.Notify(s.ch, sig)
	return s
}

// Name returns "signal".
func (s *SignalSource) Name() string { return "signal" }

// Wait blocks until sig has been received, ctx is done or s is closed.
func (s *SignalSource) Wait(ctx context.Context) error {
	select { // a signal already caught wins over Close and ctx
	case <-s.ch:
		s.fire()
	default:
	}
	select {
	case <-s.ch:
		s.fire()
	case <-s.fired:
	case <-s.closed:
	case <-ctx.Done():
	}
	return s.wait(ctx)
}

// Close stops catching sig (restoring its default effect unless other code
// still catches it) and makes Waits return. It is safe to call twice and
// concurrently with Wait.
func (s *SignalSource) Close() error {
	if s.close() {
		signal.Stop(s.ch)
	}
	return nil
}

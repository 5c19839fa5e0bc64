package signals

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
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

// refused are the signals no ready signal may be, and why. keepgpu cannot
// catch SIGKILL and SIGSTOP, nor, as a Go program on Linux, SIGPROF and the
// realtime signals 32 and 33 (the runtime keeps them: a signal.Notify for
// them never delivers) and 34 (which then kills the process). SIGCHLD,
// SIGURG, SIGPIPE, SIGTTIN, SIGTTOU and SIGCONT are keepgpu wrap's own
// (reaping, the runtime's preemption, broken pipes, the terminal, job
// control), and SIGINT and SIGTERM release and are forwarded already.
var refused = map[syscall.Signal]string{
	syscall.SIGKILL: "cannot be caught",
	syscall.SIGSTOP: "cannot be caught",
	syscall.SIGPROF: "cannot be caught by keepgpu (the Go runtime keeps it)",
	32:              "cannot be caught by keepgpu (the C library and the Go runtime keep it)",
	33:              "cannot be caught by keepgpu (the C library and the Go runtime keep it)",
	34:              "cannot be caught by keepgpu (the Go runtime keeps it)",
	syscall.SIGCHLD: "already has a meaning to keepgpu wrap (the command's exit)",
	syscall.SIGURG:  "already has a meaning to keepgpu wrap (the Go runtime sends it to itself)",
	syscall.SIGPIPE: "already has a meaning to keepgpu wrap (its own broken pipes)",
	syscall.SIGTTIN: "already has a meaning to keepgpu wrap (terminal access)",
	syscall.SIGTTOU: "already has a meaning to keepgpu wrap (terminal access)",
	syscall.SIGCONT: "already has a meaning to keepgpu wrap (job control)",
	syscall.SIGINT:  "already has a meaning to keepgpu wrap (it releases and is forwarded)",
	syscall.SIGTERM: "already has a meaning to keepgpu wrap (it releases and is forwarded)",
}

// ParseReadySignal reads a --ready-signal value: a name with or without
// SIG (USR2, SIGUSR2, usr2), or a number from 1 to 64 in canonical form
// (12, not 012 or +12). Signals keepgpu cannot catch, or needs for itself,
// are refused with the reason.
func ParseReadySignal(s string) (syscall.Signal, error) {
	var sig syscall.Signal
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.Atoi(s)
		if err != nil || strconv.Itoa(n) != s || n < 1 || n > 64 {
			return 0, fmt.Errorf("%q: no such signal (1..64, or a name such as USR2)", s)
		}
		sig = syscall.Signal(n)
	} else {
		name := strings.ToUpper(s)
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		if sig = unix.SignalNum(name); sig == 0 {
			return 0, fmt.Errorf("%q: no such signal (a name such as USR2, or a number)", s)
		}
	}
	if why, ok := refused[sig]; ok {
		return 0, fmt.Errorf("%q (%s): %s", s, Name(sig), why)
	}
	return sig, nil
}

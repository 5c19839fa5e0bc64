package wrap

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// The Go runtime installs its own signal handlers before any Go code runs
// (runtime.initsig), replacing an inherited SIG_IGN for every signal but
// two: SIGHUP and SIGINT, whose inherited SIG_IGN it keeps and which
// os/signal.Ignored reports. It does not touch SIGCONT, SIGTSTP, SIGTTIN and
// SIGTTOU until a signal.Notify asks for them, so their inherited
// disposition is still the kernel's until then, and /proc/self/status shows
// it (SigIgn). Every other inherited SIG_IGN (the SIGQUIT of a shell's
// background job, a SIGPIPE a shell trap ignores) is gone before keepgpu
// can see it: only a C constructor, running before the runtime, could
// record it.
var untouchedByRuntime = []syscall.Signal{syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU}

// ignoredUntouched returns the SigIgn mask of /proc/self/status (bit N-1
// for signal N), limited to untouchedByRuntime. It is true to the start
// only for the signals no signal.Notify has asked for yet: CatchSignals
// reads it before it catches any signal, and keepgpu wrap calls that
// before its flags are parsed and its --ready-signal source is made.
func ignoredUntouched() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	var all, mask uint64
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			all, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			break
		}
	}
	for _, sig := range untouchedByRuntime {
		mask |= 1 << (sig - 1)
	}
	return all & mask
}

// ignoredAtStart reports whether sig was ignored when keepgpu started, as
// far as a program without cgo can know: true for SIGHUP, SIGINT, SIGCONT,
// SIGTSTP, SIGTTIN and SIGTTOU when they were; always false for the others.
// untouched is ignoredUntouched's answer.
func ignoredAtStart(sig syscall.Signal, untouched uint64) bool {
	if sig == syscall.SIGHUP || sig == syscall.SIGINT {
		return signal.Ignored(sig)
	}
	return sig >= 1 && sig <= 64 && untouched&(1<<(sig-1)) != 0
}

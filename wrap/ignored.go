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
// disposition is still the kernel's when the wrap package is initialised,
// and /proc/self/status shows it (SigIgn). Every other inherited SIG_IGN (a
// background job's SIGQUIT, a shell's trap ” PIPE) is gone before keepgpu
// can see it: only a C constructor, running before the runtime, could
// record it.
var untouchedByRuntime = []syscall.Signal{syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU}

// ignoredUntouched is the SigIgn mask of /proc/self/status (bit N-1 for
// signal N) when the package was initialised, limited to
// untouchedByRuntime. It is read this early because a signal.Notify (for
// --ready-signal, say) replaces the disposition.
var ignoredUntouched = readIgnored()

func readIgnored() uint64 {
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
func ignoredAtStart(sig syscall.Signal) bool {
	if sig == syscall.SIGHUP || sig == syscall.SIGINT {
		return signal.Ignored(sig)
	}
	return sig >= 1 && sig <= 64 && ignoredUntouched&(1<<(sig-1)) != 0
}

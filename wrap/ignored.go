package wrap

/*
#include <signal.h>

// keepgpu_ignored_at_start records, before the Go runtime installs its own
// signal handlers, which signals this process was started with ignored:
// the runtime keeps an inherited SIG_IGN only for SIGHUP and SIGINT, and a
// command must inherit the rest (nohup's, a shell's trap '' QUIT) too.
static unsigned long long keepgpu_ignored_at_start;

__attribute__((constructor)) static void keepgpu_record_ignored(void) {
	for (int s = 1; s < 64; s++) {
		struct sigaction sa;
		if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
			keepgpu_ignored_at_start |= 1ULL << (s - 1);
	}
}

static unsigned long long keepgpu_ignored(void) { return keepgpu_ignored_at_start; }
*/
import "C"

import "syscall"

// ignoredAtStart reports whether sig was ignored when the process started.
func ignoredAtStart(sig syscall.Signal) bool {
	return sig >= 1 && sig < 64 && uint64(C.keepgpu_ignored())&(1<<(uint(sig)-1)) != 0
}

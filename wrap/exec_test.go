package wrap

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestLookPath finds commands as a shell does, and words its failures
// with the shell's status.
func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cmd    string
		status int // 0: found
		msg    string
	}{
		{name: "through PATH", cmd: "sh"},
		{name: "a path", cmd: "/bin/sh"},
		{name: "empty", cmd: "", status: ExitNotFound, msg: "keepgpu: : command not found"},
		{name: "not in PATH", cmd: "keepgpu-no-such-command", status: ExitNotFound, msg: "keepgpu: keepgpu-no-such-command: command not found"},
		{name: "no such file", cmd: filepath.Join(dir, "missing"), status: ExitNotFound, msg: "keepgpu: " + filepath.Join(dir, "missing") + ": No such file or directory"},
		{name: "a directory", cmd: dir, status: ExitNotExecutable, msg: "keepgpu: " + dir + ": Is a directory"},
		// A path that exists is left to exec to refuse (see TestStartError).
		{name: "not executable", cmd: plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lookPath(tt.cmd)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("lookPath(%q): %v", tt.cmd, err)
				}
				return
			}
			ee, ok := err.(*execError)
			if !ok || ee.status != tt.status || ee.msg != tt.msg {
				t.Fatalf("lookPath(%q) = %v; want %d %q", tt.cmd, err, tt.status, tt.msg)
			}
		})
	}
}

// TestStartError maps exec's errors to the shell's status and wording.
func TestStartError(t *testing.T) {
	tests := []struct {
		err    error
		status int
		msg    string
	}{
		{syscall.ENOENT, ExitNotFound, "keepgpu: x: No such file or directory"},
		{syscall.ENOTDIR, ExitNotFound, "keepgpu: x: No such file or directory"},
		{syscall.EACCES, ExitNotExecutable, "keepgpu: x: Permission denied"},
		{syscall.EPERM, ExitNotExecutable, "keepgpu: x: Permission denied"},
		{syscall.ENOEXEC, ExitNotExecutable, "keepgpu: x: cannot execute binary file: Exec format error"},
		{syscall.EISDIR, ExitNotExecutable, "keepgpu: x: Is a directory"},
		{syscall.E2BIG, ExitNotExecutable, "keepgpu: x: Argument list too long"},
		{&os.PathError{Op: "fork/exec", Path: "x", Err: syscall.EACCES}, ExitNotExecutable, "keepgpu: x: Permission denied"},
		{os.ErrInvalid, ExitNotExecutable, "keepgpu: x: invalid argument"},
	}
	for _, tt := range tests {
		ee := startError("x", tt.err).(*execError)
		if ee.status != tt.status || ee.msg != tt.msg {
			t.Errorf("startError(%v) = %d %q; want %d %q", tt.err, ee.status, ee.msg, tt.status, tt.msg)
		}
	}
}

// TestExitStatus maps wait statuses as a shell does: the code, or 128+N.
func TestExitStatus(t *testing.T) {
	tests := []struct {
		ws   syscall.WaitStatus
		want int
	}{
		{0, 0},
		{3 << 8, 3},
		{255 << 8, 255},
		{syscall.WaitStatus(syscall.SIGTERM), 128 + 15},
		{syscall.WaitStatus(syscall.SIGKILL), 128 + 9},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, 128 + 11},      // core dumped
		{0x7f | syscall.WaitStatus(syscall.SIGSTOP)<<8, ExitFailed}, // stopped: no exit status
	}
	for _, tt := range tests {
		if got := exitStatus(tt.ws); got != tt.want {
			t.Errorf("exitStatus(%#x) = %d; want %d", uint32(tt.ws), got, tt.want)
		}
	}
}

// TestDispositions catches every signal but KILL, STOP and the Go
// runtime's own, and SIGCHLD even if it came in ignored.
func TestDispositions(t *testing.T) {
	catch, ignore := dispositions()
	caught := map[os.Signal]bool{}
	for _, s := range catch {
		caught[s] = true
	}
	for _, s := range ignore {
		if caught[s] {
			t.Errorf("%v both caught and ignored", s)
		}
		caught[s] = true
	}
	for n := 1; n <= 64; n++ {
		sig := syscall.Signal(n)
		want := !(sig == syscall.SIGKILL || sig == syscall.SIGSTOP || n >= 32 && n <= 34)
		if caught[sig] != want {
			t.Errorf("signal %d handled: %v; want %v", n, caught[sig], want)
		}
	}
	for _, s := range ignore {
		if s == syscall.SIGCHLD {
			t.Error("SIGCHLD left ignored")
		}
	}
}

package wrap

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Exit statuses of keepgpu wrap besides the command's own.
const (
	ExitFailed        = 125 // keepgpu failed before the command started
	ExitNotExecutable = 126 // the command was found but could not be run
	ExitNotFound      = 127 // the command was not found
)

// execError is a failure to start the command, worded as a shell words it
// and carrying the status a shell would exit with.
type execError struct {
	status int
	msg    string
}

func (e *execError) Error() string { return e.msg }

// lookPath finds name as a shell would: through PATH when it has no slash.
func lookPath(name string) (string, error) {
	if name == "" {
		return "", &execError{ExitNotFound, "keepgpu: : command not found"}
	}
	if !strings.Contains(name, "/") {
		p, err := exec.LookPath(name)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, exec.ErrDot) {
			return p, nil // a shell runs ./name found through a PATH entry "." too
		}
		var pe *exec.Error
		if errors.As(err, &pe) && errors.Is(pe.Err, exec.ErrNotFound) {
			return "", &execError{ExitNotFound, fmt.Sprintf("keepgpu: %s: command not found", name)}
		}
		return "", startError(name, err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		return "", startError(name, err)
	}
	if fi.IsDir() {
		return "", &execError{ExitNotExecutable, fmt.Sprintf("keepgpu: %s: Is a directory", name)}
	}
	return name, nil
}

// startError maps an error from starting name to the shell's status and
// wording: 127 for a missing file, 126 for anything that exists but cannot
// be executed.
func startError(name string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return &execError{ExitNotExecutable, fmt.Sprintf("keepgpu: %s: %v", name, err)}
	}
	switch errno {
	case syscall.ENOENT, syscall.ENOTDIR:
		return &execError{ExitNotFound, fmt.Sprintf("keepgpu: %s: No such file or directory", name)}
	case syscall.EACCES, syscall.EPERM:
		return &execError{ExitNotExecutable, fmt.Sprintf("keepgpu: %s: Permission denied", name)}
	case syscall.ENOEXEC:
		return &execError{ExitNotExecutable, fmt.Sprintf("keepgpu: %s: cannot execute binary file: Exec format error", name)}
	case syscall.EISDIR:
		return &execError{ExitNotExecutable, fmt.Sprintf("keepgpu: %s: Is a directory", name)}
	}
	return &execError{ExitNotExecutable, fmt.Sprintf("keepgpu: %s: %s", name, capitalize(errno.Error()))}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// exitStatus maps a wait status to a shell's: the exit code, or 128+N for
// death by signal N.
func exitStatus(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return ExitFailed
}

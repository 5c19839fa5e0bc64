package signals

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseReadySignal(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
		err  string
	}{
		{in: "USR2", want: syscall.SIGUSR2},
		{in: "SIGUSR1", want: syscall.SIGUSR1},
		{in: "usr2", want: syscall.SIGUSR2},
		{in: "12", want: syscall.SIGUSR2},
		{in: "HUP", want: syscall.SIGHUP},
		{in: "35", want: 35},
		{in: "64", want: 64},
		{in: "", err: "no such signal"},
		{in: "0", err: "no such signal"},
		{in: "65", err: "no such signal"},
		{in: "012", err: "no such signal"},
		{in: "+12", err: "no such signal"},
		{in: "-12", err: "no such signal"},
		{in: "12 ", err: "no such signal"},
		{in: "99999999999999999999", err: "no such signal"},
		{in: "BOGUS", err: "no such signal"},
		{in: "SIG", err: "no such signal"},
		{in: "ÜSR2", err: "no such signal"},
		{in: "KILL", err: "cannot be caught"},
		{in: "9", err: "cannot be caught"},
		{in: "STOP", err: "cannot be caught"},
		{in: "PROF", err: "cannot be caught"},
		{in: "32", err: "cannot be caught"},
		{in: "33", err: "cannot be caught"},
		{in: "34", err: "cannot be caught"},
		{in: "CHLD", err: "already has a meaning"},
		{in: "URG", err: "already has a meaning"},
		{in: "PIPE", err: "already has a meaning"},
		{in: "TTIN", err: "already has a meaning"},
		{in: "TTOU", err: "already has a meaning"},
		{in: "CONT", err: "already has a meaning"},
		{in: "INT", err: "already has a meaning"},
		{in: "TERM", err: "already has a meaning"},
		{in: "15", err: "already has a meaning"},
	}
	for _, tt := range tests {
		got, err := ParseReadySignal(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseReadySignal(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseReadySignal(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
		}
	}
}

// TestReadySignalCaught checks the list of signals keepgpu refuses as
// uncatchable against the Go runtime: in a child process, every signal
// ParseReadySignal accepts is caught by signal.Notify, and every one it
// says cannot be caught is not (it is lost, or it kills the child).
func TestReadySignalCaught(t *testing.T) {
	for n := 1; n <= 64; n++ {
		_, err := ParseReadySignal(strconv.Itoa(n))
		uncatchable := err != nil && strings.Contains(err.Error(), "cannot be caught")
		if err != nil && !uncatchable {
			continue // keepgpu's own: catchable, but not a ready signal
		}
		if n == int(syscall.SIGKILL) || n == int(syscall.SIGSTOP) {
			continue // no need to ask
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		// The race detector would sleep a second at each child's exit.
		cmd.Env = append(os.Environ(), "KEEPGPU_TEST_CATCH="+strconv.Itoa(n), "GORACE=atexit_sleep_ms=0")
		out, _ := cmd.Output()
		caught := strings.TrimSpace(string(out)) == "caught"
		if caught == uncatchable {
			t.Errorf("signal %d: ParseReadySignal says %v; a child that asks for it with signal.Notify: %q (%v)",
				n, err, strings.TrimSpace(string(out)), cmd.ProcessState)
		}
	}
}

// catchProbe asks for signal n, sends it to itself and says whether it
// arrived; it does not return.
func catchProbe(n string) {
	sig, _ := strconv.Atoi(n)
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.Signal(sig))
	syscall.Kill(os.Getpid(), syscall.Signal(sig))
	select {
	case <-c:
		fmt.Println("caught")
	case <-time.After(500 * time.Millisecond):
		fmt.Println("lost")
	}
	os.Exit(0)
}

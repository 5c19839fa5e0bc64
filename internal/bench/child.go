package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// The environment through which the driver tells a child what to do.
const (
	childEnv   = "KGBENCH_CHILD"   // the role: a ready source's name, or "write"
	resultEnv  = "KGBENCH_RESULT"  // the file a child writes its timings to
	keepgpuEnv = "KGBENCH_KEEPGPU" // the keepgpu binary, for `keepgpu ready`
	bytesEnv   = "KGBENCH_BYTES"   // how many bytes "write" writes
	firstEnv   = "KGBENCH_FIRST"   // a line "write" writes before them
)

// child runs this binary in the role named by KGBENCH_CHILD, as the command
// keepgpu wraps, and returns its exit status.
func child(role string) int {
	var err error
	switch role {
	case "write":
		err = childWrite()
	case "exit":
		err = childExit()
	default:
		err = childHandoff(role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s: %v\n", role, err)
		return 1
	}
	return 0
}

// childHandoff waits until the holder holds every GPU and then for a random
// phase, gives the ready signal of role and waits for the holder to exit.
// It writes to KGBENCH_RESULT the nanoseconds from just before the signal
// to the exit and, for "ready", to the return of `keepgpu ready` and
// whether the holder was gone by then (1) or not (0).
func childHandoff(role string) error {
	give, err := readySignal(role)
	if err != nil {
		return err
	}
	pid, err := findHolder(&fakegpu.Node{Dir: os.Getenv("FAKEGPU_DIR")})
	if err != nil {
		return err
	}
	fd, err := openPidfd(pid)
	if err != nil {
		return err
	}
	defer fd.close()
	time.Sleep(phase())
	if exited, err := fd.poll(0); err != nil {
		return err
	} else if exited {
		return fmt.Errorf("holder %d exited before the ready signal", pid)
	}

	var ready <-chan readyReturn // nil unless role is "ready"
	t0 := monotonic()
	if role == "ready" {
		ready, err = keepgpuReady(fd)
	} else {
		err = give()
	}
	if err != nil {
		return fmt.Errorf("ready signal: %w", err)
	}
	t1, err := fd.wait()
	if err != nil {
		return err
	}
	if ready == nil {
		return writeResult(fmt.Sprintf("%d 0 0\n", t1-t0))
	}
	r := <-ready
	gone := 0
	if r.holderGone {
		gone = 1
	}
	return writeResult(fmt.Sprintf("%d %d %d\n", t1-t0, r.t-t0, gone))
}

// readySignal returns the action that gives role's ready signal, its
// arguments taken from the environment keepgpu wrap sets.
func readySignal(role string) (func() error, error) {
	switch role {
	case "file", "poll":
		path := os.Getenv("KEEPGPU_READY_FILE")
		return func() error {
			fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return fmt.Errorf("create %s: %w", path, err)
			}
			return unix.Close(fd)
		}, nil
	case "fifo":
		path := os.Getenv("KEEPGPU_READY_FIFO")
		return func() error {
			fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open %s: %w", path, err)
			}
			defer unix.Close(fd)
			_, err = unix.Write(fd, []byte("ready\n"))
			return err
		}, nil
	case "marker":
		line := []byte("bench: " + os.Getenv("KEEPGPU_READY_MARKER") + "\n")
		return func() error {
			_, err := unix.Write(1, line)
			return err
		}, nil
	case "signal":
		pid, err := strconv.Atoi(os.Getenv("KEEPGPU_PID"))
		if err != nil {
			return nil, fmt.Errorf("KEEPGPU_PID: %w", err)
		}
		return func() error { return unix.Kill(pid, unix.SIGUSR2) }, nil
	case "ready":
		return nil, nil // keepgpuReady, which also times the return
	}
	return nil, fmt.Errorf("unknown role %q", role)
}

// dutyWindow is the period of the holder's keep-alive duty cycle
// (keeper.DefaultWindow): at --util 30 the kernel runs for the first 30 ms
// of every 100 ms.
const dutyWindow = 100 * time.Millisecond

// phase is a random wait of up to one duty-cycle window, so that a ready
// signal given after it lands anywhere in the keep-alive kernel's cycle, as
// a real job's would, rather than always in the holder's first kernel.
func phase() time.Duration { return rand.N(dutyWindow) }

// readyReturn is when `keepgpu ready` returned (CLOCK_MONOTONIC ns) and
// whether the holder had exited by then.
type readyReturn struct {
	t          int64
	holderGone bool
}

// keepgpuReady starts `keepgpu ready` and returns a channel that yields
// its return. holder is the holder's pidfd. If `keepgpu ready` fails, the
// holder would never exit: the child exits at once, with status 1.
func keepgpuReady(holder pidfd) (<-chan readyReturn, error) {
	var stderr bytes.Buffer
	c := exec.Command(os.Getenv(keepgpuEnv), "ready")
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		return nil, err
	}
	done := make(chan readyReturn, 1)
	go func() {
		err := c.Wait()
		t := monotonic()
		gone, perr := holder.poll(0)
		if err == nil {
			err = perr
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench child ready: %v\n", cmdError(c, err, stderr.String()))
			os.Exit(1)
		}
		done <- readyReturn{t, gone}
	}()
	return done, nil
}

// childExit is the command of the "exit" handoff: it waits for the driver's
// go (a byte on stdin), writes the time to KGBENCH_RESULT and exits. The
// driver watches the holder.
func childExit() error {
	f, err := os.OpenFile(os.Getenv(resultEnv), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(os.Stdin, make([]byte, 1)); err != nil {
		return fmt.Errorf("wait for the go: %w", err)
	}
	t0 := monotonic()
	if _, err := fmt.Fprintf(f, "%d\n", t0); err != nil {
		return err
	}
	return f.Close()
}

func writeResult(s string) error {
	return os.WriteFile(os.Getenv(resultEnv), []byte(s), 0o644)
}

// logLine is what "write" fills its blocks with: training-log-like text,
// which the marker scan sees as it would see a real job's output.
const logLine = "epoch 3 step 001234 loss 0.123456 lr 3.0e-04 grad_norm 1.234 throughput 1234.5 samples/s\n"

// childWrite writes KGBENCH_FIRST (if set) and then KGBENCH_BYTES bytes of
// log lines to stdout, in 1 MiB writes.
func childWrite() error {
	n, err := strconv.ParseInt(os.Getenv(bytesEnv), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", bytesEnv, err)
	}
	if first := os.Getenv(firstEnv); first != "" {
		if _, err := os.Stdout.WriteString(first + "\n"); err != nil {
			return err
		}
	}
	block := []byte(strings.Repeat(logLine, 1<<20/len(logLine)+1)[:1<<20])
	for n > 0 {
		k := min(n, int64(len(block)))
		if _, err := os.Stdout.Write(block[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

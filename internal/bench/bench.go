package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// Settings of every benchmark run.
const (
	gpus = 2      // GPUs of the fake node
	vram = "1GiB" // what the holder holds per GPU
	// waitLimit only guards against a hang: holders hold, and exit, within
	// milliseconds.
	waitLimit = 30 * time.Second
)

// bench is the state shared by the measurements: a private directory with
// the fake node, and the environment every keepgpu run gets.
type bench struct {
	cfg  config
	log  io.Writer
	self string // this binary, run as the wrapped command
	dir  string // private: fake node, libraries, ready files, sockets
	node *fakegpu.Node
	env  []string
}

// newBench builds the fake driver libraries and a node with gpus GPUs in a
// new private directory.
func newBench(cfg config, log io.Writer) (*bench, error) {
	keepgpu, err := filepath.Abs(cfg.keepgpu)
	if err != nil {
		return nil, fmt.Errorf("keepgpu binary: %w", err)
	}
	if _, err := os.Stat(keepgpu); err != nil {
		return nil, fmt.Errorf("keepgpu binary: %w", err)
	}
	cfg.keepgpu = keepgpu
	if cfg.baseline != "" {
		if cfg.baseline, err = filepath.Abs(cfg.baseline); err == nil {
			_, err = os.Stat(cfg.baseline)
		}
		if err != nil {
			return nil, fmt.Errorf("baseline binary: %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("own executable: %w", err)
	}
	// Short: the ready socket's path must fit in 107 bytes.
	dir, err := os.MkdirTemp("", "kgb")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	b := &bench{cfg: cfg, log: log, self: self, dir: dir}
	fmt.Fprintf(log, "bench: building the fake driver libraries in %s\n", dir)
	b.node, err = fakegpu.NewNode(filepath.Join(dir, "node"), filepath.Join(dir, "lib"), gpus)
	if err == nil {
		err = os.Mkdir(filepath.Join(dir, "ready"), 0o755)
	}
	if err != nil {
		b.close()
		return nil, fmt.Errorf("fake node: %w", err)
	}
	b.env = append(cleanEnv(), b.node.Env()...)
	b.env = append(b.env, "XDG_RUNTIME_DIR="+dir, keepgpuEnv+"="+keepgpu)
	return b, nil
}

func (b *bench) close() { os.RemoveAll(b.dir) }

// cleanEnv is this process's environment without settings that would
// change what keepgpu does: KEEPGPU_* (flags) and a stray fake node.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEEPGPU_") && !strings.HasPrefix(kv, "FAKEGPU_DIR=") {
			env = append(env, kv)
		}
	}
	return env
}

// wrap returns the command `keepgpu wrap --vram 1GiB FLAGS -- CMD...` on
// the fake node, with extra environment entries for the command.
func (b *bench) wrap(flags []string, env []string, cmd ...string) *exec.Cmd {
	return b.wrapWith(b.cfg.keepgpu, flags, env, cmd...)
}

// wrapWith is wrap with the keepgpu binary bin.
func (b *bench) wrapWith(bin string, flags []string, env []string, cmd ...string) *exec.Cmd {
	args := append([]string{"wrap", "--vram", vram}, flags...)
	args = append(append(args, "--"), cmd...)
	c := exec.Command(bin, args...)
	c.Env = append(append([]string{}, b.env...), env...)
	return c
}

// runChecked runs c, which must exit 0, with its stderr kept for the error.
func runChecked(c *exec.Cmd) error {
	var stderr bytes.Buffer
	if c.Stderr == nil {
		c.Stderr = &stderr
	}
	if err := c.Run(); err != nil {
		return cmdError(c, err, stderr.String())
	}
	return nil
}

// cmdError describes a failed command with the tail of its stderr.
func cmdError(c *exec.Cmd, err error, stderr string) error {
	stderr = strings.TrimSpace(stderr)
	if len(stderr) > 2000 {
		stderr = "…" + stderr[len(stderr)-2000:]
	}
	if stderr != "" {
		stderr = "\n" + stderr
	}
	return fmt.Errorf("%s: %w%s", strings.Join(c.Args, " "), err, stderr)
}

// findHolder waits until one live process other than this one holds memory
// on every GPU of node, and returns its pid: the holder of a keepgpu wrap.
func findHolder(node *fakegpu.Node) (int, error) {
	n, err := node.GPUs()
	if err != nil {
		return 0, fmt.Errorf("find holder: %w", err)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		held := map[int]int{} // pid -> GPUs on which it holds memory
		for gpu := 0; gpu < n; gpu++ {
			procs, err := node.Procs(gpu)
			if err != nil {
				return 0, fmt.Errorf("find holder: %w", err)
			}
			for _, p := range procs {
				if p.Alive && p.Bytes > 0 && p.PID != os.Getpid() {
					held[p.PID]++
				}
			}
		}
		for pid, k := range held {
			if k == n {
				return pid, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("find holder: no process holds all %d GPUs after %s", n, waitLimit)
		}
		time.Sleep(time.Millisecond)
	}
}

// pidfd is a file descriptor that becomes readable when its process exits,
// whether or not that process is our child.
type pidfd int

func openPidfd(pid int) (pidfd, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return pidfd(fd), nil
}

func (p pidfd) close() { unix.Close(int(p)) }

// poll waits up to timeout for the process to exit and reports whether it
// has.
func (p pidfd) poll(timeout time.Duration) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(p), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		n, err := unix.Poll(fds, max(ms, 0))
		switch {
		case errors.Is(err, unix.EINTR):
			continue // the Go runtime's preemption signals
		case err != nil:
			return false, fmt.Errorf("poll pidfd: %w", err)
		case n > 0:
			return true, nil
		case ms <= 0:
			return false, nil
		}
	}
}

// wait blocks until the process has exited and returns the CLOCK_MONOTONIC
// time, in nanoseconds, at which poll(2) returned.
func (p pidfd) wait() (int64, error) {
	exited, err := p.poll(waitLimit)
	t := monotonic()
	if err != nil {
		return 0, err
	}
	if !exited {
		return 0, fmt.Errorf("holder still running %s after the ready signal", waitLimit)
	}
	return t, nil
}

// monotonic is CLOCK_MONOTONIC in nanoseconds: one clock for every process.
func monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail for CLOCK_MONOTONIC
	}
	return ts.Nano()
}

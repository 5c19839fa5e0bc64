package main

import (
	"fmt"
	goio "io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/signals"
	"github.com/keepgpu/keepgpu/wrap"
)

// WrapCmd is `keepgpu wrap [flags] -- CMD ARGS...`: hold the GPUs while CMD
// runs, and hand them over when it says it is ready or exits.
type WrapCmd struct {
	KeepFlags
	ReadyFile       pathFlag       `name:"ready-file" placeholder:"PATH" help:"Release when PATH appears. It must not exist when keepgpu starts."`
	Poll            keeper.Period  `name:"poll" default:"200ms" placeholder:"DURATION" help:"How often --ready-file is also polled, for NFS and Lustre, which send no file events."`
	PollOnly        bool           `name:"poll-only" help:"Watch --ready-file by polling alone, without inotify (for file systems whose change events mislead)."`
	ReadyFIFO       pathFlag       `name:"ready-fifo" placeholder:"PATH" help:"Release when a line is written to the FIFO at PATH (created 0600 if missing)."`
	ReadyMarker     markerFlag     `name:"ready-marker" placeholder:"TEXT" help:"Release when a line of the command's stdout or stderr contains TEXT."`
	ReadySignal     signalFlag     `name:"ready-signal" placeholder:"SIG" help:"Release when keepgpu receives SIG (for example USR2); it is then not forwarded. Off by default: Slurm sends USR1/USR2 for its own reasons."`
	ReleaseOnGPUUse bool           `name:"release-on-gpu-use" default:"true" negatable:"" help:"Release as soon as the command or a descendant opens a GPU."`
	RequireGPU      bool           `name:"require-gpu" help:"Exit 125 without running the command if no GPU can be held."`
	MaxHold         keeper.Timeout `name:"max-hold" placeholder:"DURATION" help:"Release after this long even if the command is not ready."`
	Command         []string       `arg:"" optional:"" passthrough:"partial" name:"command" help:"The command and its arguments."`
}

// Run runs the command and exits with its status; see wrap.Run.
func (c *WrapCmd) Run(io *stdio, kctx *kong.Context) error {
	fail := func(format string, args ...any) error {
		fmt.Fprintf(io.err, "keepgpu: "+format+"\n", args...)
		return exitCode(wrap.ExitFailed)
	}
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return fail("wrap: no command given (keepgpu wrap [flags] -- CMD ARGS...)")
	}
	warn := func(w string) { fmt.Fprintf(io.err, "keepgpu: warning: %s\n", w) }
	spec, err := c.spec(warn)
	if err != nil {
		return fail("%v", err)
	}
	cfg := wrap.Config{
		Command:         c.Command,
		Holder:          &spec,
		ReleaseOnGPUUse: c.ReleaseOnGPUUse,
		RequireGPU:      c.RequireGPU,
		MaxHold:         time.Duration(c.MaxHold),
		Quiet:           quietOutput(kctx, c.Quiet, warn),
		SocketDir:       runtimeDir(),
		Stdin:           os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	}
	// The sources watch from now on; a flag found wrong after one of them
	// was opened closes it again.
	opened := false
	defer func() {
		if !opened {
			for _, s := range cfg.Sources {
				s.Close()
			}
		}
	}()
	env := os.Environ()
	if c.ReadyFile != "" {
		watch := signals.File
		if c.PollOnly {
			watch = signals.PollFile
		}
		s, err := watch(string(c.ReadyFile), time.Duration(c.Poll))
		if err != nil {
			return fail("--ready-file: %v", err)
		}
		cfg.Sources = append(cfg.Sources, s)
		env = setenv(env, "KEEPGPU_READY_FILE", s.Path())
	}
	if c.ReadyFIFO != "" {
		s, err := signals.FIFO(string(c.ReadyFIFO))
		if err != nil {
			return fail("--ready-fifo: %v", err)
		}
		cfg.Sources = append(cfg.Sources, s)
		env = setenv(env, "KEEPGPU_READY_FIFO", s.Path())
	}
	if c.ReadyMarker != "" {
		m, err := signals.Marker(string(c.ReadyMarker))
		if err != nil {
			return fail("--ready-marker: %v", err)
		}
		cfg.Marker = m
		env = setenv(env, "KEEPGPU_READY_MARKER", string(c.ReadyMarker))
	}
	if c.ReadySignal != 0 {
		sig := syscall.Signal(c.ReadySignal)
		cfg.ReadySignal = sig
		cfg.Sources = append(cfg.Sources, signals.Signal(sig))
	}
	cfg.Env = env
	opened = true // wrap.Run closes them
	return exitCode(wrap.Run(cfg))
}

func setenv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// runtimeDir is where per-run sockets go: the user's XDG runtime dir, or
// the temporary directory.
func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && len(d) < 60 {
			return d
		}
	}
	return os.TempDir()
}

// ReadyCmd is `keepgpu ready`: tell the surrounding keepgpu wrap that the
// command is ready for its GPUs.
type ReadyCmd struct {
	NoWait  bool           `name:"no-wait" help:"Return once the request is accepted, before the GPUs are released."`
	Timeout keeper.Timeout `name:"timeout" default:"60s" placeholder:"DURATION" help:"Give up after this long (0: wait as long as it takes)."`
}

// Run asks for the release and, unless --no-wait, returns once the holder
// has exited and its VRAM is back with the driver.
func (c *ReadyCmd) Run(io *stdio) error {
	ctx, cancel := contextWithTimeout(time.Duration(c.Timeout))
	defer cancel()
	if err := signals.Ready(ctx, os.Getenv(signals.ReadyEnv), !c.NoWait); err != nil {
		return err
	}
	return nil
}

// RelayCmd is `keepgpu relay`, hidden: what keepgpu wrap --ready-marker
// starts when the command has exited and a background process of its still
// holds its stdout or stderr. It copies stdin to stdout until every writer
// of stdin is gone.
type RelayCmd struct{}

// Run copies stdin to stdout.
func (c *RelayCmd) Run() error {
	_, err := goio.CopyBuffer(os.Stdout, os.Stdin, make([]byte, 64<<10))
	return err
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/signals"
	"github.com/keepgpu/keepgpu/wrap"
)

// HoldCmd is `keepgpu hold` and bare `keepgpu`: a holder in the foreground.
// Supervisors (wrap, the service) run it too, with the hidden flags.
type HoldCmd struct {
	KeepFlags
	MaxHold   time.Duration `name:"max-hold" placeholder:"DURATION" help:"Release by itself after this long (0: hold until told)."`
	UntilFile string        `name:"until-file" placeholder:"PATH" help:"Release when PATH appears (it must not exist at start)."`
	UntilFIFO string        `name:"until-fifo" placeholder:"PATH" help:"Release when a line is written to the FIFO at PATH (created 0600 if missing)."`
	Poll      time.Duration `name:"poll" default:"200ms" placeholder:"DURATION" help:"How often --until-file is also polled, for NFS and Lustre."`

	Supervised bool `name:"supervised" hidden:"" env:"-" help:"Write JSON events on stdout for the supervisor that started this holder."`
	TreeOf     int  `name:"tree-of" hidden:"" env:"-" help:"Processes under this pid are the wrapped command's: never foreign, and their GPU use releases."`
}

// Run holds until SIGINT or SIGTERM (or --max-hold, --until-file,
// --until-fifo, or the wrapped tree using a GPU), then releases every GPU and
// returns nil: a release is a success. Failing to hold is an error.
func (c *HoldCmd) Run(io *stdio) error {
	out := io.err
	if c.Supervised {
		c.LogFormat = "json"
		out = io.out
		// A supervisor that died leaves a broken pipe: the next event must
		// fail, not kill the holder before its parent-death SIGTERM
		// releases the GPUs properly.
		signal.Ignore(syscall.SIGPIPE)
	}
	p := newProgress(out, &c.KeepFlags)
	opt, err := c.options(func(w string) { p.info("warning", w, nil) })
	if err != nil {
		return err
	}
	if c.MaxHold < 0 {
		return usageError{fmt.Errorf("--max-hold %s: must not be negative", c.MaxHold)}
	}
	// Signals first: a SIGTERM that comes while the driver loads must not
	// be lost (nor kill the holder before it can say why it went).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	var until []signals.Source
	if c.UntilFile != "" {
		s, err := signals.File(c.UntilFile, c.Poll)
		if err != nil {
			return usageError{fmt.Errorf("--until-file: %w", err)}
		}
		defer s.Close()
		until = append(until, s)
	}
	if c.UntilFIFO != "" {
		s, err := signals.FIFO(c.UntilFIFO)
		if err != nil {
			return usageError{fmt.Errorf("--until-fifo: %w", err)}
		}
		defer s.Close()
		until = append(until, s)
	}

	treeUse := make(chan int, 1)
	if c.TreeOf > 0 {
		root := c.TreeOf
		opt.Own = func(pid int) bool { return wrap.Descends(pid, root) }
		opt.TreeUse = func(pid int) {
			select {
			case treeUse <- pid:
			default:
			}
		}
	}
	opt.Events = p.event

	type started struct {
		g   *keeper.Group
		err error
	}
	startc := make(chan started, 1)
	go func() {
		g, err := keeper.Hold(context.Background(), c.GPUs, opt)
		startc <- started{g, err}
	}()
	// A signal while the driver loads or the VRAM is allocated is kept and
	// acted on once the GPUs are held, so that they are released
	// explicitly; a second signal exits at once (the driver takes back
	// whatever a process that exits held).
	var pending os.Signal
	var r started
	for waiting := true; waiting; {
		select {
		case s := <-sigs:
			if pending != nil {
				p.info("released", "released while starting ("+signalName(s)+")", map[string]any{"reason": signalName(s)})
				return exitCode(0)
			}
			pending = s
		case r = <-startc:
			waiting = false
		}
	}
	if r.err != nil {
		if errors.Is(r.err, keeper.ErrNoGPU) {
			p.info("error", r.err.Error(), nil)
			return exitCode(1)
		}
		if c.Supervised {
			p.info("error", r.err.Error(), nil)
			return exitCode(1)
		}
		return r.err
	}
	g := r.g
	held := g.Status()
	p.info("holding", holdingLine(held, c.Util)+"; release with Ctrl+C or SIGTERM", map[string]any{"gpus": held})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fired := make(chan signals.Source, 1)
	if len(until) > 0 {
		go func() {
			if s, err := signals.First(ctx, until...); err == nil {
				fired <- s
			}
		}()
	}
	var maxHold <-chan time.Time
	if c.MaxHold > 0 {
		maxHold = time.After(c.MaxHold)
	}
	var why string
	select {
	case s := <-signalOr(sigs, pending):
		why = signalName(s)
	case <-maxHold:
		why = "--max-hold " + c.MaxHold.String()
	case s := <-fired:
		why = "--until-" + s.Name()
	case pid := <-treeUse:
		why = fmt.Sprintf("the wrapped command uses the GPU (pid %d)", pid)
	}
	t := time.Now()
	err = g.Release()
	fields := map[string]any{"reason": why, "held_s": g.Held().Seconds(), "release_ms": float64(time.Since(t).Microseconds()) / 1000}
	if err != nil {
		p.info("error", "release: "+err.Error(), fields)
		return exitCode(1)
	}
	p.info("released", fmt.Sprintf("released %d GPU%s after %s (%s)", len(held), plural(len(held)), g.Held().Round(time.Millisecond), why), fields)
	return nil
}

// holdingLine is the one startup line that says what is held:
// "holding 2 GPUs: gpu 0 (GPU-…, NVIDIA H200) 2.0 GiB, gpu 1 (…) 2.0 GiB; kernel at 30%".
func holdingLine(held []keeper.Status, util int) string {
	parts := make([]string, len(held))
	for i, s := range held {
		parts[i] = fmt.Sprintf("gpu %d (%s, %s) %s", s.GPU, s.UUID, s.Name, cuda.FormatBytes(s.Bytes))
	}
	noun := "GPUs"
	if len(held) == 1 {
		noun = "GPU"
	}
	kernel := fmt.Sprintf("kernel at %d%%", util)
	if util == 0 {
		kernel = "no kernel (--util 0)"
	}
	return fmt.Sprintf("holding %d %s: %s; %s", len(held), noun, strings.Join(parts, ", "), kernel)
}

func signalName(s os.Signal) string {
	if n, ok := s.(syscall.Signal); ok {
		if name := unix.SignalName(n); name != "" {
			return name
		}
	}
	return s.String()
}

// signalOr returns sigs, or a channel that already holds pending.
func signalOr(sigs chan os.Signal, pending os.Signal) <-chan os.Signal {
	if pending == nil {
		return sigs
	}
	c := make(chan os.Signal, 1)
	c <- pending
	return c
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keepgpu/keepgpu/keeper"
)

// HoldCmd is `keepgpu hold` and bare `keepgpu`: a holder in the foreground.
type HoldCmd struct {
	KeepFlags
	MaxHold time.Duration `name:"max-hold" placeholder:"DURATION" help:"Release by itself after this long (0: hold until a signal)."`
}

// Run holds until SIGINT or SIGTERM (or --max-hold), then releases every GPU
// and returns nil: a release is a success. Failing to hold is an error.
func (c *HoldCmd) Run(io *stdio) error {
	p := newProgress(io.err, &c.KeepFlags)
	opt, err := c.options(func(w string) { p.info("warning", w, nil) })
	if err != nil {
		return err
	}
	if c.MaxHold < 0 {
		return usageError{fmt.Errorf("--max-hold %s: must not be negative", c.MaxHold)}
	}
	opt.Events = p.event

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	g, err := keeper.Hold(context.Background(), c.GPUs, opt)
	if err != nil {
		if errors.Is(err, keeper.ErrNoGPU) {
			p.info("error", "holding nothing: "+err.Error(), nil)
			return exitCode(1)
		}
		return err
	}
	held := g.Status()
	p.info("holding", fmt.Sprintf("holding %d GPU(s); release with Ctrl+C or SIGTERM", len(held)), map[string]any{"gpus": held})

	var maxHold <-chan time.Time
	if c.MaxHold > 0 {
		maxHold = time.After(c.MaxHold)
	}
	var why string
	select {
	case s := <-sigs:
		why = signalName(s)
	case <-maxHold:
		why = "--max-hold " + c.MaxHold.String()
	}
	t := time.Now()
	err = g.Release()
	fields := map[string]any{"reason": why, "held_s": g.Held().Seconds(), "release_ms": float64(time.Since(t).Microseconds()) / 1000}
	if err != nil {
		p.info("error", "release: "+err.Error(), fields)
		return exitCode(1)
	}
	p.info("released", fmt.Sprintf("released %d GPU(s) after %s (%s)", len(held), g.Held().Round(time.Millisecond), why), fields)
	return nil
}

func signalName(s os.Signal) string {
	if n, ok := s.(syscall.Signal); ok {
		return "SIG" + signalNames[n]
	}
	return s.String()
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "HUP", syscall.SIGINT: "INT", syscall.SIGQUIT: "QUIT", syscall.SIGTERM: "TERM",
	syscall.SIGUSR1: "USR1", syscall.SIGUSR2: "USR2",
}

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/alecthomas/kong"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/signals"
)

// HoldCmd is `keepgpu hold` and bare `keepgpu`: a holder in the foreground.
// Supervisors (wrap, the service) run it too, with the hidden flags that
// holder.Spec.Args writes.
type HoldCmd struct {
	KeepFlags
	MaxHold   keeper.Timeout `name:"max-hold" placeholder:"DURATION" help:"Release by itself after this long (0: hold until told)."`
	UntilFile pathFlag       `name:"until-file" placeholder:"PATH" help:"Release when PATH appears (it must not exist at start)."`
	UntilFIFO pathFlag       `name:"until-fifo" placeholder:"PATH" help:"Release when a line is written to the FIFO at PATH (created 0600 if missing)."`
	Poll      keeper.Period  `name:"poll" default:"200ms" placeholder:"DURATION" help:"How often --until-file is also polled, for NFS and Lustre."`
	UntilEOF  bool           `name:"until-eof" help:"Release when standard input ends: the program that started keepgpu with a pipe closed it or exited."`

	Supervised bool `name:"supervised" hidden:"" env:"-" help:"Write JSON events on stdout for the supervisor that started this holder."`
	TreeOf     int  `name:"tree-of" hidden:"" env:"-" help:"Processes under this pid are the wrapped command's: never foreign, and their GPU use releases."`
}

// holderSpec is what the flags ask to hold: the one decoding of the
// command line that holder.Spec.Args encodes.
func (c *HoldCmd) holderSpec(warn func(string)) (holder.Spec, error) {
	spec, err := c.spec(warn)
	spec.TreeOf = c.TreeOf
	return spec, err
}

// supervisedHold is the HoldCmd that kong makes of spec.Args() in an
// environment without KEEPGPU_* settings: `hold --supervised`, defaults
// and all.
func supervisedHold(spec holder.Spec) *HoldCmd {
	return &HoldCmd{
		KeepFlags: KeepFlags{
			GPUs:          spec.GPUs,
			VRAM:          spec.VRAM,
			Util:          spec.Util,
			BusyThreshold: spec.BusyThreshold,
			Interval:      keeper.Interval(spec.Interval),
			AllowPartial:  spec.AllowPartial,
			Platform:      cmp.Or(spec.Platform, keeper.PlatformAuto),
			LogFormat:     "text",
		},
		Poll:       keeper.Period(200 * time.Millisecond),
		Supervised: true,
		TreeOf:     spec.TreeOf,
	}
}

// Run holds until SIGINT or SIGTERM, --max-hold, --until-file,
// --until-fifo, --until-eof, or the wrapped tree using a GPU; see
// holder.Run. A release is a success; failing to hold exits 1.
func (c *HoldCmd) Run(io *stdio, kctx *kong.Context) error {
	jsonLog := c.LogFormat == "json"
	quiet := c.Quiet
	if !jsonLog && !c.Supervised {
		quiet = quietOutput(kctx, c.Quiet, func(w string) { fmt.Fprintf(io.err, "keepgpu: warning: %s\n", w) })
	}
	log := holder.NewLog(io.err, jsonLog, quiet)
	if c.Supervised {
		log = holder.NewLog(io.out, true, false)
	}
	spec, err := c.holderSpec(log.Warn)
	if err != nil {
		return err
	}
	cfg := holder.Config{Spec: spec, MaxHold: time.Duration(c.MaxHold), Supervised: c.Supervised, Log: log}
	if c.UntilFile != "" {
		s, err := signals.File(string(c.UntilFile), time.Duration(c.Poll))
		if err != nil {
			return usageError{fmt.Errorf("--until-file: %w", err)}
		}
		defer s.Close()
		cfg.Until = append(cfg.Until, s)
	}
	if c.UntilFIFO != "" {
		s, err := signals.FIFO(string(c.UntilFIFO))
		if err != nil {
			return usageError{fmt.Errorf("--until-fifo: %w", err)}
		}
		defer s.Close()
		cfg.Until = append(cfg.Until, s)
	}
	if c.UntilEOF {
		s := untilEOF(os.Stdin)
		defer s.Close()
		cfg.Until = append(cfg.Until, s)
	}
	if err := holder.Run(cfg); errors.Is(err, holder.ErrReported) {
		return exitCode(1)
	} else if err != nil {
		return err
	}
	return nil
}

// quietOutput says whether progress lines stay off stderr: --quiet (or
// KEEPGPU_QUIET) when given, as true or false; otherwise KeepGPU's
// CONSOLE_LOG_LEVEL, read by holder.ConsoleQuiet. A CONSOLE_LOG_LEVEL that
// is not a level goes to warn and is ignored.
func quietOutput(kctx *kong.Context, flag bool, warn func(string)) bool {
	if os.Getenv("KEEPGPU_QUIET") != "" {
		return flag
	}
	for _, p := range kctx.Path {
		if p.Flag != nil && p.Flag.Name == "quiet" {
			return flag
		}
	}
	level, ok := os.LookupEnv("CONSOLE_LOG_LEVEL")
	if !ok || level == "" {
		return flag
	}
	quiet, err := holder.ConsoleQuiet(level)
	if err != nil {
		warn(err.Error())
		return flag
	}
	return quiet
}

// eofSource is --until-eof: it fires when its reader ends (end of file, or
// a read error such as a terminal hung up).
type eofSource struct {
	done      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

// untilEOF reads r to its end in the background, discarding what it reads.
// The reading goroutine stays blocked in its read until r ends, which at
// worst is when keepgpu exits.
func untilEOF(r io.Reader) *eofSource {
	s := &eofSource{done: make(chan struct{}), closed: make(chan struct{})}
	go func() {
		io.Copy(io.Discard, r)
		close(s.done)
	}()
	return s
}

func (s *eofSource) Name() string { return "eof" }

func (s *eofSource) Wait(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-s.closed:
		return signals.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *eofSource) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

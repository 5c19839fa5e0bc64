package main

import (
	"errors"
	"fmt"
	"time"

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
			LogFormat:     "text",
		},
		Poll:       keeper.Period(200 * time.Millisecond),
		Supervised: true,
		TreeOf:     spec.TreeOf,
	}
}

// Run holds until SIGINT or SIGTERM, --max-hold, --until-file,
// --until-fifo, or the wrapped tree using a GPU; see holder.Run. A release
// is a success; failing to hold exits 1.
func (c *HoldCmd) Run(io *stdio) error {
	log := holder.NewLog(io.err, c.LogFormat == "json", c.Quiet)
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
	if err := holder.Run(cfg); errors.Is(err, holder.ErrReported) {
		return exitCode(1)
	} else if err != nil {
		return err
	}
	return nil
}

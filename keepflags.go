package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/keeper"
)

// KeepFlags are the flags of every command that holds GPUs (hold, wrap).
type KeepFlags struct {
	GPUs          keeper.GPUs     `name:"gpus" aliases:"gpu-ids" default:"all" placeholder:"LIST" help:"GPUs to hold: all, or ordinals and UUIDs, comma-separated (ordinals as list-gpus shows them: after CUDA_VISIBLE_DEVICES, or on ROCm after ROCR_VISIBLE_DEVICES and HIP_VISIBLE_DEVICES)."`
	VRAM          keeper.VRAM     `name:"vram" default:"1GiB" placeholder:"SIZE" help:"VRAM to hold per GPU: 1GiB, 512MiB, 2GB, 50%, or max (all free memory minus 256 MiB)."`
	Util          int             `name:"util" default:"30" placeholder:"PERCENT" help:"Utilization the keep-alive kernel produces, 0..100 (0 holds VRAM only)."`
	BusyThreshold int             `name:"busy-threshold" aliases:"util-threshold" default:"25" placeholder:"PERCENT" help:"Pause the kernel while utilization not ours is above this; -1 never pauses."`
	Interval      keeper.Interval `name:"interval" default:"2s" placeholder:"DURATION" help:"How often telemetry is read: a duration (2s, 500ms) or seconds (300)."`
	AllowPartial  bool            `name:"allow-partial" help:"Keep holding the GPUs that started when others fail."`
	Platform      keeper.Platform `name:"platform" default:"auto" env:"KEEPGPU_PLATFORM,KEEP_GPU_PLATFORM" placeholder:"auto|cuda|rocm" help:"Whose GPUs to hold: cuda (NVIDIA), rocm (AMD), or auto: CUDA's if the driver shows any, else ROCm's."`
	Threshold     thresholdFlag   `name:"threshold" hidden:"" help:"Deprecated (KeepGPU): an integer sets --busy-threshold, a size sets --vram."`
	Quiet         bool            `name:"quiet" short:"q" help:"Print only warnings and errors."`
	LogFormat     logFormat       `name:"log-format" default:"text" placeholder:"text|json" help:"Progress on stderr as text or JSON lines (text, json)."`
}

// spec checks the flags and turns them into what a holder holds. The
// deprecation warning for --threshold goes to warn.
func (f *KeepFlags) spec(warn func(string)) (holder.Spec, error) {
	if f.Threshold != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(string(f.Threshold))); err == nil {
			f.BusyThreshold = n
			warn("--threshold is deprecated: use --busy-threshold " + string(f.Threshold))
		} else {
			v, err := keeper.ParseVRAM(string(f.Threshold))
			if err != nil {
				return holder.Spec{}, usageError{fmt.Errorf("--threshold %q: neither an integer busy threshold nor a size: %w", f.Threshold, err)}
			}
			f.VRAM = v
			warn("--threshold is deprecated: use --vram " + string(f.Threshold))
		}
	}
	if err := keeper.CheckUtil(f.Util); err != nil {
		return holder.Spec{}, usageError{fmt.Errorf("--util %w", err)}
	}
	if err := keeper.CheckBusyThreshold(f.BusyThreshold); err != nil {
		return holder.Spec{}, usageError{fmt.Errorf("--busy-threshold %w", err)}
	}
	return holder.Spec{
		GPUs:          f.GPUs,
		VRAM:          f.VRAM,
		Util:          f.Util,
		BusyThreshold: f.BusyThreshold,
		Interval:      time.Duration(f.Interval),
		AllowPartial:  f.AllowPartial,
		Platform:      f.Platform,
	}, nil
}

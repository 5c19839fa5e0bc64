package keeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/nvml"
)

// ErrNoGPU reports that there is nothing to hold on this node: no driver
// library, no device, or a driver that failed to initialise.
var ErrNoGPU = errors.New("holding nothing")

// Hold loads the runtime of opt.Platform (see LoadDriver), picks the GPUs
// sel names among those it shows, opens the platform's telemetry (NVML, or
// AMD SMI else ROCm SMI; holding without it if it is unavailable, and
// saying so) and
// starts a Group on them. Errors that mean "nothing to hold here" wrap
// ErrNoGPU. Releasing the group also shuts the telemetry down.
func Hold(ctx context.Context, sel GPUs, opt Options) (*Group, error) {
	d, err := LoadDriver(opt.Platform)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoGPU, err)
	}
	picked, err := sel.pick(d.GPUs, d.visibleVars())
	if err != nil {
		return nil, err
	}
	emit := opt.Events
	if emit == nil {
		emit = func(Event) {}
	}
	tel, err := d.OpenTelemetry()
	opt.telemetryName = d.TelemetryName()
	if err != nil {
		emit(Event{Time: time.Now(), Kind: "warning", GPU: -1, Reason: "telemetry unknown, holding without backoff: " + err.Error()})
	} else {
		opt.Telemetry = tel
		for _, g := range picked {
			s, err := tel.Sample(g.UUID)
			if err == nil && s.ModeErr == nil && s.ComputeMode == nvml.ComputeExclusiveProcess {
				emit(Event{Time: time.Now(), Kind: "warning", GPU: g.Ordinal, UUID: g.UUID, Name: g.Name,
					Reason: "exclusive-process compute mode: no other process can create a context while keepgpu holds this GPU; give the command a ready signal before it starts CUDA"})
			}
		}
	}
	var (
		mu       sync.Mutex
		unmapped []cuda.DeviceInfo // no stop word in host memory: slices
	)
	g, err := Start(ctx, picked, func(info cuda.DeviceInfo) (Device, error) {
		c, err := d.Open(info)
		if m, ok := c.(interface{ StopMapped() bool }); err == nil && ok && !m.StopMapped() {
			mu.Lock()
			unmapped = append(unmapped, info)
			mu.Unlock()
		}
		return c, err
	}, opt)
	if err != nil {
		if tel != nil {
			tel.Close()
		}
		return nil, err
	}
	if tel != nil {
		g.onRelease = func() { tel.Close() }
	}
	for _, info := range unmapped {
		g.emit(Event{Time: time.Now(), Kind: "warning", GPU: info.Ordinal, UUID: info.UUID, Name: info.Name,
			Reason: "the driver maps no host memory for the kernel's stop word: the kernel runs in 2 ms slices, so a release waits for the one in flight"})
	}
	return g, nil
}

// Package keeper holds GPUs: one keeper per GPU allocates the requested VRAM
// and duty-cycles the keep-alive kernel, backing off while someone else uses
// the GPU; a Group starts, reports on and releases many at once.
package keeper

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/nvml"
)

// Device is what a keeper needs from one GPU context; *cuda.Context has it.
type Device interface {
	Alloc(bytes uint64) error
	MemInfo() (free, total uint64, err error)
	// Launch starts the keep-alive kernel for d, or for less (ran) if the
	// device runs it in slices, without waiting for it; it synchronises
	// with the kernel before, which the caller has let end.
	Launch(d time.Duration) (ran time.Duration, err error)
	// Stop ends the running kernel at once and makes later Launches
	// no-ops. It never blocks and may be called from any goroutine.
	Stop()
	Close() error
}

// Telemetry reads a GPU by UUID; *nvml.NVML has it.
type Telemetry interface {
	Sample(uuid string) (nvml.Sample, error)
	// Processes lists the compute processes alone: cheap enough to call
	// every window.
	Processes(uuid string) ([]nvml.Process, error)
}

// Kernel states reported in Status and events.
const (
	KernelRunning  = "running"
	KernelPaused   = "paused"
	KernelIdle     = "idle" // --util 0: VRAM only
	KernelFailed   = "failed"
	KernelReleased = "released"
)

// DefaultWindow is the period of the duty cycle: the kernel is launched
// once per window and runs for util% of it. NVML samples utilization over
// 1/6 s to 1 s, so a window well below that reads as a steady percentage.
// A release does not wait for the window: it stops the kernel at once.
const DefaultWindow = 100 * time.Millisecond

// Options configure a Group.
type Options struct {
	VRAM          VRAM
	Util          int           // percent of each window the kernel runs, 0..100
	BusyThreshold int           // utilization not ours above which we back off; -1 never backs off
	Interval      time.Duration // how often telemetry is read
	Window        time.Duration // duty-cycle period; DefaultWindow if 0
	AllowPartial  bool          // keep the GPUs that started when others fail
	Telemetry     Telemetry     // nil: telemetry unknown, hold anyway
	// Own reports pids whose compute use is not foreign (the holder's own
	// pid always is). Nil means none.
	Own func(pid int) bool
	// TreeUse, when set, is called (once per GPU) as soon as a process that
	// Own claims appears among the GPU's compute processes: the wrapped
	// command started using the GPU. Compute processes are then read every
	// window, not every Interval.
	TreeUse func(pid int)
	// Events receives every state change, from several goroutines, one call
	// at a time. Nil drops them.
	Events func(Event)
	// Platform is the GPUs' vendor Hold loads the runtime of.
	Platform Platform

	telemetryName string // NVML, AMD SMI or ROCm SMI; "" reads as NVML
}

// Event is one change in a group's state.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"event"` // held, paused, resumed, telemetry, kernel-failed, released, error
	GPU    int       `json:"gpu"`   // CUDA ordinal
	UUID   string    `json:"uuid,omitempty"`
	Name   string    `json:"name,omitempty"`
	Bytes  uint64    `json:"bytes,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// Status is the truth about one held GPU at one moment.
type Status struct {
	GPU       int    `json:"gpu"`
	UUID      string `json:"uuid"`
	Name      string `json:"name"`
	Bytes     uint64 `json:"bytes"`  // held by this holder
	Kernel    string `json:"kernel"` // one of the Kernel* states
	Reason    string `json:"reason,omitempty"`
	Telemetry string `json:"telemetry"` // "ok" or "unknown: why"
	Util      *int   `json:"utilization"`
}

// keeper holds one GPU.
type keeper struct {
	info cuda.DeviceInfo
	dev  Device
	opt  *Options
	emit func(Event)

	mu     sync.Mutex
	status Status

	// onTime is how long the kernel ran since the last telemetry check.
	onTime   time.Duration
	since    time.Time
	lastOwn  int
	failed   bool
	treeSeen bool
	stopped  chan struct{}
}

func (k *keeper) setStatus(f func(s *Status)) Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(&k.status)
	return k.status
}

func (k *keeper) event(kind, reason string) {
	k.emit(Event{Time: time.Now(), Kind: kind, GPU: k.info.Ordinal, UUID: k.info.UUID, Name: k.info.Name,
		Bytes: k.snapshot().Bytes, Reason: reason})
}

func (k *keeper) snapshot() Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status
}

// run duty-cycles the kernel and watches telemetry until ctx is done: one
// launch per window, for util% of it, and a sleep until the next window.
// When ctx is done, the kernel in flight is stopped at once (Device.Stop)
// and run returns; the caller closes the device after.
func (k *keeper) run(ctx context.Context) {
	defer close(k.stopped)
	defer k.dev.Stop() // the loop returns as soon as ctx is done
	on := k.opt.Window * time.Duration(k.opt.Util) / 100
	nextCheck := time.Now().Add(k.opt.Interval)
	k.since = time.Now()
	wait := time.NewTimer(k.opt.Window) // reset each window
	defer wait.Stop()
	for ctx.Err() == nil {
		start := time.Now()
		if !start.Before(nextCheck) {
			k.check()
			nextCheck = start.Add(k.opt.Interval)
		}
		if k.opt.TreeUse != nil && !k.treeSeen {
			k.watchTree()
		}
		if on > 0 && k.snapshot().Kernel == KernelRunning {
			k.burn(ctx, on)
		}
		wait.Reset(time.Until(start.Add(k.opt.Window)))
		select {
		case <-ctx.Done():
		case <-wait.C:
		}
	}
}

// burn runs the kernel for on: one launch, or slices where the device cuts
// it up, sleeping through each slice but the last, whose time the wait for
// the next window covers. The goroutine sleeps on a Go timer while the GPU
// works; the driver synchronises at the next launch, when the kernel is
// over.
func (k *keeper) burn(ctx context.Context, on time.Duration) {
	for left := on; left > 0 && ctx.Err() == nil; {
		ran, err := k.dev.Launch(left)
		if err != nil {
			k.failed = true
			k.setStatus(func(s *Status) { s.Kernel, s.Reason = KernelFailed, err.Error() })
			k.event("kernel-failed", err.Error())
			return
		}
		k.onTime += ran // the kernel spins on the GPU's clock for exactly this long
		if left -= ran; left > 0 {
			t := time.NewTimer(ran)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// watchTree reports the first process of the wrapped tree using the GPU.
func (k *keeper) watchTree() {
	if k.opt.Telemetry == nil || k.opt.Own == nil {
		return
	}
	procs, err := k.opt.Telemetry.Processes(k.info.UUID)
	if err != nil {
		return
	}
	for _, p := range procs {
		if p.PID != os.Getpid() && k.opt.Own(p.PID) {
			k.treeSeen = true
			k.event("tree-use", fmt.Sprintf("process %d of the wrapped command uses the GPU", p.PID))
			k.opt.TreeUse(p.PID)
			return
		}
	}
}

// ownShare returns the percent of time since the last call the kernel ran.
func (k *keeper) ownShare() int {
	el := time.Since(k.since)
	share := 0
	if el > 0 {
		share = int((100*k.onTime + el/2) / el)
	}
	k.onTime, k.since = 0, time.Now()
	// Report the larger of this and the last reading: NVML's sample period
	// may lag ours by up to a second.
	share, k.lastOwn = max(share, k.lastOwn), share
	return min(share, 100)
}

// check reads telemetry and pauses or resumes the kernel.
func (k *keeper) check() {
	own := k.ownShare()
	if k.opt.Telemetry == nil {
		name := k.opt.telemetryName
		if name == "" {
			name = "NVML"
		}
		k.setTelemetry("unknown: "+name+" unavailable", nil)
		return
	}
	s, err := k.opt.Telemetry.Sample(k.info.UUID)
	if err != nil {
		k.setTelemetry("unknown: "+err.Error(), nil)
		return
	}
	var util *int
	if s.UtilErr == nil {
		util = &s.Util
	}
	switch {
	case s.UtilErr != nil && s.ProcsErr != nil:
		k.setTelemetry("unknown: "+s.UtilErr.Error(), nil)
	case s.UtilErr != nil:
		k.setTelemetry("partial: utilization unknown: "+s.UtilErr.Error(), nil)
	case s.ProcsErr != nil:
		k.setTelemetry("partial: processes unknown: "+s.ProcsErr.Error(), util)
	default:
		k.setTelemetry("ok", util)
	}
	if k.opt.BusyThreshold < 0 || k.failed {
		return
	}
	busy := ""
	for _, p := range s.Procs {
		if p.PID == os.Getpid() || (k.opt.Own != nil && k.opt.Own(p.PID)) {
			continue
		}
		busy = fmt.Sprintf("foreign compute process %d (%s)", p.PID, cuda.FormatBytes(p.Bytes))
		break
	}
	if busy == "" && s.UtilErr == nil {
		if u, ok := s.ProcUtil[os.Getpid()]; ok && s.ProcUtilErr == nil {
			own = max(own, u)
		}
		if s.Util-own > k.opt.BusyThreshold {
			busy = fmt.Sprintf("utilization %d%% (%d%% ours) above busy threshold %d%%", s.Util, own, k.opt.BusyThreshold)
		}
	}
	k.setBusy(busy)
}

func (k *keeper) setTelemetry(state string, util *int) {
	prev := k.snapshot().Telemetry
	k.setStatus(func(s *Status) { s.Telemetry, s.Util = state, util })
	if state != prev && (state != "ok" || prev != "") {
		k.event("telemetry", state)
	}
}

func (k *keeper) setBusy(why string) {
	s := k.snapshot()
	switch {
	case why != "" && s.Kernel == KernelRunning:
		k.setStatus(func(s *Status) { s.Kernel, s.Reason = KernelPaused, why })
		k.event("paused", why)
	case why == "" && s.Kernel == KernelPaused:
		k.setStatus(func(s *Status) { s.Kernel, s.Reason = KernelRunning, "" })
		k.event("resumed", "")
	case why != "" && why != s.Reason && s.Kernel == KernelPaused:
		k.setStatus(func(s *Status) { s.Reason = why })
	}
}

package keeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
)

// Group holds many GPUs. Start returns once every GPU holds its VRAM;
// Release (or the cancellation of the context given to Start) hands them
// all back.
type Group struct {
	keepers []*keeper
	cancel  context.CancelFunc
	once    sync.Once
	err     error
	started time.Time
	// onRelease runs after every context is destroyed (Hold closes NVML).
	onRelease func()
	// emit passes events on to Options.Events, one at a time.
	emit func(Event)
}

// Open creates a context on one GPU.
type Open func(info cuda.DeviceInfo) (Device, error)

// Start opens every GPU in gpus in parallel, allocates the VRAM asked for
// and starts the keep-alive kernels. A size above a card is refused before
// anything is opened. If a GPU fails, Start releases the others and returns
// an error naming each failed GPU, unless opt.AllowPartial is set and at
// least one GPU holds. The group runs until Release or ctx is done.
func Start(ctx context.Context, gpus []cuda.DeviceInfo, open Open, opt Options) (*Group, error) {
	if len(gpus) == 0 {
		return nil, errors.New("no GPU to hold")
	}
	if opt.Window <= 0 {
		opt.Window = DefaultWindow
	}
	if opt.Interval <= 0 {
		opt.Interval = 2 * time.Second
	}
	if opt.Util < 0 || opt.Util > 100 {
		return nil, fmt.Errorf("util %d%%: want 0..100", opt.Util)
	}
	if opt.Events == nil {
		opt.Events = func(Event) {}
	}
	if opt.VRAM.Fixed() {
		for _, g := range gpus {
			if _, err := opt.VRAM.Resolve(g.TotalBytes, g.TotalBytes); err != nil {
				return nil, fmt.Errorf("gpu %d (%s): %w", g.Ordinal, g.UUID, err)
			}
		}
	}
	// GOMAXPROCS stays as the runtime set it: no goroutine waits in the
	// driver for a running kernel (keepers sleep on timers, and a stopped
	// kernel ends within microseconds), and spare scheduler slots cost
	// wake-ups: at 16 GPUs, GOMAXPROCS 18 made the holder's threads switch
	// about four times as often, for twice the CPU.
	var emitMu sync.Mutex
	emit := func(e Event) {
		emitMu.Lock()
		defer emitMu.Unlock()
		opt.Events(e)
	}

	keepers := make([]*keeper, len(gpus))
	errs := make([]error, len(gpus))
	var wg sync.WaitGroup
	for i, g := range gpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keepers[i], errs[i] = startOne(g, open, &opt, emit)
		}()
	}
	wg.Wait()

	var held []*keeper
	for _, k := range keepers {
		if k != nil {
			held = append(held, k)
		}
	}
	if err := errors.Join(errs...); err != nil && (!opt.AllowPartial || len(held) == 0) {
		closeAll(held)
		return nil, err
	} else if err != nil {
		for i, e := range errs {
			if e != nil {
				emit(Event{Time: time.Now(), Kind: "error", GPU: gpus[i].Ordinal, UUID: gpus[i].UUID, Reason: e.Error()})
			}
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	g := &Group{keepers: held, cancel: cancel, started: time.Now(), emit: emit}
	for _, k := range held {
		k.event("held", "")
		k.check() // the first status already tells the truth
		go k.run(ctx)
	}
	return g, nil
}

// startOne opens one GPU and allocates its VRAM.
func startOne(info cuda.DeviceInfo, open Open, opt *Options, emit func(Event)) (*keeper, error) {
	dev, err := open(info)
	if err != nil {
		return nil, err
	}
	want := opt.VRAM.Bytes
	if !opt.VRAM.Fixed() || opt.VRAM.Percent > 0 {
		free, total, err := dev.MemInfo()
		if err == nil {
			want, err = opt.VRAM.Resolve(total, free)
		}
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("gpu %d (%s): %w", info.Ordinal, info.UUID, err)
		}
	}
	if want > 0 {
		if err := dev.Alloc(want); err != nil {
			dev.Close()
			return nil, err
		}
	}
	kernel := KernelRunning
	if opt.Util == 0 {
		kernel = KernelIdle
	}
	k := &keeper{info: info, dev: dev, opt: opt, emit: emit, stopped: make(chan struct{})}
	k.status = Status{GPU: info.Ordinal, UUID: info.UUID, Name: info.Name, Bytes: want, Kernel: kernel}
	return k, nil
}

func closeAll(ks []*keeper) error {
	errs := make([]error, len(ks))
	var wg sync.WaitGroup
	for i, k := range ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = k.dev.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Status returns the state of every held GPU, in the order they were given.
func (g *Group) Status() []Status {
	out := make([]Status, len(g.keepers))
	for i, k := range g.keepers {
		out[i] = k.snapshot()
	}
	return out
}

// Held returns how long the group has held its GPUs.
func (g *Group) Held() time.Duration { return time.Since(g.started) }

// Release stops every kernel at once (the one in flight returns early),
// frees the VRAM and destroys the contexts, in parallel across GPUs. It returns when the
// driver has everything back; later calls return the first call's result.
func (g *Group) Release() error {
	g.once.Do(func() {
		g.cancel()
		for _, k := range g.keepers {
			<-k.stopped
		}
		g.err = closeAll(g.keepers)
		if g.onRelease != nil {
			g.onRelease()
		}
		for _, k := range g.keepers {
			k.setStatus(func(s *Status) { s.Bytes, s.Kernel, s.Reason = 0, KernelReleased, "" })
			k.event("released", "")
		}
	})
	return g.err
}

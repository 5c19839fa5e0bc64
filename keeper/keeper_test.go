package keeper

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/nvml"
)

// fakeDevice records what a keeper asks of a GPU.
type fakeDevice struct {
	mu       sync.Mutex
	total    uint64
	bytes    uint64
	launches int
	closed   bool
	allocErr error
}

func (d *fakeDevice) Alloc(n uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.allocErr != nil {
		return d.allocErr
	}
	d.bytes += n
	return nil
}
func (d *fakeDevice) MemInfo() (uint64, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total - d.bytes, d.total, nil
}
func (d *fakeDevice) Launch(time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.launches++
	return nil
}
func (d *fakeDevice) Sync() error { return nil }
func (d *fakeDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed, d.bytes = true, 0
	return nil
}
func (d *fakeDevice) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.launches
}

// fakeTelemetry returns whatever sample the test last set.
type fakeTelemetry struct {
	mu     sync.Mutex
	sample nvml.Sample
	err    error
}

func (f *fakeTelemetry) set(s nvml.Sample, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sample, f.err = s, err
}
func (f *fakeTelemetry) Processes(string) ([]nvml.Process, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sample.Procs, f.err
}
func (f *fakeTelemetry) Sample(string) (nvml.Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sample, f.err
}

// events collects a group's events and lets a test wait for one.
type events struct {
	mu  sync.Mutex
	all []Event
	ch  chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 1000)} }
func (e *events) add(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	e.ch <- ev
}
func (e *events) wait(t *testing.T, kind string) Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event; saw %+v", kind, e.all)
		}
	}
}

func gpus(n int) []cuda.DeviceInfo {
	out := make([]cuda.DeviceInfo, n)
	for i := range out {
		out[i] = cuda.DeviceInfo{Ordinal: i, UUID: "GPU-" + string(rune('a'+i)), Name: "Fake", TotalBytes: 8 << 30}
	}
	return out
}

func opener(devs map[int]*fakeDevice) Open {
	var mu sync.Mutex
	return func(info cuda.DeviceInfo) (Device, error) {
		mu.Lock()
		defer mu.Unlock()
		d := devs[info.Ordinal]
		if d == nil {
			d = &fakeDevice{total: info.TotalBytes}
			devs[info.Ordinal] = d
		}
		return d, nil
	}
}

func fastOptions(tel Telemetry, ev *events) Options {
	return Options{
		VRAM: VRAM{Bytes: 1 << 30}, Util: 50, BusyThreshold: 25,
		Interval: 10 * time.Millisecond, Window: 10 * time.Millisecond, Slice: time.Millisecond,
		Telemetry: tel, Events: ev.add,
	}
}

func TestHoldAndRelease(t *testing.T) {
	devs := map[int]*fakeDevice{}
	ev := newEvents()
	g, err := Start(context.Background(), gpus(3), opener(devs), fastOptions(nil, ev))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range g.Status() {
		if s.Bytes != 1<<30 || s.Kernel != KernelRunning {
			t.Errorf("status %+v: want 1 GiB held, kernel running", s)
		}
		if !strings.HasPrefix(s.Telemetry, "unknown") {
			t.Errorf("status %+v: telemetry must say unknown without NVML", s)
		}
	}
	for i := 0; i < 3; i++ {
		ev.wait(t, "held")
	}
	for deadline := time.Now().Add(10 * time.Second); devs[2].count() < 3; {
		if time.Now().After(deadline) {
			t.Fatal("kernel never launched while telemetry is unknown")
		}
		time.Sleep(time.Millisecond)
	}
	if err := g.Release(); err != nil {
		t.Fatal(err)
	}
	for i, d := range devs {
		if !d.closed || d.bytes != 0 {
			t.Errorf("gpu %d not released: %+v", i, d)
		}
	}
	for _, s := range g.Status() {
		if s.Bytes != 0 || s.Kernel != KernelReleased {
			t.Errorf("after release: %+v", s)
		}
	}
}

func TestBackoff(t *testing.T) {
	self := os.Getpid()
	tests := []struct {
		name   string
		sample nvml.Sample
		own    func(int) bool
		pause  string // reason substring, "" = keeps running
	}{
		{name: "idle", sample: nvml.Sample{Util: 20, Procs: []nvml.Process{{PID: self}}}},
		{name: "foreign process", sample: nvml.Sample{Util: 50, Procs: []nvml.Process{{PID: self}, {PID: 1, Bytes: 1 << 20}}}, pause: "foreign compute process 1"},
		{name: "own tree is not foreign", sample: nvml.Sample{Util: 0, Procs: []nvml.Process{{PID: 1}}}, own: func(pid int) bool { return pid == 1 }},
		{name: "utilization not ours", sample: nvml.Sample{Util: 100, Procs: []nvml.Process{{PID: self}}}, pause: "above busy threshold 25%"},
		{name: "per-process utilization says ours", sample: nvml.Sample{Util: 90, ProcUtil: map[int]int{self: 80}}},
		{name: "utilization unknown", sample: nvml.Sample{UtilErr: nvml.ErrNotSupported, ProcsErr: nvml.ErrNotSupported}},
		{name: "utilization unknown, foreign process known", sample: nvml.Sample{UtilErr: nvml.ErrNotSupported, Procs: []nvml.Process{{PID: 1}}}, pause: "foreign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := &fakeTelemetry{}
			tel.set(tt.sample, nil)
			ev := newEvents()
			opt := fastOptions(tel, ev)
			opt.Own = tt.own
			g, err := Start(context.Background(), gpus(1), opener(map[int]*fakeDevice{}), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Release()
			if tt.pause == "" {
				// Let several checks pass; a wrong pause would show.
				time.Sleep(100 * time.Millisecond)
				if s := g.Status()[0]; s.Kernel != KernelRunning {
					t.Fatalf("status %+v: want running", s)
				}
				return
			}
			e := ev.wait(t, "paused")
			if !strings.Contains(e.Reason, tt.pause) {
				t.Fatalf("paused because %q; want %q", e.Reason, tt.pause)
			}
			if s := g.Status()[0]; s.Kernel != KernelPaused || s.Bytes != 1<<30 {
				t.Fatalf("status %+v: want paused with VRAM held", s)
			}
			tel.set(nvml.Sample{Util: 0}, nil)
			ev.wait(t, "resumed")
		})
	}
}

func TestOwnLoadIsNotBusy(t *testing.T) {
	tel := &fakeTelemetry{}
	tel.set(nvml.Sample{Util: 0}, nil)
	ev := newEvents()
	g, err := Start(context.Background(), gpus(1), opener(map[int]*fakeDevice{}), fastOptions(tel, ev))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	time.Sleep(50 * time.Millisecond)
	// The device now reads our 50% plus 10% of someone else's: not busy.
	tel.set(nvml.Sample{Util: 60}, nil)
	time.Sleep(100 * time.Millisecond)
	if s := g.Status()[0]; s.Kernel != KernelRunning {
		t.Fatalf("backed off from its own load: %+v", s)
	}
	tel.set(nvml.Sample{Util: 100}, nil)
	if e := ev.wait(t, "paused"); !strings.Contains(e.Reason, "utilization 100%") {
		t.Fatalf("paused because %q", e.Reason)
	}
}

func TestPausedKernelDoesNotLaunch(t *testing.T) {
	tel := &fakeTelemetry{}
	tel.set(nvml.Sample{Procs: []nvml.Process{{PID: 1}}}, nil)
	ev := newEvents()
	devs := map[int]*fakeDevice{}
	g, err := Start(context.Background(), gpus(1), opener(devs), fastOptions(tel, ev))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	ev.wait(t, "paused")
	n := devs[0].count()
	time.Sleep(50 * time.Millisecond)
	if m := devs[0].count(); m > n+1 { // at most the window in flight at the pause
		t.Fatalf("kernel launched %d times while paused", m-n)
	}
}

func TestThresholdDisabled(t *testing.T) {
	tel := &fakeTelemetry{}
	tel.set(nvml.Sample{Util: 100, Procs: []nvml.Process{{PID: 1}}}, nil)
	ev := newEvents()
	opt := fastOptions(tel, ev)
	opt.BusyThreshold = -1
	g, err := Start(context.Background(), gpus(1), opener(map[int]*fakeDevice{}), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	time.Sleep(100 * time.Millisecond)
	if s := g.Status()[0]; s.Kernel != KernelRunning {
		t.Fatalf("busy threshold -1 must never back off: %+v", s)
	}
}

func TestStartFailures(t *testing.T) {
	oom := errors.New("gpu 1: cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (2)")
	t.Run("size above card refused before open", func(t *testing.T) {
		opened := false
		opt := fastOptions(nil, newEvents())
		opt.VRAM = VRAM{Bytes: 9 << 30}
		_, err := Start(context.Background(), gpus(2), func(cuda.DeviceInfo) (Device, error) {
			opened = true
			return nil, nil
		}, opt)
		if err == nil || !strings.Contains(err.Error(), "more than the card's 8.0 GiB") || opened {
			t.Fatalf("err %v, opened %v", err, opened)
		}
	})
	t.Run("one GPU out of memory releases the rest", func(t *testing.T) {
		devs := map[int]*fakeDevice{1: {total: 8 << 30, allocErr: oom}}
		_, err := Start(context.Background(), gpus(3), opener(devs), fastOptions(nil, newEvents()))
		if !errors.Is(err, oom) {
			t.Fatalf("err %v; want the OOM", err)
		}
		for i, d := range devs {
			if !d.closed {
				t.Errorf("gpu %d left open", i)
			}
		}
	})
	t.Run("allow partial keeps the rest", func(t *testing.T) {
		devs := map[int]*fakeDevice{1: {total: 8 << 30, allocErr: oom}}
		ev := newEvents()
		opt := fastOptions(nil, ev)
		opt.AllowPartial = true
		g, err := Start(context.Background(), gpus(3), opener(devs), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		if n := len(g.Status()); n != 2 {
			t.Fatalf("holding %d GPUs, want 2", n)
		}
		if e := ev.wait(t, "error"); e.GPU != 1 {
			t.Fatalf("error event for gpu %d", e.GPU)
		}
		if !devs[1].closed {
			t.Fatal("failed GPU left open")
		}
	})
}

func TestTreeUse(t *testing.T) {
	tel := &fakeTelemetry{}
	tel.set(nvml.Sample{}, nil)
	ev := newEvents()
	opt := fastOptions(tel, ev)
	opt.Interval = time.Hour // tree use must not wait for the telemetry interval
	opt.Own = func(pid int) bool { return pid == 4242 }
	used := make(chan int, 10)
	opt.TreeUse = func(pid int) { used <- pid }
	g, err := Start(context.Background(), gpus(2), opener(map[int]*fakeDevice{}), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	tel.set(nvml.Sample{Procs: []nvml.Process{{PID: 7}}}, nil) // not ours: no call
	time.Sleep(50 * time.Millisecond)
	select {
	case pid := <-used:
		t.Fatalf("TreeUse(%d) for a process outside the tree", pid)
	default:
	}
	tel.set(nvml.Sample{Procs: []nvml.Process{{PID: 7}, {PID: 4242}}}, nil)
	for i := 0; i < 2; i++ {
		select {
		case pid := <-used:
			if pid != 4242 {
				t.Fatalf("TreeUse(%d)", pid)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("tree use not reported")
		}
	}
}

package hip

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Flags from AMD's public hip_runtime_api.h.
const (
	deviceScheduleBlockingSync = 0x4 // hipDeviceScheduleBlockingSync
	streamNonBlocking          = 0x1 // hipStreamNonBlocking
	eventBlockingSync          = 0x1 // hipEventBlockingSync
)

// chunk is the largest single allocation; big holds are made of several so
// that a fragmented card still fits them and memset stays short.
const chunk = 1 << 30

// WorkBytes is the size of the device buffer each Context allocates beside
// the VRAM it holds: the keep-alive load writes it until VRAM larger than
// it is held, and NewContext times the card with it.
const WorkBytes = 64 << 20

// Slice is the longest batch one Launch enqueues: memsets, once queued,
// cannot be told to stop (the CUDA kernel reads a stop word; these are the
// runtime's own fill kernels), so a release waits for the batch in flight,
// and this bounds that wait.
const Slice = 2 * time.Millisecond

// maxOps bounds the memsets one Launch enqueues, and so the host time a
// launch costs, whatever the card's speed.
const maxOps = 64

// calibrationOps is how many memsets of WorkBytes NewContext times to size
// the first Launch.
const calibrationOps = 4

// opAlign is the granularity of a keep-alive memset's size.
const opAlign = 4 << 10

// Context is keepgpu's hold on one AMD GPU: the device made current on one
// locked OS thread (HIP's current device is per thread), a non-blocking
// stream, the VRAM held, and the keep-alive load. Every runtime call runs on
// that thread; methods may be called from any goroutine and are serialised.
// Close frees everything it allocated.
//
// # The keep-alive load
//
// CUDA has PTX, which the driver compiles for any GPU; AMD has no portable
// kernel IR that the runtime alone can load. The options weighed:
//
//   - A code object built ahead of time for a list of gfx targets (gfx90a,
//     gfx942, ...): needs ROCm's compiler to build keepgpu, and fails with
//     hipErrorNoBinaryForGpu on any architecture left off the list.
//   - hipRTC at run time: a real one-wave spin kernel like the CUDA one, but
//     it needs the LLVM-based comgr library on the node (it is in a full
//     ROCm install, ~100 MB), costs up to seconds per process to compile,
//     and moved from libamdhip64 to a separate libhiprtc in ROCm 6.
//   - Runtime work the HIP runtime does with its own built-in kernels: no
//     compiler, no code object, every architecture ROCm supports. Chosen.
//
// Launch(d) enqueues hipMemsetAsync calls between two events so that they
// keep the GPU busy for about d, at most Slice: as many bytes as the card writes in d, in
// as few memsets as fit the region written (the first 1 GiB chunk of the
// VRAM held, or the WorkBytes buffer while less is held), so a launch
// costs the host a few calls, not hundreds. Sync waits on the second
// event (created with hipEventBlockingSync, so the host thread sleeps
// rather than spins) and reads hipEventElapsedTime: the batch's bytes over
// its time size the next launch, so the load follows the card's measured
// speed.
//
// What telemetry should read, unproven until an AMD GPU runs it: ROCclr
// (the runtime under HIP) does a memset with a fill kernel of its blit
// manager, dispatched on the stream's compute queue, where a copy may go
// to an SDMA engine instead, which GPU-busy counters do not see. So
// rocm-smi's GPU use (amdgpu's gpu_busy_percent, the share of time the
// graphics/compute engine was busy) should read about the duty cycle, as
// nvidia-smi does for the CUDA kernel. Unlike the one-thread CUDA spin,
// the fill kernel spreads over many compute units and runs at full memory
// bandwidth while it runs, so power while holding is higher. And on cards
// that power-gate the graphics engine (GFXOFF), amdgpu is reported to show
// a process that merely holds a compute context as busy, whatever it runs.
type Context struct {
	r     *Runtime
	Info  DeviceInfo
	calls chan func()
	done  chan struct{}

	stream     uintptr
	start, end uintptr // events around the keep-alive batch
	work       uintptr // WorkBytes
	nsPerByte  float64 // measured speed of the keep-alive memsets; 0 before
	inFlight   uint64  // bytes of the batch Sync has not waited for
	ptrs       []uintptr
	sizes      []uint64 // of each of ptrs
	bytes      uint64
	stopped    atomic.Bool // Stop was called: Launch enqueues nothing
	closeOnce  sync.Once
	closeErr   error
}

// NewContext makes the GPU at HIP ordinal current on a new locked thread,
// creates the stream, events and work buffer, and times the keep-alive
// load once. On error nothing is left behind.
func (r *Runtime) NewContext(ordinal int) (*Context, error) {
	info, err := r.Device(ordinal)
	if err != nil {
		return nil, err
	}
	c := &Context{r: r, Info: info, calls: make(chan func()), done: make(chan struct{})}
	go c.loop()
	if err := c.do(c.setup); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.calibrate(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// loop owns the OS thread of the context until Close. The thread is never
// unlocked: when loop returns the runtime retires it, so no other goroutine
// inherits a thread with this device current.
func (c *Context) loop() {
	runtime.LockOSThread()
	for f := range c.calls {
		f()
	}
	close(c.done)
}

// do runs f on the context's thread and returns its error.
func (c *Context) do(f func() error) error {
	errc := make(chan error, 1)
	c.calls <- func() { errc <- f() }
	return <-errc
}

func (c *Context) errorf(op string, code Code) error {
	return c.r.err(fmt.Sprintf("gpu %d (%s): %s", c.Info.Ordinal, c.Info.ID(), op), code)
}

// ID is how keepgpu names the GPU: its UUID, or its PCI bus id where it
// has none. It is unique on the node and the key telemetry is read by.
func (i DeviceInfo) ID() string {
	if i.UUID != "" {
		return i.UUID
	}
	return i.PCIBusID
}

func (c *Context) setup() error {
	if code := c.r.hipSetDevice(int32(c.Info.Ordinal)); code != Success {
		return c.errorf("hipSetDevice", code)
	}
	// Sleep, not spin, in synchronisation. Once the device is initialised
	// in this process the flag can no longer change: that is not an error.
	if code := c.r.hipSetDeviceFlags(deviceScheduleBlockingSync); code != Success && code != ErrorSetOnActiveProcess {
		return c.errorf("hipSetDeviceFlags", code)
	}
	if code := c.r.hipStreamCreateWithFlags(&c.stream, streamNonBlocking); code != Success {
		return c.errorf("hipStreamCreateWithFlags", code)
	}
	if code := c.r.hipEventCreateWithFlags(&c.start, 0); code != Success {
		return c.errorf("hipEventCreateWithFlags", code)
	}
	if code := c.r.hipEventCreateWithFlags(&c.end, eventBlockingSync); code != Success {
		return c.errorf("hipEventCreateWithFlags", code)
	}
	if code := c.r.hipMalloc(&c.work, WorkBytes); code != Success {
		return c.errorf(fmt.Sprintf("hipMalloc %s (keep-alive buffer)", formatBytes(WorkBytes)), code)
	}
	return nil
}

// calibrate times calibrationOps memsets to size the first Launch.
func (c *Context) calibrate() error {
	if err := c.do(func() error { return c.enqueue(c.work, WorkBytes, calibrationOps) }); err != nil {
		return err
	}
	return c.Sync()
}

// MemInfo returns the free and total device memory as the runtime reports
// them to this process.
func (c *Context) MemInfo() (free, total uint64, err error) {
	err = c.do(func() error {
		if code := c.r.hipMemGetInfo(&free, &total); code != Success {
			return c.errorf("hipMemGetInfo", code)
		}
		return nil
	})
	return free, total, err
}

// Alloc allocates bytes more of device memory and writes zeros over it so
// the pages are really backed. An allocation that does not fit fails with an
// error naming the GPU, the request and the free memory, wrapping
// ErrorOutOfMemory; what was allocated before stays held until Close.
func (c *Context) Alloc(bytes uint64) error {
	return c.do(func() error {
		var free, total uint64
		c.r.hipMemGetInfo(&free, &total) // for the error message only
		for left := bytes; left > 0; {
			n := min(left, uint64(chunk))
			var p uintptr
			if code := c.r.hipMalloc(&p, n); code != Success {
				return c.errorf(fmt.Sprintf("hipMalloc: %s asked, %s free of %s",
					formatBytes(bytes), formatBytes(free), formatBytes(total)), code)
			}
			c.ptrs = append(c.ptrs, p)
			c.sizes = append(c.sizes, n)
			c.bytes += n
			left -= n
			if code := c.r.hipMemset(p, 0, n); code != Success {
				return c.errorf("hipMemset", code)
			}
		}
		if code := c.r.hipDeviceSynchronize(); code != Success {
			return c.errorf("hipDeviceSynchronize", code)
		}
		return nil
	})
}

// Bytes returns how much device memory the context holds for its user (the
// keep-alive buffer not counted).
func (c *Context) Bytes() uint64 {
	var n uint64
	c.do(func() error { n = c.bytes; return nil })
	return n
}

// Launch enqueues keep-alive work for about d, at most Slice (ran), and
// returns without waiting for it; Sync waits. A Launch before the previous
// batch's Sync waits for that batch first: a caller that sleeps for ran
// between launches seldom waits at all. After Stop it enqueues nothing and
// returns at once.
func (c *Context) Launch(d time.Duration) (ran time.Duration, err error) {
	d = min(d, Slice)
	if c.stopped.Load() {
		return d, nil
	}
	return d, c.do(func() error {
		if c.inFlight > 0 {
			if err := c.wait(); err != nil {
				return err
			}
		}
		ptr, region := c.work, uint64(WorkBytes)
		if len(c.ptrs) > 0 && c.sizes[0] > region {
			ptr, region = c.ptrs[0], c.sizes[0]
		}
		size, n := plan(d, c.nsPerByte, region)
		return c.enqueue(ptr, size, n)
	})
}

// plan splits the bytes a card writing one byte per nsPerByte writes in d
// into n memsets of size bytes each over a region of region bytes: as few
// as fit, at most maxOps, each a multiple of opAlign. Before the speed is
// known it is one memset of the whole region.
func plan(d time.Duration, nsPerByte float64, region uint64) (size uint64, n int) {
	if nsPerByte <= 0 {
		return region, 1
	}
	total := uint64(float64(d.Nanoseconds()) / nsPerByte)
	n = int(min((total+region-1)/region, maxOps))
	n = max(n, 1)
	size = min(region, total/uint64(n)/opAlign*opAlign)
	return max(size, min(region, opAlign)), n
}

// enqueue records the start event, n memsets of size bytes at ptr and the
// end event on the stream.
func (c *Context) enqueue(ptr uintptr, size uint64, n int) error {
	if code := c.r.hipEventRecord(c.start, c.stream); code != Success {
		return c.errorf("hipEventRecord", code)
	}
	for i := 0; i < n; i++ {
		if code := c.r.hipMemsetAsync(ptr, int32(i&0xff), size, c.stream); code != Success {
			c.r.hipEventRecord(c.end, c.stream)
			c.inFlight = uint64(i) * size
			return c.errorf("hipMemsetAsync (keep-alive)", code)
		}
	}
	if code := c.r.hipEventRecord(c.end, c.stream); code != Success {
		return c.errorf("hipEventRecord", code)
	}
	c.inFlight = uint64(n) * size
	return nil
}

// Stop makes every later Launch enqueue nothing; the batch in flight runs
// out (at most Slice). It never waits and may be called from any goroutine.
func (c *Context) Stop() { c.stopped.Store(true) }

// Sync blocks until the keep-alive work launched has finished.
func (c *Context) Sync() error {
	return c.do(c.wait)
}

// wait synchronises on the end event and updates the measured speed from
// the batch's elapsed time.
func (c *Context) wait() error {
	n := c.inFlight
	if n == 0 {
		return nil
	}
	c.inFlight = 0
	if code := c.r.hipEventSynchronize(c.end); code != Success {
		return c.errorf("hipEventSynchronize", code)
	}
	var ms float32
	if code := c.r.hipEventElapsedTime(&ms, c.start, c.end); code != Success {
		return c.errorf("hipEventElapsedTime", code)
	}
	if ms > 0 {
		per := float64(ms) * 1e6 / float64(n)
		if c.nsPerByte == 0 {
			c.nsPerByte = per
		} else {
			c.nsPerByte = (3*c.nsPerByte + per) / 4
		}
	}
	return nil
}

// Bandwidth returns the measured speed of the keep-alive memsets in bytes
// per second.
func (c *Context) Bandwidth() float64 {
	var bw float64
	c.do(func() error {
		if c.nsPerByte > 0 {
			bw = 1e9 / c.nsPerByte
		}
		return nil
	})
	return bw
}

// Close waits for the keep-alive work, frees every allocation and destroys
// the stream and events, so the runtime has the memory back when it
// returns. Calling Close again does nothing. The first error is returned,
// but every step is still tried.
func (c *Context) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.destroy() })
	return c.closeErr
}

func (c *Context) destroy() error {
	err := c.do(func() error {
		var first error
		keep := func(op string, code Code) {
			if code != Success && first == nil {
				first = c.errorf(op, code)
			}
		}
		if c.stream != 0 || c.work != 0 || len(c.ptrs) > 0 {
			keep("hipDeviceSynchronize", c.r.hipDeviceSynchronize())
		}
		c.inFlight = 0
		for _, p := range c.ptrs {
			keep("hipFree", c.r.hipFree(p))
		}
		c.ptrs, c.sizes, c.bytes = nil, nil, 0
		if c.work != 0 {
			keep("hipFree", c.r.hipFree(c.work))
			c.work = 0
		}
		for _, e := range []*uintptr{&c.start, &c.end} {
			if *e != 0 {
				keep("hipEventDestroy", c.r.hipEventDestroy(*e))
				*e = 0
			}
		}
		if c.stream != 0 {
			keep("hipStreamDestroy", c.r.hipStreamDestroy(c.stream))
			c.stream = 0
		}
		return first
	})
	close(c.calls)
	<-c.done
	return err
}

// formatBytes prints a byte count in binary units, as "1.5 GiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

package hip

import (
	"fmt"
	"runtime"
	"sync"
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

// WorkBytes is the size of the device buffer the keep-alive load writes;
// each Context allocates it beside the VRAM it holds.
const WorkBytes = 64 << 20

// maxOps bounds the memsets one Launch enqueues, and so the host time a
// launch costs, whatever the card's speed.
const maxOps = 256

// calibrationOps is how many memsets NewContext times to size the first
// Launch.
const calibrationOps = 4

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
// Launch(d) enqueues n hipMemsetAsync calls over a WorkBytes device buffer,
// between two events, so that they keep the GPU busy for about d; Sync
// waits on the second event (created with hipEventBlockingSync, so the host
// thread sleeps rather than spins) and reads hipEventElapsedTime to size
// the next batch: n follows the card's measured speed. A memset, unlike a
// device-to-device copy, is done by ROCclr's blit manager with a fill
// kernel dispatched on the stream's compute queue (a copy may go to an SDMA
// engine instead, which GPU-busy counters do not see). So rocm-smi's GPU use
// (amdgpu's gpu_busy_percent, the GFX engine's activity) should read about
// the duty cycle, as nvidia-smi does for the CUDA kernel. The difference:
// the fill kernel uses many compute units and real memory bandwidth while it
// runs, not one wave, so power while holding is higher than with a spin
// kernel, and per-launch host cost grows with the number of memsets.
type Context struct {
	r     *Runtime
	Info  DeviceInfo
	calls chan func()
	done  chan struct{}

	stream     uintptr
	start, end uintptr // events around the keep-alive batch
	work       uintptr // WorkBytes
	perOp      time.Duration
	inFlight   int // memsets of the batch Sync has not waited for
	ptrs       []uintptr
	bytes      uint64
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
	return c.r.err(fmt.Sprintf("gpu %d (%s): %s", c.Info.Ordinal, c.Info.id(), op), code)
}

// id is how errors name the GPU: its UUID, or its PCI bus id without one.
func (i DeviceInfo) id() string {
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
	if err := c.do(func() error { return c.enqueue(calibrationOps) }); err != nil {
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

// Launch enqueues keep-alive work for about d and returns without waiting
// for it; Sync waits. A Launch before the previous batch's Sync waits for
// that batch first.
func (c *Context) Launch(d time.Duration) error {
	return c.do(func() error {
		if c.inFlight > 0 {
			if err := c.wait(); err != nil {
				return err
			}
		}
		return c.enqueue(opsFor(d, c.perOp))
	})
}

// opsFor returns how many memsets of perOp each fill d: at least one, at
// most maxOps.
func opsFor(d, perOp time.Duration) int {
	if perOp <= 0 {
		return 1
	}
	n := int((d + perOp/2) / perOp)
	return max(1, min(n, maxOps))
}

// enqueue records the start event, n memsets of the work buffer and the
// end event on the stream.
func (c *Context) enqueue(n int) error {
	if code := c.r.hipEventRecord(c.start, c.stream); code != Success {
		return c.errorf("hipEventRecord", code)
	}
	for i := 0; i < n; i++ {
		if code := c.r.hipMemsetAsync(c.work, int32(i&0xff), WorkBytes, c.stream); code != Success {
			c.r.hipEventRecord(c.end, c.stream)
			c.inFlight = i
			return c.errorf("hipMemsetAsync (keep-alive)", code)
		}
	}
	if code := c.r.hipEventRecord(c.end, c.stream); code != Success {
		return c.errorf("hipEventRecord", code)
	}
	c.inFlight = n
	return nil
}

// Sync blocks until the keep-alive work launched has finished.
func (c *Context) Sync() error {
	return c.do(c.wait)
}

// wait synchronises on the end event and updates the time one memset takes
// from the batch's elapsed time.
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
		per := time.Duration(float64(ms) * float64(time.Millisecond) / float64(n))
		if c.perOp == 0 {
			c.perOp = per
		} else {
			c.perOp = (3*c.perOp + per) / 4
		}
	}
	return nil
}

// PerOp returns the measured device time of one keep-alive memset.
func (c *Context) PerOp() time.Duration {
	var d time.Duration
	c.do(func() error { d = c.perOp; return nil })
	return d
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
		c.ptrs, c.bytes = nil, 0
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

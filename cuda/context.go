package cuda

import (
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keepgpu/keepgpu/internal/dl"
)

//go:embed keepalive.ptx
var keepalivePTX string

// KernelName is the entry point of the embedded keep-alive kernel.
const KernelName = "keepalive"

// Context flags (CUctx_flags). Blocking sync makes synchronisation sleep
// on an interrupt instead of spinning a CPU core when the keep-alive kernel
// still runs (at a release, or a launch that comes early); map host lets the
// kernel read the stop word in pinned host memory (implied by every driver
// with unified addressing, needed by older ones).
const (
	ctxSchedBlockingSync = 0x04
	ctxMapHost           = 0x08
)

// memHostAllocDeviceMap (CU_MEMHOSTALLOC_DEVICEMAP) maps a pinned host
// allocation into the device's address space.
const memHostAllocDeviceMap = 0x02

// StopPoll is how often the running keep-alive kernel reads its stop word:
// the longest a Stop waits for the GPU to notice it (keepalive.ptx).
const StopPoll = 10 * time.Microsecond

// Slice is the longest single launch where the driver cannot map host
// memory (confidential computing, for one): the kernel then cannot be told
// to stop, so Launch runs it for at most a slice and a Stop waits for the
// one in flight.
const Slice = 2 * time.Millisecond

// JIT options (CUjit_option) for the error log of cuModuleLoadDataEx.
const (
	jitErrorLogBuffer     = 5
	jitErrorLogBufferSize = 6
)

// chunk is the largest single allocation; big holds are made of several so
// that a fragmented card still fits them and memset stays short.
const chunk = 1 << 30

// Context is one CUDA context on one GPU. A context is current per OS
// thread, so every method that calls the driver locks its goroutine to its
// thread and makes the context current there first (cuCtxSetCurrent, a
// thread-local store in the driver) instead of handing the call to a thread
// of its own: waking another thread costs more than the call. Methods may
// be called from any goroutine, one at a time or concurrently (they are
// serialised), and Stop, which makes no driver call, never waits. Close
// destroys the context, which hands every byte it allocated back to the
// driver.
type Context struct {
	d      *Driver
	Info   DeviceInfo
	mu     sync.Mutex // serialises driver calls; guards what follows
	handle uintptr
	module uintptr
	kernel uintptr
	ptrs   []uint64
	bytes  uint64
	args   [2]uint64 // the kernel's parameters, kept alive for the launch

	// stop is the kernel's stop word in mapped pinned host memory when
	// mapped is set, nil once freed (stopMu guards that). Unmapped, the word
	// is in device memory that nobody writes. stopDev is its device
	// address, the kernel's second parameter.
	stopMu  sync.Mutex
	stop    *uint32
	stopDev uint64
	mapped  bool
	stopped atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// NewContext creates a context on the GPU at CUDA ordinal and loads the
// keep-alive kernel into it. On error nothing is left behind.
func (d *Driver) NewContext(ordinal int) (*Context, error) {
	info, err := d.Device(ordinal)
	if err != nil {
		return nil, err
	}
	c := &Context{d: d, Info: info}
	if err := c.create(); err != nil {
		return nil, err
	}
	if err := c.do(c.loadKernel); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.do(c.allocStop); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// allocStop allocates the kernel's stop word, zeroed: in mapped host memory
// if the driver can map it, else in device memory.
func (c *Context) allocStop() error {
	var p unsafe.Pointer
	if c.d.cuMemHostAlloc(&p, 4, memHostAllocDeviceMap).err() == nil {
		var dev uint64
		if err := c.d.cuMemHostGetDevPtr(&dev, p, 0).err(); err != nil {
			c.d.cuMemFreeHost(p)
			return c.errorf("cuMemHostGetDevicePointer", err)
		}
		c.stop, c.stopDev, c.mapped = (*uint32)(p), dev, true
		atomic.StoreUint32(c.stop, 0)
		return nil
	}
	if err := c.d.cuMemAlloc(&c.stopDev, 4).err(); err != nil {
		return c.errorf("cuMemAlloc (stop word)", err)
	}
	if err := c.d.cuMemsetD8(c.stopDev, 0, 4).err(); err != nil {
		return c.errorf("cuMemsetD8 (stop word)", err)
	}
	return nil
}

// StopMapped reports whether Stop reaches a running kernel at once (the
// stop word is in mapped host memory), or only after the slice in flight.
func (c *Context) StopMapped() bool { return c.mapped }

// create creates the context, which the driver makes current on this
// thread.
func (c *Context) create() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var dev int32
	if err := c.d.cuDeviceGet(&dev, int32(c.Info.Ordinal)).err(); err != nil {
		return c.errorf("cuDeviceGet", err)
	}
	if err := c.d.cuCtxCreate(&c.handle, ctxSchedBlockingSync|ctxMapHost, dev).err(); err != nil {
		return c.errorf("cuCtxCreate", err)
	}
	return nil
}

// do runs f with the context current on this goroutine's thread, which
// stays locked to it meanwhile, and returns f's error. A closed context
// runs nothing.
func (c *Context) do(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handle == 0 {
		return c.errorf("context", errors.New("closed"))
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.d.cuCtxSetCurrent(c.handle).err(); err != nil {
		return c.errorf("cuCtxSetCurrent", err)
	}
	return f()
}

func (c *Context) errorf(op string, err error) error {
	return fmt.Errorf("gpu %d (%s): %s: %w", c.Info.Ordinal, c.Info.UUID, op, err)
}

func (c *Context) loadKernel() error {
	image := append([]byte(keepalivePTX), 0)
	log := make([]byte, 4096)
	opts := []int32{jitErrorLogBuffer, jitErrorLogBufferSize}
	vals := []uintptr{uintptr(unsafe.Pointer(&log[0])), uintptr(len(log))}
	if err := c.d.cuModuleLoadDataEx(&c.module, &image[0], uint32(len(opts)), &opts[0], &vals[0]).err(); err != nil {
		if msg := dl.CString(log); msg != "" {
			return c.errorf("cuModuleLoadDataEx (keep-alive kernel)", fmt.Errorf("%w: JIT log: %s", err, msg))
		}
		return c.errorf("cuModuleLoadDataEx (keep-alive kernel)", err)
	}
	runtime.KeepAlive(log)
	name := append([]byte(KernelName), 0)
	if err := c.d.cuModuleGetFunction(&c.kernel, c.module, &name[0]).err(); err != nil {
		return c.errorf("cuModuleGetFunction "+KernelName, err)
	}
	return nil
}

// MemInfo returns the free and total device memory as the driver reports
// them to this context.
func (c *Context) MemInfo() (free, total uint64, err error) {
	err = c.do(func() error {
		if err := c.d.cuMemGetInfo(&free, &total).err(); err != nil {
			return c.errorf("cuMemGetInfo", err)
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
		c.d.cuMemGetInfo(&free, &total) // for the error message only
		for left := bytes; left > 0; {
			n := min(left, uint64(chunk))
			var p uint64
			if err := c.d.cuMemAlloc(&p, n).err(); err != nil {
				return fmt.Errorf("gpu %d (%s): cuMemAlloc: %s asked, %s free of %s: %w",
					c.Info.Ordinal, c.Info.UUID, FormatBytes(bytes), FormatBytes(free), FormatBytes(total), err)
			}
			c.ptrs = append(c.ptrs, p)
			c.bytes += n
			left -= n
			if err := c.d.cuMemsetD8(p, 0, n).err(); err != nil {
				return c.errorf("cuMemsetD8", err)
			}
		}
		if err := c.d.cuCtxSynchronize().err(); err != nil {
			return c.errorf("cuCtxSynchronize", err)
		}
		return nil
	})
}

// Bytes returns how much device memory the context holds.
func (c *Context) Bytes() uint64 {
	var n uint64
	c.do(func() error { n = c.bytes; return nil })
	return n
}

// Launch starts the keep-alive kernel on one block of one thread and
// returns without waiting for it: ran is how long the kernel will spin, d,
// or at most Slice where the stop word is not mapped. It first
// synchronises with the kernel before it (blocking synchronisation: the
// thread sleeps if that one still runs), so a caller that sleeps for ran
// between launches, or longer, synchronises once per launch and never
// waits. After Stop it launches nothing and returns d.
//
// The waiting is the caller's, in Go, rather than this thread's in the
// driver: a goroutine that sleeps on a timer costs nothing, while a thread
// that stays in a driver call for milliseconds keeps the Go runtime's
// monitor thread waking up every few tens of microseconds to look at it.
func (c *Context) Launch(d time.Duration) (ran time.Duration, err error) {
	if !c.mapped {
		d = min(d, Slice)
	}
	err = c.do(func() error {
		if c.stopped.Load() {
			return nil
		}
		if err := c.d.cuCtxSynchronize().err(); err != nil {
			return c.errorf("cuCtxSynchronize", err)
		}
		c.args = [2]uint64{uint64(d.Nanoseconds()), c.stopDev}
		params := []uintptr{uintptr(unsafe.Pointer(&c.args[0])), uintptr(unsafe.Pointer(&c.args[1]))}
		if err := c.d.cuLaunchKernel(c.kernel, 1, 1, 1, 1, 1, 1, 0, 0, &params[0], nil).err(); err != nil {
			return c.errorf("cuLaunchKernel "+KernelName, err)
		}
		return nil
	})
	return d, err
}

// Sync blocks, asleep in the driver, until the kernel launched last has
// ended: when its time is up, or within StopPoll of a Stop (unmapped: at
// the end of its slice).
func (c *Context) Sync() error {
	return c.do(func() error {
		if err := c.d.cuCtxSynchronize().err(); err != nil {
			return c.errorf("cuCtxSynchronize", err)
		}
		return nil
	})
}

// Stop ends the running kernel within StopPoll (or, unmapped, after the
// slice in flight) and makes every later Launch a no-op. It only stores to
// memory, never waits, and may be called from any goroutine, any number of
// times, even while another method is in progress.
func (c *Context) Stop() {
	c.stopped.Store(true)
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.stop != nil {
		atomic.StoreUint32(c.stop, 1)
	}
}

// Close stops the running kernel (see Stop) and waits for it, frees every
// allocation, unloads the kernel and destroys the context, so the driver
// has everything back when it returns. Calling Close again does nothing.
// The first driver error is returned, but every step is still tried.
func (c *Context) Close() error {
	c.closeOnce.Do(func() {
		c.Stop()
		c.closeErr = c.destroy()
	})
	return c.closeErr
}

func (c *Context) destroy() error {
	err := c.do(func() error {
		var first error
		keep := func(op string, r Result) {
			if e := r.err(); e != nil && first == nil {
				first = c.errorf(op, e)
			}
		}
		keep("cuCtxSynchronize", c.d.cuCtxSynchronize())
		for _, p := range c.ptrs {
			keep("cuMemFree", c.d.cuMemFree(p))
		}
		c.ptrs, c.bytes = nil, 0
		if c.mapped {
			c.stopMu.Lock()
			keep("cuMemFreeHost", c.d.cuMemFreeHost(unsafe.Pointer(c.stop)))
			c.stop = nil
			c.stopMu.Unlock()
		} else if c.stopDev != 0 {
			keep("cuMemFree", c.d.cuMemFree(c.stopDev))
		}
		c.stopDev = 0
		if c.module != 0 {
			keep("cuModuleUnload", c.d.cuModuleUnload(c.module))
			c.module, c.kernel = 0, 0
		}
		keep("cuCtxDestroy", c.d.cuCtxDestroy(c.handle))
		c.handle = 0
		return first
	})
	return err
}

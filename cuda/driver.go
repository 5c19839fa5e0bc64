// Package cuda is the GPU as the CUDA driver shows it: the driver API loaded
// from libcuda.so.1 at run time, the embedded keep-alive kernel, and device
// identity by UUID. NVML telemetry is package nvml. It holds no policy.
package cuda

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/keepgpu/keepgpu/internal/dl"
)

// LibraryName is the CUDA driver library keepgpu loads; the dynamic linker
// finds it through the usual search path (LD_LIBRARY_PATH, ld.so.cache).
const LibraryName = "libcuda.so.1"

// ErrNoLibrary reports that the CUDA driver library could not be loaded: the
// node has no NVIDIA driver, or it is not on the library search path.
var ErrNoLibrary = errors.New(LibraryName + " not found (no NVIDIA driver on this node?)")

// api holds the driver entry points keepgpu uses. Load resolves every one of
// them before any is called, so a missing symbol is an error, not a crash.
type api struct {
	cuInit               func(flags uint32) Result
	cuDriverGetVersion   func(version *int32) Result
	cuDeviceGetCount     func(count *int32) Result
	cuDeviceGet          func(dev *int32, ordinal int32) Result
	cuDeviceGetName      func(name *byte, length int32, dev int32) Result
	cuDeviceGetUuid      func(uuid *[16]byte, dev int32) Result
	cuDeviceTotalMem     func(bytes *uint64, dev int32) Result
	cuDeviceGetAttribute func(value *int32, attr int32, dev int32) Result
	cuCtxCreate          func(ctx *uintptr, flags uint32, dev int32) Result
	cuCtxDestroy         func(ctx uintptr) Result
	cuCtxSetCurrent      func(ctx uintptr) Result
	cuCtxSynchronize     func() Result
	cuMemAlloc           func(ptr *uint64, bytes uint64) Result
	cuMemFree            func(ptr uint64) Result
	cuMemsetD8           func(ptr uint64, value uint8, n uint64) Result
	cuMemGetInfo         func(free, total *uint64) Result
	cuMemHostAlloc       func(p *unsafe.Pointer, bytes uint64, flags uint32) Result
	cuMemHostGetDevPtr   func(ptr *uint64, p unsafe.Pointer, flags uint32) Result
	cuMemFreeHost        func(p unsafe.Pointer) Result
	cuModuleLoadDataEx   func(mod *uintptr, image *byte, numOptions uint32, options *int32, values *uintptr) Result
	cuModuleGetFunction  func(fn *uintptr, mod uintptr, name *byte) Result
	cuModuleUnload       func(mod uintptr) Result
	cuLaunchKernel       func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params *uintptr, extra *uintptr) Result
}

// symbols pairs each entry point with its exported name. Versioned names
// (_v2) are the ABI the driver has exported since CUDA 3.2/4.0.
func (a *api) symbols() []dl.Symbol {
	return []dl.Symbol{
		{Name: "cuInit", Fn: &a.cuInit},
		{Name: "cuDriverGetVersion", Fn: &a.cuDriverGetVersion},
		{Name: "cuDeviceGetCount", Fn: &a.cuDeviceGetCount},
		{Name: "cuDeviceGet", Fn: &a.cuDeviceGet},
		{Name: "cuDeviceGetName", Fn: &a.cuDeviceGetName},
		{Name: "cuDeviceGetUuid", Fn: &a.cuDeviceGetUuid},
		{Name: "cuDeviceTotalMem_v2", Fn: &a.cuDeviceTotalMem},
		{Name: "cuDeviceGetAttribute", Fn: &a.cuDeviceGetAttribute},
		{Name: "cuCtxCreate_v2", Fn: &a.cuCtxCreate},
		{Name: "cuCtxDestroy_v2", Fn: &a.cuCtxDestroy},
		{Name: "cuCtxSetCurrent", Fn: &a.cuCtxSetCurrent},
		{Name: "cuCtxSynchronize", Fn: &a.cuCtxSynchronize},
		{Name: "cuMemAlloc_v2", Fn: &a.cuMemAlloc},
		{Name: "cuMemFree_v2", Fn: &a.cuMemFree},
		{Name: "cuMemsetD8_v2", Fn: &a.cuMemsetD8},
		{Name: "cuMemGetInfo_v2", Fn: &a.cuMemGetInfo},
		{Name: "cuMemHostAlloc", Fn: &a.cuMemHostAlloc},
		{Name: "cuMemHostGetDevicePointer_v2", Fn: &a.cuMemHostGetDevPtr},
		{Name: "cuMemFreeHost", Fn: &a.cuMemFreeHost},
		{Name: "cuModuleLoadDataEx", Fn: &a.cuModuleLoadDataEx},
		{Name: "cuModuleGetFunction", Fn: &a.cuModuleGetFunction},
		{Name: "cuModuleUnload", Fn: &a.cuModuleUnload},
		{Name: "cuLaunchKernel", Fn: &a.cuLaunchKernel},
	}
}

// Driver is the loaded and initialised CUDA driver. It is safe for
// concurrent use; contexts it creates are not shared between goroutines
// except through their own methods.
type Driver struct {
	api
	version int
}

var (
	loadOnce sync.Once
	loaded   *Driver
	loadErr  error
)

// Load opens libcuda.so.1, resolves every symbol keepgpu uses and calls
// cuInit. The library is loaded once per process; later calls return the same
// driver or the same error. A missing library wraps ErrNoLibrary; missing
// symbols are named all at once; cuInit's failure is a Result, so
// errors.Is(err, ErrorNoDevice) tells "driver but no GPU".
func Load() (*Driver, error) {
	loadOnce.Do(func() { loaded, loadErr = load(LibraryName) })
	return loaded, loadErr
}

func load(name string) (*Driver, error) {
	h, _, err := dl.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	d := &Driver{}
	if missing := dl.Bind(h, d.symbols()); len(missing) > 0 {
		return nil, fmt.Errorf("%s: missing symbols %s (driver too old, or not NVIDIA's libcuda)", name, strings.Join(missing, ", "))
	}
	if err := d.cuInit(0).err(); err != nil {
		return nil, fmt.Errorf("cuInit: %w", err)
	}
	var v int32
	if err := d.cuDriverGetVersion(&v).err(); err != nil {
		return nil, fmt.Errorf("cuDriverGetVersion: %w", err)
	}
	d.version = int(v)
	return d, nil
}

// Version returns the CUDA version the driver supports, as "12.4".
func (d *Driver) Version() string {
	return fmt.Sprintf("%d.%d", d.version/1000, d.version%1000/10)
}

// DeviceCount returns how many GPUs CUDA shows this process (after
// CUDA_VISIBLE_DEVICES and the job's cgroup).
func (d *Driver) DeviceCount() (int, error) {
	var n int32
	if err := d.cuDeviceGetCount(&n).err(); err != nil {
		return 0, fmt.Errorf("cuDeviceGetCount: %w", err)
	}
	return int(n), nil
}

// DeviceInfo identifies one GPU as CUDA shows it.
type DeviceInfo struct {
	Ordinal    int    // CUDA ordinal in this process
	UUID       string // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as NVML spells it
	Name       string
	TotalBytes uint64
	Major      int // compute capability
	Minor      int
}

// Device attribute numbers (CUdevice_attribute).
const (
	attrComputeCapabilityMajor = 75
	attrComputeCapabilityMinor = 76
)

// Device returns the identity of the GPU at CUDA ordinal.
func (d *Driver) Device(ordinal int) (DeviceInfo, error) {
	info := DeviceInfo{Ordinal: ordinal}
	var dev int32
	if err := d.cuDeviceGet(&dev, int32(ordinal)).err(); err != nil {
		return info, fmt.Errorf("gpu %d: cuDeviceGet: %w", ordinal, err)
	}
	var uuid [16]byte
	if err := d.cuDeviceGetUuid(&uuid, dev).err(); err != nil {
		return info, fmt.Errorf("gpu %d: cuDeviceGetUuid: %w", ordinal, err)
	}
	info.UUID = FormatUUID(uuid)
	name := make([]byte, 256)
	if err := d.cuDeviceGetName(&name[0], int32(len(name)), dev).err(); err != nil {
		return info, fmt.Errorf("gpu %d: cuDeviceGetName: %w", ordinal, err)
	}
	info.Name = dl.CString(name)
	if err := d.cuDeviceTotalMem(&info.TotalBytes, dev).err(); err != nil {
		return info, fmt.Errorf("gpu %d: cuDeviceTotalMem: %w", ordinal, err)
	}
	var major, minor int32
	if err := d.cuDeviceGetAttribute(&major, attrComputeCapabilityMajor, dev).err(); err != nil {
		return info, fmt.Errorf("gpu %d: cuDeviceGetAttribute: %w", ordinal, err)
	}
	if err := d.cuDeviceGetAttribute(&minor, attrComputeCapabilityMinor, dev).err(); err != nil {
		return info, fmt.Errorf("gpu %d: cuDeviceGetAttribute: %w", ordinal, err)
	}
	info.Major, info.Minor = int(major), int(minor)
	return info, nil
}

// Devices returns every GPU CUDA shows this process, in ordinal order.
func (d *Driver) Devices() ([]DeviceInfo, error) {
	n, err := d.DeviceCount()
	if err != nil {
		return nil, err
	}
	out := make([]DeviceInfo, 0, n)
	for i := 0; i < n; i++ {
		info, err := d.Device(i)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// FormatUUID spells a CUDA UUID the way NVML and nvidia-smi do.
func FormatUUID(u [16]byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

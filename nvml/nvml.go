// Package nvml reads NVIDIA GPUs through NVML, libnvidia-ml.so.1 loaded at
// run time: identity, memory, utilization, compute processes, compute mode,
// MIG mode and power. It holds no policy.
package nvml

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/keepgpu/keepgpu/internal/dl"
)

// LibraryName is the NVML library keepgpu loads; the dynamic linker finds it
// through the usual search path (LD_LIBRARY_PATH, ld.so.cache).
const LibraryName = "libnvidia-ml.so.1"

// ErrNoLibrary reports that the NVML library could not be loaded: the node
// has no NVIDIA driver, or it is not on the library search path.
var ErrNoLibrary = errors.New("nvml: " + LibraryName + " not found")

// device is an nvmlDevice_t, an opaque handle.
type device uintptr

// api holds the NVML entry points keepgpu uses. Where NVML has versioned a
// call, each field is filled from the newest name the library exports; the
// struct a call fills is chosen with it (see layout.go).
type api struct {
	init        func() Return
	shutdown    func() Return
	errorString func(r Return) string

	deviceGetCount            func(count *uint32) Return
	deviceGetHandleByIndex    func(index uint32, dev *device) Return
	deviceGetHandleByUUID     func(uuid *byte, dev *device) Return
	deviceGetIndex            func(dev device, index *uint32) Return
	deviceGetName             func(dev device, name *byte, length uint32) Return
	deviceGetUUID             func(dev device, uuid *byte, length uint32) Return
	deviceGetComputeMode      func(dev device, mode *int32) Return
	deviceGetUtilizationRates func(dev device, u *utilization) Return

	deviceGetMemoryInfo   func(dev device, mem *memoryV1) Return
	deviceGetMemoryInfoV2 func(dev device, mem *memoryV2) Return // nil: not exported

	// deviceGetComputeRunningProcesses is _v3, _v2 or the unversioned call,
	// as procsVersion says; infos points at an array of that version's
	// element (processInfoV2 for 3 and 2, processInfoV1 for 1).
	deviceGetComputeRunningProcesses func(dev device, count *uint32, infos unsafe.Pointer) Return
	procsVersion                     int

	// Optional calls, nil where the library lacks them.
	deviceGetProcessUtilization func(dev device, samples *processUtilizationSample, count *uint32, lastSeen uint64) Return
	deviceGetMigMode            func(dev device, current, pending *uint32) Return
	deviceGetPowerUsage         func(dev device, mw *uint32) Return
}

// entry is one entry point: the names that provide it, newest first, and
// the function variable the first one the library exports fills.
type entry struct {
	names    []string
	fn       any
	optional bool
	picked   func(i int) // called with the index in names of the one found
}

func (a *api) entries() []entry {
	return []entry{
		{names: []string{"nvmlInit_v2", "nvmlInit"}, fn: &a.init},
		{names: []string{"nvmlShutdown"}, fn: &a.shutdown},
		{names: []string{"nvmlErrorString"}, fn: &a.errorString, optional: true},
		{names: []string{"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"}, fn: &a.deviceGetCount},
		{names: []string{"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"}, fn: &a.deviceGetHandleByIndex},
		{names: []string{"nvmlDeviceGetHandleByUUID"}, fn: &a.deviceGetHandleByUUID},
		{names: []string{"nvmlDeviceGetIndex"}, fn: &a.deviceGetIndex},
		{names: []string{"nvmlDeviceGetName"}, fn: &a.deviceGetName},
		{names: []string{"nvmlDeviceGetUUID"}, fn: &a.deviceGetUUID},
		{names: []string{"nvmlDeviceGetComputeMode"}, fn: &a.deviceGetComputeMode},
		{names: []string{"nvmlDeviceGetUtilizationRates"}, fn: &a.deviceGetUtilizationRates},
		// _v2 is tried first at every call and v1 is its fallback, so v1
		// is needed either way.
		{names: []string{"nvmlDeviceGetMemoryInfo"}, fn: &a.deviceGetMemoryInfo},
		{names: []string{"nvmlDeviceGetMemoryInfo_v2"}, fn: &a.deviceGetMemoryInfoV2, optional: true},
		{
			names: []string{"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetComputeRunningProcesses"},
			fn:    &a.deviceGetComputeRunningProcesses,
			picked: func(i int) {
				a.procsVersion = 3 - i
			},
		},
		{names: []string{"nvmlDeviceGetProcessUtilization"}, fn: &a.deviceGetProcessUtilization, optional: true},
		{names: []string{"nvmlDeviceGetMigMode"}, fn: &a.deviceGetMigMode, optional: true},
		{names: []string{"nvmlDeviceGetPowerUsage"}, fn: &a.deviceGetPowerUsage, optional: true},
	}
}

// NVML is an initialised NVML library. Every method is safe to call from any
// goroutine. After Close no method may be called.
type NVML struct {
	api
	resolved []string // the name each entry point was found under

	mu       sync.Mutex
	lastSeen map[string]uint64 // per-process utilization time stamps per UUID
	handles  sync.Map          // UUID → device, valid until nvmlShutdown
}

// Open loads libnvidia-ml.so.1, resolves every entry point keepgpu uses
// and calls nvmlInit. A missing library wraps ErrNoLibrary; missing
// symbols are named all at once; nvmlInit's failure is an *Error, so
// errors.Is(err, ErrorDriverNotLoaded) tells "library but no driver". Each
// successful Open must be paired with a Close.
func Open() (*NVML, error) { return open(LibraryName) }

func open(name string) (*NVML, error) {
	h, _, err := dl.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	n := &NVML{lastSeen: map[string]uint64{}}
	var missing []string
	for _, e := range n.api.entries() {
		found := false
		for i, sym := range e.names {
			addr, err := purego.Dlsym(h, sym)
			if err != nil || addr == 0 {
				continue
			}
			purego.RegisterFunc(e.fn, addr)
			if e.picked != nil {
				e.picked(i)
			}
			n.resolved = append(n.resolved, sym)
			found = true
			break
		}
		if !found && !e.optional {
			missing = append(missing, strings.Join(e.names, " or "))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: missing symbols %s (driver too old, or not NVIDIA's NVML)", name, strings.Join(missing, ", "))
	}
	if r := n.init(); r != Success {
		return nil, n.err("nvmlInit", r)
	}
	return n, nil
}

// err wraps r, with the library's wording when it has nvmlErrorString.
func (n *NVML) err(op string, r Return) *Error {
	e := &Error{Op: op, Code: r}
	if n.errorString != nil {
		e.Text = n.errorString(r)
	}
	return e
}

// Close shuts NVML down (nvmlShutdown).
func (n *NVML) Close() error {
	if r := n.shutdown(); r != Success {
		return n.err("nvmlShutdown", r)
	}
	return nil
}

// bufferSize is the length of the buffers NVML fills with names and UUIDs;
// nvml.h's longest (NVML_DEVICE_NAME_V2_BUFFER_SIZE) is 96.
const bufferSize = 256

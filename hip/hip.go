// Package hip is the GPU as AMD's HIP runtime shows it: libamdhip64 loaded
// at run time, devices and their identity, VRAM, and a keep-alive load that
// needs no architecture-specific code object. It holds no policy.
package hip

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/keepgpu/keepgpu/internal/dl"
)

// LibraryNames are the HIP runtime sonames keepgpu tries, newest first:
// ROCm 7 ships libamdhip64.so.7, ROCm 6 .so.6, ROCm 5 (Debian's among
// them) .so.5; the unversioned name is a development symlink, tried last.
// The dynamic linker finds them through the usual search path
// (LD_LIBRARY_PATH, ld.so.cache).
var LibraryNames = []string{"libamdhip64.so.7", "libamdhip64.so.6", "libamdhip64.so.5", "libamdhip64.so"}

// ErrNoLibrary reports that no HIP runtime could be loaded: the node has no
// ROCm, or it is not on the library search path.
var ErrNoLibrary = errors.New("hip: no HIP runtime (libamdhip64) found")

// api holds the runtime entry points keepgpu uses. Load resolves every one
// of them before any is called, so a missing symbol is an error, not a
// crash.
type api struct {
	hipInit              func(flags uint32) Code
	hipDriverGetVersion  func(v *int32) Code
	hipRuntimeGetVersion func(v *int32) Code
	hipGetErrorName      func(c Code) string
	hipGetErrorString    func(c Code) string
	hipGetDeviceCount    func(n *int32) Code
	hipSetDevice         func(ordinal int32) Code
	hipSetDeviceFlags    func(flags uint32) Code
	hipDeviceGetName     func(name *byte, length int32, dev int32) Code
	hipDeviceGetPCIBusID func(id *byte, length int32, dev int32) Code
	hipDeviceTotalMem    func(bytes *uint64, dev int32) Code
	hipMemGetInfo        func(free, total *uint64) Code
	hipMalloc            func(ptr *uintptr, bytes uint64) Code
	hipFree              func(ptr uintptr) Code
	hipMemset            func(ptr uintptr, value int32, bytes uint64) Code
	hipMemsetAsync       func(ptr uintptr, value int32, bytes uint64, stream uintptr) Code
	hipDeviceSynchronize func() Code

	hipStreamCreateWithFlags func(stream *uintptr, flags uint32) Code
	hipStreamDestroy         func(stream uintptr) Code
	hipEventCreateWithFlags  func(event *uintptr, flags uint32) Code
	hipEventRecord           func(event, stream uintptr) Code
	hipEventSynchronize      func(event uintptr) Code
	hipEventElapsedTime      func(ms *float32, start, end uintptr) Code
	hipEventDestroy          func(event uintptr) Code

	// hipDeviceGetUuid arrived in ROCm 5.1 (symbol version hip_5.1); nil
	// where the runtime lacks it, and identity falls back to the PCI bus id.
	hipDeviceGetUUID func(uuid *[16]byte, dev int32) Code
}

func (a *api) entries() []dl.Symbol {
	return []dl.Symbol{
		{Name: "hipInit", Fn: &a.hipInit},
		{Name: "hipDriverGetVersion", Fn: &a.hipDriverGetVersion},
		{Name: "hipRuntimeGetVersion", Fn: &a.hipRuntimeGetVersion},
		{Name: "hipGetErrorName", Fn: &a.hipGetErrorName},
		{Name: "hipGetErrorString", Fn: &a.hipGetErrorString},
		{Name: "hipGetDeviceCount", Fn: &a.hipGetDeviceCount},
		{Name: "hipSetDevice", Fn: &a.hipSetDevice},
		{Name: "hipSetDeviceFlags", Fn: &a.hipSetDeviceFlags},
		{Name: "hipDeviceGetName", Fn: &a.hipDeviceGetName},
		{Name: "hipDeviceGetPCIBusId", Fn: &a.hipDeviceGetPCIBusID},
		{Name: "hipDeviceTotalMem", Fn: &a.hipDeviceTotalMem},
		{Name: "hipMemGetInfo", Fn: &a.hipMemGetInfo},
		{Name: "hipMalloc", Fn: &a.hipMalloc},
		{Name: "hipFree", Fn: &a.hipFree},
		{Name: "hipMemset", Fn: &a.hipMemset},
		{Name: "hipMemsetAsync", Fn: &a.hipMemsetAsync},
		{Name: "hipDeviceSynchronize", Fn: &a.hipDeviceSynchronize},
		{Name: "hipStreamCreateWithFlags", Fn: &a.hipStreamCreateWithFlags},
		{Name: "hipStreamDestroy", Fn: &a.hipStreamDestroy},
		{Name: "hipEventCreateWithFlags", Fn: &a.hipEventCreateWithFlags},
		{Name: "hipEventRecord", Fn: &a.hipEventRecord},
		{Name: "hipEventSynchronize", Fn: &a.hipEventSynchronize},
		{Name: "hipEventElapsedTime", Fn: &a.hipEventElapsedTime},
		{Name: "hipEventDestroy", Fn: &a.hipEventDestroy},
		{Name: "hipDeviceGetUuid", Fn: &a.hipDeviceGetUUID, Optional: true},
	}
}

// Runtime is the loaded and initialised HIP runtime. It is safe for
// concurrent use; the contexts it creates serialise their own calls.
type Runtime struct {
	api
	// Library is the soname that was loaded, such as "libamdhip64.so.6".
	Library        string
	driverVersion  int
	runtimeVersion int
}

var (
	loadOnce sync.Once
	loaded   *Runtime
	loadErr  error
)

// Load opens the newest HIP runtime of LibraryNames that the dynamic linker
// finds, resolves every symbol keepgpu uses and calls hipInit. It loads once
// per process; later calls return the same runtime or the same error. No
// library wraps ErrNoLibrary (naming each soname tried and why it failed);
// missing symbols are named all at once; a failing hipInit is an *Error, and
// where the runtime then counts no device, errors.Is(err, ErrorNoDevice)
// tells "ROCm but no AMD GPU".
func Load() (*Runtime, error) {
	loadOnce.Do(func() { loaded, loadErr = load(LibraryNames...) })
	return loaded, loadErr
}

// load opens the first of names that loads and initialises it. A library
// that is found but broken (missing symbols) is an error, not a reason to
// try an older one: it is the ROCm the node has.
func load(names ...string) (*Runtime, error) {
	h, name, err := dl.Open(names...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	r := &Runtime{Library: name}
	if missing := dl.Bind(h, r.api.entries()); len(missing) > 0 {
		return nil, fmt.Errorf("%s: missing symbols %s (ROCm too old, or not AMD's HIP runtime)", name, strings.Join(missing, ", "))
	}
	if c := r.hipInit(0); c != Success {
		// Without a device ROCm 5.2's hipInit answers hipErrorInvalidDevice;
		// hipGetDeviceCount then gives the runtime's plain answer.
		initErr := r.err("hipInit", c)
		var n int32
		if c := r.hipGetDeviceCount(&n); c == ErrorNoDevice {
			return nil, fmt.Errorf("%w (%v)", r.err("hipGetDeviceCount", c), initErr)
		}
		return nil, initErr
	}
	var v int32
	if c := r.hipDriverGetVersion(&v); c == Success {
		r.driverVersion = int(v)
	}
	if c := r.hipRuntimeGetVersion(&v); c == Success {
		r.runtimeVersion = int(v)
	}
	return r, nil
}

// err wraps c with the runtime's own name and wording for it.
func (r *Runtime) err(op string, c Code) *Error {
	return &Error{Op: op, Code: c, Name: r.hipGetErrorName(c), Text: r.hipGetErrorString(c)}
}

// Version returns the HIP runtime version as "5.2.21153" (HIP encodes it as
// major*10000000 + minor*100000 + patch).
func (r *Runtime) Version() string {
	v := r.runtimeVersion
	return fmt.Sprintf("%d.%d.%d", v/10000000, v/100000%100, v%100000)
}

// DeviceCount returns how many AMD GPUs HIP shows this process, after
// ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES and the job's cgroup. A node
// without any answers an error matching ErrorNoDevice, as HIP does.
func (r *Runtime) DeviceCount() (int, error) {
	var n int32
	if c := r.hipGetDeviceCount(&n); c != Success {
		return 0, r.err("hipGetDeviceCount", c)
	}
	return int(n), nil
}

// DeviceInfo identifies one GPU as HIP shows it.
type DeviceInfo struct {
	Ordinal    int    // HIP ordinal in this process
	UUID       string // "GPU-5c1b4d702f8d9e3a" as rocminfo prints it; "" where the runtime or card has none
	PCIBusID   string // "0000:c1:00.0", lower case
	Name       string
	TotalBytes uint64
}

// Device returns the identity of the GPU at HIP ordinal. hipDevice_t is the
// ordinal itself in AMD's runtime.
func (r *Runtime) Device(ordinal int) (DeviceInfo, error) {
	info := DeviceInfo{Ordinal: ordinal}
	dev := int32(ordinal)
	buf := make([]byte, 256)
	if c := r.hipDeviceGetName(&buf[0], int32(len(buf)), dev); c != Success {
		return info, r.err(fmt.Sprintf("gpu %d: hipDeviceGetName", ordinal), c)
	}
	info.Name = dl.CString(buf)
	clear(buf)
	if c := r.hipDeviceGetPCIBusID(&buf[0], int32(len(buf)), dev); c != Success {
		return info, r.err(fmt.Sprintf("gpu %d: hipDeviceGetPCIBusId", ordinal), c)
	}
	info.PCIBusID = strings.ToLower(dl.CString(buf))
	if r.hipDeviceGetUUID != nil {
		var u [16]byte
		if c := r.hipDeviceGetUUID(&u, dev); c == Success {
			info.UUID = FormatUUID(u)
		}
	}
	if c := r.hipDeviceTotalMem(&info.TotalBytes, dev); c != Success {
		return info, r.err(fmt.Sprintf("gpu %d: hipDeviceTotalMem", ordinal), c)
	}
	return info, nil
}

// Devices returns every GPU HIP shows this process, in ordinal order; none
// is an error matching ErrorNoDevice.
func (r *Runtime) Devices() ([]DeviceInfo, error) {
	n, err := r.DeviceCount()
	if err != nil {
		return nil, err
	}
	out := make([]DeviceInfo, 0, n)
	for i := 0; i < n; i++ {
		info, err := r.Device(i)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// FormatUUID spells a hipUUID as rocminfo and ROCm SMI do. AMD's runtime
// fills the 16 bytes with the ASCII hex digits of the card's 64-bit unique
// id (ROCr's agent UUID "GPU-<16 hex digits>" without its prefix), so that
// is returned as "GPU-" plus those digits, lower case. Bytes that are not
// all hex digits are spelled as an ordinary UUID; all zeros (a card without
// a unique id) or ROCr's "XX" placeholder give "".
func FormatUUID(u [16]byte) string {
	if u == ([16]byte{}) {
		return ""
	}
	ascii := true
	for _, b := range u {
		if b > unicode.MaxASCII || !strings.ContainsRune("0123456789abcdefABCDEF", rune(b)) {
			ascii = false
		}
	}
	if ascii {
		return "GPU-" + strings.ToLower(string(u[:]))
	}
	if s := dl.CString(u[:]); s == "XX" || s == "" {
		return ""
	}
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

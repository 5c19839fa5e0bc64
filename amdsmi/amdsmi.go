// Package amdsmi reads AMD GPUs through AMD SMI, libamd_smi (ROCm 6 and
// later) loaded at run time: PCI location, busy percent, VRAM, the
// processes on each GPU, compute partition and power. It holds no policy.
package amdsmi

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keepgpu/keepgpu/internal/dl"
)

// LibraryNames are the AMD SMI sonames keepgpu tries, newest first; the
// unversioned name is a development symlink.
var LibraryNames = []string{"libamd_smi.so.26", "libamd_smi.so.25", "libamd_smi.so.24", "libamd_smi.so.23", "libamd_smi.so"}

// ErrNoLibrary reports that no AMD SMI library could be loaded.
var ErrNoLibrary = errors.New("amdsmi: no AMD SMI library (libamd_smi) found")

// ErrUnknownVersion is the error of the readings whose struct layouts
// keepgpu has checked only for the library versions of ROCm 6.0 to 6.2
// (see Version.Known): activity, power and the process list.
var ErrUnknownVersion = errors.New("struct layouts of this AMD SMI version not checked by keepgpu")

// amdsmi.h's constants keepgpu passes.
const (
	initAMDGPUs    = 1 << 1 // AMDSMI_INIT_AMD_GPUS
	processorGPU   = 1      // AMDSMI_PROCESSOR_TYPE_AMD_GPU
	memTypeVRAM    = 0      // AMDSMI_MEM_TYPE_VRAM
	notReported    = 0xFFFF // what gpu_metrics fields read where the card lacks them
	partitionBytes = 64
)

// api holds the AMD SMI entry points keepgpu uses; optional ones are nil
// where the library lacks them.
type api struct {
	initialize     func(flags uint64) Status
	shutDown       func() Status
	statusString   func(s Status, text **byte) Status
	libVersion     func(v *version) Status
	socketHandles  func(n *uint32, out *uintptr) Status
	procHandles    func(socket uintptr, n *uint32, out *uintptr) Status
	processorType  func(h uintptr, typ *uint32) Status
	deviceBDF      func(h uintptr, bdf *uint64) Status
	activity       func(h uintptr, u *engineUsage) Status
	memTotal       func(h uintptr, typ int32, bytes *uint64) Status
	memUsage       func(h uintptr, typ int32, bytes *uint64) Status
	powerInfo      func(h uintptr, p *powerInfo) Status
	partition      func(h uintptr, out *byte, length uint32) Status
	processInfos   func(h uintptr, n *uint32, list *procInfo) Status // 24.5.1 and later
	processPIDs    func(h uintptr, n *uint32, list *uint32) Status   // before 24.5.1
	processInfoPID func(h uintptr, pid uint32, info *procInfo) Status
}

func (a *api) entries() []dl.Symbol {
	return []dl.Symbol{
		{Name: "amdsmi_init", Fn: &a.initialize},
		{Name: "amdsmi_shut_down", Fn: &a.shutDown},
		{Name: "amdsmi_status_code_to_string", Fn: &a.statusString},
		{Name: "amdsmi_get_lib_version", Fn: &a.libVersion},
		{Name: "amdsmi_get_socket_handles", Fn: &a.socketHandles},
		{Name: "amdsmi_get_processor_handles", Fn: &a.procHandles},
		{Name: "amdsmi_get_processor_type", Fn: &a.processorType},
		{Name: "amdsmi_get_gpu_device_bdf", Fn: &a.deviceBDF},
		{Name: "amdsmi_get_gpu_activity", Fn: &a.activity},
		{Name: "amdsmi_get_gpu_memory_total", Fn: &a.memTotal},
		{Name: "amdsmi_get_gpu_memory_usage", Fn: &a.memUsage},
		{Name: "amdsmi_get_power_info", Fn: &a.powerInfo},
		{Name: "amdsmi_get_gpu_compute_partition", Fn: &a.partition},
		// One symbol, two signatures: which one the library has follows
		// from its version (see procABI).
		{Name: "amdsmi_get_gpu_process_list", Fn: &a.processInfos},
		{Name: "amdsmi_get_gpu_process_list", Fn: &a.processPIDs},
		// Gone from amdsmi.h since 24.5.1.
		{Name: "amdsmi_get_gpu_process_info", Fn: &a.processInfoPID, Optional: true},
	}
}

// Version is the library's version as amdsmi_get_lib_version reports it:
// 23.4 is ROCm 6.0, 24.5 ROCm 6.1, 24.6 ROCm 6.2.
type Version struct{ Year, Major, Minor, Release uint32 }

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", v.Year, v.Major, v.Minor, v.Release)
}

// procABI says how a library version lists processes.
type procABI int

const (
	abiUnknown procABI = iota
	abiPIDs            // a list of pids, then amdsmi_get_gpu_process_info each
	abiInfos           // a list of amdsmi_proc_info_t
)

// abi returns the process-list ABI of v, from amdsmi.h at each tag: 23.4
// (rocm-6.0.0, rocm-6.0.2) and 24.5.0 (rocm-6.1.0) list pids; 24.5.1,
// 24.5.2 (rocm-6.1.1, rocm-6.1.2) and 24.6 (rocm-6.2.x) list
// amdsmi_proc_info_t. Any other version is unknown, newer ones included:
// ROCm 7 dropped amdsmi_version_t's year field, so its version itself
// reads as garbage through this layout.
func (v Version) abi() procABI {
	switch {
	case v.Year == 23 && v.Major == 4:
		return abiPIDs
	case v.Year == 24 && v.Major == 5 && v.Minor == 0:
		return abiPIDs
	case v.Year == 24 && (v.Major == 5 || v.Major == 6):
		return abiInfos
	}
	return abiUnknown
}

// Known reports whether keepgpu has checked this version's struct
// layouts against amdsmi.h.
func (v Version) Known() bool { return v.abi() != abiUnknown }

// SMI is an initialised AMD SMI library. Every method is safe to call
// from any goroutine. After Close no method may be called.
type SMI struct {
	api
	// Library is the soname that was loaded.
	Library string
	// Version is what amdsmi_get_lib_version reported.
	Version Version
	// Log is what the library wrote to standard error while it
	// initialised; keepgpu keeps it from the user's terminal.
	Log string

	gpus []uintptr // processor handles of the node's GPUs, in socket order
}

// Open loads the newest AMD SMI of LibraryNames the dynamic linker finds,
// resolves every entry point keepgpu uses, calls amdsmi_init for AMD GPUs
// and lists them. No library wraps ErrNoLibrary; missing symbols are named
// all at once; a failing amdsmi_init is an *Error that carries what the
// library wrote to standard error meanwhile, which does not reach the
// terminal. Open succeeds on a library version keepgpu does not know
// (check Version.Known): memory readings work there, and the readings
// whose layouts are unchecked answer ErrUnknownVersion. Each successful
// Open must be paired with a Close.
func Open() (*SMI, error) { return open(LibraryNames...) }

func open(names ...string) (*SMI, error) {
	h, name, err := dl.Open(names...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	s := &SMI{Library: name}
	if missing := dl.Bind(h, s.api.entries()); len(missing) > 0 {
		return nil, fmt.Errorf("%s: missing symbols %s (not AMD's AMD SMI, or an older one)", name, strings.Join(missing, ", "))
	}
	var st Status
	s.Log = dl.Quiet(func() { st = s.initialize(initAMDGPUs) })
	if st != Success {
		err := s.err("amdsmi_init", st)
		if log := strings.TrimSpace(s.Log); log != "" {
			return nil, fmt.Errorf("%w (AMD SMI said: %s)", err, strings.Join(strings.Fields(log), " "))
		}
		return nil, err
	}
	var v version
	if st := s.libVersion(&v); st != Success {
		s.shutDown()
		return nil, s.err("amdsmi_get_lib_version", st)
	}
	s.Version = Version{v.Year, v.Major, v.Minor, v.Release}
	if s.gpus, err = s.list(); err != nil {
		s.shutDown()
		return nil, err
	}
	return s, nil
}

// list returns the processor handles of the AMD GPUs of every socket.
func (s *SMI) list() ([]uintptr, error) {
	var n uint32
	if st := s.socketHandles(&n, nil); st != Success {
		return nil, s.err("amdsmi_get_socket_handles", st)
	}
	if n == 0 {
		return nil, nil
	}
	sockets := make([]uintptr, n)
	if st := s.socketHandles(&n, &sockets[0]); st != Success {
		return nil, s.err("amdsmi_get_socket_handles", st)
	}
	var gpus []uintptr
	for i, sock := range sockets[:min(int(n), len(sockets))] {
		var k uint32
		if st := s.procHandles(sock, &k, nil); st != Success {
			return nil, s.err(fmt.Sprintf("amdsmi_get_processor_handles socket %d", i), st)
		}
		if k == 0 {
			continue
		}
		procs := make([]uintptr, k)
		if st := s.procHandles(sock, &k, &procs[0]); st != Success {
			return nil, s.err(fmt.Sprintf("amdsmi_get_processor_handles socket %d", i), st)
		}
		for _, p := range procs[:min(int(k), len(procs))] {
			var typ uint32
			if s.processorType(p, &typ) == Success && typ == processorGPU {
				gpus = append(gpus, p)
			}
		}
	}
	return gpus, nil
}

// err wraps st with the library's wording for it.
func (s *SMI) err(op string, st Status) *Error {
	e := &Error{Op: op, Code: st}
	var p *byte
	if s.statusString(st, &p) == Success && p != nil {
		e.Text = dl.GoString(p)
	}
	return e
}

// Close shuts AMD SMI down (amdsmi_shut_down).
func (s *SMI) Close() error {
	if st := s.shutDown(); st != Success {
		return s.err("amdsmi_shut_down", st)
	}
	return nil
}

// Package rocmsmi reads AMD GPUs through ROCm SMI, librocm_smi64 loaded at
// run time: identity, busy percent, VRAM, compute processes, compute
// partition and power. It holds no policy.
package rocmsmi

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keepgpu/keepgpu/internal/dl"
)

// LibraryNames are the ROCm SMI sonames keepgpu tries, newest first: ROCm
// 6.1 and later ship librocm_smi64.so.7, ROCm 6.0 .so.6, ROCm 5 .so.5, and
// Debian's ROCm 5.2 .so.1; the unversioned name is a development symlink.
var LibraryNames = []string{"librocm_smi64.so.7", "librocm_smi64.so.6", "librocm_smi64.so.5", "librocm_smi64.so.1", "librocm_smi64.so"}

// ErrNoLibrary reports that no ROCm SMI library could be loaded.
var ErrNoLibrary = errors.New("rocmsmi: no ROCm SMI library (librocm_smi64) found")

// processInfo is rsmi_process_info_t as AMD's public rocm_smi.h declares
// it, unchanged from ROCm 4 to ROCm 6 (rocm_smi_lib tag rocm-5.2.3,
// include/rocm_smi/rocm_smi.h): process_id and pasid (uint32), vram_usage
// and sdma_usage (uint64), cu_occupancy (uint32), padded to 32 bytes.
type processInfo struct {
	PID         uint32
	PASID       uint32
	VRAMUsage   uint64
	SDMAUsage   uint64 // microseconds
	CUOccupancy uint32
	_           uint32
}

// Memory types (rsmi_memory_type_t).
const memTypeVRAM = 0

// api holds the ROCm SMI entry points keepgpu uses; optional ones are nil
// where the library lacks them.
type api struct {
	initialize    func(flags uint64) Status
	shutDown      func() Status
	statusString  func(s Status, text **byte) Status
	numDevices    func(n *uint32) Status
	devName       func(dv uint32, name *byte, length uintptr) Status
	devUniqueID   func(dv uint32, id *uint64) Status
	devPCIID      func(dv uint32, bdfid *uint64) Status
	devBusy       func(dv uint32, percent *uint32) Status
	devMemTotal   func(dv uint32, typ int32, bytes *uint64) Status
	devMemUsage   func(dv uint32, typ int32, bytes *uint64) Status
	procInfo      func(procs *processInfo, n *uint32) Status
	procGPUs      func(pid uint32, indices *uint32, n *uint32) Status
	procInfoByPID func(pid uint32, proc *processInfo) Status

	// Optional: rsmi_dev_power_ave_get is gone or unsupported on MI300,
	// whose socket power rsmi_dev_current_socket_power_get reads (ROCm 6);
	// compute partitions and per-device process memory are ROCm 6 too.
	devPowerAve    func(dv uint32, sensor uint32, microwatts *uint64) Status
	devSocketPower func(dv uint32, microwatts *uint64) Status
	devPartition   func(dv uint32, out *byte, length uint32) Status
	procInfoByDev  func(pid, dv uint32, proc *processInfo) Status
}

func (a *api) entries() []dl.Symbol {
	return []dl.Symbol{
		{Name: "rsmi_init", Fn: &a.initialize},
		{Name: "rsmi_shut_down", Fn: &a.shutDown},
		{Name: "rsmi_status_string", Fn: &a.statusString},
		{Name: "rsmi_num_monitor_devices", Fn: &a.numDevices},
		{Name: "rsmi_dev_name_get", Fn: &a.devName},
		{Name: "rsmi_dev_unique_id_get", Fn: &a.devUniqueID},
		{Name: "rsmi_dev_pci_id_get", Fn: &a.devPCIID},
		{Name: "rsmi_dev_busy_percent_get", Fn: &a.devBusy},
		{Name: "rsmi_dev_memory_total_get", Fn: &a.devMemTotal},
		{Name: "rsmi_dev_memory_usage_get", Fn: &a.devMemUsage},
		{Name: "rsmi_compute_process_info_get", Fn: &a.procInfo},
		{Name: "rsmi_compute_process_gpus_get", Fn: &a.procGPUs},
		{Name: "rsmi_compute_process_info_by_pid_get", Fn: &a.procInfoByPID},
		{Name: "rsmi_dev_power_ave_get", Fn: &a.devPowerAve, Optional: true},
		{Name: "rsmi_dev_current_socket_power_get", Fn: &a.devSocketPower, Optional: true},
		{Name: "rsmi_dev_compute_partition_get", Fn: &a.devPartition, Optional: true},
		{Name: "rsmi_compute_process_info_by_device_get", Fn: &a.procInfoByDev, Optional: true},
	}
}

// SMI is an initialised ROCm SMI library. Every method is safe to call
// from any goroutine. After Close no method may be called.
type SMI struct {
	api
	// Library is the soname that was loaded.
	Library string
	// Log is what the library wrote to standard error while it
	// initialised (ROCm SMI reports its troubles there); keepgpu keeps it
	// from the user's terminal.
	Log string
}

// Open loads the newest ROCm SMI of LibraryNames the dynamic linker finds,
// resolves every entry point keepgpu uses and calls rsmi_init. No library
// wraps ErrNoLibrary; missing symbols are named all at once; a failing
// rsmi_init is an *Error (on a node without the amdgpu driver, ROCm 5.2
// answers RSMI_STATUS_INIT_ERROR) that carries what the library wrote to
// standard error meanwhile, which does not reach the terminal. Each
// successful Open must be paired with a Close.
func Open() (*SMI, error) { return open(LibraryNames...) }

func open(names ...string) (*SMI, error) {
	h, name, err := dl.Open(names...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	s := &SMI{Library: name}
	if missing := dl.Bind(h, s.api.entries()); len(missing) > 0 {
		return nil, fmt.Errorf("%s: missing symbols %s (ROCm too old, or not AMD's ROCm SMI)", name, strings.Join(missing, ", "))
	}
	var st Status
	s.Log = dl.Quiet(func() { st = s.initialize(0) })
	if st != Success {
		err := s.err("rsmi_init", st)
		if log := strings.TrimSpace(s.Log); log != "" {
			return nil, fmt.Errorf("%w (ROCm SMI said: %s)", err, strings.Join(strings.Fields(log), " "))
		}
		return nil, err
	}
	return s, nil
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

// Close shuts ROCm SMI down (rsmi_shut_down).
func (s *SMI) Close() error {
	if st := s.shutDown(); st != Success {
		return s.err("rsmi_shut_down", st)
	}
	return nil
}

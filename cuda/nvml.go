package cuda

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVMLError is an NVML return code other than success, with the driver's
// own wording.
type NVMLError struct {
	Op   string
	Code nvml.Return
}

func (e *NVMLError) Error() string {
	return fmt.Sprintf("%s: %s (NVML %d)", e.Op, nvml.ErrorString(e.Code), int32(e.Code))
}

// Is matches another *NVMLError with the same code, so callers can write
// errors.Is(err, &cuda.NVMLError{Code: nvml.ERROR_NOT_SUPPORTED}).
func (e *NVMLError) Is(target error) bool {
	t, ok := target.(*NVMLError)
	return ok && t.Code == e.Code
}

// ErrNotSupported is returned where the driver cannot give a reading, for
// example utilization of a MIG-enabled GPU.
var ErrNotSupported = &NVMLError{Op: "nvml", Code: nvml.ERROR_NOT_SUPPORTED}

// NVML is an initialised NVML library. Every method is safe to call from any
// goroutine. After Close no method may be called.
type NVML struct {
	lib      nvml.Interface
	optional map[string]bool // optional symbols the loaded driver exports
	mu       sync.Mutex
	lastSeen map[string]uint64 // per-process utilization timestamps per UUID
}

// optionalSymbols are calls newer than the oldest driver keepgpu supports;
// each is looked up before use, because calling an unresolved go-nvml symbol
// ends the process.
var optionalSymbols = []string{
	"nvmlDeviceGetProcessUtilization",
	"nvmlDeviceGetMigMode",
	"nvmlDeviceGetPowerUsage",
}

// OpenNVML loads libnvidia-ml.so.1 and initialises it. The error says why
// NVML is unavailable; no go-nvml function is called when Init failed.
func OpenNVML() (*NVML, error) { return openNVML() }

// openNVML is OpenNVML with go-nvml's options (tests name the library).
func openNVML(opts ...nvml.LibraryOption) (*NVML, error) {
	lib := nvml.New(opts...)
	if ret := lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, errors.New("nvml: libnvidia-ml.so.1 not found")
		}
		return nil, &NVMLError{Op: "nvmlInit", Code: ret}
	}
	n := &NVML{lib: lib, optional: map[string]bool{}, lastSeen: map[string]uint64{}}
	for _, s := range optionalSymbols {
		n.optional[s] = lib.Extensions().LookupSymbol(s) == nil
	}
	return n, nil
}

// Close shuts NVML down.
func (n *NVML) Close() error {
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return &NVMLError{Op: "nvmlShutdown", Code: ret}
	}
	return nil
}

// DriverVersion returns the NVIDIA driver version, as "550.54.15".
func (n *NVML) DriverVersion() (string, error) {
	v, ret := n.lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return "", &NVMLError{Op: "nvmlSystemGetDriverVersion", Code: ret}
	}
	return v, nil
}

// Process is a compute process on a GPU as NVML lists it.
type Process struct {
	PID   int    `json:"pid"`
	Bytes uint64 `json:"memory_used"`
}

// Compute modes (NVML numbering).
const (
	ComputeDefault          = 0
	ComputeProhibited       = 2
	ComputeExclusiveProcess = 3
)

// Sample is one reading of a GPU. Every reading that may be unavailable has
// an error beside it; a nil error means the reading is real.
type Sample struct {
	Index       int // NVML index (the node's numbering, not CUDA's)
	UUID        string
	Name        string
	MemTotal    uint64
	MemUsed     uint64
	MemErr      error
	Util        int // percent of the last sample period a kernel ran
	UtilErr     error
	Procs       []Process
	ProcsErr    error
	ProcUtil    map[int]int // SM utilization per pid, where the driver reports it
	ProcUtilErr error
	ComputeMode int
	ModeErr     error
	MIG         bool
	PowerMW     int
	PowerErr    error
	Time        time.Time
}

// device returns the NVML handle of the GPU with uuid. Handles are always
// found by UUID: NVML's indices are the node's, CUDA's are the job's.
func (n *NVML) device(uuid string) (nvml.Device, error) {
	d, ret := n.lib.DeviceGetHandleByUUID(uuid)
	if ret != nvml.SUCCESS {
		return nil, &NVMLError{Op: "nvmlDeviceGetHandleByUUID " + uuid, Code: ret}
	}
	return d, nil
}

// Sample reads the GPU with uuid.
func (n *NVML) Sample(uuid string) (Sample, error) {
	d, err := n.device(uuid)
	if err != nil {
		return Sample{UUID: uuid}, err
	}
	return n.sample(d), nil
}

// Samples reads every GPU NVML shows, in NVML index order.
func (n *NVML) Samples() ([]Sample, error) {
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, &NVMLError{Op: "nvmlDeviceGetCount", Code: ret}
	}
	out := make([]Sample, 0, count)
	for i := 0; i < count; i++ {
		d, ret := n.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, &NVMLError{Op: fmt.Sprintf("nvmlDeviceGetHandleByIndex %d", i), Code: ret}
		}
		out = append(out, n.sample(d))
	}
	return out, nil
}

func (n *NVML) sample(d nvml.Device) Sample {
	s := Sample{Index: -1, Time: time.Now()}
	if i, ret := d.GetIndex(); ret == nvml.SUCCESS {
		s.Index = i
	}
	s.UUID, _ = d.GetUUID()
	s.Name, _ = d.GetName()
	if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
		s.MemTotal, s.MemUsed = m.Total, m.Used
	} else {
		s.MemErr = &NVMLError{Op: "nvmlDeviceGetMemoryInfo", Code: ret}
	}
	if mode, ret := d.GetComputeMode(); ret == nvml.SUCCESS {
		s.ComputeMode = int(mode)
	} else {
		s.ModeErr = &NVMLError{Op: "nvmlDeviceGetComputeMode", Code: ret}
	}
	if n.optional["nvmlDeviceGetMigMode"] {
		if cur, _, ret := d.GetMigMode(); ret == nvml.SUCCESS {
			s.MIG = cur == nvml.DEVICE_MIG_ENABLE
		}
	}
	if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
		s.Util = int(u.Gpu)
	} else {
		s.UtilErr = &NVMLError{Op: "nvmlDeviceGetUtilizationRates", Code: ret}
	}
	s.Procs, s.ProcsErr = n.processes(d)
	s.ProcUtil, s.ProcUtilErr = n.processUtil(d, s.UUID)
	if n.optional["nvmlDeviceGetPowerUsage"] {
		if mw, ret := d.GetPowerUsage(); ret == nvml.SUCCESS {
			s.PowerMW = int(mw)
		} else {
			s.PowerErr = &NVMLError{Op: "nvmlDeviceGetPowerUsage", Code: ret}
		}
	} else {
		s.PowerErr = ErrNotSupported
	}
	return s
}

// getProcessUtilization calls go-nvml's GetProcessUtilization, which asks
// NVML for the number of samples and then for the samples, and slices its
// buffer to the second count even when NVML answers that the buffer is too
// small: a process that appears between the two calls makes it panic. That
// is a reading to skip, not a reason for the holder to die.
func getProcessUtilization(d nvml.Device, last uint64) (samples []nvml.ProcessUtilizationSample, ret nvml.Return, err error) {
	defer func() {
		if r := recover(); r != nil {
			samples, ret, err = nil, nvml.ERROR_INSUFFICIENT_SIZE, fmt.Errorf("nvmlDeviceGetProcessUtilization: processes changed while reading (%v)", r)
		}
	}()
	samples, ret = d.GetProcessUtilization(last)
	return samples, ret, nil
}

// Processes lists the compute processes on the GPU with uuid.
func (n *NVML) Processes(uuid string) ([]Process, error) {
	d, err := n.device(uuid)
	if err != nil {
		return nil, err
	}
	return n.processes(d)
}

func (n *NVML) processes(d nvml.Device) ([]Process, error) {
	procs, ret := d.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		return nil, &NVMLError{Op: "nvmlDeviceGetComputeRunningProcesses", Code: ret}
	}
	out := make([]Process, 0, len(procs))
	for _, p := range procs {
		out = append(out, Process{PID: int(p.Pid), Bytes: p.UsedGpuMemory})
	}
	return out, nil
}

// processUtil returns the SM utilization of each process on the GPU since
// the previous call for the same GPU (NVML keeps samples for a few seconds).
func (n *NVML) processUtil(d nvml.Device, uuid string) (map[int]int, error) {
	if !n.optional["nvmlDeviceGetProcessUtilization"] {
		return nil, ErrNotSupported
	}
	n.mu.Lock()
	last := n.lastSeen[uuid]
	n.mu.Unlock()
	samples, ret, err := getProcessUtilization(d, last)
	if err != nil {
		return nil, err
	}
	if ret == nvml.ERROR_NOT_FOUND {
		// No process ran a kernel since last: a real reading of zero.
		return map[int]int{}, nil
	}
	if ret != nvml.SUCCESS && !(ret == nvml.ERROR_INSUFFICIENT_SIZE && len(samples) == 0) {
		return nil, &NVMLError{Op: "nvmlDeviceGetProcessUtilization", Code: ret}
	}
	out := make(map[int]int, len(samples))
	newest := last
	for _, p := range samples {
		out[int(p.Pid)] = max(out[int(p.Pid)], int(p.SmUtil))
		newest = max(newest, p.TimeStamp)
	}
	n.mu.Lock()
	n.lastSeen[uuid] = newest
	n.mu.Unlock()
	return out, nil
}

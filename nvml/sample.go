package nvml

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/keepgpu/keepgpu/internal/dl"
)

// Process is a compute process on a GPU as NVML lists it.
type Process struct {
	PID   int    `json:"pid"`
	Bytes uint64 `json:"memory_used"`
}

// Compute modes (nvmlComputeMode_t).
const (
	ComputeDefault          = 0
	ComputeProhibited       = 2
	ComputeExclusiveProcess = 3
)

// ErrNotSupported is the error of a reading the driver cannot give, for
// example utilization of a MIG-enabled GPU. A call the library lacks
// answers ErrorFunctionNotFound.
var ErrNotSupported error = ErrorNotSupported

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

// handle returns the NVML handle of the GPU with uuid. Handles are always
// found by UUID: NVML's indices are the node's, CUDA's are the job's. A
// handle stays valid until nvmlShutdown, so each UUID is looked up once: a
// holder reads every GPU's process list every window.
func (n *NVML) handle(uuid string) (device, error) {
	if d, ok := n.handles.Load(uuid); ok {
		return d.(device), nil
	}
	var d device
	c := append([]byte(uuid), 0)
	if r := n.deviceGetHandleByUUID(&c[0], &d); r != Success {
		return 0, n.err("nvmlDeviceGetHandleByUUID "+uuid, r)
	}
	n.handles.Store(uuid, d)
	return d, nil
}

// Sample reads the GPU with uuid.
func (n *NVML) Sample(uuid string) (Sample, error) {
	d, err := n.handle(uuid)
	if err != nil {
		return Sample{UUID: uuid}, err
	}
	return n.sample(d), nil
}

// Samples reads every GPU NVML shows, in NVML index order.
func (n *NVML) Samples() ([]Sample, error) {
	var count uint32
	if r := n.deviceGetCount(&count); r != Success {
		return nil, n.err("nvmlDeviceGetCount", r)
	}
	out := make([]Sample, 0, count)
	for i := uint32(0); i < count; i++ {
		var d device
		if r := n.deviceGetHandleByIndex(i, &d); r != Success {
			return nil, n.err(fmt.Sprintf("nvmlDeviceGetHandleByIndex %d", i), r)
		}
		out = append(out, n.sample(d))
	}
	return out, nil
}

func (n *NVML) sample(d device) Sample {
	s := Sample{Index: -1, Time: time.Now()}
	var index uint32
	if n.deviceGetIndex(d, &index) == Success {
		s.Index = int(index)
	}
	buf := make([]byte, bufferSize)
	if n.deviceGetUUID(d, &buf[0], uint32(len(buf))) == Success {
		s.UUID = dl.CString(buf)
	}
	clear(buf)
	if n.deviceGetName(d, &buf[0], uint32(len(buf))) == Success {
		s.Name = dl.CString(buf)
	}
	s.MemTotal, s.MemUsed, s.MemErr = n.memory(d, s.UUID)
	var mode int32
	if r := n.deviceGetComputeMode(d, &mode); r == Success {
		s.ComputeMode = int(mode)
	} else {
		s.ModeErr = n.err("nvmlDeviceGetComputeMode "+s.UUID, r)
	}
	if n.deviceGetMigMode != nil {
		var current, pending uint32
		if n.deviceGetMigMode(d, &current, &pending) == Success {
			s.MIG = current == 1 // NVML_DEVICE_MIG_ENABLE
		}
	}
	var u utilization
	if r := n.deviceGetUtilizationRates(d, &u); r == Success {
		s.Util = int(u.GPU)
	} else {
		s.UtilErr = n.err("nvmlDeviceGetUtilizationRates "+s.UUID, r)
	}
	s.Procs, s.ProcsErr = n.processes(d, s.UUID)
	s.ProcUtil, s.ProcUtilErr = n.processUtil(d, s.UUID)
	if n.deviceGetPowerUsage != nil {
		var mw uint32
		if r := n.deviceGetPowerUsage(d, &mw); r == Success {
			s.PowerMW = int(mw)
		} else {
			s.PowerErr = n.err("nvmlDeviceGetPowerUsage "+s.UUID, r)
		}
	} else {
		s.PowerErr = n.err("nvmlDeviceGetPowerUsage "+s.UUID, ErrorFunctionNotFound)
	}
	return s
}

// memory returns the GPU's total and used bytes. nvmlDeviceGetMemoryInfo_v2
// counts the memory the driver reserves as used, as nvidia-smi shows it;
// a library without it, or one that refuses the struct version, is read
// with nvmlDeviceGetMemoryInfo.
func (n *NVML) memory(d device, uuid string) (total, used uint64, err error) {
	if n.deviceGetMemoryInfoV2 != nil {
		m := memoryV2{Version: memoryV2Version}
		r := n.deviceGetMemoryInfoV2(d, &m)
		if r == Success {
			return m.Total, m.Used, nil
		}
		if r != ErrorArgumentVersionMismatch && r != ErrorFunctionNotFound && r != ErrorNotSupported {
			return 0, 0, n.err("nvmlDeviceGetMemoryInfo_v2 "+uuid, r)
		}
	}
	var m memoryV1
	if r := n.deviceGetMemoryInfo(d, &m); r != Success {
		return 0, 0, n.err("nvmlDeviceGetMemoryInfo "+uuid, r)
	}
	return m.Total, m.Used, nil
}

// Processes lists the compute processes on the GPU with uuid.
func (n *NVML) Processes(uuid string) ([]Process, error) {
	d, err := n.handle(uuid)
	if err != nil {
		return nil, err
	}
	return n.processes(d, uuid)
}

// maxTries bounds the calls of a two-call API (ask how many, then read
// them) when the number keeps growing between the calls.
const maxTries = 5

// errChanging is the error of a two-call API whose count grew at every try.
var errChanging = errors.New("the list grew at every try")

// grow returns the buffer length for a retry after NVML asked for need
// elements: more than asked, as more may start before the next call.
func grow(need uint32, had int) int {
	return max(int(need)+int(need)/2+4, had*2)
}

// processes calls nvmlDeviceGetComputeRunningProcesses in the newest
// version the library has. NVML fills the array only when it is large
// enough and otherwise answers NVML_ERROR_INSUFFICIENT_SIZE with the count
// it needs; a process that starts between two calls only makes the next
// buffer larger.
func (n *NVML) processes(d device, uuid string) ([]Process, error) {
	op := "nvmlDeviceGetComputeRunningProcesses"
	if n.procsVersion > 1 {
		op += fmt.Sprintf("_v%d", n.procsVersion)
	}
	size := 8
	for try := 0; try < maxTries; try++ {
		count := uint32(size)
		var r Return
		var out []Process
		switch n.procsVersion {
		case 1:
			buf := make([]processInfoV1, size)
			r = n.deviceGetComputeRunningProcesses(d, &count, unsafe.Pointer(&buf[0]))
			if r == Success {
				for _, p := range buf[:min(int(count), size)] {
					out = append(out, Process{PID: int(p.PID), Bytes: p.UsedGPUMemory})
				}
			}
		default:
			// Room for the wider elements of the earlier _v3 declaration
			// (layout.go); the elements are read as nvml.h declares them.
			wide := make([]processInfoV3Wide, size)
			buf := unsafe.Slice((*processInfoV2)(unsafe.Pointer(&wide[0])), size)
			r = n.deviceGetComputeRunningProcesses(d, &count, unsafe.Pointer(&buf[0]))
			if r == Success {
				for _, p := range buf[:min(int(count), size)] {
					out = append(out, Process{PID: int(p.PID), Bytes: p.UsedGPUMemory})
				}
			}
		}
		switch r {
		case Success:
			if out == nil {
				out = []Process{}
			}
			return out, nil
		case ErrorInsufficientSize:
			size = grow(count, size)
		default:
			return nil, n.err(op+" "+uuid, r)
		}
	}
	return nil, fmt.Errorf("%s %s: %w", op, uuid, errChanging)
}

// processUtil returns the SM utilization of each process on the GPU since
// the previous call for the same GPU (NVML keeps samples for a few
// seconds). nvmlDeviceGetProcessUtilization is a two-call API like
// processes, and is read the same way.
func (n *NVML) processUtil(d device, uuid string) (map[int]int, error) {
	const op = "nvmlDeviceGetProcessUtilization"
	if n.deviceGetProcessUtilization == nil {
		return nil, n.err(op+" "+uuid, ErrorFunctionNotFound)
	}
	n.mu.Lock()
	last := n.lastSeen[uuid]
	n.mu.Unlock()
	size := 8
	for try := 0; try < maxTries; try++ {
		buf := make([]processUtilizationSample, size)
		count := uint32(size)
		switch r := n.deviceGetProcessUtilization(d, &buf[0], &count, last); r {
		case Success:
			out := make(map[int]int, count)
			newest := last
			for _, p := range buf[:min(int(count), size)] {
				out[int(p.PID)] = max(out[int(p.PID)], int(p.SMUtil))
				newest = max(newest, p.TimeStamp)
			}
			n.mu.Lock()
			n.lastSeen[uuid] = newest
			n.mu.Unlock()
			return out, nil
		case ErrorNotFound:
			// No process ran a kernel since last: a real reading of zero.
			return map[int]int{}, nil
		case ErrorInsufficientSize:
			if count == 0 {
				// NVML's answer to a count query when there is nothing
				// to read; keepgpu treated it as zero before, too.
				return map[int]int{}, nil
			}
			size = grow(count, size)
		default:
			return nil, n.err(op+" "+uuid, r)
		}
	}
	return nil, fmt.Errorf("%s %s: %w", op, uuid, errChanging)
}

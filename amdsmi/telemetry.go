package amdsmi

import (
	"fmt"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/nvml"
)

// Telemetry reads the GPUs HIP shows this process, each by its
// hip.DeviceInfo.ID, in the shape keeper reads NVIDIA GPUs in
// (nvml.Sample): the keeper.Telemetry of an AMD node with AMD SMI. Safe for
// concurrent use.
type Telemetry struct {
	smi  *SMI
	devs map[string]hip.DeviceInfo

	mu    sync.Mutex
	index map[string]int // AMD SMI index by ID, once matched
}

// Telemetry returns the telemetry of devs, read through s.
func (s *SMI) Telemetry(devs []hip.DeviceInfo) *Telemetry {
	t := &Telemetry{smi: s, devs: map[string]hip.DeviceInfo{}, index: map[string]int{}}
	for _, d := range devs {
		t.devs[d.ID()] = d
	}
	return t
}

// lookup returns the AMD SMI index of the GPU with id, matching it by its
// PCI bus id (see SMI.Match) on first use.
func (t *Telemetry) lookup(id string) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.index[id]; ok {
		return i, nil
	}
	d, ok := t.devs[id]
	if !ok {
		return -1, fmt.Errorf("amdsmi: no GPU %s among those HIP showed", id)
	}
	i, err := t.smi.Match(d.PCIBusID)
	if err != nil {
		return -1, err
	}
	t.index[id] = i
	return i, nil
}

// errNotAMD is the error of readings AMD GPUs do not have.
var errNotAMD = &Error{Op: "AMD SMI", Code: StatusNotSupported, Text: "no such reading on AMD GPUs"}

// Sample reads the GPU with id; its Name is HIP's. Compute mode and
// per-process utilization are NVIDIA's and always carry an error; MIG is
// false.
func (t *Telemetry) Sample(id string) (nvml.Sample, error) {
	i, err := t.lookup(id)
	if err != nil {
		return nvml.Sample{UUID: id}, err
	}
	s := nvml.Sample{Index: i, UUID: id, Name: t.devs[id].Name, ProcUtilErr: errNotAMD, ModeErr: errNotAMD, Time: time.Now()}
	s.MemUsed, s.MemTotal, s.MemErr = t.smi.Memory(i)
	s.Util, s.UtilErr = t.smi.Busy(i)
	procs, err := t.smi.Processes(i)
	s.Procs, s.ProcsErr = convert(procs), err
	s.PowerMW, s.PowerErr = t.smi.PowerMW(i)
	return s, nil
}

// Processes lists the processes on the GPU with id.
func (t *Telemetry) Processes(id string) ([]nvml.Process, error) {
	i, err := t.lookup(id)
	if err != nil {
		return nil, err
	}
	procs, err := t.smi.Processes(i)
	if err != nil {
		return nil, err
	}
	return convert(procs), nil
}

func convert(procs []Process) []nvml.Process {
	if procs == nil {
		return nil
	}
	out := make([]nvml.Process, len(procs))
	for i, p := range procs {
		out[i] = nvml.Process{PID: p.PID, Bytes: p.Bytes}
	}
	return out
}

// Package inventory lists the GPUs this process can select, numbered as
// --gpus numbers them, with what the management library (NVML, or ROCm
// SMI) shows of each: memory, utilization, compute mode and compute
// processes.
package inventory

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/nvml"
)

// GPU is one GPU as `keepgpu list-gpus --json` and the service's list_gpus
// show it: id, visible_id, physical_id, platform, name, memory and
// utilization keep KeepGPU's names; a reading the driver cannot give is
// null.
type GPU struct {
	// ID is the visible ordinal --gpus takes: the runtime's numbering
	// after CUDA_VISIBLE_DEVICES (on ROCm after ROCR_VISIBLE_DEVICES, then
	// HIP_VISIBLE_DEVICES or CUDA_VISIBLE_DEVICES).
	ID        int `json:"id"`
	VisibleID int `json:"visible_id"` // ID again, as KeepGPU names it
	// PhysicalID is the management library's index (NVML's, or ROCm
	// SMI's): the node's numbering, as nvidia-smi and rocm-smi show it;
	// absent where the library cannot find the GPU.
	PhysicalID  *int      `json:"physical_id,omitempty"`
	Platform    string    `json:"platform"` // cuda or rocm
	UUID        string    `json:"uuid"`     // on ROCm, the PCI bus id for a card without one
	Name        string    `json:"name"`
	MemoryTotal *uint64   `json:"memory_total"`
	MemoryUsed  *uint64   `json:"memory_used"`
	Utilization *int      `json:"utilization"`
	ComputeMode *string   `json:"compute_mode"`
	MIG         bool      `json:"mig"`
	PowerMW     *int      `json:"power_mw"`
	Processes   []Process `json:"processes"`
}

// Process is a compute process on a GPU. The service adds who it is.
type Process struct {
	PID        int    `json:"pid"`
	MemoryUsed uint64 `json:"memory_used"`
	Command    string `json:"command,omitempty"` // /proc/PID/comm
	User       string `json:"user,omitempty"`
	JobID      string `json:"job_id,omitempty"` // the keepgpu session whose holder this is
}

// List is what `keepgpu list-gpus --json` prints and list_gpus returns.
// Error says why there are no GPUs to show when none can be read (no
// driver, for one); Note says what the list leaves out and why: the
// runtime's own word that there is no GPU, telemetry that cannot be read,
// or a numbering keepgpu made itself (see Local).
type List struct {
	GPUs  []GPU  `json:"gpus"`
	Error string `json:"error,omitempty"`
	Note  string `json:"note,omitempty"`
}

var computeModes = map[int]string{0: "default", 1: "exclusive-thread", 2: "prohibited", 3: "exclusive-process"}

// Local lists the GPUs this process can select on platform p (auto:
// CUDA's if the driver shows any, else ROCm's; see keeper.LoadDriver):
// the runtime (libcuda, or the HIP runtime) numbers them and names them
// by UUID, and the management library (NVML, or ROCm SMI) is asked for
// each by that UUID, so that the numbering is the one --gpus takes
// whatever CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES or the job's cgroup
// say. A GPU the management library does not find is listed with null
// readings.
//
// A runtime that says there is no GPU (CUDA_ERROR_NO_DEVICE,
// hipErrorNoDevice) gives an empty list whose Note says so. Where libcuda
// is missing but NVML is not (and no AMD GPU is found), keepgpu numbers
// NVML's GPUs itself, by CUDA_VISIBLE_DEVICES' rules (indices into NVML's
// order, which is the PCI bus order CUDA_DEVICE_ORDER=PCI_BUS_ID gives,
// or UUIDs and unique UUID prefixes; the list ends at its first invalid
// or repeated entry), and the Note says so. Any other failure is an
// error.
func Local(p keeper.Platform) (List, error) {
	d, err := keeper.LoadDriver(p)
	if err != nil {
		if p != keeper.PlatformROCm && errors.Is(err, cuda.ErrNoLibrary) {
			l, nerr := fromNVML(os.LookupEnv)
			if nerr == nil {
				return l, nil
			}
			if noDevice(err) {
				return List{GPUs: []GPU{}, Note: err.Error()}, nil
			}
			return List{}, fmt.Errorf("%w; and %w", err, nerr)
		}
		if noDevice(err) {
			return List{GPUs: []GPU{}, Note: err.Error()}, nil
		}
		return List{}, err
	}
	l := List{GPUs: make([]GPU, 0, len(d.GPUs))}
	tel, err := d.OpenTelemetry()
	if err != nil {
		l.Note = "no readings: " + err.Error()
	} else {
		defer tel.Close()
	}
	for _, info := range d.GPUs {
		g := GPU{ID: info.Ordinal, VisibleID: info.Ordinal, Platform: string(d.Platform), UUID: info.UUID, Name: info.Name, Processes: []Process{}}
		if tel != nil {
			if s, err := tel.Sample(info.UUID); err == nil {
				fill(&g, s)
			} else if l.Note == "" {
				l.Note = fmt.Sprintf("gpu %d (%s): no readings: %v", info.Ordinal, info.UUID, err)
			}
		}
		l.GPUs = append(l.GPUs, g)
	}
	return l, nil
}

// noDevice reports whether err is a runtime's word that it sees no GPU.
func noDevice(err error) bool {
	return errors.Is(err, cuda.ErrorNoDevice) || errors.Is(err, hip.ErrorNoDevice)
}

// fill copies a sample's readings into g.
func fill(g *GPU, s nvml.Sample) {
	if s.Index >= 0 {
		i := s.Index
		g.PhysicalID = &i
	}
	if s.Name != "" {
		g.Name = s.Name
	}
	g.MIG = s.MIG
	if s.MemErr == nil {
		g.MemoryTotal, g.MemoryUsed = &s.MemTotal, &s.MemUsed
	}
	if s.UtilErr == nil {
		g.Utilization = &s.Util
	}
	if s.ModeErr == nil {
		m := computeModes[s.ComputeMode]
		g.ComputeMode = &m
	}
	if s.PowerErr == nil {
		g.PowerMW = &s.PowerMW
	}
	for _, p := range s.Procs {
		g.Processes = append(g.Processes, Process{PID: p.PID, MemoryUsed: p.Bytes})
	}
}

// fromNVML lists NVML's GPUs numbered by CUDA_VISIBLE_DEVICES' rules (see
// Local), for a node where libcuda cannot be loaded.
func fromNVML(getenv func(string) (string, bool)) (List, error) {
	nv, err := nvml.Open()
	if err != nil {
		return List{}, err
	}
	defer nv.Close()
	samples, err := nv.Samples()
	if err != nil {
		return List{}, err
	}
	l := List{GPUs: []GPU{}, Note: "libcuda.so.1 not found: ids are NVML's GPUs numbered by keepgpu after CUDA_VISIBLE_DEVICES, in PCI bus order"}
	for i, idx := range visibleNVML(samples, getenv) {
		s := samples[idx]
		g := GPU{ID: i, VisibleID: i, Platform: string(keeper.PlatformCUDA), UUID: s.UUID, Processes: []Process{}}
		fill(&g, s)
		l.GPUs = append(l.GPUs, g)
	}
	return l, nil
}

// visibleNVML returns the indices into samples that CUDA_VISIBLE_DEVICES
// selects, in its order: all when it is unset, none when it is empty;
// entries are NVML indices, UUIDs or unique UUID prefixes, and the list
// ends at the first entry that is none of those, out of range, or a
// repeat, as the driver reads it.
func visibleNVML(samples []nvml.Sample, getenv func(string) (string, bool)) []int {
	v, ok := getenv("CUDA_VISIBLE_DEVICES")
	if !ok {
		out := make([]int, len(samples))
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := []int{}
	seen := map[int]bool{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		pick := -1
		if n, err := strconv.ParseUint(e, 10, 31); err == nil {
			if int(n) < len(samples) {
				pick = int(n)
			}
		} else if len(e) > 4 && (strings.HasPrefix(strings.ToUpper(e), "GPU-") || strings.HasPrefix(strings.ToUpper(e), "MIG-")) {
			for i, s := range samples {
				if strings.HasPrefix(strings.ToLower(s.UUID), strings.ToLower(e)) {
					if pick >= 0 {
						pick = -1 // ambiguous
						break
					}
					pick = i
				}
			}
		}
		if pick < 0 || seen[pick] {
			break
		}
		seen[pick] = true
		out = append(out, pick)
	}
	return out
}

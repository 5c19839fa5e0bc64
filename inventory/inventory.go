// Package inventory lists a node's GPUs as NVML shows them: memory,
// utilization, compute mode and compute processes. It needs no CUDA.
package inventory

import "github.com/keepgpu/keepgpu/nvml"

// GPU is one GPU as `keepgpu list-gpus --json` and the service's list_gpus
// show it: id, platform, name, memory and utilization keep KeepGPU's
// names; a reading the driver cannot give is null.
type GPU struct {
	ID          int       `json:"id"` // NVML index: the node's numbering
	Platform    string    `json:"platform"`
	UUID        string    `json:"uuid"`
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
// Error says why there are no GPUs to show when NVML cannot be read (no
// driver, for one).
type List struct {
	GPUs  []GPU  `json:"gpus"`
	Error string `json:"error,omitempty"`
}

var computeModes = map[int]string{0: "default", 1: "exclusive-thread", 2: "prohibited", 3: "exclusive-process"}

// Local reads the GPUs through NVML in this process: it loads
// libnvidia-ml.so.1 (never libcuda) and shuts it down again.
func Local() ([]GPU, error) {
	nv, err := nvml.Open()
	if err != nil {
		return nil, err
	}
	defer nv.Close()
	samples, err := nv.Samples()
	if err != nil {
		return nil, err
	}
	gpus := make([]GPU, 0, len(samples))
	for _, s := range samples {
		g := GPU{ID: s.Index, Platform: "cuda", UUID: s.UUID, Name: s.Name, MIG: s.MIG, Processes: []Process{}}
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
		gpus = append(gpus, g)
	}
	return gpus, nil
}

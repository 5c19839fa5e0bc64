package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/keepgpu/keepgpu/cuda"
)

// ListGPUsCmd lists the node's GPUs as NVML shows them; it needs no CUDA.
type ListGPUsCmd struct {
	JSON bool `name:"json" help:"Print JSON for scripts."`
}

// gpuJSON is one GPU in `list-gpus --json`; id, platform, name, memory and
// utilization keep KeepGPU's names.
type gpuJSON struct {
	ID          int            `json:"id"`
	Platform    string         `json:"platform"`
	UUID        string         `json:"uuid"`
	Name        string         `json:"name"`
	MemoryTotal *uint64        `json:"memory_total"`
	MemoryUsed  *uint64        `json:"memory_used"`
	Utilization *int           `json:"utilization"`
	ComputeMode *string        `json:"compute_mode"`
	MIG         bool           `json:"mig"`
	PowerMW     *int           `json:"power_mw"`
	Processes   []cuda.Process `json:"processes"`
}

var computeModes = map[int]string{0: "default", 1: "exclusive-thread", 2: "prohibited", 3: "exclusive-process"}

// Run prints the table or the JSON.
func (c *ListGPUsCmd) Run(io *stdio) error {
	nv, err := cuda.OpenNVML()
	if err != nil {
		return err
	}
	defer nv.Close()
	samples, err := nv.Samples()
	if err != nil {
		return err
	}
	gpus := make([]gpuJSON, 0, len(samples))
	for _, s := range samples {
		g := gpuJSON{ID: s.Index, Platform: "cuda", UUID: s.UUID, Name: s.Name, MIG: s.MIG, Processes: s.Procs}
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
		if g.Processes == nil {
			g.Processes = []cuda.Process{}
		}
		gpus = append(gpus, g)
	}
	if c.JSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"gpus": gpus})
	}
	if len(gpus) == 0 {
		fmt.Fprintln(io.out, "no GPU on this node")
		return nil
	}
	tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tUUID\tNAME\tMEMORY USED / TOTAL\tUTIL\tMODE\tPROCESSES")
	for _, g := range gpus {
		mem, util, mode := "n/a", "n/a", "n/a"
		if g.MemoryTotal != nil {
			mem = cuda.FormatBytes(*g.MemoryUsed) + " / " + cuda.FormatBytes(*g.MemoryTotal)
		}
		if g.Utilization != nil {
			util = fmt.Sprintf("%d%%", *g.Utilization)
		}
		if g.ComputeMode != nil {
			mode = *g.ComputeMode
		}
		if g.MIG {
			mode += ",mig"
		}
		procs := make([]string, 0, len(g.Processes))
		for _, p := range g.Processes {
			procs = append(procs, fmt.Sprintf("%d (%s)", p.PID, cuda.FormatBytes(p.Bytes)))
		}
		if len(procs) == 0 {
			procs = append(procs, "-")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.UUID, g.Name, mem, util, mode, strings.Join(procs, ", "))
	}
	return tw.Flush()
}

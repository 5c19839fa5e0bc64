package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/inventory"
	"github.com/keepgpu/keepgpu/service"
)

// ListGPUsCmd lists the node's GPUs as NVML shows them; it needs no CUDA.
// When the user's service runs, it answers (and says which processes are
// its sessions, and whose the others are).
type ListGPUsCmd struct {
	serviceFlags
	JSON  bool `name:"json" help:"Print JSON for scripts."`
	Local bool `name:"local" hidden:"" env:"-" help:"Read NVML in this process even when the service runs."`
}

// Run prints the table or the JSON.
func (c *ListGPUsCmd) Run(io *stdio) error {
	gpus, err := c.fromService()
	if gpus == nil && err == nil {
		gpus, err = inventory.Local()
	}
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(inventory.List{GPUs: gpus})
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
			who := ""
			if p.JobID != "" {
				who = ", keepgpu session " + p.JobID
			} else if p.Command != "" {
				who = ", " + p.Command + " (" + p.User + ")"
			}
			procs = append(procs, fmt.Sprintf("%d (%s%s)", p.PID, cuda.FormatBytes(p.MemoryUsed), who))
		}
		if len(procs) == 0 {
			procs = append(procs, "-")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.UUID, g.Name, mem, util, mode, strings.Join(procs, ", "))
	}
	return tw.Flush()
}

// fromService asks the user's running service for the GPUs; nil, nil when
// none runs (or --local).
func (c *ListGPUsCmd) fromService() ([]inventory.GPU, error) {
	if c.Local {
		return nil, nil
	}
	t, err := c.target()
	var u usageError
	if errors.As(err, &u) {
		return nil, err // a bad --host, --port or --listen
	}
	if err != nil {
		return nil, nil // no runtime dir: no service of the user's to ask
	}
	cl, err := service.Connect(context.Background(), t)
	if err != nil {
		return nil, nil // none of the user's: read NVML here
	}
	var r service.GPUList
	if err := cl.Call(context.Background(), "list_gpus", nil, &r); err != nil {
		return nil, err
	}
	if len(r.GPUs) == 0 && r.Error != "" {
		return nil, errors.New(r.Error)
	}
	return r.GPUs, nil
}

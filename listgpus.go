package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/inventory"
	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/service"
)

// ListGPUsCmd lists the GPUs this process can select, by the ids --gpus
// takes, with what NVML or ROCm SMI shows of each (see inventory.Local).
// When the user's service runs, it answers (and says which processes are
// its sessions, and whose the others are).
type ListGPUsCmd struct {
	serviceFlags
	JSON     bool            `name:"json" help:"Print JSON for scripts."`
	Platform keeper.Platform `name:"platform" default:"auto" env:"KEEPGPU_PLATFORM,KEEP_GPU_PLATFORM" placeholder:"auto|cuda|rocm" help:"Whose GPUs to list: cuda (NVIDIA), rocm (AMD), or auto: CUDA's if the driver shows any, else ROCm's."`
	Local    bool            `name:"local" hidden:"" env:"-" help:"Read the GPUs in this process even when the service runs."`
}

// Run prints the table or the JSON.
func (c *ListGPUsCmd) Run(io *stdio) error {
	l, ok, err := c.fromService()
	if !ok && err == nil {
		l, err = inventory.Local(c.Platform)
	}
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(l)
	}
	if len(l.GPUs) == 0 {
		if l.Note != "" {
			fmt.Fprintf(io.out, "no GPU: %s\n", l.Note)
		} else {
			fmt.Fprintln(io.out, "no GPU on this node")
		}
		return nil
	}
	if l.Note != "" {
		fmt.Fprintf(io.err, "keepgpu: note: %s\n", l.Note)
	}
	tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPHYSICAL\tUUID\tNAME\tMEMORY USED / TOTAL\tUTIL\tMODE\tPROCESSES")
	for _, g := range l.GPUs {
		phys, mem, util, mode := "-", "n/a", "n/a", "n/a"
		if g.PhysicalID != nil {
			phys = strconv.Itoa(*g.PhysicalID)
		}
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
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, phys, g.UUID, g.Name, mem, util, mode, strings.Join(procs, ", "))
	}
	return tw.Flush()
}

// fromService asks the user's running service for the GPUs; ok is false
// when none runs (or --local), when its holders see other visibility
// variables (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, ...) than this
// process, whose ids would then not be the ones --gpus takes here, or when
// it answers for another platform than the one --platform names: the list
// is then read here.
func (c *ListGPUsCmd) fromService() (l inventory.List, ok bool, err error) {
	if c.Local {
		return l, false, nil
	}
	t, err := c.target()
	var u usageError
	if errors.As(err, &u) {
		return l, false, err // a bad --host, --port or --listen
	}
	if err != nil {
		return l, false, nil // no runtime dir: no service of the user's to ask
	}
	cl, err := service.Connect(context.Background(), t)
	if err != nil {
		return l, false, nil // none of the user's: read the GPUs here
	}
	if h, err := cl.Health(context.Background()); err != nil || !sameVisibility(h) {
		return l, false, nil
	}
	if err := cl.Call(context.Background(), "list_gpus", nil, &l); err != nil {
		return l, false, err
	}
	if len(l.GPUs) == 0 && l.Error != "" {
		return l, false, errors.New(l.Error)
	}
	if c.Platform != keeper.PlatformAuto && c.Platform != "" {
		for _, g := range l.GPUs {
			if g.Platform != string(c.Platform) {
				return inventory.List{}, false, nil
			}
		}
		if len(l.GPUs) == 0 {
			return inventory.List{}, false, nil
		}
	}
	return l, true, nil
}

// sameVisibility reports whether the service's holders see the GPUs as
// this process does: the same visibility variables, set or unset alike.
func sameVisibility(h service.Health) bool {
	if h.VisibleDevices == nil {
		return false // a service that does not say
	}
	for _, k := range service.VisibilityVars {
		mine, set := os.LookupEnv(k)
		theirs, ok := h.VisibleDevices[k]
		if set != ok || mine != theirs {
			return false
		}
	}
	return true
}

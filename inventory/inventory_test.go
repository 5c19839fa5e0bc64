package inventory

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
	"github.com/keepgpu/keepgpu/keeper"
)

// The test binary doubles as a process that lists the GPUs of the fake
// node in its environment (INVENTORY_TEST=platform): the fake libraries
// must be on LD_LIBRARY_PATH when a process starts.
func TestMain(m *testing.M) {
	if p := os.Getenv("INVENTORY_TEST"); p != "" {
		l, err := Local(keeper.Platform(p))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(l)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// local runs Local(auto) in a child on node, with the environment
// entries env after the node's.
func local(t *testing.T, node *fakegpu.Node, env ...string) (List, string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(append(os.Environ(), node.Env()...), "INVENTORY_TEST=auto"), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var l List
	if err == nil {
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
	}
	return l, stderr.String(), err
}

// TestLocal lists a fake node's GPUs as NVML shows them: memory, a
// utilization NVML cannot read as null, compute mode, MIG and processes.
func TestLocal(t *testing.T) {
	node, err := fakegpu.NewNode(t.TempDir(), t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Configure(0, fakegpu.GPU{Name: "Fake A", Total: 80 << 30}); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"util", "na"}, {"compute_mode", "3"}, {"mig", "1"}} {
		if err := node.Set(1, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := node.AddProcess(0, os.Getpid(), 1<<30); err != nil {
		t.Fatal(err)
	}
	l, stderr, err := local(t, node)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if len(l.GPUs) != 2 {
		t.Fatalf("%d GPUs; want 2: %+v", len(l.GPUs), l)
	}
	g0, g1 := l.GPUs[0], l.GPUs[1]
	if g0.ID != 0 || g0.VisibleID != 0 || g0.PhysicalID == nil || *g0.PhysicalID != 0 || g0.Platform != "cuda" || g0.Name != "Fake A" || g0.UUID != node.UUID(0) {
		t.Errorf("gpu 0: %+v", g0)
	}
	if g0.MemoryTotal == nil || *g0.MemoryTotal != 80<<30 || g0.MemoryUsed == nil || *g0.MemoryUsed < 1<<30 {
		t.Errorf("gpu 0 memory: %v of %v", g0.MemoryUsed, g0.MemoryTotal)
	}
	if g0.Utilization == nil || g0.ComputeMode == nil || *g0.ComputeMode != "default" || g0.MIG {
		t.Errorf("gpu 0: utilization %v, mode %v, mig %v", g0.Utilization, g0.ComputeMode, g0.MIG)
	}
	if len(g0.Processes) != 1 || g0.Processes[0] != (Process{PID: os.Getpid(), MemoryUsed: 1 << 30}) {
		t.Errorf("gpu 0 processes: %+v", g0.Processes)
	}
	if g1.ID != 1 || g1.Utilization != nil || g1.ComputeMode == nil || *g1.ComputeMode != "exclusive-process" || !g1.MIG {
		t.Errorf("gpu 1: utilization %v, mode %v, mig %v", g1.Utilization, g1.ComputeMode, g1.MIG)
	}
	if g1.Processes == nil || len(g1.Processes) != 0 {
		t.Errorf("gpu 1 processes: %#v; want an empty list", g1.Processes)
	}
}

// TestLocalNoNVML lists what the driver shows when NVML does not
// initialise, with null readings and a note that says why.
func TestLocalNoNVML(t *testing.T) {
	node, err := fakegpu.NewNode(t.TempDir(), t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.SetInitError("nvml", 9); err != nil { // NVML_ERROR_DRIVER_NOT_LOADED
		t.Fatal(err)
	}
	l, stderr, err := local(t, node)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if len(l.GPUs) != 1 || l.GPUs[0].UUID != node.UUID(0) || l.GPUs[0].PhysicalID != nil || l.GPUs[0].MemoryTotal != nil ||
		!strings.Contains(l.Note, "no readings: nvml") {
		t.Errorf("Local with a failing NVML: %+v; want the GPU, no readings, and why", l)
	}
	node.ClearInitError("nvml")
	node.SetInitError("cuda", 100) // CUDA_ERROR_NO_DEVICE
	if l, stderr, err := local(t, node); err != nil || len(l.GPUs) != 0 || !strings.Contains(l.Note, "CUDA_ERROR_NO_DEVICE") {
		t.Errorf("Local with a driver that sees no GPU: %+v, %v, %s; want an empty list and the driver's word", l, err, stderr)
	}
	node.SetInitError("cuda", 999)
	if _, stderr, err := local(t, node); err == nil || !strings.Contains(stderr, "CUDA_ERROR_UNKNOWN") {
		t.Errorf("Local with a failing driver: %v, %s; want the error", err, stderr)
	}
}

// TestLocalVisible numbers the GPUs as --gpus does, after
// CUDA_VISIBLE_DEVICES (indices, UUIDs, unique UUID prefixes), with
// NVML's index beside: through the driver, and through NVML alone where
// libcuda is missing.
func TestLocalVisible(t *testing.T) {
	node, err := fakegpu.NewNode(t.TempDir(), t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	uuids := []string{"GPU-aaaaaaaa-0000-4000-8000-000000000000", "GPU-bbbbbbbb-0000-4000-8000-000000000001", "GPU-bbbbcccc-0000-4000-8000-000000000002"}
	for i, u := range uuids {
		node.Configure(i, fakegpu.GPU{UUID: u})
	}
	nvmlOnly := t.TempDir()
	if err := fakegpu.BuildNVML(nvmlOnly); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		visible string
		phys    []int
	}{
		{"1", []int{1}},
		{"2,0", []int{2, 0}},
		{"GPU-bbbbc,GPU-aaaaaaaa-0000-4000-8000-000000000000", []int{2, 0}},
		{"0,GPU-bbbb,2", []int{0}}, // an ambiguous prefix ends the list
		{"1,1", []int{1}},
		{"", nil},
	} {
		for _, lib := range []string{"driver", "nvml"} {
			t.Run(lib+"/"+tt.visible, func(t *testing.T) {
				env := []string{"CUDA_VISIBLE_DEVICES=" + tt.visible}
				if lib == "nvml" {
					env = append(env, "LD_LIBRARY_PATH="+nvmlOnly)
				}
				l, stderr, err := local(t, node, env...)
				if len(tt.phys) == 0 {
					if err != nil && lib == "driver" && strings.Contains(stderr, "CUDA_ERROR_NO_DEVICE") {
						return // the driver sees none
					}
					if err != nil || len(l.GPUs) != 0 {
						t.Errorf("%+v, %v, %s; want no GPU", l, err, stderr)
					}
					return
				}
				if err != nil {
					t.Fatalf("%v: %s", err, stderr)
				}
				if len(l.GPUs) != len(tt.phys) {
					t.Fatalf("%+v; want physical GPUs %v", l.GPUs, tt.phys)
				}
				for i, g := range l.GPUs {
					if g.ID != i || g.VisibleID != i || g.PhysicalID == nil || *g.PhysicalID != tt.phys[i] || g.UUID != uuids[tt.phys[i]] {
						t.Errorf("gpu %d: %+v; want physical %d", i, g, tt.phys[i])
					}
				}
				if (lib == "nvml") != strings.Contains(l.Note, "libcuda.so.1 not found") {
					t.Errorf("note %q", l.Note)
				}
			})
		}
	}
}

// TestLocalROCm lists a fake AMD node's GPUs as HIP numbers them after
// ROCR_VISIBLE_DEVICES and HIP_VISIBLE_DEVICES, with ROCm SMI's index and
// readings, platform rocm.
func TestLocalROCm(t *testing.T) {
	node, err := fakegpu.NewROCmNode(t.TempDir(), t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	node.Set(2, "util", "40")
	if err := node.AddProcess(2, os.Getpid(), 1<<30); err != nil {
		t.Fatal(err)
	}
	l, stderr, err := local(t, node, "LD_LIBRARY_PATH="+node.LibDir, "ROCR_VISIBLE_DEVICES=2,1", "HIP_VISIBLE_DEVICES=0")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if len(l.GPUs) != 1 || l.Note != "" {
		t.Fatalf("%+v; want one GPU", l)
	}
	g := l.GPUs[0]
	if g.ID != 0 || g.PhysicalID == nil || *g.PhysicalID != 2 || g.Platform != "rocm" || g.UUID != node.AMDUUID(2) ||
		g.Utilization == nil || *g.Utilization != 40 || len(g.Processes) != 1 || g.Processes[0].PID != os.Getpid() {
		t.Errorf("%+v; want physical GPU 2, 40%% busy, this process on it", g)
	}

	if _, err := fakegpu.NewROCmNode(node.Dir, "", 0); err != nil {
		t.Fatal(err)
	}
	l, stderr, err = local(t, node, "LD_LIBRARY_PATH="+node.LibDir)
	if err != nil || len(l.GPUs) != 0 || !strings.Contains(l.Note, "no AMD GPU") || !strings.Contains(l.Note, "hipErrorNoDevice") {
		t.Errorf("no AMD GPU: %+v, %v, %s; want an empty list that says so", l, err, stderr)
	}
}

package inventory

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// The test binary doubles as a process that lists the GPUs of the fake
// node in its environment (INVENTORY_TEST=1): the fake libnvidia-ml.so.1
// must be on LD_LIBRARY_PATH when a process starts.
func TestMain(m *testing.M) {
	if os.Getenv("INVENTORY_TEST") != "" {
		gpus, err := Local()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(List{GPUs: gpus})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// local runs Local in a child on node.
func local(t *testing.T, node *fakegpu.Node) (List, string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), node.Env()...), "INVENTORY_TEST=1")
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
	if g0.ID != 0 || g0.Platform != "cuda" || g0.Name != "Fake A" || g0.UUID != node.UUID(0) {
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

// TestLocalNoNVML reports an NVML that does not initialise.
func TestLocalNoNVML(t *testing.T) {
	node, err := fakegpu.NewNode(t.TempDir(), t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.SetInitError("nvml", 9); err != nil { // NVML_ERROR_DRIVER_NOT_LOADED
		t.Fatal(err)
	}
	if _, stderr, err := local(t, node); err == nil || !strings.Contains(stderr, "nvml") {
		t.Fatalf("Local with a failing NVML: %v, %q; want an error about NVML", err, stderr)
	}
}

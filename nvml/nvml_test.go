package nvml

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

func TestErrorWording(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"library wording", &Error{Op: "nvmlInit", Code: ErrorDriverNotLoaded, Text: "Driver Not Loaded"}, "nvmlInit: Driver Not Loaded (NVML 9)"},
		{"table wording", &Error{Op: "nvmlDeviceGetMemoryInfo_v2 GPU-1", Code: ErrorNotSupported}, "nvmlDeviceGetMemoryInfo_v2 GPU-1: Not Supported (NVML 3)"},
		{"unknown code", &Error{Op: "nvmlShutdown", Code: 12345}, "nvmlShutdown: NVML error 12345 (NVML 12345)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			wrapped := errors.Join(errors.New("gpu 1"), tt.err)
			if !errors.Is(wrapped, tt.err.Code) || errors.Is(wrapped, Return(777)) {
				t.Error("errors.Is does not match return codes")
			}
		})
	}
}

// TestLoadErrors loads libraries that are not there or lack symbols: each
// is an ordinary error that names what is wrong, never a crash.
func TestLoadErrors(t *testing.T) {
	if _, err := open(filepath.Join(t.TempDir(), LibraryName)); !errors.Is(err, ErrNoLibrary) {
		t.Errorf("missing library: %v; want ErrNoLibrary", err)
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "partial.c")
	os.WriteFile(src, []byte("int nvmlInit(void) { return 0; }\nint nvmlShutdown(void) { return 0; }\n"), 0o644)
	lib := filepath.Join(dir, "libpartial.so")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	_, err = open(lib)
	if err == nil {
		t.Fatal("a library without NVML's symbols loaded")
	}
	for _, want := range []string{lib, "missing symbols", "nvmlDeviceGetCount_v2 or nvmlDeviceGetCount",
		"nvmlDeviceGetComputeRunningProcesses_v3 or nvmlDeviceGetComputeRunningProcesses_v2 or nvmlDeviceGetComputeRunningProcesses"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	for _, have := range []string{"nvmlInit", "nvmlShutdown", "nvmlErrorString", "nvmlDeviceGetPowerUsage"} {
		if strings.Contains(err.Error(), have+",") || strings.HasSuffix(err.Error(), have) {
			t.Errorf("error %q names %s, which the library has or which is optional", err, have)
		}
	}
}

// newNode builds a fake node with one GPU and a libnvidia-ml.so.1 without
// the symbols in hide, and returns it with the library's path.
func newNode(t *testing.T, hide ...string) (*fakegpu.Node, string) {
	t.Helper()
	node, err := fakegpu.NewNode(t.TempDir(), "", 1)
	if err != nil {
		t.Fatal(err)
	}
	libDir := t.TempDir()
	if err := fakegpu.BuildNVML(libDir, hide...); err != nil {
		t.Skipf("fake NVML: %v", err)
	}
	t.Setenv("FAKEGPU_DIR", node.Dir)
	return node, filepath.Join(libDir, fakegpu.NVMLLib)
}

// TestFallbacks loads fake libraries that lack the newer entry points, as
// older drivers do, and checks that each call falls back to the older name
// with its own struct layout and that every reading still comes through.
func TestFallbacks(t *testing.T) {
	const reserved = 64 << 20 // what the driver keeps; only the _v2 memory call counts it
	tests := []struct {
		name     string
		hide     []string
		resolved []string // names that must have been picked
		absent   []string // names that must not have been
		reserved uint64   // counted in used memory
		optional bool     // process utilization, MIG and power readable
	}{
		{
			name:     "newest",
			resolved: []string{"nvmlInit_v2", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetComputeRunningProcesses_v3", "nvmlErrorString"},
			reserved: reserved,
			optional: true,
		},
		{
			name:     "processes v2",
			hide:     []string{"nvmlDeviceGetComputeRunningProcesses_v3"},
			resolved: []string{"nvmlDeviceGetComputeRunningProcesses_v2"},
			absent:   []string{"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses"},
			reserved: reserved,
			optional: true,
		},
		{
			name:     "processes v1",
			hide:     []string{"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"},
			resolved: []string{"nvmlDeviceGetComputeRunningProcesses"},
			absent:   []string{"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"},
			reserved: reserved,
			optional: true,
		},
		{
			name:     "memory v1",
			hide:     []string{"nvmlDeviceGetMemoryInfo_v2"},
			resolved: []string{"nvmlDeviceGetMemoryInfo"},
			absent:   []string{"nvmlDeviceGetMemoryInfo_v2"},
			optional: true,
		},
		{
			name:     "unversioned init, count and handle",
			hide:     []string{"nvmlInit_v2", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2"},
			resolved: []string{"nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex"},
			absent:   []string{"nvmlInit_v2", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2"},
			reserved: reserved,
			optional: true,
		},
		{
			name:     "oldest",
			hide:     fakegpu.HideableNVML,
			resolved: []string{"nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses"},
			absent:   fakegpu.HideableNVML,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, lib := newNode(t, tt.hide...)
			node.Set(0, "total", "8589934592")
			node.Set(0, "power", "50000")
			node.Set(0, "util", "7")
			node.Set(0, "reserved", "67108864")
			// Two processes: the second element of an array shows whether
			// the library and keepgpu agree on the element's layout.
			var want []Process
			for i := 1; i <= 2; i++ {
				sleeper := exec.Command("sleep", "60")
				if err := sleeper.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
				want = append(want, Process{PID: sleeper.Process.Pid, Bytes: uint64(i) << 30})
				if err := node.AddProcess(0, sleeper.Process.Pid, uint64(i)<<30); err != nil {
					t.Fatal(err)
				}
			}

			n, err := open(lib)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			for _, sym := range tt.resolved {
				if !slices.Contains(n.resolved, sym) {
					t.Errorf("%s not used; resolved %v", sym, n.resolved)
				}
			}
			for _, sym := range tt.absent {
				if slices.Contains(n.resolved, sym) {
					t.Errorf("%s used, but the library should lack it", sym)
				}
			}

			// The wording comes from the library's nvmlErrorString, and
			// from keepgpu's table without it.
			if fromLib := n.err("op", ErrorNotSupported).Text == "Not Supported"; fromLib == slices.Contains(tt.hide, "nvmlErrorString") {
				t.Errorf("wording from nvmlErrorString: %v; library has it: %v", fromLib, !fromLib)
			}

			samples, err := n.Samples()
			if err != nil {
				t.Fatal(err)
			}
			if len(samples) != 1 {
				t.Fatalf("Samples() = %d GPUs, want 1", len(samples))
			}
			s := samples[0]
			if s.Index != 0 || s.UUID != node.UUID(0) || s.Name == "" {
				t.Errorf("identity %d %q %q", s.Index, s.UUID, s.Name)
			}
			if s.MemErr != nil || s.MemTotal != 8<<30 || s.MemUsed != 3<<30+tt.reserved {
				t.Errorf("memory %d / %d, %v; want %d / %d", s.MemUsed, s.MemTotal, s.MemErr, 3<<30+tt.reserved, 8<<30)
			}
			slices.SortFunc(s.Procs, func(a, b Process) int { return int(a.Bytes>>20) - int(b.Bytes>>20) })
			if s.ProcsErr != nil || !slices.Equal(s.Procs, want) {
				t.Errorf("processes %+v, %v; want %+v", s.Procs, s.ProcsErr, want)
			}
			if s.UtilErr != nil || s.Util != 7 {
				t.Errorf("utilization %d, %v; want 7", s.Util, s.UtilErr)
			}
			if s.ModeErr != nil || s.ComputeMode != ComputeDefault {
				t.Errorf("compute mode %d, %v", s.ComputeMode, s.ModeErr)
			}
			if tt.optional {
				if s.PowerErr != nil || s.PowerMW != 50000 {
					t.Errorf("power %d, %v; want 50000", s.PowerMW, s.PowerErr)
				}
				if _, ok := s.ProcUtil[want[1].PID]; s.ProcUtilErr != nil || len(s.ProcUtil) != 2 || !ok {
					t.Errorf("process utilization %v, %v", s.ProcUtil, s.ProcUtilErr)
				}
			} else {
				for what, err := range map[string]error{"power": s.PowerErr, "process utilization": s.ProcUtilErr} {
					if !errors.Is(err, ErrorFunctionNotFound) || !strings.Contains(err.Error(), "Function Not Found (NVML 13)") {
						t.Errorf("%s without its call: %v", what, err)
					}
				}
			}
			if procs, err := n.Processes(node.UUID(0)); err != nil || len(procs) != 2 {
				t.Errorf("Processes() = %+v, %v", procs, err)
			}
		})
	}
}

// TestInitError: nvmlInit's failure carries the library's wording.
func TestInitError(t *testing.T) {
	node, lib := newNode(t)
	if err := node.SetInitError("nvml", int(ErrorDriverNotLoaded)); err != nil {
		t.Fatal(err)
	}
	_, err := open(lib)
	if !errors.Is(err, ErrorDriverNotLoaded) || err.Error() != "nvmlInit: Driver Not Loaded (NVML 9)" {
		t.Fatalf("open = %v", err)
	}
}

// TestTwoCallGrowth drives the two-call APIs with a library whose count
// grows between calls: keepgpu asks again with a larger buffer, a bounded
// number of times.
func TestTwoCallGrowth(t *testing.T) {
	tests := []struct {
		name   string
		grows  int // how many calls find more elements than the buffer holds
		tries  int // calls made
		failed bool
	}{
		{name: "fits", grows: 0, tries: 1},
		{name: "grows once", grows: 1, tries: 2},
		{name: "grows every time", grows: 1000, tries: maxTries, failed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls, utilCalls := 0, 0
			// need is how many elements there are at a call: always more
			// than the buffer while the list grows.
			need := func(have uint32, call int) uint32 {
				if call <= tt.grows {
					return have + 3
				}
				return 5
			}
			n := &NVML{lastSeen: map[string]uint64{}}
			n.procsVersion = 3
			n.deviceGetComputeRunningProcesses = func(_ device, count *uint32, infos unsafe.Pointer) Return {
				calls++
				k := need(*count, calls)
				if *count < k {
					*count = k
					return ErrorInsufficientSize
				}
				buf := unsafe.Slice((*processInfoV2)(infos), k)
				for i := range buf {
					buf[i] = processInfoV2{PID: uint32(100 + i), UsedGPUMemory: 1}
				}
				*count = k
				return Success
			}
			n.deviceGetProcessUtilization = func(_ device, samples *processUtilizationSample, count *uint32, _ uint64) Return {
				utilCalls++
				k := need(*count, utilCalls)
				if *count < k {
					*count = k
					return ErrorInsufficientSize
				}
				buf := unsafe.Slice(samples, k)
				for i := range buf {
					buf[i] = processUtilizationSample{PID: uint32(100 + i), SMUtil: 10, TimeStamp: 42}
				}
				*count = k
				return Success
			}
			procs, err := n.processes(0, "GPU-x")
			util, uerr := n.processUtil(0, "GPU-x")
			if calls != tt.tries || utilCalls != tt.tries {
				t.Errorf("%d and %d calls, want %d", calls, utilCalls, tt.tries)
			}
			if tt.failed {
				if !errors.Is(err, errChanging) || !errors.Is(uerr, errChanging) {
					t.Errorf("errors %v, %v; want %v", err, uerr, errChanging)
				}
				return
			}
			if err != nil || len(procs) != 5 || procs[4].PID != 104 {
				t.Errorf("processes %+v, %v", procs, err)
			}
			if uerr != nil || len(util) != 5 || util[104] != 10 || n.lastSeen["GPU-x"] != 42 {
				t.Errorf("process utilization %v, %v", util, uerr)
			}
		})
	}
}

// TestProcessUtilizationEmpty: a count of zero with
// NVML_ERROR_INSUFFICIENT_SIZE, NVML's answer to a count query when there
// is nothing to read, is a reading of no process, not a list that grows.
func TestProcessUtilizationEmpty(t *testing.T) {
	calls := 0
	n := &NVML{lastSeen: map[string]uint64{}}
	n.deviceGetProcessUtilization = func(_ device, _ *processUtilizationSample, count *uint32, _ uint64) Return {
		calls++
		*count = 0
		return ErrorInsufficientSize
	}
	if util, err := n.processUtil(0, "GPU-x"); err != nil || len(util) != 0 || util == nil || calls != 1 {
		t.Errorf("processUtil = %v, %v after %d calls; want an empty reading after 1", util, err, calls)
	}
}

// TestTwoCallRace reads a GPU while processes come and go as fast as they
// can, more of them than the first buffer holds: every reading succeeds.
func TestTwoCallRace(t *testing.T) {
	node, lib := newNode(t)
	n, err := open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var pids []int
	for i := 0; i < 20; i++ {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		pids = append(pids, cmd.Process.Pid)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pid := pids[i%len(pids)]
			if i/len(pids)%2 == 0 {
				node.AddProcess(0, pid, 1<<20)
			} else {
				node.RemoveProcess(0, pid)
			}
		}
	}()
	for i := 0; i < 1000; i++ {
		s, err := n.Sample(node.UUID(0))
		if err != nil {
			t.Fatal(err)
		}
		if s.ProcsErr != nil || s.ProcUtilErr != nil {
			t.Fatalf("reading %d: %v, %v", i, s.ProcsErr, s.ProcUtilErr)
		}
	}
}

// TestMemoryFallback: a library that exports nvmlDeviceGetMemoryInfo_v2
// but refuses it at run time is read with nvmlDeviceGetMemoryInfo; any other
// failure of _v2 is the reading's error.
func TestMemoryFallback(t *testing.T) {
	tests := []struct {
		v2       Return
		used     uint64
		fallback bool
		err      error
	}{
		{v2: Success, used: 2},
		{v2: ErrorArgumentVersionMismatch, used: 1, fallback: true},
		{v2: ErrorFunctionNotFound, used: 1, fallback: true},
		{v2: ErrorNotSupported, used: 1, fallback: true},
		{v2: ErrorGPUIsLost, err: ErrorGPUIsLost},
	}
	for _, tt := range tests {
		t.Run(tt.v2.Error(), func(t *testing.T) {
			v1Called := false
			n := &NVML{}
			n.deviceGetMemoryInfoV2 = func(_ device, m *memoryV2) Return {
				if m.Version != 40|2<<24 {
					t.Errorf("version %#x, want nvmlMemory_v2 %#x", m.Version, 40|2<<24)
				}
				if tt.v2 == Success {
					m.Total, m.Used = 10, 2
				}
				return tt.v2
			}
			n.deviceGetMemoryInfo = func(_ device, m *memoryV1) Return {
				v1Called = true
				m.Total, m.Used = 10, 1
				return Success
			}
			_, used, err := n.memory(0, "GPU-x")
			if v1Called != tt.fallback || used != tt.used || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("used %d, err %v, v1 called %v", used, err, v1Called)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "nvmlDeviceGetMemoryInfo_v2 GPU-x: GPU is lost") {
				t.Errorf("error %q", err)
			}
		})
	}
}

package keeper

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// TestMain doubles as the child process of TestHoldOnAMD and
// TestAMDTelemetryChoice.
func TestMain(m *testing.M) {
	if p, ok := strings.CutPrefix(os.Getenv("KEEPGPU_KEEPER_CHILD"), "telemetry:"); ok {
		os.Exit(telemetryChild(Platform(p)))
	}
	if p := os.Getenv("KEEPGPU_KEEPER_CHILD"); p != "" {
		os.Exit(holdChild(Platform(p)))
	}
	os.Exit(m.Run())
}

// telemetryReport is what telemetryChild prints.
type telemetryReport struct {
	Name, Err, ProcsErr string
	Procs               int
}

// telemetryChild opens the telemetry of the platform's first GPU and
// prints which library it read and what it read.
func telemetryChild(p Platform) int {
	d, err := LoadDriver(p)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	var r telemetryReport
	tel, err := d.OpenTelemetry()
	r.Name = d.TelemetryName()
	if err != nil {
		r.Err = err.Error()
	} else {
		s, err := tel.Sample(d.GPUs[0].UUID)
		if err != nil {
			r.Err = err.Error()
		} else if s.ProcsErr != nil {
			r.ProcsErr = s.ProcsErr.Error()
		}
		r.Procs = len(s.Procs)
		tel.Close()
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// holdChild is Hold on every GPU the platform shows, 1 GiB each at 30%,
// printing the events as JSON lines until its standard input closes, then
// releasing.
func holdChild(p Platform) int {
	out := json.NewEncoder(os.Stdout)
	vram, _ := ParseVRAM("1GiB")
	g, err := Hold(context.Background(), GPUs{All: true}, Options{Platform: p, VRAM: vram, Util: 30,
		BusyThreshold: 25, Interval: 100 * time.Millisecond, Events: func(e Event) { out.Encode(e) }})
	if err != nil {
		out.Encode(Event{Kind: "error", Reason: err.Error()})
		return 1
	}
	io.Copy(io.Discard, os.Stdin)
	if err := g.Release(); err != nil {
		out.Encode(Event{Kind: "error", Reason: err.Error()})
		return 1
	}
	return 0
}

// amdChild starts holdChild on platform p on a fake AMD node (HIP runtime,
// AMD SMI and ROCm SMI, no libcuda) with ROCR_VISIBLE_DEVICES=1.
func amdChild(t *testing.T, node *fakegpu.Node, p Platform) (next func(kind string) Event, in io.WriteCloser, cmd *exec.Cmd) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FAKEGPU_DIR="+node.Dir, "LD_LIBRARY_PATH="+node.LibDir, // the AMD libraries alone
		"KEEPGPU_KEEPER_CHILD="+string(p), "ROCR_VISIBLE_DEVICES=1")
	in, _ = cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	events := make(chan Event, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("child: %s", sc.Text())
				continue
			}
			events <- e
		}
		close(events)
	}()
	next = func(kind string) Event {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("child ended before %q", kind)
				}
				if e.Kind == kind || e.Kind == "error" {
					return e
				}
			case <-timeout:
				t.Fatalf("no %q event", kind)
			}
		}
	}
	return next, in, cmd
}

func amdNode(t *testing.T) *fakegpu.Node {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc to build the fakes")
	}
	node, err := fakegpu.NewROCmNode(t.TempDir(), t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// withoutAMDSMI points node at a library directory without AMD SMI, as
// on ROCm 5.
func withoutAMDSMI(t *testing.T, node *fakegpu.Node) {
	t.Helper()
	dir := t.TempDir()
	if err := fakegpu.BuildROCm(dir, fakegpu.ROCm{NoAMDSMI: true}); err != nil {
		t.Fatal(err)
	}
	node.LibDir = dir
}

// TestHoldOnAMD holds a GPU of a fake AMD node with Hold, in another
// process, as a holder does, with the platform named and with auto: HIP's
// ordinals after ROCR_VISIBLE_DEVICES, the VRAM and the load on the node,
// a foreign process that AMD SMI (or, without it, ROCm SMI) lists pauses
// the load and its end resumes it, and release hands everything back.
func TestHoldOnAMD(t *testing.T) {
	for _, tt := range []struct {
		name     string
		p        Platform
		noAMDSMI bool
	}{
		{"rocm", PlatformROCm, false},
		{"auto", PlatformAuto, false},
		{"rocm without AMD SMI", PlatformROCm, true},
	} {
		p := tt.p
		t.Run(tt.name, func(t *testing.T) {
			node := amdNode(t)
			if tt.noAMDSMI {
				withoutAMDSMI(t, node)
			}
			next, in, cmd := amdChild(t, node, p)
			if e := next("held"); e.UUID != node.AMDUUID(1) || e.GPU != 0 || e.Bytes != 1<<30 {
				t.Fatalf("held %+v; want GPU 1 of the node as ordinal 0, 1 GiB", e)
			}
			var procs []fakegpu.Proc
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				procs, _ = node.Procs(1)
				if len(procs) == 1 && procs[0].Launches > 0 {
					break
				}
			}
			if len(procs) != 1 || procs[0].PID != cmd.Process.Pid || procs[0].Bytes != 1<<30+hip.WorkBytes || procs[0].Launches == 0 {
				t.Errorf("GPU 1 has records %+v; want the holder with 1 GiB + the work buffer, launching", procs)
			}
			if p0, _ := node.Procs(0); len(p0) != 0 {
				t.Errorf("GPU 0, hidden by ROCR_VISIBLE_DEVICES, has records %+v", p0)
			}

			sleep := exec.Command("sleep", "60")
			if err := sleep.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { sleep.Process.Kill(); sleep.Wait() }()
			node.AddProcess(1, sleep.Process.Pid, 2<<30)
			if e := next("paused"); !strings.Contains(e.Reason, fmt.Sprintf("foreign compute process %d", sleep.Process.Pid)) {
				t.Errorf("paused: %+v", e)
			}
			node.RemoveProcess(1, sleep.Process.Pid)
			next("resumed")

			in.Close()
			if e := next("released"); e.Kind != "released" {
				t.Fatalf("release: %+v", e)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("child: %v", err)
			}
			if procs, _ := node.Procs(1); len(procs) != 0 {
				t.Errorf("after release the node sees %+v, want every byte and stream given back", procs)
			}
		})
	}
}

// TestAMDTelemetryChoice: AMD SMI first; ROCm SMI where AMD SMI is
// missing, fails to initialise or is a version keepgpu has not checked;
// that AMD SMI where ROCm SMI fails too, with its unchecked readings
// unknown; both errors where both fail.
func TestAMDTelemetryChoice(t *testing.T) {
	tests := []struct {
		name     string
		lib      *fakegpu.ROCm // nil: the default libraries
		initErr  []string
		want     string
		wantErr  []string
		procsErr string
	}{
		{name: "AMD SMI", want: "AMD SMI"},
		{name: "no AMD SMI", lib: &fakegpu.ROCm{NoAMDSMI: true}, want: "ROCm SMI"},
		{name: "AMD SMI fails", initErr: []string{"amd_smi"}, want: "ROCm SMI"},
		{name: "AMD SMI of an unchecked version", lib: &fakegpu.ROCm{AMDSMIVersion: "0.26.0", AMDSMIYearless: true}, want: "ROCm SMI"},
		{name: "only an unchecked AMD SMI", lib: &fakegpu.ROCm{AMDSMIVersion: "0.26.0", AMDSMIYearless: true}, initErr: []string{"rocm_smi"},
			want: "AMD SMI", procsErr: "struct layouts of this AMD SMI version not checked"},
		{name: "both fail", initErr: []string{"amd_smi", "rocm_smi"}, want: "AMD SMI and ROCm SMI",
			wantErr: []string{"amdsmi_init: AMDSMI_STATUS_INIT_ERROR", "rsmi_init: RSMI_STATUS_INIT_ERROR"}},
		{name: "no AMD SMI, ROCm SMI fails", lib: &fakegpu.ROCm{NoAMDSMI: true}, initErr: []string{"rocm_smi"}, want: "ROCm SMI",
			wantErr: []string{"rsmi_init: RSMI_STATUS_INIT_ERROR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := amdNode(t)
			if tt.lib != nil {
				dir := t.TempDir()
				if err := fakegpu.BuildROCm(dir, *tt.lib); err != nil {
					t.Fatal(err)
				}
				node.LibDir = dir
			}
			for _, lib := range tt.initErr {
				code := 8 // RSMI_STATUS_INIT_ERROR
				if lib == "amd_smi" {
					code = 18 // AMDSMI_STATUS_INIT_ERROR
				}
				node.SetInitError(lib, code)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "FAKEGPU_DIR="+node.Dir, "LD_LIBRARY_PATH="+node.LibDir, "KEEPGPU_KEEPER_CHILD=telemetry:rocm")
			out, err := cmd.Output()
			var r telemetryReport
			if err != nil || json.Unmarshal(out, &r) != nil {
				t.Fatalf("child: %v: %s", err, out)
			}
			if r.Name != tt.want || r.ProcsErr != "" && tt.procsErr == "" || !strings.Contains(r.ProcsErr, tt.procsErr) {
				t.Errorf("read %+v; want %s, process list error %q", r, tt.want, tt.procsErr)
			}
			if len(tt.wantErr) == 0 && r.Err != "" {
				t.Errorf("error %s", r.Err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(r.Err, w) {
					t.Errorf("error %q; want %q in it", r.Err, w)
				}
			}
		})
	}
}

// TestHoldPlatformMissing: CUDA asked for on an AMD node, ROCm asked for
// on a node with no AMD GPU: the runtime's own reason.
func TestHoldPlatformMissing(t *testing.T) {
	node := amdNode(t)
	next, _, _ := amdChild(t, node, PlatformCUDA)
	if e := next("held"); e.Kind != "error" || !strings.Contains(e.Reason, "holding nothing: libcuda.so.1 not found") {
		t.Errorf("cuda on an AMD node: %+v", e)
	}
	if _, err := fakegpu.NewROCmNode(node.Dir, "", 0); err != nil {
		t.Fatal(err)
	}
	next, _, _ = amdChild(t, node, PlatformROCm)
	if e := next("held"); e.Kind != "error" || !strings.Contains(e.Reason, "holding nothing: no AMD GPU: ") || !strings.Contains(e.Reason, "hipErrorNoDevice") {
		t.Errorf("rocm on a node without GPUs: %+v", e)
	}
}

func TestParsePlatform(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{in: "auto", want: "auto"}, {in: "CUDA", want: "cuda"}, {in: " rocm ", want: "rocm"},
		{in: "", err: "empty"}, {in: "macm", err: "NVIDIA (cuda) and AMD (rocm)"}, {in: "hip", err: `platform "hip": want auto, cuda`},
	} {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePlatform(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParsePlatform(%q) = %v, %v; want an error with %q", tt.in, p, err, tt.err)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Errorf("ParsePlatform(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
			}
		})
	}
	if Platform("").String() != "auto" {
		t.Errorf("the zero Platform is %q; want auto", Platform(""))
	}
}

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

// TestMain doubles as the child process of TestHoldOnAMD.
func TestMain(m *testing.M) {
	if p := os.Getenv("KEEPGPU_KEEPER_CHILD"); p != "" {
		os.Exit(holdChild(Platform(p)))
	}
	os.Exit(m.Run())
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

// amdChild starts holdChild on platform p on a fake AMD node (HIP runtime
// and ROCm SMI, no libcuda) with ROCR_VISIBLE_DEVICES=1.
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

// TestHoldOnAMD holds a GPU of a fake AMD node with Hold, in another
// process, as a holder does, with the platform named and with auto: HIP's
// ordinals after ROCR_VISIBLE_DEVICES, the VRAM and the load on the node,
// a foreign process that ROCm SMI lists pauses the load and its end
// resumes it, and release hands everything back.
func TestHoldOnAMD(t *testing.T) {
	for _, p := range []Platform{PlatformROCm, PlatformAuto} {
		t.Run(string(p), func(t *testing.T) {
			node := amdNode(t)
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

package holder

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
	"github.com/keepgpu/keepgpu/keeper"
)

// runHolder runs Run on the fake node of its environment (the fake
// libcuda.so.1 must be on LD_LIBRARY_PATH when a process starts) with
// HOLDER_TEST_SUPERVISED, _MAX_HOLD and _TREE_OF; it exits 0 after a
// release, 3 for ErrReported and 1 for any other error.
func runHolder() int {
	vram, _ := keeper.ParseVRAM("1MiB")
	maxHold, _ := time.ParseDuration(os.Getenv("HOLDER_TEST_MAX_HOLD"))
	treeOf, _ := strconv.Atoi(os.Getenv("HOLDER_TEST_TREE_OF"))
	supervised := os.Getenv("HOLDER_TEST_SUPERVISED") != ""
	cfg := Config{
		Spec:       Spec{GPUs: keeper.GPUs{All: true}, VRAM: vram, Util: 30, BusyThreshold: 25, Interval: 100 * time.Millisecond, TreeOf: treeOf},
		MaxHold:    maxHold,
		Supervised: supervised,
		Log:        NewLog(os.Stdout, supervised, false),
	}
	switch err := Run(cfg); {
	case err == ErrReported:
		return 3
	case err != nil:
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

// TestRun runs a holder on a fake node: it holds, reports, and releases
// for the reason it was given, or says why it cannot hold.
func TestRun(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	libs := t.TempDir()
	// A process of this test's tree that uses GPU 0.
	user := exec.Command("sleep", "30")
	if err := user.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { user.Process.Kill(); user.Wait() }()
	tests := []struct {
		name       string
		gpus       int
		supervised bool
		env        []string
		treeUse    bool
		status     int
		events     []Kind   // supervised: the kinds of event, in order
		lines      []string // substrings of the output, in order
	}{
		{name: "max hold", gpus: 1, supervised: true, env: []string{"HOLDER_TEST_MAX_HOLD=100ms"},
			events: []Kind{Held, Holding, Released, Released},
			lines:  []string{`"event":"holding","message":"holding 1 GPU: gpu 0 (`, `1.0 MiB; kernel at 30%"`, `"event":"released","reason":"--max-hold 100ms"`}},
		{name: "as text", gpus: 1, env: []string{"HOLDER_TEST_MAX_HOLD=100ms"},
			lines: []string{"keepgpu: holding 1 GPU: gpu 0 (", "; kernel at 30%; release with Ctrl+C or SIGTERM\n", "keepgpu: released 1 GPU after ", " (--max-hold 100ms)\n"}},
		{name: "no GPU", gpus: 0, supervised: true, status: 3,
			events: []Kind{Error}, lines: []string{`"event":"error","message":"holding nothing: `}},
		{name: "no GPU as text", gpus: 0, status: 3, lines: []string{"keepgpu: holding nothing: "}},
		{name: "the wrapped tree uses the GPU", gpus: 1, supervised: true, treeUse: true, env: []string{"HOLDER_TEST_TREE_OF=" + strconv.Itoa(os.Getpid())},
			events: []Kind{Held, Holding, TreeUse, Released, Released},
			lines:  []string{`"event":"tree-use"`, fmt.Sprintf(`"reason":"the wrapped command uses the GPU (pid %d)"`, user.Process.Pid)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, err := fakegpu.NewNode(t.TempDir(), libs, tt.gpus)
			if err != nil {
				t.Fatal(err)
			}
			if tt.treeUse {
				if err := node.AddProcess(0, user.Process.Pid, 1<<20); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(exe)
			cmd.Env = append(append(append(os.Environ(), node.Env()...), "HOLDER_TEST=run", "GORACE=atexit_sleep_ms=0"), tt.env...)
			if tt.supervised {
				cmd.Env = append(cmd.Env, "HOLDER_TEST_SUPERVISED=1")
			}
			out, err := cmd.Output()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tt.status {
				t.Fatalf("exit status %d; want %d:\n%s", status, tt.status, out)
			}
			rest := string(out)
			for _, l := range tt.lines {
				i := strings.Index(rest, l)
				if i < 0 {
					t.Fatalf("no %q in order in:\n%s", l, out)
				}
				rest = rest[i+len(l):]
			}
			if !tt.supervised {
				return
			}
			var kinds []Kind
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				var e Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("%q: %v", sc.Text(), err)
				}
				if e.Kind != Telemetry && e.Kind != Warning {
					kinds = append(kinds, e.Kind)
				}
			}
			if fmt.Sprint(kinds) != fmt.Sprint(tt.events) {
				t.Errorf("events %v; want %v:\n%s", kinds, tt.events, out)
			}
		})
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the wrapped command, as the bench
// binary is.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(child(role))
	}
	os.Exit(m.Run())
}

// TestRun runs a tiny benchmark end to end against a freshly built keepgpu:
// every figure must be measured and the table printed. Timings are not
// checked: they depend on the machine.
func TestRun(t *testing.T) {
	keepgpu := filepath.Join(t.TempDir(), "keepgpu")
	build := exec.Command("go", "build", "-o", keepgpu, "github.com/keepgpu/keepgpu")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as it ships
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build keepgpu: %v\n%s", err, out)
	}
	// Under -race the children are race-instrumented too: spare them the
	// race runtime's second of sleep at exit.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	cfg := config{keepgpu: keepgpu, baseline: keepgpu, n: 3, runs: 3, mib: 4, reps: 1, sleep: 500 * time.Millisecond,
		holdFor: 200 * time.Millisecond, holdReps: 1}
	var out, log bytes.Buffer
	if err := run(cfg, &out, &log); err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, log.String())
	}
	report := out.String()
	t.Logf("\n%s", report)
	want := []string{"| figure | measured | target | ok? |", "GPU: none — the project's fake driver"}
	for _, s := range sources {
		want = append(want, "ready → holder exited: "+s.label)
	}
	for _, v := range variants {
		want = append(want, "stdout throughput: "+v.label)
	}
	want = append(want, "`keepgpu ready` called → returned", "`keepgpu version` wall time", "`wrap -- true` − `true`",
		"wrapper memory", "holder memory", "holder CPU per held GPU", "kernel launches per second per GPU, 16 fake GPU(s)",
		"SIGTERM → holder exited", "a foreign compute process on each of 2 fake GPUs", "relay CPU (the wrapper's), before the match", "relay CPU (the wrapper's), after the match",
		"`wrap -- true` − `tini -s -- true`", "`wrap -- true` − `dumb-init true`", "`keepgpu version` ÷ a Go hello world",
		"linked as keepgpu is (dynamically, by purego), for reference | ", "minor page faults (median), for reference | ",
		"(baseline ")
	// The stable figures come first.
	if i, j := strings.Index(report, "holder CPU per held GPU"), strings.Index(report, "stdout throughput"); i < 0 || j < i {
		t.Error("the CPU figures are not listed before the throughput")
	}
	for _, s := range want {
		if !strings.Contains(report, s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

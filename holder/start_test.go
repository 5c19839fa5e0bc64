package holder

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/keeper"
)

// The test binary doubles as a holder (HOLDER_TEST=holder DIR) that
// reports its argv, process group and environment, holds until SIGTERM
// and then writes DIR/released; as a supervisor (HOLDER_TEST=supervisor
// DIR) that starts such a holder and waits to be killed; and as a real
// holder on a fake node (HOLDER_TEST=run, see runHolder).
func TestMain(m *testing.M) {
	switch os.Getenv("HOLDER_TEST") {
	case "holder":
		os.Exit(fakeHolder(os.Getenv("HOLDER_TEST_DIR")))
	case "supervisor":
		os.Exit(fakeSupervisor(os.Getenv("HOLDER_TEST_DIR")))
	case "run":
		os.Exit(runHolder())
	}
	os.Exit(m.Run())
}

func fakeHolder(dir string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	enc := json.NewEncoder(os.Stdout)
	pgid, _ := syscall.Getpgid(0)
	enc.Encode(Event{Time: time.Now(), Kind: Warning, GPU: -1, Message: strings.Join(os.Args, " "),
		Reason: fmt.Sprintf("pgid=%d pid=%d vram=%s", pgid, os.Getpid(), os.Getenv("KEEPGPU_VRAM"))})
	fmt.Fprintln(os.Stderr, "holder's own diagnostics")
	enc.Encode(Event{Time: time.Now(), Kind: Holding, GPU: -1, Message: "holding 1 GPU",
		GPUs: []keeper.Status{{GPU: 0, UUID: "GPU-a", Bytes: 1 << 20, Kernel: keeper.KernelRunning}}})
	s := <-sigs
	os.WriteFile(filepath.Join(dir, "released"), nil, 0o600)
	enc.Encode(Event{Time: time.Now(), Kind: Released, GPU: -1, Reason: s.String()})
	return 0
}

func fakeSupervisor(dir string) int {
	exe, _ := os.Executable()
	h, err := Start(Spec{Interval: time.Second}, Options{Path: exe, Env: Env(holderEnv(dir))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.WriteFile(filepath.Join(dir, "holder.pid"), []byte(strconv.Itoa(h.Process.Pid)), 0o600)
	for range h.Events {
	}
	select {}
}

// holderEnv is the environment of a fake holder writing to dir, with a
// KEEPGPU_* setting that Env must drop. A child's getenv finds the first
// of duplicate variables: the test's own are left out.
func holderEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOLDER_TEST") {
			env = append(env, kv)
		}
	}
	return append(env, "KEEPGPU_VRAM=3GiB", "HOLDER_TEST=holder", "HOLDER_TEST_DIR="+dir)
}

// TestStart starts a holder: its argv is the spec's, its environment
// is the one given, it runs in a process group of its own, its events
// arrive typed and in order, and the channel closes once it exits.
func TestStart(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	spec := Spec{GPUs: keeper.GPUs{All: true}, VRAM: mustVRAM(t, "2GiB"), Util: 30, BusyThreshold: 25, Interval: 2 * time.Second, TreeOf: 7}
	h, err := Start(spec, Options{Path: exe, Argv0: "keepgpu", Env: Env(holderEnv(dir)), Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	first := <-h.Events
	if want := "keepgpu " + strings.Join(spec.Args(), " "); first.Kind != Warning || first.Message != want {
		t.Errorf("argv %q; want %q", first.Message, want)
	}
	if want := fmt.Sprintf("pgid=%d pid=%d vram=", h.Process.Pid, h.Process.Pid); first.Reason != want {
		t.Errorf("holder says %q; want %q", first.Reason, want)
	}
	if e := <-h.Events; e.Kind != Holding || len(e.GPUs) != 1 || e.GPUs[0].Bytes != 1<<20 {
		t.Errorf("second event %+v; want holding 1 GPU", e)
	}
	h.Process.Signal(syscall.SIGTERM)
	var last Event
	for e := range h.Events {
		last = e
	}
	if last.Kind != Released || last.Reason != "terminated" {
		t.Errorf("last event %+v; want released on SIGTERM", last)
	}
	if ps, err := h.Process.Wait(); err != nil || !ps.Success() {
		t.Errorf("holder exited %v, %v", ps, err)
	}
	if b, _ := os.ReadFile(stderr.Name()); string(b) != "holder's own diagnostics\n" {
		t.Errorf("holder's stderr %q", b)
	}
}

// TestStartMissing reports a binary that cannot be started.
func TestStartMissing(t *testing.T) {
	h, err := Start(Spec{}, Options{Path: filepath.Join(t.TempDir(), "keepgpu")})
	if err == nil {
		h.Process.Kill()
		t.Fatal("Start of a missing binary succeeded")
	}
}

// TestParentDeath kills a supervisor with SIGKILL: its holder gets SIGTERM
// and releases.
func TestParentDeath(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sup := exec.Command(exe)
	sup.Env = append(os.Environ(), "HOLDER_TEST=supervisor", "HOLDER_TEST_DIR="+dir)
	sup.Stderr = os.Stderr
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the supervisor started no holder")
		}
		b, _ := os.ReadFile(filepath.Join(dir, "holder.pid"))
		pid, _ = strconv.Atoi(string(b))
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "released")); err == nil {
		t.Fatal("the holder released while its supervisor ran")
	}
	sup.Process.Kill()
	sup.Wait()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "released")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder did not release after its supervisor died")
		}
	}
}

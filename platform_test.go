package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// rocmScripts are the scripts TestScriptsROCm runs again on a fake AMD
// node: every script of holding, wrapping, ready signals, the service and
// list-gpus. A script that tests what only NVIDIA has says
// "[rocm] skip" with the reason.
var rocmScripts = []string{"hold_*", "wrap_*", "ready_*", "service_*", "listgpus_*", "platform_*"}

// TestScriptsROCm runs rocmScripts on a fake AMD node: the fake HIP
// runtime, AMD SMI and ROCm SMI alone on LD_LIBRARY_PATH (no libcuda, no
// NVML), so that --platform auto finds AMD's GPUs, as on an AMD node.
func TestScriptsROCm(t *testing.T) {
	libs := buildFakes(t)
	var files []string
	for _, pat := range rocmScripts {
		m, err := filepath.Glob(filepath.Join("testdata/script", pat+".txtar"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	testscript.Run(t, scriptParams(libs, "rocm", "", files))
}

// fakeLibs are the directories of the fake NVIDIA and AMD libraries.
type fakeLibs struct{ cuda, rocm string }

// buildFakes builds the fake libcuda and NVML, and the fake HIP runtime
// and ROCm SMI, each pair in a directory of its own.
func buildFakes(t *testing.T) fakeLibs {
	t.Helper()
	libs := fakeLibs{cuda: t.TempDir(), rocm: t.TempDir()}
	errs := make(chan error, 2)
	go func() { errs <- fakegpu.Build(libs.cuda) }()
	go func() { errs <- fakegpu.BuildROCm(libs.rocm, fakegpu.ROCm{}) }()
	if err := errors.Join(<-errs, <-errs); err != nil {
		t.Fatal(err)
	}
	return libs
}

// platformCondition answers the scripts' [rocm] and [cuda] conditions:
// which platform the fake node is.
func platformCondition(platform, cond string) (bool, error) {
	switch cond {
	case "rocm", "cuda":
		return cond == platform, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// setUUIDs sets UUID0 ... UUID7 to the default UUIDs of the fake node's
// GPUs on platform, as the scripts match them.
func setUUIDs(env *testscript.Env, platform string) {
	n := &fakegpu.Node{Dir: env.Getenv("FAKEGPU_DIR")}
	for i := 0; i < 8; i++ {
		u := n.UUID(i)
		if platform == "rocm" {
			u = n.AMDUUID(i)
		}
		env.Setenv(fmt.Sprintf("UUID%d", i), u)
	}
}

// fakePlatform is the platform of the node newFakeService makes: "cuda"
// (or "") or "rocm".
var fakePlatform = "cuda"

// onAMD makes newFakeService's nodes AMD's for the rest of t.
func onAMD(t *testing.T) {
	fakePlatform = "rocm"
	t.Cleanup(func() { fakePlatform = "cuda" })
}

// TestServiceLoadROCm is TestServiceLoad with the holders on a fake AMD
// node.
func TestServiceLoadROCm(t *testing.T) {
	onAMD(t)
	TestServiceLoad(t)
}

// TestDashboardROCm is TestDashboard on a fake AMD node.
func TestDashboardROCm(t *testing.T) {
	onAMD(t)
	TestDashboard(t)
}

// fakeUUID is GPU gpu's default UUID on a node of fakePlatform.
func fakeUUID(n *fakegpu.Node, gpu int) string {
	if fakePlatform == "rocm" {
		return n.AMDUUID(gpu)
	}
	return n.UUID(gpu)
}

// fakeExtraBytes is what a holder holds on a GPU of fakePlatform beside
// --vram: on ROCm the keep-alive load's buffer.
func fakeExtraBytes() uint64 {
	if fakePlatform == "rocm" {
		return hip.WorkBytes
	}
	return 0
}

// platformExtraBytes is what a holder holds on a GPU beside --vram: on
// ROCm the keep-alive load's buffer (hip.WorkBytes), which the fake node
// counts as the holder's.
func platformExtraBytes(ts *testscript.TestScript) uint64 {
	if ts.Getenv("KEEPGPU_TEST_PLATFORM") == "rocm" {
		return hip.WorkBytes
	}
	return 0
}

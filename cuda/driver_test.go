package cuda

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

func TestResultError(t *testing.T) {
	var err error = ErrorOutOfMemory
	if got := err.Error(); got != "CUDA_ERROR_OUT_OF_MEMORY (2)" {
		t.Errorf("Error() = %q", got)
	}
	if got := Result(12345).Error(); got != "CUDA error 12345" {
		t.Errorf("unknown code: %q", got)
	}
	wrapped := errors.Join(errors.New("gpu 1"), ErrorOutOfMemory)
	if !errors.Is(wrapped, ErrorOutOfMemory) || errors.Is(wrapped, ErrorNoDevice) {
		t.Error("errors.Is does not match result codes")
	}
}

func TestFormatUUID(t *testing.T) {
	u := [16]byte{0x8f, 0x2c, 0x1e, 0x0a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc}
	if got, want := FormatUUID(u), "GPU-8f2c1e0a-1122-3344-5566-778899aabbcc"; got != want {
		t.Errorf("FormatUUID = %q, want %q", got, want)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 29: "1.5 GiB", 80 << 30: "80.0 GiB", 1 << 50: "1.0 PiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestLoadErrors loads libraries that are not there or lack symbols: each
// is an ordinary error that names what is wrong, never a crash.
func TestLoadErrors(t *testing.T) {
	if _, err := load(filepath.Join(t.TempDir(), "libcuda.so.1")); !errors.Is(err, ErrNoLibrary) {
		t.Errorf("missing library: %v; want ErrNoLibrary", err)
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "partial.c")
	os.WriteFile(src, []byte("int cuInit(unsigned f) { return 0; }\nint cuDeviceGet(int *d, int o) { return 0; }\n"), 0o644)
	lib := filepath.Join(dir, "libpartial.so")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	_, err = load(lib)
	if err == nil {
		t.Fatal("a library without the driver's symbols loaded")
	}
	for _, want := range []string{lib, "missing symbols", "cuCtxCreate_v2", "cuLaunchKernel", "cuModuleLoadDataEx"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "cuInit,") || strings.Contains(err.Error(), "cuDeviceGet,") {
		t.Errorf("error %q names symbols the library has", err)
	}
}

// TestContext drives a context on the fake driver: identity, allocation in
// chunks, the embedded kernel, and a close that hands everything back.
func TestContext(t *testing.T) {
	libDir := t.TempDir()
	node, err := fakegpu.NewNode(t.TempDir(), libDir, 2)
	if err != nil {
		t.Skipf("fake driver: %v", err)
	}
	node.Set(1, "total", "8589934592")
	t.Setenv("FAKEGPU_DIR", node.Dir)
	t.Setenv("CUDA_VISIBLE_DEVICES", "1")
	d, err := load(filepath.Join(libDir, LibraryName))
	if err != nil {
		t.Fatal(err)
	}
	devs, err := d.Devices()
	if err != nil || len(devs) != 1 {
		t.Fatalf("Devices() = %v, %v; want the one visible GPU", devs, err)
	}
	if devs[0].UUID != node.UUID(1) || devs[0].TotalBytes != 8<<30 || devs[0].Major != 9 {
		t.Fatalf("device 0 = %+v; want fake GPU 1 (%s, 8 GiB, sm 9.0)", devs[0], node.UUID(1))
	}
	c, err := d.NewContext(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Alloc(2<<30 + 5); err != nil {
		t.Fatal(err)
	}
	if err := c.Alloc(7 << 30); !errors.Is(err, ErrorOutOfMemory) || !strings.Contains(err.Error(), "7.0 GiB asked") {
		t.Fatalf("over-allocation: %v", err)
	}
	if err := c.Launch(1000); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	procs, _ := node.Procs(1)
	if len(procs) != 1 || procs[0].PID != os.Getpid() || procs[0].Launches != 1 || procs[0].Bytes < 2<<30+5 {
		t.Fatalf("fake driver records %+v", procs)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if procs, _ := node.Procs(1); len(procs) != 0 {
		t.Fatalf("after Close the driver still has %+v", procs)
	}
}

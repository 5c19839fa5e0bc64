package hip

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// TestMain doubles as a child process that loads the HIP runtime by its
// sonames alone, through the dynamic linker's search path, as keepgpu does.
func TestMain(m *testing.M) {
	switch os.Getenv("KEEPGPU_HIP_CHILD") {
	case "visible":
		r, err := Load()
		if errors.Is(err, ErrorNoDevice) {
			fmt.Println("visible []")
			os.Exit(0)
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		devs, _ := r.Devices()
		var ids []string
		for _, d := range devs {
			ids = append(ids, d.PCIBusID)
		}
		fmt.Printf("visible [%s]\n", strings.Join(ids, " "))
		os.Exit(0)
	case "1":
		r, err := Load()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		n, err := r.DeviceCount()
		fmt.Printf("loaded %s, %d GPUs, err %v\n", r.Library, n, err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestErrorWording(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"runtime wording", &Error{Op: "hipGetDeviceCount", Code: ErrorNoDevice, Name: "hipErrorNoDevice", Text: "no ROCm-capable device is detected"},
			"hipGetDeviceCount: hipErrorNoDevice: no ROCm-capable device is detected (HIP 100)"},
		{"table wording", &Error{Op: "gpu 0: hipMalloc", Code: ErrorOutOfMemory}, "gpu 0: hipMalloc: hipErrorOutOfMemory (HIP 2)"},
		{"unknown code", &Error{Op: "hipInit", Code: 4242}, "hipInit: hipError 4242 (HIP 4242)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			wrapped := fmt.Errorf("holding: %w", tt.err)
			if !errors.Is(wrapped, tt.err.Code) || errors.Is(wrapped, Code(777)) {
				t.Error("errors.Is does not match result codes")
			}
		})
	}
}

func TestFormatUUID(t *testing.T) {
	ascii := func(s string) (u [16]byte) { copy(u[:], s); return u }
	tests := []struct {
		name string
		in   [16]byte
		want string
	}{
		{"unique id digits", ascii("5C1B4D702f8d9e3a"), "GPU-5c1b4d702f8d9e3a"},
		{"no unique id", ascii("XX"), ""},
		{"zeros", [16]byte{}, ""},
		{"binary", [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, "GPU-deadbeef-0102-0304-0506-0708090a0b0c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatUUID(tt.in); got != tt.want {
				t.Errorf("FormatUUID = %q, want %q", got, tt.want)
			}
		})
	}
}

// fakeLib builds the fake HIP runtime into a new directory under the name
// soname, without the symbols in hide, points the fake at node and
// returns the library's path.
func fakeLib(t *testing.T, node *fakegpu.Node, soname string, hide ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc to build the fakes")
	}
	dir := t.TempDir()
	if err := fakegpu.BuildROCm(dir, fakegpu.ROCm{HIPName: soname, Hide: hide}); err != nil {
		t.Fatalf("fake HIP: %v", err)
	}
	t.Setenv("FAKEGPU_DIR", node.Dir)
	return filepath.Join(dir, soname)
}

func newNode(t *testing.T, gpus int) *fakegpu.Node {
	t.Helper()
	node, err := fakegpu.NewROCmNode(t.TempDir(), "", gpus)
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// TestLoadErrors loads libraries that are not there or lack symbols: each
// is an ordinary error that names what is wrong, never a crash.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := load(filepath.Join(dir, "libamdhip64.so.6"), filepath.Join(dir, "libamdhip64.so.5"))
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("missing library: %v; want ErrNoLibrary", err)
	}
	for _, want := range []string{"libamdhip64.so.6", "libamdhip64.so.5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say why %s did not load", err, want)
		}
	}

	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	src := filepath.Join(dir, "partial.c")
	os.WriteFile(src, []byte("int hipInit(unsigned f) { return 0; }\nint hipMalloc(void **p, unsigned long n) { return 2; }\n"), 0o644)
	lib := filepath.Join(dir, "libamdhip64.so.6")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	_, err = load(lib, filepath.Join(dir, "libamdhip64.so.5"))
	if err == nil {
		t.Fatal("a library without HIP's symbols loaded")
	}
	for _, want := range []string{lib, "missing symbols", "hipGetDeviceCount", "hipMemsetAsync", "hipEventElapsedTime"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	for _, have := range []string{"hipInit,", "hipMalloc,", "hipDeviceGetUuid"} {
		if strings.Contains(err.Error(), have) {
			t.Errorf("error %q names %s, which the library has or which is optional", err, have)
		}
	}
}

// TestFallback loads the runtime where only older sonames exist, both by
// path and, in a child process, by soname through LD_LIBRARY_PATH as
// keepgpu does.
func TestFallback(t *testing.T) {
	node := newNode(t, 1)
	for _, soname := range []string{"libamdhip64.so.5", "libamdhip64.so"} {
		t.Run(soname, func(t *testing.T) {
			lib := fakeLib(t, node, soname)
			dir := filepath.Dir(lib)
			var names []string
			for _, n := range LibraryNames {
				names = append(names, filepath.Join(dir, n))
			}
			r, err := load(names...)
			if err != nil {
				t.Fatal(err)
			}
			if r.Library != lib {
				t.Errorf("loaded %s, want %s", r.Library, lib)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "KEEPGPU_HIP_CHILD=1", "LD_LIBRARY_PATH="+dir, "FAKEGPU_DIR="+node.Dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if want := fmt.Sprintf("loaded %s, 1 GPUs, err <nil>", soname); !strings.Contains(string(out), want) {
				t.Errorf("child said %q, want %q", out, want)
			}
		})
	}
}

// TestNewestFirst checks that the newest soname wins where several exist.
func TestNewestFirst(t *testing.T) {
	node := newNode(t, 1)
	dir := filepath.Dir(fakeLib(t, node, "libamdhip64.so.6"))
	if err := fakegpu.BuildROCm(dir, fakegpu.ROCm{HIPName: "libamdhip64.so.5"}); err != nil {
		t.Fatal(err)
	}
	r, err := load(filepath.Join(dir, "libamdhip64.so.7"), filepath.Join(dir, "libamdhip64.so.6"), filepath.Join(dir, "libamdhip64.so.5"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(r.Library) != "libamdhip64.so.6" {
		t.Errorf("loaded %s, want libamdhip64.so.6", r.Library)
	}
}

func TestNoDevice(t *testing.T) {
	node := newNode(t, 0)
	_, err := load(fakeLib(t, node, "libamdhip64.so.6"))
	if !errors.Is(err, ErrorNoDevice) {
		t.Fatalf("load on a node without GPUs: %v; want ErrorNoDevice", err)
	}
	if want := "hipGetDeviceCount: hipErrorNoDevice: no ROCm-capable device is detected (HIP 100) (hipInit: hipErrorInvalidDevice: invalid device ordinal (HIP 101))"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestInitError(t *testing.T) {
	node := newNode(t, 1)
	node.SetInitError("hip", int(ErrorInsufficientDriver))
	_, err := load(fakeLib(t, node, "libamdhip64.so.6"))
	if !errors.Is(err, ErrorInsufficientDriver) || !strings.HasPrefix(err.Error(), "hipInit: ") {
		t.Fatalf("load with failing hipInit: %v; want hipInit: ... ErrorInsufficientDriver", err)
	}
}

func TestDevices(t *testing.T) {
	tests := []struct {
		name     string
		hide     []string
		uuid     string // the uuid setting of GPU 1
		wantUUID string
	}{
		{"uuid", nil, "GPU-0123456789ABCDEF", "GPU-0123456789abcdef"},
		{"card without unique id", nil, "none", ""},
		{"runtime without hipDeviceGetUuid", []string{"hipDeviceGetUuid"}, "GPU-0123456789abcdef", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := newNode(t, 2)
			node.Set(1, "name", "AMD Instinct MI250X")
			node.Set(1, "total", "68702699520")
			node.SetAMD(1, "uuid", tt.uuid)
			node.SetAMD(1, "pci", "0000:C1:00.0")
			r, err := load(fakeLib(t, node, "libamdhip64.so.6", tt.hide...))
			if err != nil {
				t.Fatal(err)
			}
			devs, err := r.Devices()
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != 2 {
				t.Fatalf("%d devices, want 2", len(devs))
			}
			want := DeviceInfo{Ordinal: 1, UUID: tt.wantUUID, PCIBusID: "0000:c1:00.0", Name: "AMD Instinct MI250X", TotalBytes: 68702699520}
			if devs[1] != want {
				t.Errorf("device 1 = %+v, want %+v", devs[1], want)
			}
			if tt.hide == nil && devs[0].UUID != node.AMDUUID(0) {
				t.Errorf("device 0 UUID %q, want %q", devs[0].UUID, node.AMDUUID(0))
			}
			if devs[0].PCIBusID != node.PCIBusID(0) {
				t.Errorf("device 0 PCI bus id %q, want %q", devs[0].PCIBusID, node.PCIBusID(0))
			}
		})
	}
}

// TestContext holds VRAM and runs the keep-alive load on a fake GPU, and
// checks what the node sees.
func TestContext(t *testing.T) {
	node := newNode(t, 2)
	node.Set(1, "total", fmt.Sprint(8<<30))
	r, err := load(fakeLib(t, node, "libamdhip64.so.6"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.NewContext(1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The fake fills 1000 bytes per ns.
	if bw := c.Bandwidth(); bw < 0.5e12 || bw > 1.1e12 {
		t.Errorf("calibrated speed %.3g B/s, want about 1e12", bw)
	}
	if err := c.Alloc(3<<30 + 1<<20); err != nil {
		t.Fatal(err)
	}
	if got := c.Bytes(); got != 3<<30+1<<20 {
		t.Errorf("Bytes = %d", got)
	}
	free, total, err := c.MemInfo()
	if err != nil || total != 8<<30 || free != 8<<30-(3<<30+1<<20)-WorkBytes {
		t.Errorf("MemInfo = %d, %d, %v", free, total, err)
	}
	procs, _ := node.Procs(1)
	if len(procs) != 1 || procs[0].PID != os.Getpid() || procs[0].Bytes != 3<<30+1<<20+WorkBytes || procs[0].Contexts != 1 {
		t.Errorf("node sees %+v, want this process with 3 GiB + 1 MiB + the work buffer", procs)
	}
	if p0, _ := node.Procs(0); len(p0) != 0 {
		t.Errorf("GPU 0 has records %+v; only GPU 1 was used", p0)
	}

	err = c.Alloc(8 << 30)
	if !errors.Is(err, ErrorOutOfMemory) || !strings.Contains(err.Error(), "8.0 GiB asked") || !strings.Contains(err.Error(), "gpu 1 (GPU-5c1b4d702f8d0001)") {
		t.Errorf("Alloc over the total: %v", err)
	}

	const slice = 2 * time.Millisecond
	start := time.Now()
	for i := 0; i < 10; i++ {
		if _, err := c.Launch(slice); err != nil {
			t.Fatal(err)
		}
		if err := c.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < 10*slice*8/10 {
		t.Errorf("10 launches of %v took %v: the load does not fill its slice", slice, el)
	}
	// 2 ms at 1000 B/ns are 2 GB: two memsets over the first 1 GiB chunk
	// held, after the four that calibrated.
	procs, _ = node.Procs(1)
	if len(procs) != 1 || procs[0].Launches != 4+10*2 || procs[0].LastKernelEnd == 0 {
		t.Errorf("node sees %+v, want 24 memsets", procs)
	}
	// A batch never runs longer than Slice, and after Stop none is queued.
	if ran, err := c.Launch(time.Hour); err != nil || ran != Slice {
		t.Errorf("Launch(1h) = %v, %v; want one slice of %v", ran, err, Slice)
	}
	c.Stop()
	if _, err := c.Launch(slice); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	if p, _ := node.Procs(1); len(p) != 1 || p[0].Launches != 4+10*2+2 {
		t.Errorf("node sees %+v, want 26 memsets: none after Stop", p)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	procs, _ = node.Procs(1)
	if len(procs) != 0 {
		t.Errorf("after Close the node sees %+v, want every byte and stream given back", procs)
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name      string
		d         time.Duration
		nsPerByte float64
		region    uint64
		size      uint64
		n         int
	}{
		{"speed unknown", 2 * time.Millisecond, 0, 1 << 30, 1 << 30, 1},
		{"fits one region", 2 * time.Millisecond, 0.01, 1 << 30, 200000000 / opAlign * opAlign, 1},
		{"two memsets of the region", 2 * time.Millisecond, 0.001, 1 << 30, 1000000000 / opAlign * opAlign, 2},
		{"MI300X-like 5 TB/s over 1 GiB", 2 * time.Millisecond, 0.0002, 1 << 30, 10000000000 / 10 / opAlign * opAlign, 10},
		{"small region, fast card: capped", 2 * time.Millisecond, 0.0002, 64 << 20, 64 << 20, maxOps},
		{"too short for one page", time.Nanosecond, 1, 1 << 30, opAlign, 1},
		{"tiny region", time.Millisecond, 1, 100, 100, maxOps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, n := plan(tt.d, tt.nsPerByte, tt.region)
			if size != tt.size || n != tt.n {
				t.Errorf("plan = %d bytes x %d, want %d x %d", size, n, tt.size, tt.n)
			}
		})
	}
}

// TestVisible checks the selection table, and that the fake runtime (in a
// child process that loads it by soname) applies the same rules.
func TestVisible(t *testing.T) {
	uuids := []string{"GPU-aaaaaaaaaaaaaaa0", "GPU-aaaaaaaaaaaaaaa1", "", "GPU-aaaaaaaaaaaaaaa3"}
	node := newNode(t, len(uuids))
	for i, u := range uuids {
		if u == "" {
			u = "none"
		}
		node.SetAMD(i, "uuid", u)
	}
	dir := filepath.Dir(fakeLib(t, node, fakegpu.HIPLib))
	var base []string
	for _, e := range os.Environ() {
		switch strings.SplitN(e, "=", 2)[0] {
		case "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL":
		default:
			base = append(base, e)
		}
	}
	tests := []struct {
		name string
		env  map[string]string
		want []int
	}{
		{"nothing set", nil, []int{0, 1, 2, 3}},
		{"rocr indices", map[string]string{"ROCR_VISIBLE_DEVICES": "3,1"}, []int{3, 1}},
		{"rocr uuid", map[string]string{"ROCR_VISIBLE_DEVICES": "GPU-AAAAAAAAAAAAAAA3,0"}, []int{3, 0}},
		{"rocr then hip", map[string]string{"ROCR_VISIBLE_DEVICES": "1,2,3", "HIP_VISIBLE_DEVICES": "2,0"}, []int{3, 1}},
		{"hip over cuda", map[string]string{"HIP_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "0"}, []int{1}},
		{"cuda without hip", map[string]string{"CUDA_VISIBLE_DEVICES": "2"}, []int{2}},
		{"gpu device ordinal last", map[string]string{"GPU_DEVICE_ORDINAL": "0,3"}, []int{0, 3}},
		{"hip index past rocr mask", map[string]string{"ROCR_VISIBLE_DEVICES": "0", "HIP_VISIBLE_DEVICES": "1"}, []int{}},
		{"empty", map[string]string{"ROCR_VISIBLE_DEVICES": ""}, []int{}},
		{"stops at invalid", map[string]string{"ROCR_VISIBLE_DEVICES": "2,x,1"}, []int{2}},
		{"stops at repeat", map[string]string{"HIP_VISIBLE_DEVICES": "1,1,0"}, []int{1}},
		{"hip takes no uuid", map[string]string{"HIP_VISIBLE_DEVICES": "GPU-aaaaaaaaaaaaaaa0"}, []int{}},
		{"no sign", map[string]string{"HIP_VISIBLE_DEVICES": "+1"}, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each case starts a process
			got := Visible(uuids, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || got == nil {
				t.Errorf("Visible = %v, want %v", got, tt.want)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(slices.Clone(base), "KEEPGPU_HIP_CHILD=visible", "LD_LIBRARY_PATH="+dir, "FAKEGPU_DIR="+node.Dir)
			for k, v := range tt.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			var ids []string
			for _, g := range tt.want {
				ids = append(ids, node.PCIBusID(g))
			}
			if want := fmt.Sprintf("visible [%s]\n", strings.Join(ids, " ")); string(out) != want {
				t.Errorf("the fake runtime shows %q, want %q", out, want)
			}
		})
	}
}

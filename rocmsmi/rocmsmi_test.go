package rocmsmi

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// TestMain doubles as a child process that holds GPU 0 of a fake AMD node
// through the real HIP loader: VRAM, and the keep-alive load at half duty
// until its standard input closes.
func TestMain(m *testing.M) {
	switch os.Getenv("KEEPGPU_ROCMSMI_CHILD") {
	case "hold":
		os.Exit(hold())
	}
	os.Exit(m.Run())
}

func hold() int {
	r, err := hip.Load()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	c, err := r.NewContext(0)
	if err == nil {
		err = c.Alloc(1 << 30)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	stop := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(stop)
	}()
	fmt.Println("holding")
	for {
		select {
		case <-stop:
			c.Close()
			return 0
		default:
		}
		start := time.Now()
		c.Launch(5 * time.Millisecond)
		c.Sync()
		time.Sleep(time.Until(start.Add(10 * time.Millisecond)))
	}
}

func TestStatusWording(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"5.2 wording", &Error{Op: "rsmi_init", Code: StatusInitError, Text: "An error occurred during initialization"},
			"rsmi_init: RSMI_STATUS_INIT_ERROR: An error occurred during initialization"},
		{"newer wording", &Error{Op: "rsmi_dev_busy_percent_get gpu 1", Code: StatusNotSupported, Text: "RSMI_STATUS_NOT_SUPPORTED: The requested information is not available"},
			"rsmi_dev_busy_percent_get gpu 1: RSMI_STATUS_NOT_SUPPORTED: The requested information is not available"},
		{"no wording", &Error{Op: "rsmi_shut_down", Code: 42}, "rsmi_shut_down: RSMI status 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(fmt.Errorf("x: %w", tt.err), tt.err.Code) {
				t.Error("errors.Is does not match the status")
			}
		})
	}
}

func TestFormatBDF(t *testing.T) {
	tests := []struct {
		bdf  uint64
		want string
	}{
		{0xc1 << 8, "0000:c1:00.0"},
		{1<<32 | 0x05<<8 | 2<<3 | 1, "0001:05:02.1"},
		{0x0000_0000_3000_0000 | 0x0c<<8, "0000:0c:00.0"}, // partition 3
	}
	for _, tt := range tests {
		if got := FormatBDF(tt.bdf); got != tt.want {
			t.Errorf("FormatBDF(%#x) = %q, want %q", tt.bdf, got, tt.want)
		}
	}
}

// fakeLib builds the fake AMD libraries into a new directory, ROCm SMI
// under the name soname and without the symbols in hide, points them at
// node and returns ROCm SMI's path.
func fakeLib(t *testing.T, node *fakegpu.Node, soname string, hide ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc to build the fakes")
	}
	dir := t.TempDir()
	if err := fakegpu.BuildROCm(dir, fakegpu.ROCm{SMIName: soname, Hide: hide}); err != nil {
		t.Fatalf("fake ROCm SMI: %v", err)
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

func openFake(t *testing.T, node *fakegpu.Node, hide ...string) *SMI {
	t.Helper()
	s, err := open(fakeLib(t, node, fakegpu.ROCmSMILib, hide...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := open(filepath.Join(dir, "librocm_smi64.so.7"), filepath.Join(dir, "librocm_smi64.so.1"))
	if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "librocm_smi64.so.1") {
		t.Fatalf("missing library: %v; want ErrNoLibrary naming each soname", err)
	}
	node := newNode(t, 1)
	lib := fakeLib(t, node, "librocm_smi64.so.1", "rsmi_dev_power_ave_get", "rsmi_dev_current_socket_power_get",
		"rsmi_dev_compute_partition_get", "rsmi_compute_process_info_by_device_get")
	if _, err := open(lib); err != nil {
		t.Errorf("a library without the optional symbols: %v", err)
	}

	src := filepath.Join(dir, "partial.c")
	os.WriteFile(src, []byte("int rsmi_init(unsigned long f) { return 0; }\n"), 0o644)
	partial := filepath.Join(dir, "librocm_smi64.so.5")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", partial, src).CombinedOutput(); err != nil {
		t.Skipf("gcc: %v\n%s", err, out)
	}
	_, err = open(partial)
	for _, want := range []string{partial, "missing symbols", "rsmi_dev_busy_percent_get", "rsmi_compute_process_gpus_get"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
	for _, have := range []string{"rsmi_init,", "rsmi_dev_power_ave_get", "rsmi_dev_compute_partition_get"} {
		if err != nil && strings.Contains(err.Error(), have) {
			t.Errorf("error %q names %s, which the library has or which is optional", err, have)
		}
	}
}

func TestFallback(t *testing.T) {
	node := newNode(t, 1)
	for _, soname := range []string{"librocm_smi64.so.5", "librocm_smi64.so.1"} {
		t.Run(soname, func(t *testing.T) {
			dir := filepath.Dir(fakeLib(t, node, soname))
			var names []string
			for _, n := range LibraryNames {
				names = append(names, filepath.Join(dir, n))
			}
			s, err := open(names...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if filepath.Base(s.Library) != soname {
				t.Errorf("loaded %s, want %s", s.Library, soname)
			}
			if n, err := s.DeviceCount(); n != 1 || err != nil {
				t.Errorf("DeviceCount = %d, %v", n, err)
			}
		})
	}
}

// TestInitError makes rsmi_init fail as ROCm 5.2 does without a driver: an
// error with the library's words, and its chatter kept off standard error.
func TestInitError(t *testing.T) {
	node := newNode(t, 1)
	node.SetInitError("rocm_smi", int(StatusInitError))
	lib := fakeLib(t, node, fakegpu.ROCmSMILib)

	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved, _ := syscall.Dup(2)
	syscall.Dup3(int(f.Fd()), 2, 0)
	_, err = open(lib)
	syscall.Dup3(saved, 2, 0)
	syscall.Close(saved)

	if !errors.Is(err, StatusInitError) {
		t.Fatalf("open: %v; want StatusInitError", err)
	}
	for _, want := range []string{"rsmi_init: RSMI_STATUS_INIT_ERROR: An error occurred during initialization",
		"ROCm SMI said: Failed to open drm root directory /sys/class/drm.: No such file or directory Exception caught: rsmi_init."} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	leaked, _ := os.ReadFile(f.Name())
	if len(leaked) != 0 {
		t.Errorf("ROCm SMI's chatter reached standard error: %q", leaked)
	}
}

func TestMatch(t *testing.T) {
	node := newNode(t, 4)
	// GPUs 1 and 2: two partitions of one card, one PCI bus id.
	node.SetAMD(1, "pci", "0000:0c:00.0")
	node.SetAMD(2, "pci", "0000:0c:00.0")
	node.SetAMD(3, "uuid", "none")
	s := openFake(t, node)
	tests := []struct {
		name, uuid, bus string
		want            int
	}{
		{"by pci bus id", "", node.PCIBusID(0), 0},
		{"pci wins over a stale uuid", node.AMDUUID(3), node.PCIBusID(0), 0},
		{"by uuid alone", node.AMDUUID(0), "", 0},
		{"pci case", "", strings.ToUpper(node.PCIBusID(3)), 3},
		{"card without unique id", "", node.PCIBusID(3), 3},
		{"partition by uuid", node.AMDUUID(2), "0000:0c:00.0", 2},
		{"partition without uuid", "", "0000:0c:00.0", -1},
		{"unknown", "GPU-ffffffffffffffff", "0000:ff:00.0", -1},
		{"nothing", "", "", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Match(tt.uuid, tt.bus)
			if got != tt.want || (tt.want < 0) != errors.Is(err, ErrNoMatch) {
				t.Errorf("Match(%q, %q) = %d, %v; want %d", tt.uuid, tt.bus, got, err, tt.want)
			}
		})
	}
}

// startHolder starts a child process that holds 1 GiB of GPU 0 through the
// fake HIP runtime at half duty, and returns its pid; it ends with the test.
func startHolder(t *testing.T, node *fakegpu.Node, libDir string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEEPGPU_ROCMSMI_CHILD=hold", "LD_LIBRARY_PATH="+libDir, "FAKEGPU_DIR="+node.Dir)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "holding\n" {
		t.Fatalf("holder said %q", line)
	}
	return cmd.Process.Pid
}

// TestSample reads a fake node on which another process holds GPU 0
// through the fake HIP runtime, and a foreign process uses GPU 1.
func TestSample(t *testing.T) {
	node := newNode(t, 2)
	node.Set(0, "total", fmt.Sprint(16<<30))
	node.Set(0, "power", "90000")
	node.SetAMD(0, "compute_partition", "CPX")
	node.Set(1, "util", "na")
	s := openFake(t, node)
	holder := startHolder(t, node, filepath.Dir(filepath.Join(s.Library)))

	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	node.AddProcess(1, sleep.Process.Pid, 2<<30)
	node.AddProcess(0, sleep.Process.Pid, 1<<20)

	time.Sleep(1100 * time.Millisecond) // a full duty window of the holder
	smp, err := s.Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	if smp.UUID != node.AMDUUID(0) || smp.PCIBusID != node.PCIBusID(0) || smp.Name != "Fake GPU 0" {
		t.Errorf("identity %+v", smp.Device)
	}
	held := uint64(1<<30 + hip.WorkBytes)
	if smp.MemErr != nil || smp.MemTotal != 16<<30 || smp.MemUsed != held+1<<20 {
		t.Errorf("memory %d of %d, %v; want %d of 16 GiB", smp.MemUsed, smp.MemTotal, smp.MemErr, held+1<<20)
	}
	// The holder runs its load half of each 10 ms; a loaded machine may
	// delay it, so the bounds are wide.
	if smp.UtilErr != nil || smp.Util < 10 || smp.Util > 75 {
		t.Errorf("busy %d%%, %v; want about 50", smp.Util, smp.UtilErr)
	}
	want := []Process{{PID: holder, Bytes: held}, {PID: sleep.Process.Pid, Bytes: 1 << 20}}
	slices.SortFunc(smp.Procs, func(a, b Process) int { return a.PID - b.PID })
	slices.SortFunc(want, func(a, b Process) int { return a.PID - b.PID })
	if smp.ProcsErr != nil || fmt.Sprint(smp.Procs) != fmt.Sprint(want) {
		t.Errorf("processes %v, %v; want %v", smp.Procs, smp.ProcsErr, want)
	}
	if smp.Partition != "CPX" || smp.PartitionErr != nil {
		t.Errorf("partition %q, %v", smp.Partition, smp.PartitionErr)
	}
	if smp.PowerErr != nil || smp.PowerMW < 90000+(smp.Util-10)*30 || smp.PowerMW > 90000+(smp.Util+10)*30 {
		t.Errorf("power %d mW at %d%% busy, %v; want 90 W + 3 W per 100%% busy", smp.PowerMW, smp.Util, smp.PowerErr)
	}

	smp, err = s.Sample(1)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(smp.UtilErr, StatusNotSupported) {
		t.Errorf("busy on a GPU without it: %d, %v", smp.Util, smp.UtilErr)
	}
	if fmt.Sprint(smp.Procs) != fmt.Sprint([]Process{{sleep.Process.Pid, 2 << 30}}) {
		t.Errorf("GPU 1 processes %v", smp.Procs)
	}
	if !errors.Is(smp.PartitionErr, StatusNotSupported) {
		t.Errorf("partition of GPU 1: %q, %v", smp.Partition, smp.PartitionErr)
	}
}

// TestOptional reads a library without the optional calls: per-GPU
// process memory falls back to the process's total, power and partition
// say why they are missing.
func TestOptional(t *testing.T) {
	node := newNode(t, 2)
	s := openFake(t, node, fakegpu.HideableROCmSMI...)
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	node.AddProcess(0, sleep.Process.Pid, 1<<30)
	node.AddProcess(1, sleep.Process.Pid, 2<<30)
	smp, err := s.Sample(1)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(smp.Procs) != fmt.Sprint([]Process{{sleep.Process.Pid, 3 << 30}}) {
		t.Errorf("processes %v; want the process's VRAM over both GPUs", smp.Procs)
	}
	if !errors.Is(smp.PowerErr, StatusNotSupported) || !errors.Is(smp.PartitionErr, StatusNotSupported) {
		t.Errorf("power %v, partition %v; want StatusNotSupported", smp.PowerErr, smp.PartitionErr)
	}
}

// TestProcessCountChanging lists processes while the count changes between
// the two calls of the API: more processes appear (and end) at every
// call. A count that settles is read; one that outgrows every buffer is an
// error, not a truncated list.
func TestProcessCountChanging(t *testing.T) {
	node := newNode(t, 1)
	s := openFake(t, node)
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	node.AddProcess(0, sleep.Process.Pid, 1<<20)

	tests := []struct {
		name     string
		perCall  int
		doubling bool
		wantErr  error
	}{
		{"steady", 0, false, nil},
		{"grows at every call", 7, false, nil},
		{"grows past the first buffer", 40, false, nil},
		{"doubles at every call", 5, true, errChanging},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node.SetProcessListGrowth(tt.perCall, tt.doubling)
			defer node.SetProcessListGrowth(0, false)
			procs, err := s.Processes(0)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Processes: %v; want %v", err, tt.wantErr)
			}
			if err == nil && fmt.Sprint(procs) != fmt.Sprint([]Process{{sleep.Process.Pid, 1 << 20}}) {
				t.Errorf("processes %v; want the one live process", procs)
			}
		})
	}
}

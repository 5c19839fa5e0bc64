package amdsmi

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

func TestStatusWording(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"wording", &Error{Op: "amdsmi_init", Code: StatusInitError, Text: "An error occurred when initializing internal data structures"},
			"amdsmi_init: AMDSMI_STATUS_INIT_ERROR: An error occurred when initializing internal data structures"},
		{"no wording", &Error{Op: "amdsmi_shut_down", Code: 99}, "amdsmi_shut_down: AMD SMI status 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.err, tt.err.Code) {
				t.Error("errors.Is does not match the status")
			}
		})
	}
}

// TestVersions checks which process-list ABI each library version gets:
// the versions amdsmi.h reports at the ROCm tags, and others.
func TestVersions(t *testing.T) {
	tests := []struct {
		name string
		v    Version
		want procABI
	}{
		{"ROCm 6.0.0 and 6.0.2", Version{23, 4, 0, 0}, abiPIDs},
		{"ROCm 6.1.0", Version{24, 5, 0, 0}, abiPIDs},
		{"ROCm 6.1.1", Version{24, 5, 1, 0}, abiInfos},
		{"ROCm 6.1.2", Version{24, 5, 2, 0}, abiInfos},
		{"ROCm 6.2.0", Version{24, 6, 2, 0}, abiInfos},
		{"ROCm 6.2.2", Version{24, 6, 3, 0}, abiInfos},
		{"not yet checked", Version{24, 7, 0, 0}, abiUnknown},
		{"without its year field", Version{26, 0, 0, 0x7f00}, abiUnknown},
		{"zero", Version{}, abiUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.abi(); got != tt.want {
				t.Errorf("%s: abi %d, want %d", tt.v, got, tt.want)
			}
			if tt.v.Known() != (tt.want != abiUnknown) {
				t.Errorf("%s: Known() = %v", tt.v, tt.v.Known())
			}
		})
	}
}

// fakeLib builds the fake AMD SMI r says into a temporary directory and
// points it at node.
func fakeLib(t *testing.T, node *fakegpu.Node, r fakegpu.ROCm) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc to build the fakes")
	}
	if r.AMDSMIName == "" {
		r.AMDSMIName = fakegpu.AMDSMILib
	}
	dir := t.TempDir()
	if err := fakegpu.BuildROCm(dir, r); err != nil {
		t.Fatalf("fake AMD SMI: %v", err)
	}
	t.Setenv("FAKEGPU_DIR", node.Dir)
	return filepath.Join(dir, r.AMDSMIName)
}

func newNode(t *testing.T, gpus int) *fakegpu.Node {
	t.Helper()
	node, err := fakegpu.NewROCmNode(t.TempDir(), "", gpus)
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// sleeper starts a process that lives until the test ends.
func sleeper(t *testing.T) int {
	t.Helper()
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c.Process.Pid
}

// TestTelemetry reads, in keeper's shape and through each process-list ABI,
// the GPUs a process that sees only some of the node's
// (ROCR_VISIBLE_DEVICES=2,1) would have from HIP.
func TestTelemetry(t *testing.T) {
	for _, tt := range []struct {
		version, soname string
		want            Version
	}{
		{"24.6.2", "libamd_smi.so.24", Version{24, 6, 2, 0}}, // ROCm 6.2: amdsmi_proc_info_t
		{"24.5.0", "libamd_smi.so.61", Version{24, 5, 0, 0}}, // ROCm 6.1.0: pids
		{"23.4.0", "libamd_smi.so.23", Version{23, 4, 0, 0}}, // ROCm 6.0: pids
	} {
		t.Run(tt.version, func(t *testing.T) {
			node := newNode(t, 3)
			node.Set(2, "util", "20")
			node.Set(2, "power", "90000")
			node.SetAMD(2, "compute_partition", "CPX")
			s, err := open(fakeLib(t, node, fakegpu.ROCm{AMDSMIName: tt.soname, AMDSMIVersion: tt.version}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Version != tt.want || !s.Version.Known() || s.DeviceCount() != 3 {
				t.Fatalf("version %s, known %v, %d GPUs; want %s, 3", s.Version, s.Version.Known(), s.DeviceCount(), tt.want)
			}
			devs := []hip.DeviceInfo{
				{Ordinal: 0, UUID: node.AMDUUID(2), PCIBusID: node.PCIBusID(2), Name: "HIP GPU 2"},
				{Ordinal: 1, PCIBusID: node.PCIBusID(1)},
			}
			tel := s.Telemetry(devs)
			pid := sleeper(t)
			node.AddProcess(2, pid, 2<<30)

			smp, err := tel.Sample(devs[0].ID())
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprint([]Process{{pid, 2 << 30}})
			if smp.Index != 2 || smp.Name != "HIP GPU 2" || smp.Util != 20 || smp.UtilErr != nil ||
				fmt.Sprint(smp.Procs) != want || smp.ProcsErr != nil ||
				smp.MemUsed != 2<<30 || smp.MemTotal == 0 || smp.MemErr != nil || smp.PowerMW != 90000 || smp.PowerErr != nil {
				t.Errorf("Sample = %+v; want index 2, util 20, processes %s, 2 GiB used, 90 W", smp, want)
			}
			if !errors.Is(smp.ModeErr, StatusNotSupported) || !errors.Is(smp.ProcUtilErr, StatusNotSupported) {
				t.Errorf("compute mode %v, process utilization %v; want not supported", smp.ModeErr, smp.ProcUtilErr)
			}
			if p, err := s.Partition(2); p != "CPX" || err != nil {
				t.Errorf("Partition(2) = %q, %v; want CPX", p, err)
			}
			if _, err := s.Partition(0); !errors.Is(err, StatusNotSupported) {
				t.Errorf("Partition(0) = %v; want not supported", err)
			}
			procs, err := tel.Processes(devs[1].ID())
			if err != nil || len(procs) != 0 || procs == nil {
				t.Errorf("Processes(gpu 1) = %#v, %v; want an empty list", procs, err)
			}
			if _, err := tel.Sample(node.PCIBusID(0)); err == nil {
				t.Error("read a GPU HIP did not show")
			}
		})
	}
}

// TestProcessListGrows lists more processes than the first buffer holds:
// the call is repeated with a larger one, whichever ABI.
func TestProcessListGrows(t *testing.T) {
	for _, version := range []string{"24.6.0", "23.4.0"} {
		t.Run(version, func(t *testing.T) {
			node := newNode(t, 1)
			s, err := open(fakeLib(t, node, fakegpu.ROCm{AMDSMIName: "libamd_smi.grow." + version + ".so", AMDSMIVersion: version}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n = 21
			for i := 0; i < n; i++ {
				node.AddProcess(0, sleeper(t), uint64(i+1)<<20)
			}
			procs, err := s.Processes(0)
			if err != nil || len(procs) != n {
				t.Fatalf("Processes = %d, %v; want %d", len(procs), err, n)
			}
		})
	}
}

// TestUnknownVersion opens a library whose amdsmi_version_t has no year
// field (ROCm 7's layout): memory is read, and the readings whose layouts
// are unchecked say so instead of reading a struct that may be wrong.
func TestUnknownVersion(t *testing.T) {
	node := newNode(t, 1)
	node.AddProcess(0, os.Getpid(), 1<<30)
	s, err := open(fakeLib(t, node, fakegpu.ROCm{AMDSMIName: "libamd_smi.so.26", AMDSMIVersion: "0.26.0", AMDSMIYearless: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Version.Known() {
		t.Fatalf("version %s known", s.Version)
	}
	if used, _, err := s.Memory(0); used != 1<<30 || err != nil {
		t.Errorf("Memory = %d, %v; want 1 GiB", used, err)
	}
	_, berr := s.Busy(0)
	_, perr := s.Processes(0)
	_, werr := s.PowerMW(0)
	for _, err := range []error{berr, perr, werr} {
		if !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "AMD SMI 26.0.0.0:") {
			t.Errorf("%v; want ErrUnknownVersion naming the version", err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := open(filepath.Join(dir, "libamd_smi.so.24"), filepath.Join(dir, "libamd_smi.so"))
	if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "libamd_smi.so.24") {
		t.Fatalf("missing library: %v; want ErrNoLibrary naming each soname", err)
	}

	node := newNode(t, 1)
	lib := fakeLib(t, node, fakegpu.ROCm{AMDSMIName: "libamd_smi.initerr.so"})
	node.SetInitError("amd_smi", int(StatusInitError))
	_, err = open(lib)
	var e *Error
	if !errors.As(err, &e) || e.Op != "amdsmi_init" || !errors.Is(err, StatusInitError) || e.Text == "" {
		t.Errorf("failing init: %v; want amdsmi_init's AMDSMI_STATUS_INIT_ERROR in the library's words", err)
	}
	node.ClearInitError("amd_smi")

	src := filepath.Join(dir, "partial.c")
	os.WriteFile(src, []byte("int amdsmi_init(unsigned long f) { return 0; }\n"), 0o644)
	partial := filepath.Join(dir, "libamd_smi.partial.so")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", partial, src).CombinedOutput(); err != nil {
		t.Skipf("gcc: %v\n%s", err, out)
	}
	_, err = open(partial)
	for _, want := range []string{partial, "missing symbols", "amdsmi_get_gpu_activity", "amdsmi_get_gpu_process_list"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("partial library: %v; want %q in it", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "amdsmi_get_gpu_process_info") {
		t.Errorf("partial library: %v names an optional symbol", err)
	}
}

// TestMatch matches GPUs by PCI bus id alone; partitions that share one
// are no match.
func TestMatch(t *testing.T) {
	node := newNode(t, 3)
	node.SetAMD(0, "pci", "0000:C1:00.0")
	node.SetAMD(1, "pci", "0001:c5:00.0")
	node.SetAMD(2, "pci", "0001:c5:00.0")
	s, err := open(fakeLib(t, node, fakegpu.ROCm{AMDSMIName: "libamd_smi.match.so"}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if i, err := s.Match("0000:c1:00.0"); i != 0 || err != nil {
		t.Errorf("Match(0000:c1:00.0) = %d, %v; want 0", i, err)
	}
	for _, bus := range []string{"0001:c5:00.0", "0000:ff:00.0", ""} {
		if _, err := s.Match(bus); !errors.Is(err, ErrNoMatch) {
			t.Errorf("Match(%q) = %v; want ErrNoMatch", bus, err)
		}
	}
	if got := FormatBDF(0x1<<16 | 0xc5<<8 | 0x3<<3 | 0x1); got != "0001:c5:03.1" {
		t.Errorf("FormatBDF = %s", got)
	}
}

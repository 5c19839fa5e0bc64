package fakegpu

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// exports returns the symbols the library at path defines.
func exports(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF {
			out[s.Name] = true
		}
	}
	return out
}

func soname(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(names) != 1 {
		t.Fatalf("%s: soname %v, %v", path, names, err)
	}
	return names[0]
}

func TestBuildROCm(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	if err := BuildROCm(t.TempDir(), ROCm{Hide: []string{"hipMalloc"}}); err == nil {
		t.Error("BuildROCm hid a symbol every runtime has")
	}
	always := []string{"hipInit", "hipGetDeviceCount", "hipMalloc", "hipMemsetAsync", "hipEventElapsedTime",
		"rsmi_init", "rsmi_dev_busy_percent_get", "rsmi_compute_process_info_get", "rsmi_compute_process_gpus_get"}
	hideable := append(slices.Clone(HideableHIP), HideableROCmSMI...)
	tests := []struct {
		name             string
		r                ROCm
		hipName, smiName string
	}{
		{"defaults", ROCm{}, HIPLib, ROCmSMILib},
		{"ROCm 5 names, all optional symbols hidden", ROCm{HIPName: "libamdhip64.so.5", SMIName: "librocm_smi64.so.5", Hide: hideable}, "libamdhip64.so.5", "librocm_smi64.so.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := BuildROCm(dir, tt.r); err != nil {
				t.Fatal(err)
			}
			hip, smi := filepath.Join(dir, tt.hipName), filepath.Join(dir, tt.smiName)
			if soname(t, hip) != tt.hipName || soname(t, smi) != tt.smiName {
				t.Errorf("sonames %s, %s", soname(t, hip), soname(t, smi))
			}
			exported := exports(t, hip)
			for s := range exports(t, smi) {
				exported[s] = true
			}
			for _, sym := range append(slices.Clone(always), hideable...) {
				if hidden := slices.Contains(tt.r.Hide, sym); exported[sym] == hidden {
					t.Errorf("%s exported: %v, want %v", sym, exported[sym], !hidden)
				}
			}
		})
	}
}

func TestNewROCmNode(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	lib := t.TempDir()
	n, err := NewROCmNode(t.TempDir(), lib, 2)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(lib)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{rocmStampFile, AMDSMILib, HIPLib, ROCmSMILib}; !slices.Equal(names, want) {
		t.Errorf("library directory holds %v, want %v (no CUDA libraries on an AMD node)", names, want)
	}
	fi, _ := os.Stat(filepath.Join(lib, HIPLib))
	time.Sleep(20 * time.Millisecond)
	if _, err := NewROCmNode(t.TempDir(), lib, 1); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(filepath.Join(lib, HIPLib)); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("the libraries were rebuilt from the same sources")
	}
	if got, _ := n.GPUs(); got != 2 {
		t.Errorf("GPUs = %d, want 2", got)
	}
}

func TestAMDSettings(t *testing.T) {
	n, err := NewROCmNode(t.TempDir(), "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.AMDUUID(1); got != "GPU-5c1b4d702f8d0001" {
		t.Errorf("default UUID %q", got)
	}
	if got := n.PCIBusID(1); got != "0000:07:00.0" {
		t.Errorf("default PCI bus id %q", got)
	}
	tests := []struct {
		key, value string
		ok         bool
	}{
		{"uuid", "GPU-0123456789ABCDEF", true},
		{"uuid", "none", true},
		{"uuid", "GPU-00000000-0000-4000-8000-000000000001", false},
		{"pci", "0000:C1:00.0", true},
		{"pci", "c1:00.0", false},
		{"compute_partition", "CPX", true},
		{"compute_partition", "cpx mode", false},
		{"name", "MI300X", false}, // Set's, not SetAMD's
	}
	for _, tt := range tests {
		err := n.SetAMD(1, tt.key, tt.value)
		if (err == nil) != tt.ok {
			t.Errorf("SetAMD(%s, %q) = %v, want ok %v", tt.key, tt.value, err, tt.ok)
		}
	}
	if err := n.SetAMD(2, "uuid", "none"); err == nil {
		t.Error("SetAMD on GPU 2 of 2 succeeded")
	}
	n.SetAMD(0, "uuid", "GPU-0123456789ABCDEF")
	n.SetAMD(0, "pci", "0001:C1:00.1")
	if n.AMDUUID(0) != "GPU-0123456789abcdef" || n.PCIBusID(0) != "0001:c1:00.1" || n.AMDUUID(1) != "" {
		t.Errorf("settings read back as %q %q %q", n.AMDUUID(0), n.PCIBusID(0), n.AMDUUID(1))
	}
	for _, lib := range []string{"hip", "rocm_smi", "amd_smi"} {
		if err := n.SetInitError(lib, 8); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(filepath.Join(n.Dir, lib+"_init_error")); err != nil {
			t.Error(err)
		}
		if err := n.ClearInitError(lib); err != nil {
			t.Error(err)
		}
		if err := n.ClearInitError(lib); err != nil {
			t.Errorf("clearing twice: %v", err)
		}
	}
	if err := n.SetProcessListGrowth(3, true); err != nil {
		t.Error(err)
	}
	if data, _ := os.ReadFile(filepath.Join(n.Dir, "rocm_smi_grow")); string(data) != "x3\n" {
		t.Errorf("rocm_smi_grow holds %q", data)
	}
	n.SetProcessListGrowth(0, false)
	if _, err := os.Stat(filepath.Join(n.Dir, "rocm_smi_grow")); !os.IsNotExist(err) {
		t.Errorf("growth not turned off: %v", err)
	}
}

// TestBuildROCmAMDSMI leaves AMD SMI out, as on ROCm 5, and refuses a
// version it cannot write.
func TestBuildROCmAMDSMI(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	if err := BuildROCm(dir, ROCm{NoAMDSMI: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, AMDSMILib)); !os.IsNotExist(err) {
		t.Errorf("AMD SMI built with NoAMDSMI: %v", err)
	}
	if err := BuildROCm(dir, ROCm{AMDSMIVersion: "6.2"}); err == nil || !strings.Contains(err.Error(), `"6.2"`) {
		t.Errorf("version 6.2: %v; want an error naming it", err)
	}
}

package fakegpu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The default sonames of the fake AMD libraries: ROCm 6's HIP runtime and
// AMD SMI, and ROCm SMI as Debian ships it.
const (
	HIPLib     = "libamdhip64.so.6"
	ROCmSMILib = "librocm_smi64.so.1"
	AMDSMILib  = "libamd_smi.so.24"
)

// AMDSMIVersion is the library version the fake AMD SMI reports by
// default (year.major.minor; ROCm 6.2), whose process list holds
// amdsmi_proc_info_t.
const AMDSMIVersion = "24.6.0"

// HideableHIP and HideableROCmSMI are the symbols [ROCm].Hide can leave
// out, as older or newer libraries lack them.
var (
	HideableHIP     = []string{"hipDeviceGetUuid"}
	HideableROCmSMI = []string{
		"rsmi_dev_power_ave_get",
		"rsmi_dev_current_socket_power_get",
		"rsmi_dev_compute_partition_get",
		"rsmi_compute_process_info_by_device_get",
	}
)

// ROCm says which fake AMD libraries [BuildROCm] builds. Zero fields take
// the defaults.
type ROCm struct {
	HIPName string   // file name and soname of the HIP runtime; HIPLib if ""
	SMIName string   // likewise for ROCm SMI; ROCmSMILib if ""
	Hide    []string // symbols to leave out, from HideableHIP and HideableROCmSMI

	// NoAMDSMI leaves the fake AMD SMI out, as on ROCm 5.
	NoAMDSMI bool
	// AMDSMIName is the AMD SMI's file name and soname; AMDSMILib if "".
	AMDSMIName string
	// AMDSMIVersion is the version amdsmi_get_lib_version reports,
	// "year.major.minor", and picks the process-list ABI: before 24.5.1
	// (ROCm 6.0, 6.1.0) a list of pids and amdsmi_get_gpu_process_info.
	// The package's AMDSMIVersion if "".
	AMDSMIVersion string
	// AMDSMIYearless writes amdsmi_version_t without its year field, a
	// layout keepgpu has not checked: major, minor and release, from
	// AMDSMIVersion's major and minor.
	AMDSMIYearless bool
}

// BuildROCm compiles the fake HIP runtime (csrc/fakehip.c), the fake ROCm
// SMI (csrc/fakerocmsmi.c) and, unless r.NoAMDSMI, the fake AMD SMI
// (csrc/fakeamdsmi.c) into dir, with the names, version and without the
// symbols r says. All share the simulated node of the CUDA fakes; see
// csrc/fakeamd.h for what they add to it.
func BuildROCm(dir string, r ROCm) error {
	if r.HIPName == "" {
		r.HIPName = HIPLib
	}
	if r.SMIName == "" {
		r.SMIName = ROCmSMILib
	}
	var hipFlags, smiFlags []string
	for _, sym := range r.Hide {
		switch {
		case slices.Contains(HideableHIP, sym):
			hipFlags = append(hipFlags, "-DFAKEHIP_HIDE_"+sym)
		case slices.Contains(HideableROCmSMI, sym):
			smiFlags = append(smiFlags, "-DFAKEROCMSMI_HIDE_"+sym)
		default:
			return fmt.Errorf("fakegpu: cannot hide %q: want one of %s", sym,
				strings.Join(append(slices.Clone(HideableHIP), HideableROCmSMI...), ", "))
		}
	}
	var amdFlags []string
	if !r.NoAMDSMI {
		if r.AMDSMIName == "" {
			r.AMDSMIName = AMDSMILib
		}
		if r.AMDSMIVersion == "" {
			r.AMDSMIVersion = AMDSMIVersion
		}
		var year, major, minor int
		if n, _ := fmt.Sscanf(r.AMDSMIVersion, "%d.%d.%d", &year, &major, &minor); n != 3 {
			return fmt.Errorf("fakegpu: AMD SMI version %q: want year.major.minor", r.AMDSMIVersion)
		}
		amdFlags = []string{fmt.Sprintf("-DFAKEAMDSMI_YEAR=%d", year), fmt.Sprintf("-DFAKEAMDSMI_MAJOR=%d", major), fmt.Sprintf("-DFAKEAMDSMI_MINOR=%d", minor)}
		if r.AMDSMIYearless {
			amdFlags = append(amdFlags, "-DFAKEAMDSMI_VERSION_V7")
		}
	}
	gcc, src, err := prepare(dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	errs := make(chan error, 3)
	go func() { errs <- buildLib(gcc, src, dir, r.HIPName, "fakehip.c", hipFlags) }()
	go func() { errs <- buildLib(gcc, src, dir, r.SMIName, "fakerocmsmi.c", smiFlags) }()
	if r.NoAMDSMI {
		errs <- nil
	} else {
		go func() { errs <- buildLib(gcc, src, dir, r.AMDSMIName, "fakeamdsmi.c", amdFlags) }()
	}
	return errors.Join(<-errs, <-errs, <-errs)
}

// rocmStampFile, in a library directory, holds the hash of the sources
// the AMD libraries there were built from.
const rocmStampFile = ".fakegpu-rocm-stamp"

// NewROCmNode is [NewNode] for an AMD node: the state directory with gpus
// GPUs, and, unless libDir is "", the default fake HIP runtime, AMD SMI
// and ROCm SMI built into libDir (and no CUDA libraries), unless libDir already
// holds them built from the same sources.
func NewROCmNode(stateDir, libDir string, gpus int) (*Node, error) {
	n, err := NewNode(stateDir, "", gpus)
	if err != nil || libDir == "" {
		return n, err
	}
	if n.LibDir, err = filepath.Abs(libDir); err != nil {
		return nil, err
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	stamp, err := os.ReadFile(filepath.Join(n.LibDir, rocmStampFile))
	if err == nil && strings.TrimSpace(string(stamp)) == sourceHash() {
		return n, nil
	}
	if err := BuildROCm(n.LibDir, ROCm{}); err != nil {
		return nil, err
	}
	return n, os.WriteFile(filepath.Join(n.LibDir, rocmStampFile), []byte(sourceHash()+"\n"), 0o644)
}

// amdSettingRE checks the values of the AMD GPU settings.
var amdSettingRE = map[string]*regexp.Regexp{
	"uuid":              regexp.MustCompile(`^(GPU-[0-9a-fA-F]{16}|none)$`),
	"pci":               regexp.MustCompile(`^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`),
	"compute_partition": regexp.MustCompile(`^[A-Z0-9]+$`),
}

// SetAMD writes GPU gpu's AMD setting key: uuid ("GPU-" and the card's 16
// hex digit unique id, or "none" for a card without one), pci (its PCI bus
// id, "0000:c1:00.0") or compute_partition ("SPX", "CPX", ...). The
// settings [Node.Set] knows (name, total, util, power) apply too.
func (n *Node) SetAMD(gpu int, key, value string) error {
	re, ok := amdSettingRE[key]
	if !ok {
		return fmt.Errorf("fakegpu: unknown AMD GPU setting %q", key)
	}
	if !re.MatchString(value) {
		return fmt.Errorf("fakegpu: bad value %q for AMD GPU setting %s", value, key)
	}
	if err := n.checkGPU(gpu); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(n.gpuDir(gpu), key), value+"\n")
}

// AMDUUID returns GPU gpu's UUID as rocminfo prints it ("GPU-" and 16 hex
// digits): the uuid setting, or the default GPU-5c1b4d702f8d00<ii>; "" for
// a card without one.
func (n *Node) AMDUUID(gpu int) string {
	if data, err := os.ReadFile(filepath.Join(n.gpuDir(gpu), "uuid")); err == nil {
		switch s := strings.TrimSpace(string(data)); {
		case s == "none":
			return ""
		case amdSettingRE["uuid"].MatchString(s):
			return "GPU-" + strings.ToLower(s[4:])
		}
	}
	return fmt.Sprintf("GPU-5c1b4d702f8d00%02x", gpu&0xff)
}

// PCIBusID returns GPU gpu's PCI bus id on an AMD node: the pci setting,
// or the default 0000:<0x03+4*gpu>:00.0.
func (n *Node) PCIBusID(gpu int) string {
	if data, err := os.ReadFile(filepath.Join(n.gpuDir(gpu), "pci")); err == nil {
		if s := strings.TrimSpace(string(data)); amdSettingRE["pci"].MatchString(s) {
			return strings.ToLower(s)
		}
	}
	return fmt.Sprintf("0000:%02x:00.0", (3+4*gpu)&0xff)
}

// SetProcessListGrowth makes every call of the fake ROCm SMI's
// rsmi_compute_process_info_get list perCall more short-lived processes
// than the call before (0 turns it off), so that the process count
// changes between the two calls of that API. With doubling, the number of
// such processes is perCall times 2 to the number of calls instead: a list
// that outgrows any buffer.
func (n *Node) SetProcessListGrowth(perCall int, doubling bool) error {
	path := filepath.Join(n.Dir, "rocm_smi_grow")
	if perCall <= 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	v := strconv.Itoa(perCall)
	if doubling {
		v = "x" + v
	}
	return writeAtomic(path, v+"\n")
}

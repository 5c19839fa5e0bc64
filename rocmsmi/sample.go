package rocmsmi

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keepgpu/keepgpu/internal/dl"
)

// Process is a compute process on a GPU as ROCm SMI lists it.
type Process struct {
	PID   int    `json:"pid"`
	Bytes uint64 `json:"memory_used"`
}

// Device identifies one GPU as ROCm SMI numbers it: every GPU of the node,
// whatever ROCR_VISIBLE_DEVICES or the job's cgroup say, so its indices are
// not HIP's ordinals.
type Device struct {
	Index    int
	UUID     string // "GPU-" and the 16 hex digits of the unique id; "" without one
	PCIBusID string // "0000:c1:00.0"
	Name     string
}

// Sample is one reading of a GPU, shaped like nvml.Sample. Every reading
// that may be unavailable has an error beside it; a nil error means the
// reading is real.
type Sample struct {
	Device
	MemTotal     uint64
	MemUsed      uint64
	MemErr       error
	Util         int // busy percent: the share of the last sample the GFX engine was busy
	UtilErr      error
	Procs        []Process
	ProcsErr     error
	Partition    string // compute partition, "SPX", "CPX", ...; "" where not exposed
	PartitionErr error
	PowerMW      int
	PowerErr     error
	Time         time.Time
}

// DeviceCount returns how many GPUs ROCm SMI monitors.
func (s *SMI) DeviceCount() (int, error) {
	var n uint32
	if st := s.numDevices(&n); st != Success {
		return 0, s.err("rsmi_num_monitor_devices", st)
	}
	return int(n), nil
}

// Device returns the identity of the GPU at ROCm SMI index i.
func (s *SMI) Device(i int) (Device, error) {
	d := Device{Index: i}
	dv := uint32(i)
	var bdf uint64
	if st := s.devPCIID(dv, &bdf); st != Success {
		return d, s.err(fmt.Sprintf("rsmi_dev_pci_id_get gpu %d", i), st)
	}
	d.PCIBusID = FormatBDF(bdf)
	var id uint64
	if s.devUniqueID(dv, &id) == Success {
		d.UUID = fmt.Sprintf("GPU-%016x", id)
	}
	buf := make([]byte, 256)
	if s.devName(dv, &buf[0], uintptr(len(buf))) == Success {
		d.Name = dl.CString(buf)
	}
	return d, nil
}

// Devices returns every GPU ROCm SMI monitors, in its index order.
func (s *SMI) Devices() ([]Device, error) {
	n, err := s.DeviceCount()
	if err != nil {
		return nil, err
	}
	out := make([]Device, 0, n)
	for i := 0; i < n; i++ {
		d, err := s.Device(i)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// FormatBDF spells a ROCm SMI BDFID (domain in bits 63..32, partition in
// 31..28 since ROCm 6.1, bus 15..8, device 7..3, function 2..0) as the
// PCI bus id HIP reports, "0000:c1:00.0". The partition is not part of it.
func FormatBDF(bdf uint64) string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", bdf>>32, bdf>>8&0xff, bdf>>3&0x1f, bdf&0x7)
}

// ErrNoMatch is the error of Match when no GPU, or more than one, fits.
var ErrNoMatch = errors.New("no single ROCm SMI device matches")

// Match returns the ROCm SMI index of the GPU HIP identifies by uuid and
// pciBusID (either may be ""). ROCm SMI and HIP number GPUs differently
// (SMI sees the node, HIP the job), so GPUs are matched by identity, never
// by index. The PCI bus id comes first: both libraries read it from the
// same PCI location on every ROCm version, while the unique id behind the
// UUID is missing on some cards and drivers. Where several SMI devices
// share one PCI bus id (the partitions of a partitioned MI300), the UUID
// must single one out. Anything else is ErrNoMatch: telemetry that may
// belong to another GPU is worse than none.
func (s *SMI) Match(uuid, pciBusID string) (int, error) {
	devs, err := s.Devices()
	if err != nil {
		return -1, err
	}
	var byBus, byUUID []int
	for _, d := range devs {
		if pciBusID != "" && strings.EqualFold(d.PCIBusID, pciBusID) {
			byBus = append(byBus, d.Index)
		}
		if uuid != "" && strings.EqualFold(d.UUID, uuid) {
			byUUID = append(byUUID, d.Index)
		}
	}
	switch {
	case len(byBus) == 1:
		return byBus[0], nil
	case len(byBus) > 1:
		var both []int
		for _, i := range byBus {
			if slices.Contains(byUUID, i) {
				both = append(both, i)
			}
		}
		if len(both) == 1 {
			return both[0], nil
		}
	case pciBusID == "" && len(byUUID) == 1:
		return byUUID[0], nil
	}
	return -1, fmt.Errorf("%w GPU %s (PCI %s): %d by PCI bus id, %d by UUID", ErrNoMatch, orNone(uuid), orNone(pciBusID), len(byBus), len(byUUID))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Sample reads the GPU at ROCm SMI index i.
func (s *SMI) Sample(i int) (Sample, error) {
	d, err := s.Device(i)
	if err != nil {
		return Sample{Device: d}, err
	}
	smp := Sample{Device: d, Time: time.Now()}
	dv := uint32(i)
	var total, used uint64
	if st := s.devMemTotal(dv, memTypeVRAM, &total); st != Success {
		smp.MemErr = s.err(fmt.Sprintf("rsmi_dev_memory_total_get gpu %d", i), st)
	} else if st := s.devMemUsage(dv, memTypeVRAM, &used); st != Success {
		smp.MemErr = s.err(fmt.Sprintf("rsmi_dev_memory_usage_get gpu %d", i), st)
	} else {
		smp.MemTotal, smp.MemUsed = total, used
	}
	var busy uint32
	if st := s.devBusy(dv, &busy); st != Success {
		smp.UtilErr = s.err(fmt.Sprintf("rsmi_dev_busy_percent_get gpu %d", i), st)
	} else {
		smp.Util = int(busy)
	}
	smp.Procs, smp.ProcsErr = s.Processes(i)
	smp.Partition, smp.PartitionErr = s.partition(i)
	smp.PowerMW, smp.PowerErr = s.power(i)
	return smp, nil
}

// partition reads the compute partition, where the library exposes it.
func (s *SMI) partition(i int) (string, error) {
	const op = "rsmi_dev_compute_partition_get"
	if s.devPartition == nil {
		return "", &Error{Op: fmt.Sprintf("%s gpu %d", op, i), Code: StatusNotSupported, Text: "not in this library"}
	}
	buf := make([]byte, 64)
	if st := s.devPartition(uint32(i), &buf[0], uint32(len(buf))); st != Success {
		return "", s.err(fmt.Sprintf("%s gpu %d", op, i), st)
	}
	return dl.CString(buf), nil
}

// power reads the socket power (MI300 and later) or the average power, in
// milliwatts.
func (s *SMI) power(i int) (int, error) {
	var uw uint64
	var err error = &Error{Op: fmt.Sprintf("rsmi_dev_power_ave_get gpu %d", i), Code: StatusNotSupported, Text: "not in this library"}
	if s.devSocketPower != nil {
		st := s.devSocketPower(uint32(i), &uw)
		if st == Success {
			return int(uw / 1000), nil
		}
		err = s.err(fmt.Sprintf("rsmi_dev_current_socket_power_get gpu %d", i), st)
	}
	if s.devPowerAve != nil {
		st := s.devPowerAve(uint32(i), 0, &uw)
		if st == Success {
			return int(uw / 1000), nil
		}
		err = s.err(fmt.Sprintf("rsmi_dev_power_ave_get gpu %d", i), st)
	}
	return 0, err
}

// maxTries bounds the calls of a two-call API (ask how many, then read
// them) when the number keeps growing between the calls.
const maxTries = 5

// errChanging is the error of a two-call API whose count grew at every try.
var errChanging = errors.New("the list grew at every try")

// grow returns the buffer length for a retry after the library reported
// need elements: more than asked, as more may appear before the next call.
func grow(need uint32, had int) int {
	return max(int(need)+int(need)/2+4, had*2)
}

// Processes lists the compute processes on the GPU at ROCm SMI index i and
// the VRAM each holds there. ROCm SMI lists the node's processes, then the
// GPUs of each; a process that ends between the two calls is left out.
// Memory per GPU comes from rsmi_compute_process_info_by_device_get where
// the library has it, else it is the process's VRAM over all GPUs.
func (s *SMI) Processes(i int) ([]Process, error) {
	all, err := s.processes()
	if err != nil {
		return nil, err
	}
	out := []Process{}
	for _, p := range all {
		gpus, err := s.processGPUs(p.PID)
		if errors.Is(err, StatusNotFound) {
			continue // ended since it was listed
		}
		if err != nil {
			return nil, err
		}
		if !slices.Contains(gpus, uint32(i)) {
			continue
		}
		bytes := p.VRAMUsage
		if s.procInfoByDev != nil {
			var one processInfo
			switch st := s.procInfoByDev(p.PID, uint32(i), &one); st {
			case Success:
				bytes = one.VRAMUsage
			case StatusNotFound:
				continue
			}
		}
		out = append(out, Process{PID: int(p.PID), Bytes: bytes})
	}
	return out, nil
}

// processes calls rsmi_compute_process_info_get. The library writes at
// most as many entries as the buffer holds and answers
// RSMI_STATUS_INSUFFICIENT_SIZE when there were more; the count it gives
// for a NULL buffer may be stale by the next call, so it only sizes a
// larger buffer, and the call is repeated until the list fits.
func (s *SMI) processes() ([]processInfo, error) {
	const op = "rsmi_compute_process_info_get"
	size := 8
	for try := 0; try < maxTries; try++ {
		buf := make([]processInfo, size)
		n := uint32(size)
		switch st := s.procInfo(&buf[0], &n); st {
		case Success:
			return buf[:min(int(n), size)], nil
		case StatusInsufficient:
			var need uint32
			if st := s.procInfo(nil, &need); st != Success {
				return nil, s.err(op, st)
			}
			size = grow(need, size)
		default:
			return nil, s.err(op, st)
		}
	}
	return nil, fmt.Errorf("%s: %w", op, errChanging)
}

// processGPUs calls rsmi_compute_process_gpus_get for pid, the same way.
func (s *SMI) processGPUs(pid uint32) ([]uint32, error) {
	op := fmt.Sprintf("rsmi_compute_process_gpus_get pid %d", pid)
	size := 8
	for try := 0; try < maxTries; try++ {
		buf := make([]uint32, size)
		n := uint32(size)
		switch st := s.procGPUs(pid, &buf[0], &n); st {
		case Success:
			return buf[:min(int(n), size)], nil
		case StatusInsufficient:
			var need uint32
			if st := s.procGPUs(pid, nil, &need); st != Success {
				return nil, s.err(op, st)
			}
			size = grow(need, size)
		default:
			return nil, s.err(op, st)
		}
	}
	return nil, fmt.Errorf("%s: %w", op, errChanging)
}

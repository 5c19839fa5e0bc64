package amdsmi

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keepgpu/keepgpu/internal/dl"
)

// Process is a process with memory on a GPU as AMD SMI lists it.
type Process struct {
	PID   int
	Bytes uint64 // VRAM it holds on that GPU
}

// DeviceCount returns how many AMD GPUs AMD SMI shows: every GPU of the
// node, whatever ROCR_VISIBLE_DEVICES or the job's cgroup say, so its
// indices are not HIP's ordinals.
func (s *SMI) DeviceCount() int { return len(s.gpus) }

// handle returns the processor handle of the GPU at index i.
func (s *SMI) handle(i int) (uintptr, error) {
	if i < 0 || i >= len(s.gpus) {
		return 0, fmt.Errorf("amdsmi: no GPU %d (AMD SMI shows %d)", i, len(s.gpus))
	}
	return s.gpus[i], nil
}

// PCIBusID returns the PCI bus id of the GPU at index i, spelled as HIP
// reports it ("0000:c1:00.0"). amdsmi_bdf_t holds the function in bits
// 0-2, the device in 3-7, the bus in 8-15 and the domain from bit 16; AMD
// SMI fills the domain from ROCm SMI's upper 32 bits, so a partition's
// number (ROCm SMI's bits 28-31) is not part of it.
func (s *SMI) PCIBusID(i int) (string, error) {
	h, err := s.handle(i)
	if err != nil {
		return "", err
	}
	var bdf uint64
	if st := s.deviceBDF(h, &bdf); st != Success {
		return "", s.err(fmt.Sprintf("amdsmi_get_gpu_device_bdf gpu %d", i), st)
	}
	return FormatBDF(bdf), nil
}

// FormatBDF spells an amdsmi_bdf_t as the PCI bus id HIP reports.
func FormatBDF(bdf uint64) string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", bdf>>16&0xffffffff, bdf>>8&0xff, bdf>>3&0x1f, bdf&0x7)
}

// ErrNoMatch is the error of Match when no GPU, or more than one, fits.
var ErrNoMatch = errors.New("no single AMD SMI GPU matches")

// Match returns the AMD SMI index of the GPU whose PCI bus id HIP reports
// as pciBusID. AMD SMI and HIP number GPUs differently (SMI sees the node,
// HIP the job), so GPUs are matched by identity, never by index. Only the
// PCI bus id serves: AMD SMI's UUID is its own, generated from the ASIC
// serial and device id, not the unique id HIP spells. Several GPUs with
// one PCI bus id (the partitions of a partitioned MI300) are ErrNoMatch:
// telemetry that may belong to another GPU is worse than none.
func (s *SMI) Match(pciBusID string) (int, error) {
	if pciBusID == "" {
		return -1, fmt.Errorf("%w: HIP reports no PCI bus id", ErrNoMatch)
	}
	var found []int
	for i := range s.gpus {
		id, err := s.PCIBusID(i)
		if err != nil {
			return -1, err
		}
		if strings.EqualFold(id, pciBusID) {
			found = append(found, i)
		}
	}
	if len(found) != 1 {
		return -1, fmt.Errorf("%w PCI %s: %d by PCI bus id", ErrNoMatch, pciBusID, len(found))
	}
	return found[0], nil
}

// unknown is the error of a reading whose layout this library version
// may not have.
func (s *SMI) unknown(op string, i int) error {
	return fmt.Errorf("%s gpu %d: AMD SMI %s: %w", op, i, s.Version, ErrUnknownVersion)
}

// Memory returns the GPU's VRAM in use and in all, in bytes.
func (s *SMI) Memory(i int) (used, total uint64, err error) {
	h, err := s.handle(i)
	if err != nil {
		return 0, 0, err
	}
	if st := s.memTotal(h, memTypeVRAM, &total); st != Success {
		return 0, 0, s.err(fmt.Sprintf("amdsmi_get_gpu_memory_total gpu %d", i), st)
	}
	if st := s.memUsage(h, memTypeVRAM, &used); st != Success {
		return 0, 0, s.err(fmt.Sprintf("amdsmi_get_gpu_memory_usage gpu %d", i), st)
	}
	return used, total, nil
}

// Busy returns the percent of the last sample the GFX engine was busy
// (amdsmi_get_gpu_activity's gfx_activity).
func (s *SMI) Busy(i int) (int, error) {
	const op = "amdsmi_get_gpu_activity"
	h, err := s.handle(i)
	if err != nil {
		return 0, err
	}
	if !s.Version.Known() {
		return 0, s.unknown(op, i)
	}
	var u engineUsage
	if st := s.activity(h, &u); st != Success {
		return 0, s.err(fmt.Sprintf("%s gpu %d", op, i), st)
	}
	if u.GFX > 100 {
		return 0, &Error{Op: fmt.Sprintf("%s gpu %d", op, i), Code: StatusNotSupported, Text: fmt.Sprintf("gfx_activity %d: not reported by this card", u.GFX)}
	}
	return int(u.GFX), nil
}

// PowerMW returns the socket power in milliwatts: the current socket
// power (MI300), else the average (MI200 and older).
func (s *SMI) PowerMW(i int) (int, error) {
	const op = "amdsmi_get_power_info"
	h, err := s.handle(i)
	if err != nil {
		return 0, err
	}
	if !s.Version.Known() {
		return 0, s.unknown(op, i)
	}
	p := powerInfo{CurrentSocket: notReported, AverageSocket: notReported}
	st := s.powerInfo(h, &p)
	// The status is the power cap's; the readings come from gpu_metrics
	// and may be there when the cap is not.
	switch {
	case p.CurrentSocket != notReported && p.CurrentSocket != 0:
		return int(p.CurrentSocket) * 1000, nil
	case p.AverageSocket != notReported:
		return int(p.AverageSocket) * 1000, nil
	case st != Success:
		return 0, s.err(fmt.Sprintf("%s gpu %d", op, i), st)
	}
	return 0, &Error{Op: fmt.Sprintf("%s gpu %d", op, i), Code: StatusNotSupported, Text: "no socket power reported"}
}

// Partition returns the GPU's compute partition ("SPX", "CPX", ...).
func (s *SMI) Partition(i int) (string, error) {
	h, err := s.handle(i)
	if err != nil {
		return "", err
	}
	buf := make([]byte, partitionBytes)
	if st := s.partition(h, &buf[0], uint32(len(buf))); st != Success {
		return "", s.err(fmt.Sprintf("amdsmi_get_gpu_compute_partition gpu %d", i), st)
	}
	return dl.CString(buf), nil
}

// maxTries bounds the calls of the process list when the number of
// processes keeps growing between calls.
const maxTries = 5

// errChanging is the error of a process list that grew at every try.
var errChanging = errors.New("the list grew at every try")

// grow returns the buffer length for a retry after the library reported
// need entries (or, before 24.5.1, left the count as it was): more than
// asked, as more may appear before the next call.
func grow(need uint32, had int) int {
	return max(int(need)+int(need)/2+4, had*2)
}

// Processes lists the processes with memory on the GPU at index i (AMD SMI
// reads the DRM file descriptors' fdinfo of every process, so a process
// shows once it has opened the GPU) and the VRAM each holds there. The
// list call's ABI follows the library version; on a version keepgpu does
// not know the answer is ErrUnknownVersion, never a list read through a
// layout that may be wrong. A buffer too small is
// AMDSMI_STATUS_OUT_OF_RESOURCES: the call is repeated with a larger one,
// at most maxTries times, never returning a truncated list.
func (s *SMI) Processes(i int) ([]Process, error) {
	const op = "amdsmi_get_gpu_process_list"
	h, err := s.handle(i)
	if err != nil {
		return nil, err
	}
	abi := s.Version.abi()
	if abi == abiUnknown {
		return nil, s.unknown(op, i)
	}
	if abi == abiPIDs && s.processInfoPID == nil {
		return nil, fmt.Errorf("%s gpu %d: AMD SMI %s lists pids but lacks amdsmi_get_gpu_process_info", op, i, s.Version)
	}
	size := 8
	for try := 0; try < maxTries; try++ {
		n := uint32(size)
		var st Status
		var infos []procInfo
		var pids []uint32
		if abi == abiInfos {
			infos = make([]procInfo, size)
			st = s.processInfos(h, &n, &infos[0])
		} else {
			pids = make([]uint32, size)
			st = s.processPIDs(h, &n, &pids[0])
		}
		switch st {
		case Success:
		case StatusOutOfResources:
			size = grow(n, size)
			continue
		default:
			return nil, s.err(fmt.Sprintf("%s gpu %d", op, i), st)
		}
		n = min(n, uint32(size))
		out := []Process{}
		if abi == abiInfos {
			for _, p := range infos[:n] {
				if p.PID != 0 {
					out = append(out, Process{PID: int(p.PID), Bytes: p.VRAMMem})
				}
			}
			return out, nil
		}
		for _, pid := range pids[:n] {
			if pid == 0 {
				continue
			}
			var p procInfo
			switch st := s.processInfoPID(h, pid, &p); st {
			case Success:
				out = append(out, Process{PID: int(pid), Bytes: p.VRAMMem})
			case StatusNotFound:
				// ended since it was listed
			default:
				return nil, s.err(fmt.Sprintf("amdsmi_get_gpu_process_info gpu %d pid %d", i, pid), st)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s gpu %d: %w", op, i, errChanging)
}

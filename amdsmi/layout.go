package amdsmi

import "unsafe"

// The structs AMD SMI fills, laid out as AMD's public amdsmi.h declares
// them (github.com/ROCm/amdsmi, include/amd_smi/amdsmi.h at the tags
// rocm-6.0.0, rocm-6.0.2, rocm-6.1.0, rocm-6.1.1, rocm-6.1.2, rocm-6.2.0
// and rocm-6.2.2: the four below are the same in all of them). On LP64
// (linux/amd64, linux/arm64) C and Go both align uint64 and pointers to 8
// bytes and lay fields out in order; the checks at the end fail the build
// where a size or offset would differ from the C one.

// version is amdsmi_version_t, filled by amdsmi_get_lib_version:
//
//	typedef struct {
//	    uint32_t year;      // last 2 digits of the year released
//	    uint32_t major;
//	    uint32_t minor;
//	    uint32_t release;   // patch, build or stepping
//	    const char *build;  // the full version string
//	} amdsmi_version_t;
type version struct {
	Year, Major, Minor, Release uint32
	Build                       *byte
}

// engineUsage is amdsmi_engine_usage_t, filled by amdsmi_get_gpu_activity
// (percent; 0xFFFF or more where the card does not report one):
//
//	typedef struct {
//	    uint32_t gfx_activity;
//	    uint32_t umc_activity;
//	    uint32_t mm_activity;
//	    uint32_t reserved[13];
//	} amdsmi_engine_usage_t;
type engineUsage struct {
	GFX, UMC, MM uint32
	_            [13]uint32
}

// powerInfo is amdsmi_power_info_t, filled by amdsmi_get_power_info (watts;
// 0xFFFF where the card's gpu_metrics lack it: MI200 reports no current
// socket power, only the average):
//
//	typedef struct {
//	    uint32_t current_socket_power;
//	    uint32_t average_socket_power;
//	    uint32_t gfx_voltage, soc_voltage, mem_voltage;  // mV
//	    uint32_t power_limit;
//	    uint32_t reserved[11];
//	} amdsmi_power_info_t;
type powerInfo struct {
	CurrentSocket, AverageSocket uint32
	GFXVoltage, SOCVoltage       uint32
	MemVoltage, PowerLimit       uint32
	_                            [11]uint32
}

// procInfo is amdsmi_proc_info_t: the element of amdsmi_get_gpu_process_list
// from library 24.5.1 (ROCm 6.1.1) on, and what amdsmi_get_gpu_process_info
// fills before (ROCm 6.0, 6.1.0). AMDSMI_NORMAL_STRING_LENGTH is 32 and
// amdsmi_process_handle_t is uint32_t:
//
//	typedef struct {
//	    char name[AMDSMI_NORMAL_STRING_LENGTH];
//	    amdsmi_process_handle_t pid;
//	    uint64_t mem;                   // bytes
//	    struct engine_usage_ {
//	        uint64_t gfx;
//	        uint64_t enc;
//	        uint32_t reserved[12];
//	    } engine_usage;                 // ns
//	    struct memory_usage_ {
//	        uint64_t gtt_mem;
//	        uint64_t cpu_mem;
//	        uint64_t vram_mem;
//	        uint32_t reserved[10];
//	    } memory_usage;                 // bytes
//	    char container_name[AMDSMI_NORMAL_STRING_LENGTH];
//	    uint32_t reserved[4];
//	} amdsmi_proc_info_t;
type procInfo struct {
	Name          [32]byte
	PID           uint32
	_             uint32
	Mem           uint64
	GFXTime       uint64
	EncTime       uint64
	_             [12]uint32
	GTTMem        uint64
	CPUMem        uint64
	VRAMMem       uint64
	_             [10]uint32
	ContainerName [32]byte
	_             [4]uint32
}

// Compile-time checks, as in nvml: each index is 0 exactly when Go's
// size or offset is amdsmi.h's, and out of range (a build error) otherwise.
var (
	_ = [1]int{}[unsafe.Sizeof(version{})-24]
	_ = [1]int{}[unsafe.Offsetof(version{}.Build)-16]
	_ = [1]int{}[unsafe.Sizeof(engineUsage{})-64]
	_ = [1]int{}[unsafe.Sizeof(powerInfo{})-68]
	_ = [1]int{}[unsafe.Offsetof(powerInfo{}.AverageSocket)-4]
	_ = [1]int{}[unsafe.Sizeof(procInfo{})-224]
	_ = [1]int{}[unsafe.Offsetof(procInfo{}.PID)-32]
	_ = [1]int{}[unsafe.Offsetof(procInfo{}.Mem)-40]
	_ = [1]int{}[unsafe.Offsetof(procInfo{}.GTTMem)-112]
	_ = [1]int{}[unsafe.Offsetof(procInfo{}.VRAMMem)-128]
	_ = [1]int{}[unsafe.Offsetof(procInfo{}.ContainerName)-176]
)

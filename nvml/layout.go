package nvml

import "unsafe"

// The structs NVML fills, laid out as NVIDIA's public nvml.h declares them
// (API version 13; the layouts quoted are unchanged since the version that
// introduced each). C's unsigned int is uint32 and unsigned long long is
// uint64; on linux/amd64 and linux/arm64 (LP64) both C and Go align a uint64
// to 8 bytes, so a uint32 before a uint64 is followed by 4 bytes of padding
// in both. Go lays out struct fields in order, as C does: these types match
// byte for byte, and the size checks below fail the build on any GOARCH
// where they would not.

// memoryV1 is nvmlMemory_t, filled by nvmlDeviceGetMemoryInfo:
//
//	typedef struct nvmlMemory_st {
//	    unsigned long long total;
//	    unsigned long long free;
//	    unsigned long long used;  // reserved and allocated memory
//	} nvmlMemory_t;
type memoryV1 struct {
	Total, Free, Used uint64
}

// memoryV2 is nvmlMemory_v2_t, filled by nvmlDeviceGetMemoryInfo_v2. The
// caller sets Version to nvmlMemory_v2, NVML_STRUCT_VERSION(Memory, 2) =
// sizeof(nvmlMemory_v2_t) | 2<<24:
//
//	typedef struct nvmlMemory_v2_st {
//	    unsigned int version;
//	    unsigned long long total;
//	    unsigned long long reserved;  // reserved for the driver and firmware
//	    unsigned long long free;
//	    unsigned long long used;      // allocated memory, reserved included
//	} nvmlMemory_v2_t;
type memoryV2 struct {
	Version  uint32
	_        uint32
	Total    uint64
	Reserved uint64
	Free     uint64
	Used     uint64
}

// memoryV2Version is nvmlMemory_v2.
const memoryV2Version = uint32(unsafe.Sizeof(memoryV2{})) | 2<<24

// utilization is nvmlUtilization_t, filled by
// nvmlDeviceGetUtilizationRates:
//
//	typedef struct nvmlUtilization_st {
//	    unsigned int gpu;     // percent of the last sample period a kernel ran
//	    unsigned int memory;  // percent of it device memory was read or written
//	} nvmlUtilization_t;
type utilization struct {
	GPU, Memory uint32
}

// processInfoV1 is nvmlProcessInfo_v1_t, the array element of
// nvmlDeviceGetComputeRunningProcesses (no suffix):
//
//	typedef struct nvmlProcessInfo_v1_st {
//	    unsigned int pid;
//	    unsigned long long usedGpuMemory;
//	} nvmlProcessInfo_v1_t;
type processInfoV1 struct {
	PID           uint32
	_             uint32
	UsedGPUMemory uint64
}

// processInfoV2 is nvmlProcessInfo_v2_t, the array element of
// nvmlDeviceGetComputeRunningProcesses_v2, and also of _v3: since API
// version 12.2 nvml.h declares the two as one struct,
//
//	typedef struct nvmlProcessInfo_v2_st {
//	    unsigned int pid;
//	    unsigned long long usedGpuMemory;
//	    unsigned int gpuInstanceId;      // 0xFFFFFFFF unless MIG is on
//	    unsigned int computeInstanceId;  // 0xFFFFFFFF unless MIG is on
//	} nvmlProcessInfo_v2_t, nvmlProcessInfo_t;
//
// and _v3 takes an nvmlProcessInfo_t array. Some CUDA 12 copies of nvml.h
// declared nvmlProcessInfo_t with an extra trailing field (unsigned long
// long usedGpuCcProtectedMemory, 32 bytes an element), which NVIDIA moved to
// nvmlProcessDetail_v1_t; a _v3 buffer therefore has room for elements of
// processInfoV3Wide so that no library can write past it.
type processInfoV2 struct {
	PID               uint32
	_                 uint32
	UsedGPUMemory     uint64
	GPUInstanceID     uint32
	ComputeInstanceID uint32
}

// processInfoV3Wide is the 32-byte element of the earlier _v3 declaration;
// it only sizes buffers.
type processInfoV3Wide struct {
	processInfoV2
	UsedGPUCcProtectedMemory uint64
}

// processUtilizationSample is nvmlProcessUtilizationSample_t, the array
// element of nvmlDeviceGetProcessUtilization:
//
//	typedef struct nvmlProcessUtilizationSample_st {
//	    unsigned int pid;
//	    unsigned long long timeStamp;  // CPU time stamp, microseconds
//	    unsigned int smUtil;
//	    unsigned int memUtil;
//	    unsigned int encUtil;
//	    unsigned int decUtil;
//	} nvmlProcessUtilizationSample_t;
type processUtilizationSample struct {
	PID       uint32
	_         uint32
	TimeStamp uint64
	SMUtil    uint32
	MemUtil   uint32
	EncUtil   uint32
	DecUtil   uint32
}

// The sizes C gives these structs on LP64 targets. An index out of range
// of a constant array does not compile: a layout that differs from C's on
// the GOARCH being built stops the build.
var (
	_ = [1]int{}[unsafe.Sizeof(memoryV1{})-24]
	_ = [1]int{}[unsafe.Sizeof(memoryV2{})-40]
	_ = [1]int{}[unsafe.Offsetof(memoryV2{}.Total)-8]
	_ = [1]int{}[unsafe.Sizeof(utilization{})-8]
	_ = [1]int{}[unsafe.Sizeof(processInfoV1{})-16]
	_ = [1]int{}[unsafe.Sizeof(processInfoV2{})-24]
	_ = [1]int{}[unsafe.Offsetof(processInfoV2{}.GPUInstanceID)-16]
	_ = [1]int{}[unsafe.Sizeof(processInfoV3Wide{})-32]
	_ = [1]int{}[unsafe.Sizeof(processUtilizationSample{})-32]
	_ = [1]int{}[unsafe.Offsetof(processUtilizationSample{}.SMUtil)-16]
)

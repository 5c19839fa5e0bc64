package cuda

import "fmt"

// Result is a CUDA driver API result code (CUresult). Every value other than
// Success is an error; compare with errors.Is against the named constants.
type Result int32

// Result codes keepgpu names or reacts to. The numbers are the driver's.
const (
	Success                   Result = 0
	ErrorInvalidValue         Result = 1
	ErrorOutOfMemory          Result = 2
	ErrorNotInitialized       Result = 3
	ErrorDeinitialized        Result = 4
	ErrorStubLibrary          Result = 34
	ErrorDevicesUnavailable   Result = 46
	ErrorNoDevice             Result = 100
	ErrorInvalidDevice        Result = 101
	ErrorDeviceNotLicensed    Result = 102
	ErrorInvalidImage         Result = 200
	ErrorInvalidContext       Result = 201
	ErrorNoBinaryForGPU       Result = 209
	ErrorECCUncorrectable     Result = 214
	ErrorInvalidPTX           Result = 218
	ErrorJITCompilerNotFound  Result = 221
	ErrorUnsupportedPTX       Result = 222
	ErrorInvalidSource        Result = 300
	ErrorSharedObjectInit     Result = 303
	ErrorOperatingSystem      Result = 304
	ErrorInvalidHandle        Result = 400
	ErrorNotFound             Result = 500
	ErrorNotReady             Result = 600
	ErrorIllegalAddress       Result = 700
	ErrorLaunchOutOfResources Result = 701
	ErrorLaunchTimeout        Result = 702
	ErrorLaunchFailed         Result = 719
	ErrorNotPermitted         Result = 800
	ErrorNotSupported         Result = 801
	ErrorSystemNotReady       Result = 802
	ErrorCompatNotSupported   Result = 804
	ErrorUnknown              Result = 999
)

var resultNames = map[Result]string{
	Success:                   "CUDA_SUCCESS",
	ErrorInvalidValue:         "CUDA_ERROR_INVALID_VALUE",
	ErrorOutOfMemory:          "CUDA_ERROR_OUT_OF_MEMORY",
	ErrorNotInitialized:       "CUDA_ERROR_NOT_INITIALIZED",
	ErrorDeinitialized:        "CUDA_ERROR_DEINITIALIZED",
	ErrorStubLibrary:          "CUDA_ERROR_STUB_LIBRARY",
	ErrorDevicesUnavailable:   "CUDA_ERROR_DEVICES_UNAVAILABLE",
	ErrorNoDevice:             "CUDA_ERROR_NO_DEVICE",
	ErrorInvalidDevice:        "CUDA_ERROR_INVALID_DEVICE",
	ErrorDeviceNotLicensed:    "CUDA_ERROR_DEVICE_NOT_LICENSED",
	ErrorInvalidImage:         "CUDA_ERROR_INVALID_IMAGE",
	ErrorInvalidContext:       "CUDA_ERROR_INVALID_CONTEXT",
	ErrorNoBinaryForGPU:       "CUDA_ERROR_NO_BINARY_FOR_GPU",
	ErrorECCUncorrectable:     "CUDA_ERROR_ECC_UNCORRECTABLE",
	ErrorInvalidPTX:           "CUDA_ERROR_INVALID_PTX",
	ErrorJITCompilerNotFound:  "CUDA_ERROR_JIT_COMPILER_NOT_FOUND",
	ErrorUnsupportedPTX:       "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	ErrorInvalidSource:        "CUDA_ERROR_INVALID_SOURCE",
	ErrorSharedObjectInit:     "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED",
	ErrorOperatingSystem:      "CUDA_ERROR_OPERATING_SYSTEM",
	ErrorInvalidHandle:        "CUDA_ERROR_INVALID_HANDLE",
	ErrorNotFound:             "CUDA_ERROR_NOT_FOUND",
	ErrorNotReady:             "CUDA_ERROR_NOT_READY",
	ErrorIllegalAddress:       "CUDA_ERROR_ILLEGAL_ADDRESS",
	ErrorLaunchOutOfResources: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	ErrorLaunchTimeout:        "CUDA_ERROR_LAUNCH_TIMEOUT",
	ErrorLaunchFailed:         "CUDA_ERROR_LAUNCH_FAILED",
	ErrorNotPermitted:         "CUDA_ERROR_NOT_PERMITTED",
	ErrorNotSupported:         "CUDA_ERROR_NOT_SUPPORTED",
	ErrorSystemNotReady:       "CUDA_ERROR_SYSTEM_NOT_READY",
	ErrorCompatNotSupported:   "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
	ErrorUnknown:              "CUDA_ERROR_UNKNOWN",
}

// Error returns the driver's name for r with its number, such as
// "CUDA_ERROR_OUT_OF_MEMORY (2)". A code this table lacks (a newer driver may
// return one) reads "CUDA error 123".
func (r Result) Error() string {
	if name, ok := resultNames[r]; ok {
		return fmt.Sprintf("%s (%d)", name, int32(r))
	}
	return fmt.Sprintf("CUDA error %d", int32(r))
}

// err returns nil for Success and r otherwise.
func (r Result) err() error {
	if r == Success {
		return nil
	}
	return r
}

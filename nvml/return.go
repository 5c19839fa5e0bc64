package nvml

import "fmt"

// Return is an NVML return code (nvmlReturn_t). Every value other than
// Success is an error; compare with errors.Is against the named constants.
type Return int32

// Return codes keepgpu names or reacts to. The numbers are nvml.h's.
const (
	Success                      Return = 0
	ErrorUninitialized           Return = 1
	ErrorInvalidArgument         Return = 2
	ErrorNotSupported            Return = 3
	ErrorNoPermission            Return = 4
	ErrorNotFound                Return = 6
	ErrorInsufficientSize        Return = 7
	ErrorDriverNotLoaded         Return = 9
	ErrorLibraryNotFound         Return = 12
	ErrorFunctionNotFound        Return = 13
	ErrorGPUIsLost               Return = 15
	ErrorLibRMVersionMismatch    Return = 18
	ErrorNoData                  Return = 21
	ErrorArgumentVersionMismatch Return = 25
	ErrorUnknown                 Return = 999
)

// returnText is nvmlErrorString's wording, for a library that lacks it (the
// words are those NVIDIA's library returns for each code).
var returnText = map[Return]string{
	0:   "Success",
	1:   "Uninitialized",
	2:   "Invalid Argument",
	3:   "Not Supported",
	4:   "Insufficient Permissions",
	5:   "Already Initialized",
	6:   "Not Found",
	7:   "Insufficient Size",
	8:   "Insufficient External Power",
	9:   "Driver Not Loaded",
	10:  "Timeout",
	11:  "Interrupt request issue",
	12:  "Library Not Found",
	13:  "Function Not Found",
	14:  "Corrupted infoROM",
	15:  "GPU is lost",
	16:  "GPU requires restart",
	17:  "The operating system has blocked the request.",
	18:  "RM has detected an NVML/RM version mismatch.",
	19:  "In use by another client",
	20:  "Insufficient Memory",
	21:  "No data",
	22:  "The requested vgpu operation is not available on target device, because ECC is enabled",
	23:  "Ran out of critical resources, other than memory",
	24:  "The requested frequency is not supported",
	25:  "The provided version is invalid/unsupported",
	26:  "The requested functionality has been deprecated",
	27:  "The system is not ready for the request",
	28:  "No GPUs were found",
	29:  "Resource not in correct state to perform requested operation",
	999: "Unknown Error",
}

// Error returns NVIDIA's wording for r, such as "Not Supported"; a code the
// table lacks (a newer driver may return one) reads "NVML error 123".
func (r Return) Error() string {
	if s, ok := returnText[r]; ok {
		return s
	}
	return fmt.Sprintf("NVML error %d", int32(r))
}

// Error is a failed NVML call: the call and its subject, the return code,
// and the wording the loaded library gives for it. errors.Is(err,
// nvml.ErrorNotSupported) matches through it.
type Error struct {
	Op   string // "nvmlDeviceGetMemoryInfo_v2 GPU-8f2c…"
	Code Return
	Text string // nvmlErrorString's answer; Code.Error() if empty
}

func (e *Error) Error() string {
	text := e.Text
	if text == "" {
		text = e.Code.Error()
	}
	return fmt.Sprintf("%s: %s (NVML %d)", e.Op, text, int32(e.Code))
}

// Unwrap returns the return code, so that errors.Is matches it.
func (e *Error) Unwrap() error { return e.Code }

package hip

import "fmt"

// Code is a HIP runtime result (hipError_t). Every value other than Success
// is an error; compare with errors.Is against the named constants.
type Code int32

// Result codes keepgpu names or reacts to. The numbers are those of AMD's
// public hip_runtime_api.h, stable since ROCm 4.
const (
	Success                 Code = 0
	ErrorInvalidValue       Code = 1
	ErrorOutOfMemory        Code = 2
	ErrorNotInitialized     Code = 3
	ErrorDeinitialized      Code = 4
	ErrorInsufficientDriver Code = 35
	ErrorNoDevice           Code = 100
	ErrorInvalidDevice      Code = 101
	ErrorInvalidContext     Code = 201
	ErrorSetOnActiveProcess Code = 708
	ErrorNotSupported       Code = 801
	ErrorUnknown            Code = 999
)

// codeName is hipGetErrorName's answer for the codes above, for an error
// made without a loaded runtime to ask.
var codeName = map[Code]string{
	Success:                 "hipSuccess",
	ErrorInvalidValue:       "hipErrorInvalidValue",
	ErrorOutOfMemory:        "hipErrorOutOfMemory",
	ErrorNotInitialized:     "hipErrorNotInitialized",
	ErrorDeinitialized:      "hipErrorDeinitialized",
	ErrorInsufficientDriver: "hipErrorInsufficientDriver",
	ErrorNoDevice:           "hipErrorNoDevice",
	ErrorInvalidDevice:      "hipErrorInvalidDevice",
	ErrorInvalidContext:     "hipErrorInvalidContext",
	ErrorSetOnActiveProcess: "hipErrorSetOnActiveProcess",
	ErrorNotSupported:       "hipErrorNotSupported",
	ErrorUnknown:            "hipErrorUnknown",
}

// Error returns the code's name, such as "hipErrorNoDevice"; a code the
// table lacks reads "hipError 123".
func (c Code) Error() string {
	if s, ok := codeName[c]; ok {
		return s
	}
	return fmt.Sprintf("hipError %d", int32(c))
}

// Error is a failed HIP call: the call and its subject, the result code, and
// the loaded runtime's own name and wording for it (hipGetErrorName,
// hipGetErrorString). errors.Is(err, hip.ErrorNoDevice) matches through it.
type Error struct {
	Op   string // "gpu 1 (GPU-5c1b4d70...): hipMalloc"
	Code Code
	Name string // "hipErrorNoDevice"; Code.Error() if empty
	Text string // "no ROCm-capable device is detected"; may be empty
}

func (e *Error) Error() string {
	name := e.Name
	if name == "" {
		name = e.Code.Error()
	}
	if e.Text != "" && e.Text != name {
		return fmt.Sprintf("%s: %s: %s (HIP %d)", e.Op, name, e.Text, int32(e.Code))
	}
	return fmt.Sprintf("%s: %s (HIP %d)", e.Op, name, int32(e.Code))
}

// Unwrap returns the result code, so that errors.Is matches it.
func (e *Error) Unwrap() error { return e.Code }

package amdsmi

import (
	"fmt"
	"strings"
)

// Status is an AMD SMI result (amdsmi_status_t). Every value other than
// Success is an error; compare with errors.Is against the named constants.
type Status uint32

// Status codes keepgpu names or reacts to; the numbers are amdsmi.h's,
// unchanged from ROCm 6.0 to 6.2.
const (
	Success               Status = 0
	StatusInval           Status = 1
	StatusNotSupported    Status = 2
	StatusOutOfResources  Status = 15
	StatusInitError       Status = 18
	StatusNotFound        Status = 31
	StatusNotInit         Status = 32
	StatusDriverNotLoaded Status = 34
	StatusNoData          Status = 40
	StatusInsufficient    Status = 41
)

var statusName = map[Status]string{
	0:  "AMDSMI_STATUS_SUCCESS",
	1:  "AMDSMI_STATUS_INVAL",
	2:  "AMDSMI_STATUS_NOT_SUPPORTED",
	3:  "AMDSMI_STATUS_NOT_YET_IMPLEMENTED",
	4:  "AMDSMI_STATUS_FAIL_LOAD_MODULE",
	5:  "AMDSMI_STATUS_FAIL_LOAD_SYMBOL",
	6:  "AMDSMI_STATUS_DRM_ERROR",
	7:  "AMDSMI_STATUS_API_FAILED",
	8:  "AMDSMI_STATUS_TIMEOUT",
	9:  "AMDSMI_STATUS_RETRY",
	10: "AMDSMI_STATUS_NO_PERM",
	11: "AMDSMI_STATUS_INTERRUPT",
	12: "AMDSMI_STATUS_IO",
	13: "AMDSMI_STATUS_ADDRESS_FAULT",
	14: "AMDSMI_STATUS_FILE_ERROR",
	15: "AMDSMI_STATUS_OUT_OF_RESOURCES",
	16: "AMDSMI_STATUS_INTERNAL_EXCEPTION",
	17: "AMDSMI_STATUS_INPUT_OUT_OF_BOUNDS",
	18: "AMDSMI_STATUS_INIT_ERROR",
	19: "AMDSMI_STATUS_REFCOUNT_OVERFLOW",
	30: "AMDSMI_STATUS_BUSY",
	31: "AMDSMI_STATUS_NOT_FOUND",
	32: "AMDSMI_STATUS_NOT_INIT",
	33: "AMDSMI_STATUS_NO_SLOT",
	34: "AMDSMI_STATUS_DRIVER_NOT_LOADED",
	40: "AMDSMI_STATUS_NO_DATA",
	41: "AMDSMI_STATUS_INSUFFICIENT_SIZE",
	42: "AMDSMI_STATUS_UNEXPECTED_SIZE",
	43: "AMDSMI_STATUS_UNEXPECTED_DATA",
}

// Error returns the status's name in amdsmi.h, such as
// "AMDSMI_STATUS_NOT_SUPPORTED"; one the table lacks reads "AMD SMI status 42".
func (s Status) Error() string {
	if n, ok := statusName[s]; ok {
		return n
	}
	return fmt.Sprintf("AMD SMI status %d", uint32(s))
}

// Error is a failed AMD SMI call: the call and its subject, the status,
// and the library's wording for it (amdsmi_status_code_to_string).
// errors.Is(err, amdsmi.StatusNotSupported) matches through it.
type Error struct {
	Op   string // "amdsmi_get_gpu_activity gpu 0"
	Code Status
	Text string // amdsmi_status_code_to_string's answer; may be empty
}

func (e *Error) Error() string {
	if text := strings.TrimPrefix(e.Text, e.Code.Error()+": "); text != "" {
		return fmt.Sprintf("%s: %s: %s", e.Op, e.Code.Error(), text)
	}
	return fmt.Sprintf("%s: %s", e.Op, e.Code.Error())
}

// Unwrap returns the status, so that errors.Is matches it.
func (e *Error) Unwrap() error { return e.Code }

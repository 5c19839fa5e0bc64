package rocmsmi

import (
	"fmt"
	"strings"
)

// Status is a ROCm SMI result (rsmi_status_t). Every value other than
// Success is an error; compare with errors.Is against the named constants.
type Status uint32

// Status codes keepgpu names or reacts to; the numbers are rocm_smi.h's.
const (
	Success            Status = 0
	StatusInvalidArgs  Status = 1
	StatusNotSupported Status = 2
	StatusFileError    Status = 3
	StatusPermission   Status = 4
	StatusInitError    Status = 8
	StatusNotFound     Status = 10
	StatusInsufficient Status = 11 // RSMI_STATUS_INSUFFICIENT_SIZE
	StatusUnknown      Status = 0xFFFFFFFF
)

var statusName = map[Status]string{
	0:          "RSMI_STATUS_SUCCESS",
	1:          "RSMI_STATUS_INVALID_ARGS",
	2:          "RSMI_STATUS_NOT_SUPPORTED",
	3:          "RSMI_STATUS_FILE_ERROR",
	4:          "RSMI_STATUS_PERMISSION",
	5:          "RSMI_STATUS_OUT_OF_RESOURCES",
	6:          "RSMI_STATUS_INTERNAL_EXCEPTION",
	7:          "RSMI_STATUS_INPUT_OUT_OF_BOUNDS",
	8:          "RSMI_STATUS_INIT_ERROR",
	9:          "RSMI_STATUS_NOT_YET_IMPLEMENTED",
	10:         "RSMI_STATUS_NOT_FOUND",
	11:         "RSMI_STATUS_INSUFFICIENT_SIZE",
	12:         "RSMI_STATUS_INTERRUPT",
	13:         "RSMI_STATUS_UNEXPECTED_SIZE",
	14:         "RSMI_STATUS_NO_DATA",
	15:         "RSMI_STATUS_UNEXPECTED_DATA",
	16:         "RSMI_STATUS_BUSY",
	17:         "RSMI_STATUS_REFCOUNT_OVERFLOW",
	0xFFFFFFFF: "RSMI_STATUS_UNKNOWN_ERROR",
}

// Error returns the status's name in rocm_smi.h, such as
// "RSMI_STATUS_NOT_SUPPORTED"; one the table lacks reads "RSMI status 42".
func (s Status) Error() string {
	if n, ok := statusName[s]; ok {
		return n
	}
	return fmt.Sprintf("RSMI status %d", uint32(s))
}

// Error is a failed ROCm SMI call: the call and its subject, the status,
// and the library's wording for it (rsmi_status_string).
// errors.Is(err, rocmsmi.StatusNotSupported) matches through it.
type Error struct {
	Op   string // "rsmi_dev_busy_percent_get gpu 0"
	Code Status
	Text string // rsmi_status_string's answer; may be empty
}

func (e *Error) Error() string {
	// Newer libraries start their wording with the status's name.
	if text := strings.TrimPrefix(e.Text, e.Code.Error()+": "); text != "" {
		return fmt.Sprintf("%s: %s: %s", e.Op, e.Code.Error(), text)
	}
	return fmt.Sprintf("%s: %s", e.Op, e.Code.Error())
}

// Unwrap returns the status, so that errors.Is matches it.
func (e *Error) Unwrap() error { return e.Code }

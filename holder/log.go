package holder

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/keeper"
)

// Log reports a holder's events: a line a person can read per change, or
// one JSON event per line (see Event) for programs: --log-format json, and
// the stream a supervisor reads. It is safe for concurrent use.
type Log struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool
	quiet bool
}

// NewLog returns a Log writing to w: JSON lines if json is set; as text,
// only warnings and errors if quiet is set.
func NewLog(w io.Writer, json, quiet bool) *Log {
	return &Log{w: w, json: json, quiet: quiet}
}

// Warn reports a warning about the holder as a whole.
func (l *Log) Warn(msg string) { l.report(Event{Kind: Warning, GPU: -1, Message: msg}) }

// report writes e, stamping it with the time if it has none. As text, a
// GPU's held and released events are left to the one summary line each
// that the holder reports as a whole.
func (l *Log) report(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.json {
		encode(l.w, e) // a supervisor gone: the parent-death signal follows
		return
	}
	msg := e.Text()
	switch {
	case e.GPU >= 0 && (e.Kind == Held || e.Kind == Released):
		return
	case e.Kind == Warning:
		msg = "warning: " + msg
	case l.quiet && e.Kind != Error && e.Kind != KernelFailed:
		return
	}
	fmt.Fprintf(l.w, "keepgpu: %s\n", msg)
}

// keeper reports a keeper's event, worded for people; util is the
// keep-alive kernel's target.
func (l *Log) keeper(e keeper.Event, util int) {
	l.report(fromKeeper(e, message(e, util)))
}

// message words a keeper event for people.
func message(e keeper.Event, util int) string {
	var msg string
	switch Kind(e.Kind) {
	case Held:
		msg = fmt.Sprintf("holding %s, %s", cuda.FormatBytes(e.Bytes), kernelWords(util, "keep-alive kernel at %d%%"))
	case Paused:
		msg = "kernel paused: " + e.Reason
	case Resumed:
		msg = "kernel resumed"
	case Telemetry:
		if e.Reason == "ok" {
			msg = "telemetry back"
		} else {
			msg = "telemetry " + e.Reason + "; holding anyway"
		}
	case Released:
		msg = "released"
	case Warning:
		msg = e.Reason
	default:
		msg = e.Kind + ": " + e.Reason
	}
	if e.GPU < 0 {
		return msg
	}
	return fmt.Sprintf("gpu %d (%s, %s): %s", e.GPU, e.UUID, e.Name, msg)
}

// kernelWords says what the keep-alive kernel does at util percent;
// format words a running one.
func kernelWords(util int, format string) string {
	if util == 0 {
		return "no kernel (--util 0)"
	}
	return fmt.Sprintf(format, util)
}

// ConsoleQuiet reads level, the value of KeepGPU's CONSOLE_LOG_LEVEL
// variable, as keepgpu's --quiet: DEBUG, INFO and NOTSET show every
// progress line; WARNING (WARN), ERROR, CRITICAL (FATAL) and KeepGPU's
// "off" values NO and 0 keep only warnings and errors, as --quiet does
// (keepgpu has no quieter mode: a warning says it holds less than asked).
// Case and surrounding blanks do not matter. Any other value is an error
// that names the levels; the caller warns and ignores it.
func ConsoleQuiet(level string) (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(level)) {
	case "DEBUG", "INFO", "NOTSET":
		return false, nil
	case "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NO", "0":
		return true, nil
	}
	return false, fmt.Errorf("CONSOLE_LOG_LEVEL %q is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL): ignored", level)
}

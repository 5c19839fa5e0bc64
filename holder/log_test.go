package holder

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/keeper"
)

// TestLogText words events for people: a GPU's held and released events
// are left to the summary lines, warnings say so, --quiet keeps only
// warnings, errors and failed kernels.
func TestLogText(t *testing.T) {
	gpu := func(kind, reason string) keeper.Event {
		return keeper.Event{Kind: kind, GPU: 1, UUID: "GPU-b", Name: "Fake", Bytes: 2 << 30, Reason: reason}
	}
	tests := []struct {
		name  string
		quiet bool
		util  int
		e     keeper.Event
		want  string
	}{
		{name: "held", util: 30, e: gpu("held", ""), want: ""},
		{name: "released", e: gpu("released", ""), want: ""},
		{name: "paused", e: gpu("paused", "foreign compute process 42 (1.0 GiB)"), want: "keepgpu: gpu 1 (GPU-b, Fake): kernel paused: foreign compute process 42 (1.0 GiB)\n"},
		{name: "resumed", e: gpu("resumed", ""), want: "keepgpu: gpu 1 (GPU-b, Fake): kernel resumed\n"},
		{name: "telemetry back", e: gpu("telemetry", "ok"), want: "keepgpu: gpu 1 (GPU-b, Fake): telemetry back\n"},
		{name: "telemetry lost", e: gpu("telemetry", "unknown: NVML gone"), want: "keepgpu: gpu 1 (GPU-b, Fake): telemetry unknown: NVML gone; holding anyway\n"},
		{name: "warning of the holder", e: keeper.Event{Kind: "warning", GPU: -1, Reason: "no NVML"}, want: "keepgpu: warning: no NVML\n"},
		{name: "kernel failed", e: gpu("kernel-failed", "launch failed"), want: "keepgpu: gpu 1 (GPU-b, Fake): kernel-failed: launch failed\n"},
		{name: "quiet paused", quiet: true, e: gpu("paused", "x"), want: ""},
		{name: "quiet warning", quiet: true, e: gpu("warning", "exclusive"), want: "keepgpu: warning: gpu 1 (GPU-b, Fake): exclusive\n"},
		{name: "quiet kernel failed", quiet: true, e: gpu("kernel-failed", "launch failed"), want: "keepgpu: gpu 1 (GPU-b, Fake): kernel-failed: launch failed\n"},
		{name: "quiet error", quiet: true, e: gpu("error", "out of memory"), want: "keepgpu: gpu 1 (GPU-b, Fake): error: out of memory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			NewLog(&b, false, tt.quiet).keeper(tt.e, tt.util)
			if b.String() != tt.want {
				t.Fatalf("got %q; want %q", b.String(), tt.want)
			}
		})
	}
}

// TestLogHolder reports the holder as a whole: its own lines as text, the
// summary lines even where a GPU's own are left out, quiet keeping errors
// and warnings.
func TestLogHolder(t *testing.T) {
	tests := []struct {
		name  string
		quiet bool
		e     Event
		want  string
	}{
		{name: "holding", e: Event{Kind: Holding, GPU: -1, Message: "holding 1 GPU"}, want: "keepgpu: holding 1 GPU\n"},
		{name: "released", e: Event{Kind: Released, GPU: -1, Message: "released 1 GPU"}, want: "keepgpu: released 1 GPU\n"},
		{name: "quiet released", quiet: true, e: Event{Kind: Released, GPU: -1, Message: "released 1 GPU"}, want: ""},
		{name: "quiet error", quiet: true, e: Event{Kind: Error, GPU: -1, Message: "holding nothing"}, want: "keepgpu: holding nothing\n"},
		{name: "quiet warning", quiet: true, e: Event{Kind: Warning, GPU: -1, Message: "deprecated"}, want: "keepgpu: warning: deprecated\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			NewLog(&b, false, tt.quiet).report(tt.e)
			if b.String() != tt.want {
				t.Fatalf("got %q; want %q", b.String(), tt.want)
			}
		})
	}
}

// TestLogJSON writes every event, a GPU's held ones too, as one JSON line
// with the words of the text in "message", and stamps the time.
func TestLogJSON(t *testing.T) {
	var b bytes.Buffer
	l := NewLog(&b, true, true)
	l.keeper(keeper.Event{Time: time.Now(), Kind: "held", GPU: 0, UUID: "GPU-a", Name: "Fake", Bytes: 1 << 30}, 0)
	l.Warn("--threshold is deprecated")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines; want 2:\n%s", len(lines), b.String())
	}
	var held, warn Event
	if err := json.Unmarshal([]byte(lines[0]), &held); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &warn); err != nil {
		t.Fatal(err)
	}
	if held.Kind != Held || held.GPU != 0 || held.Message != "gpu 0 (GPU-a, Fake): holding 1.0 GiB, no kernel (--util 0)" {
		t.Errorf("held: %+v", held)
	}
	if warn.Kind != Warning || warn.GPU != -1 || warn.Message != "--threshold is deprecated" || warn.Time.IsZero() {
		t.Errorf("warning: %+v", warn)
	}
}

// TestConsoleQuiet reads KeepGPU's CONSOLE_LOG_LEVEL: WARNING and above
// (and KeepGPU's "off" values) are quiet, case and blanks aside; anything
// else is an error naming the levels.
func TestConsoleQuiet(t *testing.T) {
	tests := []struct {
		level string
		quiet bool
		bad   bool
	}{
		{level: "DEBUG"}, {level: "info"}, {level: " Info\n"}, {level: "NOTSET"},
		{level: "WARNING", quiet: true}, {level: "warn", quiet: true}, {level: "ERROR", quiet: true},
		{level: "critical", quiet: true}, {level: "FATAL", quiet: true}, {level: "no", quiet: true}, {level: "0", quiet: true},
		{level: "LOUD", bad: true}, {level: "10", bad: true}, {level: "INFO2", bad: true}, {level: "warnings", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			quiet, err := ConsoleQuiet(tt.level)
			if tt.bad {
				if err == nil || !strings.Contains(err.Error(), "DEBUG, INFO, WARNING, ERROR, CRITICAL") {
					t.Fatalf("got %v, %v; want an error naming the levels", quiet, err)
				}
				return
			}
			if err != nil || quiet != tt.quiet {
				t.Fatalf("got %v, %v; want %v", quiet, err, tt.quiet)
			}
		})
	}
}

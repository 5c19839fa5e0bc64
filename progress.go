package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/keeper"
)

// progress writes a holder's events on stderr: a line a person can read per
// change, or one JSON object per line for programs (--log-format json).
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool
	quiet bool
	util  int
}

func newProgress(w io.Writer, f *KeepFlags) *progress {
	return &progress{w: w, json: f.LogFormat == "json", quiet: f.Quiet, util: f.Util}
}

// event reports one keeper event.
func (p *progress) event(e keeper.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.writeJSON(e)
		return
	}
	if p.quiet && e.Kind != "error" && e.Kind != "kernel-failed" {
		return
	}
	var msg string
	switch e.Kind {
	case "held":
		kernel := fmt.Sprintf("keep-alive kernel at %d%%", p.util)
		if p.util == 0 {
			kernel = "no kernel (--util 0)"
		}
		msg = fmt.Sprintf("holding %s, %s", cuda.FormatBytes(e.Bytes), kernel)
	case "paused":
		msg = "kernel paused: " + e.Reason
	case "resumed":
		msg = "kernel resumed"
	case "telemetry":
		if e.Reason == "ok" {
			msg = "telemetry back"
		} else {
			msg = "telemetry " + e.Reason + "; holding anyway"
		}
	case "released":
		return // one summary line instead, from done
	default:
		msg = e.Kind + ": " + e.Reason
	}
	if e.GPU < 0 {
		fmt.Fprintf(p.w, "keepgpu: %s\n", msg)
		return
	}
	fmt.Fprintf(p.w, "keepgpu: gpu %d (%s, %s): %s\n", e.GPU, shortUUID(e.UUID), e.Name, msg)
}

// info reports something about the holder as a whole.
func (p *progress) info(kind, msg string, fields map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		m := map[string]any{"time": time.Now(), "event": kind, "message": msg}
		for k, v := range fields {
			m[k] = v
		}
		p.writeJSON(m)
		return
	}
	if p.quiet && kind != "error" {
		return
	}
	fmt.Fprintf(p.w, "keepgpu: %s\n", msg)
}

func (p *progress) writeJSON(v any) {
	b, _ := json.Marshal(v)
	p.w.Write(append(b, '\n'))
}

// shortUUID keeps a UUID readable in a log line: "GPU-8f2c1e0a".
func shortUUID(u string) string {
	if i := strings.IndexByte(u, '-'); i >= 0 && len(u) > i+9 {
		return u[:i+9]
	}
	return u
}

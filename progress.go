package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/keeper"
)

// progress reports a holder's events: a line a person can read per change,
// or one JSON object per line for programs (--log-format json, and the
// stream a supervisor reads). Every JSON event carries the same readable
// line in "message".
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

// message words a keeper event for people.
func (p *progress) message(e keeper.Event) string {
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
		msg = "released"
	case "warning":
		msg = e.Reason
	default:
		msg = e.Kind + ": " + e.Reason
	}
	if e.GPU < 0 {
		return msg
	}
	return fmt.Sprintf("gpu %d (%s, %s): %s", e.GPU, e.UUID, e.Name, msg)
}

// event reports one keeper event.
func (p *progress) event(e keeper.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := p.message(e)
	if p.json {
		p.writeJSON(struct {
			keeper.Event
			Message string `json:"message"`
		}{e, msg})
		return
	}
	switch {
	case e.Kind == "held" || e.Kind == "released":
		return // one summary line instead, from the caller
	case e.Kind == "warning":
		msg = "warning: " + msg
	case p.quiet && e.Kind != "error" && e.Kind != "kernel-failed":
		return
	}
	fmt.Fprintf(p.w, "keepgpu: %s\n", msg)
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
	if kind == "warning" {
		msg = "warning: " + msg
	} else if p.quiet && kind != "error" {
		return
	}
	fmt.Fprintf(p.w, "keepgpu: %s\n", msg)
}

func (p *progress) writeJSON(v any) {
	b, _ := json.Marshal(v)
	p.w.Write(append(b, '\n'))
}

package service

import (
	"crypto/rand"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/signals"
)

// Session states: KeepGPU's.
const (
	StateStarting      = "starting"       // the holder runs but holds nothing yet
	StateActive        = "active"         // the holder holds the GPUs (its kernel may be paused: see Paused)
	StateStopping      = "stopping"       // asked to release; the holder has not exited yet
	StateRuntimeFailed = "runtime_failed" // the holder could not hold, or exited without being asked
	StateStopFailed    = "stop_failed"    // the holder ignored SIGTERM and was killed
)

// killGrace is how long a stop waits for a holder to die after SIGKILL.
const killGrace = 5 * time.Second

// GPUHold is one GPU of a session as its holder last reported it.
type GPUHold struct {
	GPU       int    `json:"gpu"` // CUDA ordinal, as the holder sees it
	UUID      string `json:"uuid"`
	Name      string `json:"name"`
	Bytes     uint64 `json:"bytes"`  // VRAM held
	Kernel    string `json:"kernel"` // running, paused, idle, failed
	Reason    string `json:"reason,omitempty"`
	Telemetry string `json:"telemetry,omitempty"` // "ok", or why it is unknown
}

// Status is a session as status shows it: KeepGPU's fields, then keepgpu's.
type Status struct {
	Active    bool       `json:"active"`
	JobID     string     `json:"job_id"`
	Params    ParamsJSON `json:"params"`
	State     string     `json:"state"`
	LastError *string    `json:"last_error"`

	PID          int       `json:"pid,omitempty"` // the holder
	CreatedAt    time.Time `json:"created_at"`
	HeldSince    *string   `json:"held_since"`   // RFC 3339, null until held
	HoldSeconds  float64   `json:"hold_seconds"` // since held
	Paused       bool      `json:"paused"`       // a held GPU's kernel is paused
	PausedReason string    `json:"paused_reason,omitempty"`
	BytesHeld    uint64    `json:"bytes_held"`
	GPUs         []GPUHold `json:"gpus"`
	Warnings     []string  `json:"warnings,omitempty"`
}

// StopResult is stop_keep's result: KeepGPU's shape.
type StopResult struct {
	Stopped  []string          `json:"stopped"`
	TimedOut []string          `json:"timed_out"`
	Failed   []string          `json:"failed"`
	Errors   map[string]string `json:"errors"`
	Message  string            `json:"message,omitempty"`
}

// session is one holder process and what it last said. Its fields are
// guarded by the manager's mutex.
type session struct {
	id      string
	params  Params
	created time.Time

	state    string
	lastErr  string
	proc     *os.Process
	heldAt   time.Time
	gpus     []GPUHold
	warnings []string
	errEvent string // the holder's last "error" event
	released string // why the holder released, if it did

	stopAsked bool
	killed    bool          // SIGKILL sent after the stop timeout
	exitErr   string        // set when a stop ended in a failed exit
	settled   chan struct{} // closed once the holder holds, or has exited
	done      chan struct{} // closed once the holder has exited and the state is final
}

// settle closes s.settled once; the caller holds the manager's mutex.
func (s *session) settle() {
	select {
	case <-s.settled:
	default:
		close(s.settled)
	}
}

// sessions supervises the holders.
type sessions struct {
	cfg *Config

	mu      sync.Mutex
	byID    map[string]*session
	closing bool
}

func newSessions(cfg *Config) *sessions {
	return &sessions{cfg: cfg, byID: map[string]*session{}}
}

// newJobID returns a random UUID (version 4), KeepGPU's kind of job id.
func newJobID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// start creates a session, starts its holder and waits until it holds
// (or Config.StartWait has passed: the session is then still starting). A
// holder that fails before it holds leaves no session behind: the start is
// refused with its words, as KeepGPU refuses a start with no usable GPU
// (-32000, HTTP 503; a GPU that does not exist is a bad parameter). A job
// id already in use is an error, even while both starts race.
func (m *sessions) start(p Params) (Status, *apiError) {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return Status{}, unavailable("the service is shutting down")
	}
	if p.JobID == "" {
		p.JobID = newJobID()
	}
	if _, dup := m.byID[p.JobID]; dup {
		m.mu.Unlock()
		return Status{}, &apiError{Code: codeInvalidParams, Status: 400, Message: fmt.Sprintf("job_id %q already exists", p.JobID)}
	}
	if len(m.byID) >= m.cfg.MaxSessions {
		m.mu.Unlock()
		return Status{}, unavailable(fmt.Sprintf("too many sessions (%d); stop some first", m.cfg.MaxSessions))
	}
	s := &session{id: p.JobID, params: p, created: time.Now(), state: StateStarting,
		settled: make(chan struct{}), done: make(chan struct{})}
	m.byID[s.id] = s
	m.mu.Unlock()

	h, err := holder.Start(p.Spec, holder.Options{Path: m.cfg.HolderPath, Argv0: m.cfg.Argv0, Env: m.cfg.Env})
	m.mu.Lock()
	if err != nil {
		delete(m.byID, s.id)
		close(s.settled)
		close(s.done)
		m.mu.Unlock()
		return Status{}, unavailable("cannot start the holder: " + err.Error())
	}
	s.proc = h.Process
	if s.stopAsked {
		s.proc.Signal(syscall.SIGTERM) // a stop came while it was being started
	}
	m.logf("session %s: holder pid %d started: %s", s.id, s.proc.Pid, strings.Join(p.Args(), " "))
	go m.supervise(s, h.Events)
	m.mu.Unlock()

	t := time.NewTimer(m.cfg.StartWait)
	defer t.Stop()
	select {
	case <-s.settled:
	case <-t.C:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.state == StateRuntimeFailed && s.heldAt.IsZero() {
		// Never held: nothing to stop, nothing to keep.
		if m.byID[s.id] == s {
			delete(m.byID, s.id)
		}
		if strings.Contains(s.lastErr, "no such GPU") {
			return Status{}, paramError("gpu_ids: %s", s.lastErr)
		}
		return Status{}, unavailable(s.lastErr)
	}
	return s.status(), nil
}

// supervise applies the holder's events until it exits, then settles the
// session's state.
func (m *sessions) supervise(s *session, events <-chan holder.Event) {
	for e := range events {
		m.mu.Lock()
		s.apply(e)
		m.mu.Unlock()
	}
	ps, err := s.proc.Wait()
	var how string
	if err != nil {
		how = err.Error()
	} else {
		how = describe(ps)
	}

	m.mu.Lock()
	switch {
	case s.killed:
		s.state = StateStopFailed
		s.lastErr = fmt.Sprintf("the holder did not exit within %s of SIGTERM; killed it (%s)", m.cfg.StopTimeout, how)
	case s.stopAsked:
		// Dying of the SIGTERM itself is a clean stop too: it came before
		// the holder could catch it, so before it held anything.
		if err != nil || !ps.Success() && !killedBy(ps, syscall.SIGTERM) {
			s.exitErr = s.errEvent
			if s.exitErr == "" {
				s.exitErr = "the holder exited with " + how
			}
		}
		delete(m.byID, s.id)
	default:
		s.state = StateRuntimeFailed
		switch {
		case s.errEvent != "":
			s.lastErr = s.errEvent
		case s.released != "":
			s.lastErr = "the holder released the GPUs by itself (" + s.released + ")"
		case s.heldAt.IsZero():
			s.lastErr = "the holder exited (" + how + ") before holding anything"
		default:
			s.lastErr = "the holder exited (" + how + ") while holding"
		}
		for i := range s.gpus {
			s.gpus[i].Bytes = 0 // a process that is gone holds nothing
			s.gpus[i].Kernel = "released"
		}
	}
	s.settle()
	close(s.done) // under the mutex: askStop sees the final state and done together
	m.mu.Unlock()
	m.logf("session %s: holder pid %d exited (%s)", s.id, s.proc.Pid, how)
}

// apply records one event of the holder.
func (s *session) apply(e holder.Event) {
	switch e.Kind {
	case holder.Held:
		g := s.gpu(e.GPU, e.UUID, e.Name)
		g.Bytes = e.Bytes
		if g.Kernel == "" {
			g.Kernel = "starting"
		}
	case holder.Holding:
		s.gpus = make([]GPUHold, len(e.GPUs))
		for i, g := range e.GPUs {
			s.gpus[i] = GPUHold{GPU: g.GPU, UUID: g.UUID, Name: g.Name, Bytes: g.Bytes,
				Kernel: g.Kernel, Reason: g.Reason, Telemetry: g.Telemetry}
			if s.gpus[i].Telemetry == "" {
				s.gpus[i].Telemetry = "unknown"
			}
		}
		s.heldAt = time.Now()
		if s.state == StateStarting {
			s.state = StateActive
		}
		s.settle()
	case holder.Paused:
		g := s.gpu(e.GPU, e.UUID, e.Name)
		g.Kernel, g.Reason = "paused", e.Reason
	case holder.Resumed:
		g := s.gpu(e.GPU, e.UUID, e.Name)
		g.Kernel, g.Reason = "running", ""
	case holder.KernelFailed:
		g := s.gpu(e.GPU, e.UUID, e.Name)
		g.Kernel, g.Reason = "failed", e.Reason
	case holder.Telemetry:
		s.gpu(e.GPU, e.UUID, e.Name).Telemetry = e.Reason
	case holder.Warning:
		if len(s.warnings) < 16 {
			s.warnings = append(s.warnings, e.Text())
		}
	case holder.Error:
		s.errEvent = e.Text()
	case holder.Released:
		s.released = e.Reason
		if s.released == "" {
			s.released = e.Message
		}
		for i := range s.gpus {
			s.gpus[i].Bytes, s.gpus[i].Kernel, s.gpus[i].Reason = 0, "released", ""
		}
	}
}

// gpu returns the entry of GPU ordinal n, adding it if needed.
func (s *session) gpu(n int, uuid, name string) *GPUHold {
	for i := range s.gpus {
		if s.gpus[i].GPU == n {
			return &s.gpus[i]
		}
	}
	s.gpus = append(s.gpus, GPUHold{GPU: n, UUID: uuid, Name: name, Telemetry: "unknown"})
	return &s.gpus[len(s.gpus)-1]
}

// status describes s; the caller holds the manager's mutex.
func (s *session) status() Status {
	st := Status{
		Active:    s.state == StateStarting || s.state == StateActive || s.state == StateStopping,
		JobID:     s.id,
		Params:    s.params.json(),
		State:     s.state,
		CreatedAt: s.created,
		GPUs:      append([]GPUHold{}, s.gpus...),
		Warnings:  append([]string(nil), s.warnings...),
	}
	if s.lastErr != "" {
		e := s.lastErr
		st.LastError = &e
	}
	if s.proc != nil {
		st.PID = s.proc.Pid
	}
	if !s.heldAt.IsZero() {
		t := s.heldAt.Format(time.RFC3339Nano)
		st.HeldSince = &t
		if st.Active {
			st.HoldSeconds = time.Since(s.heldAt).Seconds()
		}
	}
	var why []string
	for _, g := range s.gpus {
		st.BytesHeld += g.Bytes
		if g.Kernel == "paused" {
			st.Paused = true
			why = append(why, fmt.Sprintf("gpu %d: %s", g.GPU, g.Reason))
		}
	}
	st.PausedReason = strings.Join(why, "; ")
	return st
}

// get returns the status of one session.
func (m *sessions) get(id string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.byID[id]
	if !ok {
		return Status{}, false
	}
	return s.status(), true
}

// list returns every session, oldest first.
func (m *sessions) list() []Status {
	m.mu.Lock()
	out := make([]Status, 0, len(m.byID))
	for _, s := range m.byID {
		out = append(out, s.status())
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].JobID < out[j].JobID
	})
	return out
}

// holderPIDs maps every live holder's pid to its job id.
func (m *sessions) holderPIDs() map[int]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int]string, len(m.byID))
	for _, s := range m.byID {
		if s.proc != nil && (s.state == StateStarting || s.state == StateActive || s.state == StateStopping) {
			out[s.proc.Pid] = s.id
		}
	}
	return out
}

// stop stops the session id (every session if id is ""), each in
// parallel, and returns once every holder has exited or the stop timeout
// and the kill that follows it have passed.
func (m *sessions) stop(id string) StopResult {
	res := StopResult{Stopped: []string{}, TimedOut: []string{}, Failed: []string{}, Errors: map[string]string{}}
	m.mu.Lock()
	var targets []*session
	if id != "" {
		if s, ok := m.byID[id]; ok {
			targets = append(targets, s)
		}
	} else {
		for _, s := range m.byID {
			targets = append(targets, s)
		}
	}
	if id != "" && len(targets) == 0 {
		m.mu.Unlock()
		res.Message = "job_id not found"
		return res
	}
	waiting := targets[:0]
	for _, s := range targets {
		if m.askStop(s) {
			waiting = append(waiting, s)
		} else {
			res.Stopped = append(res.Stopped, s.id) // its holder was gone already: cleared
		}
	}
	targets = waiting
	m.mu.Unlock()
	type outcome struct {
		id, kind, err string
	}
	outs := make(chan outcome, len(targets))
	for _, s := range targets {
		go func() {
			kind, err := m.await(s)
			outs <- outcome{s.id, kind, err}
		}()
	}
	for range targets {
		o := <-outs
		switch o.kind {
		case "stopped":
			res.Stopped = append(res.Stopped, o.id)
		case "timed_out":
			res.TimedOut = append(res.TimedOut, o.id)
		default:
			res.Failed = append(res.Failed, o.id)
		}
		if o.err != "" {
			res.Errors[o.id] = o.err
		}
	}
	sort.Strings(res.Stopped)
	sort.Strings(res.TimedOut)
	sort.Strings(res.Failed)
	return res
}

// askStop sends SIGTERM to s's holder (once) and arms the kill that
// follows the stop timeout; it reports whether there is an exit to wait
// for. A session whose holder is already gone is removed. The caller holds
// the mutex.
func (m *sessions) askStop(s *session) bool {
	select {
	case <-s.done: // failed earlier, its holder gone: nothing to stop
		delete(m.byID, s.id)
		return false
	default:
	}
	if s.stopAsked {
		return true // asked already: wait with the first caller
	}
	s.stopAsked = true
	s.state = StateStopping
	if s.proc != nil {
		s.proc.Signal(syscall.SIGTERM)
	}
	go m.killAfter(s, m.cfg.StopTimeout)
	return true
}

// killAfter kills s's holder unless it exits within d of SIGTERM.
func (m *sessions) killAfter(s *session, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.done:
		return
	case <-t.C:
	}
	m.mu.Lock()
	s.killed = true
	p := s.proc
	m.mu.Unlock()
	if p != nil {
		p.Kill()
		m.logf("session %s: holder pid %d did not exit within %s of SIGTERM; sent SIGKILL", s.id, p.Pid, d)
	}
}

// await waits for s's holder to exit after askStop and classifies the
// outcome as stop_keep reports it.
func (m *sessions) await(s *session) (kind, errText string) {
	t := time.NewTimer(m.cfg.StopTimeout + killGrace)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		m.mu.Lock()
		s.state = StateStopFailed
		s.lastErr = "the holder did not exit after SIGTERM and SIGKILL"
		m.mu.Unlock()
		return "failed", "the holder did not exit after SIGTERM and SIGKILL"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case s.killed:
		return "timed_out", s.lastErr
	case s.exitErr != "":
		return "failed", s.exitErr
	}
	return "stopped", ""
}

// shutdown refuses new sessions and stops every one.
func (m *sessions) shutdown() StopResult {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	return m.stop("")
}

// live counts the sessions whose holder still runs.
func (m *sessions) live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.byID {
		select {
		case <-s.done:
		default:
			n++
		}
	}
	return n
}

func (m *sessions) logf(format string, args ...any) {
	if m.cfg.Log != nil {
		fmt.Fprintf(m.cfg.Log, "%s keepgpu: "+format+"\n", append([]any{time.Now().Format(time.RFC3339)}, args...)...)
	}
}

func killedBy(ps *os.ProcessState, sig syscall.Signal) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

func describe(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + signals.Name(ws.Signal())
	}
	return ps.String()
}

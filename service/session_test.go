package service

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHolderKilled: a session whose holder dies says so, and stopping it
// clears it.
func TestHolderKilled(t *testing.T) {
	ts := newTestServer(t, "ok")
	id := ts.start(nil)
	st := ts.waitState(id, StateActive)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = ts.waitState(id, StateRuntimeFailed)
	if st.Active || st.LastError == nil || *st.LastError != "the holder exited (killed by SIGKILL) while holding" || st.BytesHeld != 0 {
		t.Fatalf("status after the holder died: %+v", st)
	}
	if n := ts.Live(); n != 0 {
		t.Fatalf("%d live holders; want 0", n)
	}
	var res StopResult
	if err := ts.client.Call(context.Background(), "stop_keep", map[string]any{"job_id": id}, &res); err != nil || len(res.Stopped) != 1 {
		t.Fatalf("stop_keep: %+v %v", res, err)
	}
	if _, ok := ts.sessions.get(id); ok {
		t.Fatal("the failed session is still listed after stop_keep")
	}
}

// TestHolderFails: a holder that cannot hold refuses the start with its
// own words, as KeepGPU refuses a start with no usable GPU (-32000, HTTP
// 503), or a GPU that does not exist (-32602, HTTP 400); no session is
// left behind.
func TestHolderFails(t *testing.T) {
	for _, c := range []struct {
		mode   string
		code   int
		status int
		msg    string
	}{
		{"fail", codeUnavailable, 503, "holding nothing: cuInit: CUDA_ERROR_NO_DEVICE (100)"},
		{"badgpu", codeInvalidParams, 400, "gpu_ids: holding nothing: gpu 3: no such GPU; this process sees 1 (ordinals 0..0, after CUDA_VISIBLE_DEVICES)"},
	} {
		ts := newTestServer(t, c.mode)
		err := ts.client.Call(context.Background(), "start_keep", map[string]any{"gpu_ids": "3", "job_id": "j"}, nil)
		var re *RPCError
		if !asRPC(err, &re) || re.Code != c.code || re.Message != c.msg {
			t.Fatalf("%s: start_keep: %v; want %d %q", c.mode, err, c.code, c.msg)
		}
		code, _, body := ts.do("POST", "/api/sessions", `{"job_id":"j"}`, "Content-Type", "application/json")
		if code != c.status || !strings.Contains(body, `{"error":{"message":`) {
			t.Fatalf("%s: POST /api/sessions: HTTP %d %s; want %d", c.mode, code, body, c.status)
		}
		if l := ts.sessions.list(); len(l) != 0 {
			t.Fatalf("%s: sessions left behind: %+v", c.mode, l)
		}
	}
}

// TestStopWhileStarting: a stop that comes before the holder holds waits
// for it to exit.
func TestStopWhileStarting(t *testing.T) {
	ts := newTestServer(t, "slow", func(c *Config) { c.StartWait = time.Millisecond })
	id := ts.start(nil)
	if st := ts.status(id); st.State != StateStarting || st.HeldSince != nil {
		t.Fatalf("status: %+v; want starting", st)
	}
	pid := ts.status(id).PID
	var res StopResult
	if err := ts.client.Call(context.Background(), "stop_keep", map[string]any{"job_id": id}, &res); err != nil || len(res.Stopped) != 1 {
		t.Fatalf("stop_keep: %+v %v", res, err)
	}
	if alive(pid) {
		t.Fatalf("stop_keep returned with holder %d alive", pid)
	}
}

// TestStopTimeout: a holder that ignores SIGTERM is killed after the stop
// timeout and the session says stop_failed.
func TestStopTimeout(t *testing.T) {
	ts := newTestServer(t, "stubborn", func(c *Config) { c.StopTimeout = 300 * time.Millisecond })
	id := ts.start(nil)
	st := ts.waitState(id, StateActive)
	var res StopResult
	start := time.Now()
	if err := ts.client.Call(context.Background(), "stop_keep", map[string]any{"job_id": id}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.TimedOut) != 1 || !strings.Contains(res.Errors[id], "did not exit within 300ms of SIGTERM; killed it (killed by SIGKILL)") {
		t.Fatalf("stop_keep: %+v", res)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
		t.Fatalf("stop took %s", el)
	}
	if alive(st.PID) {
		t.Fatalf("holder %d alive after the kill", st.PID)
	}
	if st = ts.status(id); st.State != StateStopFailed || st.Active {
		t.Fatalf("status: %+v; want stop_failed", st)
	}
	// Stopping it again clears it.
	res = StopResult{}
	if err := ts.client.Call(context.Background(), "stop_keep", nil, &res); err != nil || len(res.Stopped) != 1 || len(res.TimedOut) != 0 {
		t.Fatalf("second stop_keep: %+v %v", res, err)
	}
	if _, ok := ts.sessions.get(id); ok {
		t.Fatal("the stop_failed session is still listed")
	}
}

// TestPausedStatus: the status says the kernel is paused and why.
func TestPausedStatus(t *testing.T) {
	ts := newTestServer(t, "pause")
	id := ts.start(nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := ts.status(id)
		if st.Paused {
			if st.State != StateActive || st.PausedReason != "gpu 0: foreign compute process 42 (1.0 GiB)" || st.GPUs[0].Kernel != "paused" || st.BytesHeld != 1<<30 {
				t.Fatalf("status: %+v", st)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never paused: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownStopsAll: Shutdown stops every session, then refuses new ones.
func TestShutdownStopsAll(t *testing.T) {
	ts := newTestServer(t, "ok")
	var pids []int
	for i := 0; i < 3; i++ {
		pids = append(pids, ts.waitState(ts.start(nil), StateActive).PID)
	}
	res := ts.Shutdown()
	if len(res.Stopped) != 3 {
		t.Fatalf("Shutdown: %+v", res)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Fatalf("holder %d alive after Shutdown", pid)
		}
	}
	err := ts.client.Call(context.Background(), "start_keep", nil, nil)
	if re, ok := err.(*RPCError); !ok || re.Code != codeUnavailable {
		t.Fatalf("start_keep after Shutdown: %v; want -32000", err)
	}
}

// TestMaxSessions: sessions are bounded.
func TestMaxSessions(t *testing.T) {
	ts := newTestServer(t, "ok", func(c *Config) { c.MaxSessions = 2 })
	ts.start(nil)
	ts.start(nil)
	err := ts.client.Call(context.Background(), "start_keep", nil, nil)
	if re, ok := err.(*RPCError); !ok || re.Code != codeUnavailable || !strings.Contains(re.Message, "too many sessions") {
		t.Fatalf("third start_keep: %v", err)
	}
}

// TestHolderCannotStart: a holder binary that cannot be run is -32000.
func TestHolderCannotStart(t *testing.T) {
	ts := newTestServer(t, "ok", func(c *Config) { c.HolderPath = "/nonexistent/keepgpu" })
	err := ts.client.Call(context.Background(), "start_keep", map[string]any{"job_id": "x"}, nil)
	if re, ok := err.(*RPCError); !ok || re.Code != codeUnavailable || !strings.Contains(re.Message, "cannot start the holder") {
		t.Fatalf("start_keep: %v", err)
	}
	if _, ok := ts.sessions.get("x"); ok {
		t.Fatal("a session that never started is listed")
	}
}

// TestGPUs: the listing comes from list-gpus, with unknown utilization as
// null, and says who each process is; without NVML it says why.
func TestGPUs(t *testing.T) {
	ts := newTestServer(t, "ok")
	var r GPUList
	if err := ts.client.Call(context.Background(), "list_gpus", nil, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.GPUs) != 2 || r.GPUs[1].Utilization != nil || *r.GPUs[0].Utilization != 37 || r.Error != "" {
		t.Fatalf("list_gpus: %+v", r)
	}
	p := r.GPUs[0].Processes[0]
	if p.PID != os.Getpid() || p.Command == "" || p.User == "" || p.JobID != "" {
		t.Fatalf("process: %+v", p)
	}
	a := annotate(r, map[int]string{os.Getpid(): "job-7"})
	if a.GPUs[0].Processes[0].JobID != "job-7" {
		t.Fatalf("annotate: %+v", a.GPUs[0].Processes)
	}

	// No NVML: the GPUs cannot be listed, which list_gpus answers with
	// -32000 and GET /api/gpus with 503, as KeepGPU does.
	nonvml := newTestServer(t, "nonvml")
	err := nonvml.client.Call(context.Background(), "list_gpus", nil, &r)
	var re *RPCError
	if !asRPC(err, &re) || re.Code != codeUnavailable || re.Message != "nvml: libnvidia-ml.so.1 not found" {
		t.Fatalf("list_gpus without NVML: %v", err)
	}
	if code, _, body := nonvml.do("GET", "/api/gpus", ""); code != 503 ||
		body != `{"error":{"message":"nvml: libnvidia-ml.so.1 not found","type":"DeviceEnumerationUnavailableError"}}`+"\n" {
		t.Fatalf("GET /api/gpus without NVML: HTTP %d %s", code, body)
	}
}

// TestDaemonKilled: when the service dies, its holders follow (the
// parent-death signal), so no GPU stays held by an orphan.
func TestDaemonKilled(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "addr")
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = testEnv("SERVE_TEST=" + addrFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var addr []byte
	for deadline := time.Now().Add(20 * time.Second); len(addr) == 0; time.Sleep(5 * time.Millisecond) {
		addr, _ = os.ReadFile(addrFile)
		if time.Now().After(deadline) {
			t.Fatal("the service never wrote its address")
		}
	}
	c := NewClient(string(addr), testToken)
	var pids []int
	for i := 0; i < 2; i++ {
		var r struct {
			JobID string `json:"job_id"`
		}
		if err := c.Call(context.Background(), "start_keep", nil, &r); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); ; {
			if time.Now().After(deadline) {
				t.Fatalf("session %s never active", r.JobID)
			}
			var st Status
			if err := c.Call(context.Background(), "status", map[string]any{"job_id": r.JobID}, &st); err != nil {
				t.Fatal(err)
			}
			if st.State == StateActive {
				pids = append(pids, st.PID)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, pid := range pids {
		waitGone(t, pid)
	}
}

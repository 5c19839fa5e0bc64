package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake holder and a fake `list-gpus`
// (FAKE_HOLDER=mode), and as a service in a process of its own
// (SERVE_TEST=addr-file), so that sessions are real processes.
func TestMain(m *testing.M) {
	if f := os.Getenv("SERVE_TEST"); f != "" {
		os.Exit(serveTest(f))
	}
	if mode := os.Getenv("FAKE_HOLDER"); mode != "" {
		os.Exit(fakeHolder(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeGPUs is what the fake `list-gpus --json --local` prints: GPU 1's
// utilization is unknown, as on a MIG GPU.
const fakeGPUs = `{"gpus":[
 {"id":0,"platform":"cuda","uuid":"GPU-aaaa","name":"Fake GPU 0","memory_total":85899345920,"memory_used":1073741824,"utilization":37,"compute_mode":"default","mig":false,"power_mw":null,"processes":[{"pid":%d,"memory_used":1073741824}]},
 {"id":1,"platform":"cuda","uuid":"GPU-bbbb","name":"Fake GPU 1","memory_total":85899345920,"memory_used":0,"utilization":null,"compute_mode":"default","mig":true,"power_mw":null,"processes":[]}]}`

// fakeHolder speaks the holder's protocol without a GPU. Modes: ok (hold
// until SIGTERM), fail (cannot hold), stubborn (ignores SIGTERM), pause
// (reports its kernel paused), slow (takes 300 ms to hold), nonvml
// (list-gpus fails), badgpu (is given a GPU that does not exist).
func fakeHolder(mode string, args []string) int {
	if len(args) > 0 && args[0] == "list-gpus" {
		if mode == "nonvml" {
			fmt.Fprintln(os.Stderr, "keepgpu: error: nvml: libnvidia-ml.so.1 not found")
			return 1
		}
		fmt.Printf(fakeGPUs+"\n", os.Getppid())
		return 0
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	out := json.NewEncoder(os.Stdout)
	emit := func(m map[string]any) { out.Encode(m) }
	switch mode {
	case "fail":
		emit(map[string]any{"event": "error", "message": "holding nothing: cuInit: CUDA_ERROR_NO_DEVICE (100)"})
		return 1
	case "badgpu":
		emit(map[string]any{"event": "error", "message": "holding nothing: gpu 3: no such GPU; this process sees 1 (ordinals 0..0, after CUDA_VISIBLE_DEVICES)"})
		return 1
	}
	if mode == "slow" {
		time.Sleep(300 * time.Millisecond)
	}
	gpu := map[string]any{"gpu": 0, "uuid": "GPU-aaaa", "name": "Fake GPU 0", "bytes": 1 << 30, "kernel": "running", "telemetry": "ok"}
	emit(map[string]any{"event": "held", "gpu": 0, "uuid": "GPU-aaaa", "name": "Fake GPU 0", "bytes": 1 << 30})
	emit(map[string]any{"event": "holding", "message": "holding 1 GPU", "gpus": []any{gpu}})
	if mode == "pause" {
		emit(map[string]any{"event": "paused", "gpu": 0, "reason": "foreign compute process 42 (1.0 GiB)"})
	}
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
		select {}
	}
	<-sigs
	emit(map[string]any{"event": "released", "reason": "SIGTERM"})
	return 0
}

// serveTest runs a service with fake holders on 127.0.0.1:0 and writes its
// address to addrFile.
func serveTest(addrFile string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exe, _ := os.Executable()
	s := New(Config{Token: testToken, HolderPath: exe, Argv0: "keepgpu", Env: testEnv("FAKE_HOLDER=ok")})
	os.WriteFile(addrFile, []byte(ln.Addr().String()), 0o600)
	Serve(context.Background(), ln, s)
	return 0
}

// testEnv is this process's environment with kv set, and neither
// FAKE_HOLDER nor SERVE_TEST otherwise: os.StartProcess passes duplicate
// variables on, and a child's getenv finds the first.
func testEnv(kv ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "FAKE_HOLDER=") && !strings.HasPrefix(e, "SERVE_TEST=") && !strings.HasPrefix(e, "GORACE=") {
			env = append(env, e)
		}
	}
	// The race detector sleeps a second at exit by default: every stop
	// would look a second slow.
	return append(append(env, "GORACE=atexit_sleep_ms=0"), kv...)
}

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// testServer is a service with fake holders behind an httptest server.
type testServer struct {
	*Server
	url    string
	client *Client
	t      *testing.T
}

func newTestServer(t *testing.T, mode string, mod ...func(*Config)) *testServer {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Token: testToken, HolderPath: exe, Argv0: "keepgpu", Env: testEnv("FAKE_HOLDER=" + mode),
		StopTimeout: 5 * time.Second, Version: "test"}
	for _, f := range mod {
		f(&cfg)
	}
	s := New(cfg)
	hs := httptest.NewServer(s)
	ts := &testServer{Server: s, url: hs.URL, client: NewClient(strings.TrimPrefix(hs.URL, "http://"), testToken), t: t}
	t.Cleanup(func() {
		hs.Close()
		s.Shutdown()
		if n := s.Live(); n != 0 {
			t.Errorf("%d holders still running after Shutdown", n)
		}
	})
	return ts
}

// do sends an authenticated request and returns the status and body.
func (ts *testServer) do(method, path, body string, hdr ...string) (int, http.Header, string) {
	ts.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// rpc calls method and returns the raw response object.
func (ts *testServer) rpc(method string, params any) map[string]any {
	ts.t.Helper()
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
	code, _, body := ts.do("POST", "/rpc", string(req), "Content-Type", "application/json")
	if code != 200 {
		ts.t.Fatalf("%s: HTTP %d %s", method, code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		ts.t.Fatalf("%s: %v: %s", method, err, body)
	}
	return m
}

// start starts a session and returns its job id.
func (ts *testServer) start(params map[string]any) string {
	ts.t.Helper()
	var r struct {
		JobID string `json:"job_id"`
	}
	if err := ts.client.Call(context.Background(), "start_keep", params, &r); err != nil {
		ts.t.Fatalf("start_keep %v: %v", params, err)
	}
	return r.JobID
}

// status returns the session id's status.
func (ts *testServer) status(id string) Status {
	ts.t.Helper()
	var st Status
	if err := ts.client.Call(context.Background(), "status", map[string]any{"job_id": id}, &st); err != nil {
		ts.t.Fatal(err)
	}
	return st
}

// waitState waits until session id is in state.
func (ts *testServer) waitState(id, state string) Status {
	ts.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := ts.status(id)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("session %s: state %q; want %q (%+v)", id, st.State, state, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive reports whether pid is a process that has not exited (a zombie
// has).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !zombie(b)
}

// waitGone waits until pid has exited.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

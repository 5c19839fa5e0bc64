package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/internal/fakegpu"
	"github.com/keepgpu/keepgpu/service"
)

// fakeService is a service in this process whose holders are real keepgpu
// holders (this test binary as `keepgpu`, see TestMain) on a fake node.
type fakeService struct {
	*service.Server
	node   *fakegpu.Node
	http   *httptest.Server
	client *service.Client
	token  string
	polls  atomic.Int64 // GET /api/gpus requests: the dashboard's polls
}

func newFakeService(t testing.TB, gpus int, set ...string) *fakeService {
	t.Helper()
	newNode := fakegpu.NewNode
	if fakePlatform == "rocm" {
		newNode = fakegpu.NewROCmNode
	}
	node, err := newNode(filepath.Join(t.TempDir(), "node"), filepath.Join(t.TempDir(), "lib"), gpus)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range set { // GPU:KEY=VALUE
		var gpu int
		var k, v string
		g, rest, _ := strings.Cut(kv, ":")
		k, v, _ = strings.Cut(rest, "=")
		fmt.Sscan(g, &gpu)
		if err := node.Set(gpu, k, v); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(holder.Env(os.Environ()), node.Env()...)
	env = append(env, "GORACE=atexit_sleep_ms=0")
	tok := strings.Repeat("5e", 32)
	s := service.New(service.Config{Token: tok, HolderPath: exe, Argv0: "keepgpu", Env: env, StopTimeout: 10 * time.Second})
	fs := &fakeService{Server: s, node: node, token: tok}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/gpus" {
			fs.polls.Add(1)
		}
		s.ServeHTTP(w, r)
	}))
	fs.http, fs.client = hs, service.NewClient(strings.TrimPrefix(hs.URL, "http://"), tok)
	t.Cleanup(func() {
		hs.Close()
		s.Shutdown()
	})
	return fs
}

// holders returns the live processes holding memory on the node.
func (fs *fakeService) holders(t testing.TB) []fakegpu.Proc {
	t.Helper()
	n, _ := fs.node.GPUs()
	var out []fakegpu.Proc
	for g := 0; g < n; g++ {
		procs, err := fs.node.Procs(g)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, procs...)
	}
	return out
}

// waitFree waits until no process has a record on the node: every context
// destroyed and every byte freed explicitly.
func (fs *fakeService) waitFree(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		p := fs.holders(t)
		if len(p) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("records left on the node: %+v", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1) * p)
	return d[i]
}

// TestServiceLoad: 1000 concurrent status calls, then 50 sessions started
// and stopped in rounds, with real holders on the fake node; afterwards no
// holder, no byte of VRAM, no goroutine and no file descriptor is left.
func TestServiceLoad(t *testing.T) {
	fs := newFakeService(t, 4)
	ctx := context.Background()
	tr := &http.Transport{MaxIdleConnsPerHost: 1000}
	fs.client.HTTP = &http.Client{Transport: tr, Timeout: time.Minute}

	startStop := func(id string) (toActive, toStopped time.Duration) {
		t0 := time.Now()
		if err := fs.client.Call(ctx, "start_keep", map[string]any{"job_id": id, "vram": "256MiB", "gpu_ids": []int{len(id) % 4}}, nil); err != nil {
			t.Error(err)
			return
		}
		for {
			var st service.Status
			if err := fs.client.Call(ctx, "status", map[string]any{"job_id": id}, &st); err != nil {
				t.Error(err)
				return
			}
			if st.State == service.StateActive {
				if st.BytesHeld != 256<<20 {
					t.Errorf("%s: %d bytes held", id, st.BytesHeld)
				}
				break
			}
			if st.State != service.StateStarting || time.Since(t0) > waitLimit {
				t.Errorf("%s: %+v", id, st)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		toActive = time.Since(t0)
		t1 := time.Now()
		var res service.StopResult
		if err := fs.client.Call(ctx, "stop_keep", map[string]any{"job_id": id}, &res); err != nil || len(res.Stopped) != 1 {
			t.Errorf("stop %s: %+v %v", id, res, err)
		}
		return toActive, time.Since(t1)
	}

	// Warm up (the spawner's thread, the first connections), then take
	// the baseline.
	startStop("warm-up")
	fs.waitFree(t)
	tr.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	goroutines, fds := runtime.NumGoroutine(), openFDs()

	// Sessions to report on while 1000 clients ask at once.
	for i := 0; i < 4; i++ {
		if err := fs.client.Call(ctx, "start_keep", map[string]any{"job_id": fmt.Sprint("bg-", i), "gpu_ids": []int{i}, "vram": "64MiB"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	const calls = 1000
	lat := make([]time.Duration, calls)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			t0 := time.Now()
			var r struct {
				ActiveJobs []service.Status `json:"active_jobs"`
			}
			if err := fs.client.Call(ctx, "status", nil, &r); err != nil || len(r.ActiveJobs) != 4 {
				t.Errorf("status: %d jobs, %v", len(r.ActiveJobs), err)
			}
			lat[i] = time.Since(t0)
		}()
	}
	t0 := time.Now()
	close(gate)
	wg.Wait()
	wall := time.Since(t0)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("status: %d concurrent calls in %s: %.0f calls/s; latency p50 %s, p99 %s, max %s",
		calls, wall.Round(time.Millisecond), calls/wall.Seconds(), percentile(lat, .5).Round(time.Microsecond),
		percentile(lat, .99).Round(time.Microsecond), lat[calls-1].Round(time.Microsecond))
	var res service.StopResult
	if err := fs.client.Call(ctx, "stop_keep", nil, &res); err != nil || len(res.Stopped) != 4 {
		t.Fatalf("stop all: %+v %v", res, err)
	}

	// 50 sessions, 5 at a time.
	const rounds, width = 10, 5
	var active, stopped []time.Duration
	var mu sync.Mutex
	t0 = time.Now()
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		for i := 0; i < width; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, s := startStop(fmt.Sprintf("load-%d-%d", r, i))
				mu.Lock()
				active, stopped = append(active, a), append(stopped, s)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	wall = time.Since(t0)
	sort.Slice(active, func(i, j int) bool { return active[i] < active[j] })
	sort.Slice(stopped, func(i, j int) bool { return stopped[i] < stopped[j] })
	t.Logf("sessions: %d started and stopped (%d at a time) in %s; start→active p50 %s p99 %s; stop→holder exited p50 %s p99 %s",
		rounds*width, width, wall.Round(time.Millisecond), percentile(active, .5).Round(time.Microsecond), percentile(active, .99).Round(time.Microsecond),
		percentile(stopped, .5).Round(time.Microsecond), percentile(stopped, .99).Round(time.Microsecond))

	// Nothing left behind.
	fs.waitFree(t)
	for _, p := range fs.holders(t) {
		if p.Alive {
			t.Errorf("holder %d still alive", p.PID)
		}
	}
	if n := fs.Live(); n != 0 {
		t.Errorf("%d live sessions", n)
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs()
		if g <= goroutines && f <= fds {
			t.Logf("after: %d goroutines (baseline %d), %d fds (baseline %d)", g, goroutines, f, fds)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("leak: %d goroutines (baseline %d), %d fds (baseline %d)\n%s", g, goroutines, f, fds, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if zombies := childZombies(); len(zombies) > 0 {
		t.Errorf("unreaped children: %v", zombies)
	}
}

// childZombies lists this process's exited but unreaped children.
func childZombies() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[0] == "Z" && f[1] == fmt.Sprint(syscall.Getpid()) {
			out = append(out, pid)
		}
	}
	return out
}

// TestMCPStdio runs `keepgpu mcp` as an MCP client would: over its stdin
// and stdout, which carry protocol messages only. Its first tool call
// starts the service in the background; the session holds real VRAM on the
// fake node until stop_keep.
func TestMCPStdio(t *testing.T) {
	node, err := fakegpu.NewNode(filepath.Join(t.TempDir(), "node"), filepath.Join(t.TempDir(), "lib"), 1)
	if err != nil {
		t.Fatal(err)
	}
	rundir, err := os.MkdirTemp("", "kg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(rundir)
	t.Setenv("XDG_RUNTIME_DIR", rundir)
	t.Setenv("KEEPGPU_PORT", "0")
	defer func() {
		if code := runCLI(t, "service-stop", "--force"); code != 0 {
			t.Errorf("service-stop --force: exit %d", code)
		}
	}()

	exe, _ := os.Executable()
	cmd := exec.Command(exe, "mcp")
	cmd.Args[0] = "keepgpu"
	cmd.Env = append(append(os.Environ(), node.Env()...), "GORACE=atexit_sleep_ms=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func(name string, args any) string {
		t.Helper()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v (stderr: %s)", name, err, stderr.String())
		}
		text := r.Content[0].(*mcp.TextContent).Text
		if r.IsError {
			t.Fatalf("%s: %s", name, text)
		}
		return text
	}
	if text := call("start_keep", map[string]any{"job_id": "agent", "vram": "2GiB"}); text != `{"job_id":"agent"}` {
		t.Fatalf("start_keep: %s", text)
	}
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(call("status", map[string]any{"job_id": "agent"}), `"state":"active"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never active")
		}
	}
	if procs, _ := node.Procs(0); len(procs) != 1 || procs[0].Bytes != 2<<30 {
		t.Fatalf("gpu 0: %+v", procs)
	}
	if text := call("stop_keep", nil); !strings.Contains(text, `"stopped":["agent"]`) {
		t.Fatalf("stop_keep: %s", text)
	}
	if procs, _ := node.Procs(0); len(procs) != 0 {
		t.Fatalf("gpu 0 after stop_keep: %+v", procs)
	}
}

// runCLI runs keepgpu's entry point in this process.
func runCLI(t *testing.T, args ...string) int {
	var out, errb strings.Builder
	code := run(args, &out, &errb)
	t.Logf("keepgpu %s: %s%s", strings.Join(args, " "), out.String(), errb.String())
	return code
}

// TestKeepGPUHTTPExamples sends KeepGPU's documented curl examples (its MCP
// and service guide) to a service whose holders hold on the fake node:
// method, path, headers and body as curl sends them, with one difference,
// the token keepgpu requires. Without it, each is refused (401): any local
// user could otherwise stop anyone's session.
func TestKeepGPUHTTPExamples(t *testing.T) {
	fs := newFakeService(t, 2)
	send := func(t *testing.T, method, path, body string, token bool) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, fs.http.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("User-Agent", "curl/8.5.0")
		req.Header.Set("Accept", "*/*")
		if body != "" {
			req.Header.Set("content-type", "application/json") // -H "content-type: application/json"
		}
		if token {
			req.Header.Set("Authorization", "Bearer "+fs.token) // -H "Authorization: Bearer $(cat …/keepgpu/token)"
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var jobID string
	examples := []struct {
		name, method, path, body string
		check                    func(t *testing.T, body string)
	}{
		{"HTTP JSON-RPC quick example: MCP tools/call", "POST", "/rpc",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"status","arguments":{}}}`,
			func(t *testing.T, body string) {
				if body != `{"jsonrpc":"2.0","result":{"content":[{"text":"{\"active_jobs\":[]}","type":"text"}],"isError":false},"id":1}`+"\n" {
					t.Fatalf("got %s", body)
				}
			}},
		{"legacy JSON-RPC quick example: start_keep", "POST", "/rpc",
			`{"id":1,"method":"start_keep","params":{"gpu_ids":[0],"vram":"512MB","interval":60,"busy_threshold":20}}`,
			func(t *testing.T, body string) {
				var r struct {
					JSONRPC string
					ID      int
					Result  struct {
						JobID string `json:"job_id"`
					}
				}
				if json.Unmarshal([]byte(body), &r) != nil || r.JSONRPC != "2.0" || r.ID != 1 || r.Result.JobID == "" {
					t.Fatalf("got %s", body)
				}
				if p, _ := fs.node.Procs(0); len(p) != 1 || p[0].Bytes != 512e6 {
					t.Fatalf("gpu 0 holds %+v; want 512 MB", p)
				}
			}},
		{"REST: health", "GET", "/health", "", func(t *testing.T, body string) {
			if !strings.HasPrefix(body, `{"ok":true,`) {
				t.Fatalf("got %s", body)
			}
		}},
		{"REST: GPUs", "GET", "/api/gpus", "", func(t *testing.T, body string) {
			if !strings.Contains(body, `"id":0,`) || !strings.Contains(body, `"id":1,`) {
				t.Fatalf("got %s", body)
			}
		}},
		{"REST: sessions", "GET", "/api/sessions", "", func(t *testing.T, body string) {
			if !strings.Contains(body, `"state":"active"`) || !strings.Contains(body, `"vram":"512MB"`) {
				t.Fatalf("got %s", body)
			}
		}},
		{"REST: start", "POST", "/api/sessions", `{"gpu_ids":[0],"vram":"1GiB","interval":120,"busy_threshold":25}`,
			func(t *testing.T, body string) {
				var st service.Status
				if json.Unmarshal([]byte(body), &st) != nil || st.JobID == "" || st.State != service.StateActive || st.BytesHeld != 1<<30 {
					t.Fatalf("got %s", body)
				}
				jobID = st.JobID
			}},
		{"REST: stop one", "DELETE", "/api/sessions/<job_id>", "", func(t *testing.T, body string) {
			if body != `{"stopped":["`+jobID+`"],"timed_out":[],"failed":[],"errors":{}}`+"\n" {
				t.Fatalf("got %s", body)
			}
		}},
		{"REST: stop all", "DELETE", "/api/sessions", "", func(t *testing.T, body string) {
			if !strings.HasPrefix(body, `{"stopped":["`) || !strings.HasSuffix(body, `"],"timed_out":[],"failed":[],"errors":{}}`+"\n") {
				t.Fatalf("got %s", body)
			}
			fs.waitFree(t)
		}},
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			path := strings.Replace(ex.path, "<job_id>", jobID, 1)
			if code, body := send(t, ex.method, path, ex.body, false); code != 401 || body != "unauthorized\n" {
				t.Fatalf("without the token: HTTP %d %s; want 401", code, body)
			}
			code, body := send(t, ex.method, path, ex.body, true)
			if code != 200 {
				t.Fatalf("HTTP %d %s", code, body)
			}
			ex.check(t, body)
		})
	}
	if l := fs.Live(); l != 0 {
		t.Fatalf("%d sessions left", l)
	}
}

// TestKeepGPUMCPOverHTTP: the MCP conversation KeepGPU's guide describes
// (initialize, tools/list, tools/call; ping for liveness) on /rpc, with
// the token, a session held on the fake node and released.
func TestKeepGPUMCPOverHTTP(t *testing.T) {
	fs := newFakeService(t, 1)
	post := func(body string) string {
		t.Helper()
		req, _ := http.NewRequest("POST", fs.http.URL+"/rpc", strings.NewReader(body))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("Authorization", "Bearer "+fs.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s: HTTP %d %s", body, resp.StatusCode, b)
		}
		return string(b)
	}
	for _, c := range []struct{ req, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"agent","version":"1"}}}`, `"protocolVersion":"2025-06-18"`},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, ``},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, `"name":"list_gpus"`},
		{`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"start_keep","arguments":{"gpu_ids":[0],"vram":"1GiB","job_id":"agent"}}}`, `"text":"{\"job_id\":\"agent\"}"`},
		{`{"jsonrpc":"2.0","id":4,"method":"ping"}`, `{"jsonrpc":"2.0","result":{},"id":4}`},
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"stop_keep","arguments":{"job_id":"agent"}}}`, `\"stopped\":[\"agent\"]`},
	} {
		if got := post(c.req); !strings.Contains(got, c.want) {
			t.Fatalf("%s: got %s; want %s", c.req, got, c.want)
		}
	}
	fs.waitFree(t)
}

package service

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpPipe runs an MCPStdio for ts on pipes and connects the MCP SDK's
// client to it: keepgpu's own MCP server checked by another implementation.
// It returns the client session, and a function that ends the client
// (closing the server's stdin) and waits for Run to return.
func mcpPipe(t *testing.T, ts *testServer, keep bool, opts ...*mcp.ClientSessionOptions) (*mcp.ClientSession, func()) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	srv := &MCPStdio{Version: "test", KeepSessions: keep,
		Connect: func(context.Context) (*Client, error) { return ts.client, nil }}
	done := make(chan error, 1)
	go func() {
		done <- srv.Run(context.Background(), inR, outW)
		outW.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	var opt *mcp.ClientSessionOptions
	if len(opts) > 0 {
		opt = opts[0]
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, opt)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	end := func() {
		if closed {
			return
		}
		closed = true
		inW.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		cs.Close()
	}
	t.Cleanup(end)
	return cs, end
}

// TestMCP: the four tools through the MCP SDK's client, their results as
// JSON text, and errors as isError results in plain text.
func TestMCP(t *testing.T) {
	ts := newTestServer(t, "ok")
	cs, _ := mcpPipe(t, ts, false)
	ctx := context.Background()
	if v := cs.InitializeResult().ProtocolVersion; v != mcpVersions[0] {
		t.Fatalf("negotiated %q; want %q", v, mcpVersions[0])
	}
	if err := cs.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if tool.InputSchema == nil {
			t.Fatalf("%s: no input schema", tool.Name)
		}
	}
	if strings.Join(names, ",") != "start_keep,stop_keep,status,list_gpus" {
		t.Fatalf("tools: %v", names)
	}

	call := func(name string, args any) (string, bool) {
		t.Helper()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(r.Content) != 1 {
			t.Fatalf("%s: %d contents", name, len(r.Content))
		}
		return r.Content[0].(*mcp.TextContent).Text, r.IsError
	}
	if text, isErr := call("start_keep", map[string]any{"job_id": "mcp-1", "gpu_ids": []int{0}, "vram": "1GiB"}); isErr || text != `{"job_id":"mcp-1"}` {
		t.Fatalf("start_keep: %s %v", text, isErr)
	}
	if text, isErr := call("status", map[string]any{"job_id": "mcp-1"}); isErr || !strings.Contains(text, `"state":"active"`) {
		t.Fatalf("status: %s", text)
	}
	if text, isErr := call("list_gpus", nil); isErr || !strings.Contains(text, `"utilization":null`) {
		t.Fatalf("list_gpus: %s", text)
	}
	if text, isErr := call("start_keep", map[string]any{"vram": "1Gb"}); !isErr || !strings.HasPrefix(text, "vram: ") || !strings.Contains(text, "bits") {
		t.Fatalf("start_keep with bits: %s %v", text, isErr)
	}
	if text, isErr := call("stop_keep", map[string]any{"job_id": "mcp-1"}); isErr || !strings.Contains(text, `"stopped":["mcp-1"]`) {
		t.Fatalf("stop_keep: %s", text)
	}
	if text, isErr := call("status", nil); isErr || text != `{"active_jobs":[]}` {
		t.Fatalf("status: %s", text)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "reboot"}); err == nil || !strings.Contains(err.Error(), `unknown tool "reboot"`) {
		t.Fatalf("unknown tool: %v", err)
	}
}

// TestMCPVersions: a client that asks for an older protocol version gets
// it, and works.
func TestMCPVersions(t *testing.T) {
	ts := newTestServer(t, "ok")
	for _, v := range mcpVersions {
		cs, _ := mcpPipe(t, ts, false, &mcp.ClientSessionOptions{ProtocolVersion: v})
		if got := cs.InitializeResult().ProtocolVersion; got != v {
			t.Fatalf("asked for %s, got %s", v, got)
		}
		if _, err := cs.ListTools(context.Background(), nil); err != nil {
			t.Fatalf("%s: tools/list: %v", v, err)
		}
	}
}

// TestMCPClientGoes: the sessions a stdio MCP server started end when its
// client goes (stdin closes), unless it was asked to keep them; sessions
// started elsewhere are left alone.
func TestMCPClientGoes(t *testing.T) {
	for _, keep := range []bool{false, true} {
		ts := newTestServer(t, "ok")
		other := ts.start(map[string]any{"job_id": "other"})
		cs, end := mcpPipe(t, ts, keep)
		r, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "start_keep", Arguments: map[string]any{"job_id": "agent"}})
		if err != nil || r.IsError {
			t.Fatalf("start_keep: %v %+v", err, r)
		}
		pid := ts.status("agent").PID
		end()
		var ids []string
		for _, st := range ts.sessions.list() {
			ids = append(ids, st.JobID)
		}
		want := other
		if keep {
			want = other + ",agent"
		} else if alive(pid) {
			t.Fatalf("the holder of the agent's session (pid %d) still runs", pid)
		}
		if strings.Join(ids, ",") != want {
			t.Fatalf("keep %v: sessions %v; want %s", keep, ids, want)
		}
	}
}

// TestMCPOverRPC: MCP's methods on /rpc, beside the service's own, as a
// client that speaks JSON-RPC over HTTP sends them.
func TestMCPOverRPC(t *testing.T) {
	ts := newTestServer(t, "ok")
	post := func(body string) (int, string) {
		t.Helper()
		code, _, got := ts.do("POST", "/rpc", body, "Content-Type", "application/json")
		return code, got
	}
	tests := []struct{ name, req, want string }{
		{"initialize", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`,
			`{"jsonrpc":"2.0","result":{"capabilities":{"tools":{"listChanged":false}},"instructions":`},
		{"initialize echoes a version it speaks", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05"}}`, `"protocolVersion":"2024-11-05"`},
		{"initialize offers its newest otherwise", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}`, `"protocolVersion":"` + mcpVersions[0] + `"`},
		{"initialize with members of later MCP versions", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"x":{}},"clientInfo":{"name":"c","version":"1"},"_meta":{},"later":1}}`, `"protocolVersion":"2025-11-25"`},
		{"tools/call with _meta", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"status","arguments":{},"_meta":{"progressToken":1}}}`, `"isError":false`},
		{"initialize bad version", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":7}}`, `"code":-32602`},
		{"ping", `{"jsonrpc":"2.0","id":2,"method":"ping"}`, `{"jsonrpc":"2.0","result":{},"id":2}`},
		{"tools/list", `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, `"inputSchema":{"type":"object","additionalProperties":false,"properties":{"job_id":`},
		{"tools/call", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"status","arguments":{}}}`,
			`{"jsonrpc":"2.0","result":{"content":[{"text":"{\"active_jobs\":[]}","type":"text"}],"isError":false},"id":4}`},
		{"tools/call without arguments", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"status"}}`, `"isError":false`},
		{"tools/call bad input", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"start_keep","arguments":{"busy_threshold":101}}}`,
			`{"jsonrpc":"2.0","result":{"content":[{"text":"busy_threshold 101: want -1 (never pause) or 0..100","type":"text"}],"isError":true},"id":5}`},
		{"tools/call unknown tool", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"reboot","arguments":{}}}`, `"code":-32602,"message":"unknown tool \"reboot\"`},
		{"tools/call no name", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"arguments":{}}}`, `"code":-32602`},
		{"tools/call arguments not an object", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"status","arguments":[]}}`, `"code":-32602`},
		{"notification with an id", `{"jsonrpc":"2.0","id":7,"method":"notifications/initialized"}`, `"code":-32600`},
		{"unknown method", `{"jsonrpc":"2.0","id":8,"method":"resources/list"}`, `"code":-32601`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, got := post(tt.req); code != 200 || !strings.Contains(got, tt.want) {
				t.Fatalf("HTTP %d %s\nwant containing %s", code, got, tt.want)
			}
		})
	}
	t.Run("notifications", func(t *testing.T) {
		for _, n := range []string{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, `{"method":"notifications/cancelled","params":{"requestId":1}}`} {
			if code, got := post(n); code != 202 || got != "" {
				t.Fatalf("%s: HTTP %d %q; want 202 and nothing", n, code, got)
			}
		}
	})
	t.Run("a tool's result is the method's", func(t *testing.T) {
		_, got := post(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"start_keep","arguments":{"job_id":"m"}}}`)
		var r struct {
			Result struct {
				Content []struct{ Text string }
				IsError bool
			}
		}
		if json.Unmarshal([]byte(got), &r) != nil || r.Result.IsError || len(r.Result.Content) != 1 || r.Result.Content[0].Text != `{"job_id":"m"}` {
			t.Fatalf("start_keep: %s", got)
		}
		if ts.status("m").State != StateActive {
			t.Fatalf("m: %+v", ts.status("m"))
		}
	})
}

// TestMCPSignalled: a stdio MCP server that is signalled (its context
// done) while its client is still there stops the sessions it started,
// then returns.
func TestMCPSignalled(t *testing.T) {
	ts := newTestServer(t, "ok")
	inR, inW := io.Pipe()
	defer inW.Close()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	srv := &MCPStdio{Version: "test", Connect: func(context.Context) (*Client, error) { return ts.client, nil }}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, inR, outW) }()
	go io.WriteString(inW, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"start_keep","arguments":{"job_id":"agent"}}}`+"\n")
	line := make([]byte, 4096)
	n, err := outR.Read(line)
	if err != nil || !strings.Contains(string(line[:n]), `\"job_id\":\"agent\"`) {
		t.Fatalf("start_keep: %q %v", line[:n], err)
	}
	pid := ts.status("agent").PID
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := ts.sessions.list(); len(l) != 0 || alive(pid) {
		t.Fatalf("after the signal: sessions %+v, holder alive %v", l, alive(pid))
	}
}

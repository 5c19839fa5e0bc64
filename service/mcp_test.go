package service

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCP: the four tools, their results as JSON text, and errors as
// isError results the model can read.
func TestMCP(t *testing.T) {
	ts := newTestServer(t, "ok")
	ctx := context.Background()
	srv := NewMCPServer("test", func(context.Context) (*Client, error) { return ts.client, nil })
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if strings.Join(names, ",") != "list_gpus,start_keep,status,stop_keep" {
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
		text := r.Content[0].(*mcp.TextContent).Text
		if !json.Valid([]byte(text)) {
			t.Fatalf("%s: not JSON: %s", name, text)
		}
		return text, r.IsError
	}
	if text, isErr := call("start_keep", map[string]any{"job_id": "mcp-1", "gpu_ids": []int{0}, "vram": "1GiB"}); isErr || text != `{"job_id":"mcp-1"}` {
		t.Fatalf("start_keep: %s %v", text, isErr)
	}
	ts.waitState("mcp-1", StateActive)
	if text, isErr := call("status", map[string]any{"job_id": "mcp-1"}); isErr || !strings.Contains(text, `"state":"active"`) {
		t.Fatalf("status: %s", text)
	}
	if text, isErr := call("list_gpus", nil); isErr || !strings.Contains(text, `"utilization":null`) {
		t.Fatalf("list_gpus: %s", text)
	}
	if text, isErr := call("start_keep", map[string]any{"vram": "1Gb"}); !isErr || !strings.Contains(text, `"code":-32602`) || !strings.Contains(text, "bits") {
		t.Fatalf("start_keep with bits: %s %v", text, isErr)
	}
	if text, isErr := call("stop_keep", map[string]any{"job_id": "mcp-1"}); isErr || !strings.Contains(text, `"stopped":["mcp-1"]`) {
		t.Fatalf("stop_keep: %s", text)
	}
	if text, isErr := call("status", nil); isErr || text != `{"active_jobs":[]}` {
		t.Fatalf("status: %s", text)
	}
}

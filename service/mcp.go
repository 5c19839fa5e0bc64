package service

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpTools are the MCP tools: KeepGPU's, each a JSON-RPC method of the
// service with the same parameters.
var mcpTools = []*mcp.Tool{
	{
		Name: "start_keep",
		Description: "Hold GPUs for the user's job while it does CPU work: starts a keep session (a holder process " +
			"that allocates VRAM and runs a light keep-alive kernel, pausing while someone else uses the GPU) and " +
			"returns its job_id at once. Release it with stop_keep when the job is ready to use the GPUs.",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{
			"gpu_ids":{"type":["array","string","null"],"items":{"type":["integer","string"]},"description":"CUDA ordinals or UUIDs to hold; omit for all visible GPUs"},
			"vram":{"type":["string","integer"],"description":"VRAM per GPU: 1GiB (default), 512MiB, 2GB, 50%, max, or bytes"},
			"interval":{"type":["number","string"],"description":"telemetry period in seconds or as a duration (default 2s)"},
			"busy_threshold":{"type":"integer","minimum":-1,"maximum":100,"description":"pause the kernel while utilization not ours is above this percent; -1 never (default 25)"},
			"util":{"type":"integer","minimum":0,"maximum":100,"description":"utilization the keep-alive kernel produces, percent (default 30; 0 holds VRAM only)"},
			"allow_partial":{"type":"boolean","description":"keep holding the GPUs that started when others fail"},
			"job_id":{"type":"string","description":"the session's id (default: a random UUID)"}}}`),
	},
	{
		Name:        "stop_keep",
		Description: "Release a keep session's GPUs (or every session's, without job_id); returns once its holder has exited and the VRAM is back.",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{
			"job_id":{"type":"string","description":"the session to stop; omit to stop every session"}}}`),
	},
	{
		Name:        "status",
		Description: "The state of one keep session (job_id) or of all: starting, active (with the kernel paused and why), stopping, runtime_failed or stop_failed, and the VRAM held per GPU.",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{
			"job_id":{"type":"string","description":"the session to show; omit for every session"}}}`),
	},
	{
		Name:        "list_gpus",
		Description: "The node's GPUs: name, UUID, memory used and total, utilization (null when unknown), and the compute processes on each (keepgpu sessions named).",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{}}`),
	},
}

// NewMCPServer returns an MCP server whose tools call the service that
// connect returns (which may start it first).
func NewMCPServer(version string, connect func(context.Context) (*Client, error)) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "keepgpu", Version: version}, nil)
	for _, t := range mcpTools {
		s.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var params json.RawMessage
			if req.Params != nil && len(req.Params.Arguments) > 0 {
				params = req.Params.Arguments
			}
			c, err := connect(ctx)
			if err != nil {
				return toolError(codeUnavailable, err.Error()), nil
			}
			var result json.RawMessage
			if err := c.Call(ctx, t.Name, params, &result); err != nil {
				var re *RPCError
				if errors.As(err, &re) {
					return toolError(re.Code, re.Message), nil
				}
				return toolError(codeUnavailable, err.Error()), nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(result)}}}, nil
		})
	}
	return s
}

// toolError is a tool result that says what went wrong, for the model to read.
func toolError(code int, msg string) *mcp.CallToolResult {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": msg}})
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}
}

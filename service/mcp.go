package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// MCP protocol versions keepgpu speaks, newest first. initialize answers
// with the client's version when it is one of these, else with the newest.
var mcpVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

// mcpTool is a tool as tools/list shows it.
type mcpTool struct {
	Name        string          `json:"name"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"inputSchema"`
}

// jobIDSchema is a job_id parameter's schema.
const jobIDSchema = `{"type":["string","null"],"minLength":1,"maxLength":128,"pattern":"^(?!\\.{1,2}$)[A-Za-z0-9._~-]+$","description":%q}`

// mcpTools are the MCP tools: KeepGPU's, each a JSON-RPC method of the
// service with the same parameters.
var mcpTools = []mcpTool{
	{
		Name:  "start_keep",
		Title: "Start a keepgpu session",
		Description: "Hold GPUs for the user's job while it does CPU work: starts a keep session (a holder process " +
			"that allocates VRAM and runs a light keep-alive kernel, pausing while someone else uses the GPU) and " +
			"returns its job_id once the GPUs are held. Release it with stop_keep when the job is ready to use the GPUs.",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{
"gpu_ids":{"type":["array","string","null"],"items":{"type":["integer","string"]},"minItems":1,"maxItems":64,"uniqueItems":true,"description":"GPU ordinals (as list_gpus ids) or UUIDs to hold; omit or null for all visible GPUs"},
"vram":{"type":["string","integer"],"minimum":4,"default":"1GiB","description":"VRAM per GPU: 1GiB (default), 512MiB, 2GB, 1gb (bytes), 50%, max, or a number of bytes"},
"interval":{"type":["number","string"],"exclusiveMinimum":0,"description":"telemetry and backoff period, in seconds or as a duration such as 2s (default 2s)"},
"busy_threshold":{"type":"integer","minimum":-1,"maximum":100,"default":25,"description":"pause the kernel while utilization not ours is above this percent; -1 never (default 25)"},
"util":{"type":"integer","minimum":0,"maximum":100,"default":30,"description":"utilization the keep-alive kernel produces, percent (default 30; 0 holds VRAM only)"},
"allow_partial":{"type":"boolean","default":false,"description":"keep holding the GPUs that started when others fail"},
"platform":{"type":"string","enum":["auto","cuda","rocm"],"description":"whose GPUs: cuda (NVIDIA), rocm (AMD), or auto (default: the service's KEEP_GPU_PLATFORM, else auto: CUDA's if the driver shows any, else ROCm's)"},
"job_id":` + fmt.Sprintf(jobIDSchema, "the session's id (default: a random UUID)") + `}}`),
	},
	{
		Name:        "stop_keep",
		Title:       "Stop keepgpu sessions",
		Description: "Release a keep session's GPUs (or every session's, without job_id); returns once its holder has exited and the VRAM is back.",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{"job_id":` +
			fmt.Sprintf(jobIDSchema, "the session to stop; omit or null to stop every session") + `}}`),
	},
	{
		Name:        "status",
		Title:       "keepgpu session status",
		Description: "The state of one keep session (job_id) or of all: starting, active (with the kernel paused and why), stopping, runtime_failed or stop_failed, and the VRAM held per GPU.",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{"job_id":` +
			fmt.Sprintf(jobIDSchema, "the session to show; omit or null for every session") + `}}`),
	},
	{
		Name:        "list_gpus",
		Title:       "List the GPUs",
		Description: "The node's GPUs: id (the ordinal gpu_ids takes), name, UUID, memory used and total, utilization (null when unknown), and the compute processes on each (keepgpu sessions named).",
		InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,"properties":{}}`),
	},
}

// mcpServer answers MCP's methods (initialize, ping, tools/list,
// tools/call) and passes every other method, and each tool, to call: the
// service's own methods, in the service or through a client of it.
type mcpServer struct {
	version string
	call    dispatcher
	// started, when set, is told the job id of each session a call started.
	started func(jobID string)
}

// dispatch runs one method.
func (m *mcpServer) dispatch(ctx context.Context, method string, params json.RawMessage) (any, *apiError) {
	switch method {
	case "initialize":
		return m.initialize(params)
	case "ping":
		return struct{}{}, nil
	case "tools/list":
		if _, aerr := mcpParams(params); aerr != nil {
			return nil, aerr
		}
		return map[string]any{"tools": mcpTools}, nil
	case "tools/call":
		return m.toolsCall(ctx, params)
	}
	r, aerr := m.call(ctx, method, params)
	if aerr == nil && method == "start_keep" {
		m.note(r)
	}
	return r, aerr
}

func (m *mcpServer) initialize(params json.RawMessage) (any, *apiError) {
	p, aerr := mcpParams(params)
	if aerr != nil {
		return nil, aerr
	}
	version := mcpVersions[0]
	if v := p["protocolVersion"]; !isNull(v) {
		var asked string
		if json.Unmarshal(v, &asked) != nil {
			return nil, paramError("protocolVersion: want a string")
		}
		for _, ok := range mcpVersions {
			if asked == ok {
				version = asked
			}
		}
	}
	return map[string]any{
		"protocolVersion": version,
		"capabilities":    map[string]any{"tools": map[string]any{"listChanged": false}},
		"serverInfo":      map[string]any{"name": "keepgpu", "title": "keepgpu", "version": m.version},
		"instructions": "keepgpu holds the user's GPUs while their job does CPU work. Call start_keep before a " +
			"CPU-only phase (data preparation, compilation, copying) on GPUs the job was given, and stop_keep with its " +
			"job_id as soon as the job is about to use the GPUs; status shows what each session holds, list_gpus the " +
			"ordinals gpu_ids takes.",
	}, nil
}

// toolsCall runs a tool. A tool that fails on its input or cannot start
// answers with isError and the reason as text, for the model to read; an
// unknown tool or malformed call is a JSON-RPC error.
func (m *mcpServer) toolsCall(ctx context.Context, params json.RawMessage) (any, *apiError) {
	p, aerr := mcpParams(params)
	if aerr != nil {
		return nil, aerr
	}
	var name string
	if json.Unmarshal(p["name"], &name) != nil || name == "" {
		return nil, paramError("tools/call: name: want a tool's name (start_keep, stop_keep, status, list_gpus)")
	}
	known := false
	for _, t := range mcpTools {
		known = known || t.Name == name
	}
	if !known {
		return nil, paramError("unknown tool %q (tools: start_keep, stop_keep, status, list_gpus)", name)
	}
	args := p["arguments"]
	if !isNull(args) && !strings.HasPrefix(strings.TrimSpace(string(args)), "{") {
		return nil, paramError("tools/call %s: arguments: want an object", name)
	}
	if isNull(args) {
		args = nil
	}
	r, aerr := m.call(ctx, name, args)
	if aerr != nil {
		if aerr.Code != codeInvalidParams && aerr.Code != codeUnavailable {
			return nil, aerr
		}
		return toolResult(aerr.Message, true), nil
	}
	if name == "start_keep" {
		m.note(r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, &apiError{Code: codeInternal, Status: 500, Message: "internal error: " + err.Error()}
	}
	return toolResult(string(b), false), nil
}

// note tells started the job id of a start_keep result.
func (m *mcpServer) note(result any) {
	if m.started == nil {
		return
	}
	b, _ := json.Marshal(result)
	var r struct {
		JobID string `json:"job_id"`
	}
	if json.Unmarshal(b, &r) == nil && r.JobID != "" {
		m.started(r.JobID)
	}
}

// mcpParams reads the params of an MCP method. Members it does not know
// are left alone (later versions of MCP add some, such as _meta), unlike
// the tools' own arguments, which are checked as the methods check them.
func mcpParams(raw json.RawMessage) (map[string]json.RawMessage, *apiError) {
	m := map[string]json.RawMessage{}
	if isNull(raw) {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, paramError("params: want an object: %v", err)
	}
	if err := duplicateMember(raw); err != nil {
		return nil, paramError("params: %v", err)
	}
	return m, nil
}

func toolResult(text string, isError bool) map[string]any {
	return map[string]any{"content": []any{map[string]any{"type": "text", "text": text}}, "isError": isError}
}

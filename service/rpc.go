package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// JSON-RPC 2.0 error codes: the standard ones, and KeepGPU's -32000.
const (
	codeParse          = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeInternal       = -32603
	codeUnavailable    = -32000 // the session cannot be started now
)

// CodeUnavailable is the JSON-RPC error code of a start that cannot hold
// now (no driver, no usable GPU): KeepGPU's -32000.
const CodeUnavailable = codeUnavailable

// maxBatch bounds a JSON-RPC batch.
const maxBatch = 64

// apiError is an error as both APIs report it: a JSON-RPC code and an
// HTTP status.
type apiError struct {
	Code    int
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

func unavailable(msg string) *apiError {
	return &apiError{Code: codeUnavailable, Status: 503, Message: msg}
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

var nullID = json.RawMessage("null")

// dispatcher runs one method with its params (absent, or a JSON object).
type dispatcher func(ctx context.Context, method string, params json.RawMessage) (any, *apiError)

// handleRPC answers a JSON-RPC request or batch on /rpc: the service's
// methods and MCP's.
func (s *Server) handleRPC(ctx context.Context, body []byte) []byte {
	return answerRPC(ctx, body, s.mcp.dispatch)
}

// answerRPC answers a JSON-RPC request or batch with d. It returns nil
// when nothing is to be answered: the message was a notification, or a
// batch of them.
//
// Besides JSON-RPC 2.0, it takes KeepGPU's legacy direct calls, which leave
// out "jsonrpc" (when present it must be "2.0"). As in KeepGPU, every call
// but a notification needs an id, and only methods named notifications/...
// are notifications: they are accepted without an answer.
func answerRPC(ctx context.Context, body []byte, d dispatcher) []byte {
	body = bytes.TrimSpace(body)
	if !json.Valid(body) {
		return mustJSON(errorResponse(nullID, codeParse, "parse error: not valid JSON"))
	}
	if body[0] != '[' {
		r := call(ctx, body, d)
		if r == nil {
			return nil
		}
		return mustJSON(r)
	}
	var batch []json.RawMessage
	if err := json.Unmarshal(body, &batch); err != nil {
		return mustJSON(errorResponse(nullID, codeParse, "parse error: "+err.Error()))
	}
	switch {
	case len(batch) == 0:
		return mustJSON(errorResponse(nullID, codeInvalidRequest, "invalid request: empty batch"))
	case len(batch) > maxBatch:
		return mustJSON(errorResponse(nullID, codeInvalidRequest, fmt.Sprintf("invalid request: batch of %d requests; at most %d", len(batch), maxBatch)))
	}
	var out []*rpcResponse
	for _, req := range batch {
		if r := call(ctx, req, d); r != nil {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return mustJSON(out)
}

// call answers one request object; nil for a notification.
func call(ctx context.Context, raw json.RawMessage, d dispatcher) *rpcResponse {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return errorResponse(nullID, codeInvalidRequest, "invalid request: want a JSON object")
	}
	id, hasID := m["id"]
	if hasID && !validID(id) {
		return errorResponse(nullID, codeInvalidRequest, "invalid request: id must be a string or a number")
	}
	if !hasID {
		id = nullID
	}
	invalid := func(msg string) *rpcResponse {
		return errorResponse(id, codeInvalidRequest, "invalid request: "+msg)
	}
	if err := duplicateMember(raw); err != nil {
		// Which id was meant is not known either: answer to null.
		return errorResponse(nullID, codeInvalidRequest, "invalid request: "+err.Error())
	}
	var unknown []string
	for k := range m {
		switch k {
		case "jsonrpc", "method", "params", "id":
		default:
			unknown = append(unknown, fmt.Sprintf("%q", k))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return invalid("unknown member " + strings.Join(unknown, ", "))
	}
	var method string
	if json.Unmarshal(m["method"], &method) != nil || method == "" {
		return invalid(`"method" must be a non-empty string`)
	}
	if v, ok := m["jsonrpc"]; ok {
		var version string
		if json.Unmarshal(v, &version) != nil || version != "2.0" {
			return invalid(`"jsonrpc" must be "2.0" (or left out)`)
		}
	}
	notification := strings.HasPrefix(method, "notifications/")
	switch {
	case notification && !hasID:
		return nil // accepted, never answered
	case notification:
		return invalid("a notification has no id")
	case !hasID:
		return invalid(fmt.Sprintf("a request needs an id (a string or a number); %q is not a notification", method))
	}
	params, hasParams := m["params"]
	if hasParams && !bytes.HasPrefix(bytes.TrimSpace(params), []byte("{")) {
		return errorResponse(id, codeInvalidParams, `invalid params: "params" must be an object of named parameters`)
	}
	result, aerr := d(ctx, method, params)
	if aerr != nil {
		return errorResponse(id, aerr.Code, aerr.Message)
	}
	return &rpcResponse{JSONRPC: "2.0", Result: result, ID: id}
}

// direct runs one of the service's own methods, KeepGPU's.
func (s *Server) direct(ctx context.Context, method string, params json.RawMessage) (any, *apiError) {
	switch method {
	case "start_keep":
		p, aerr := parseStart(params)
		if aerr != nil {
			return nil, aerr
		}
		st, aerr := s.sessions.start(p)
		if aerr != nil {
			return nil, aerr
		}
		return map[string]string{"job_id": st.JobID}, nil
	case "stop_keep":
		id, aerr := jobIDParam(params)
		if aerr != nil {
			return nil, aerr
		}
		return s.sessions.stop(id), nil
	case "status":
		id, aerr := jobIDParam(params)
		if aerr != nil {
			return nil, aerr
		}
		if id == "" {
			return map[string]any{"active_jobs": s.sessions.list()}, nil
		}
		return s.status(id), nil
	case "list_gpus":
		if _, aerr := decodeObject(params); aerr != nil {
			return nil, aerr
		}
		l := s.gpus(ctx)
		if len(l.GPUs) == 0 && l.Error != "" {
			return nil, unavailable(l.Error)
		}
		return l, nil
	}
	return nil, methodNotFound(method)
}

func methodNotFound(method string) *apiError {
	return &apiError{Code: codeMethodNotFound, Status: 404, Message: fmt.Sprintf("method not found: %q (methods: start_keep, stop_keep, status, list_gpus; MCP: initialize, ping, tools/list, tools/call)", method)}
}

// status is the status of session id; one that does not exist is not
// active, as KeepGPU reports it.
func (s *Server) status(id string) any {
	if st, ok := s.sessions.get(id); ok {
		return st
	}
	return map[string]any{"active": false, "job_id": id, "state": nil, "message": "job_id not found"}
}

// validID reports whether raw is an id a request may carry: a string or a
// number.
func validID(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch c := raw[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	}
	return false
}

func errorResponse(id json.RawMessage, code int, msg string) *rpcResponse {
	return &rpcResponse{JSONRPC: "2.0", Error: &rpcError{Code: code, Message: msg}, ID: id}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(errorResponse(nullID, codeInternal, "internal error: "+err.Error()))
	}
	return b
}

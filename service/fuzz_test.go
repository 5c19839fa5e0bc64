package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzRPC: whatever the body, the JSON-RPC handler answers with valid
// JSON-RPC 2.0 (or nothing, for notifications) and never panics. Without
// -fuzz it runs the seed corpus as a normal test.
func FuzzRPC(f *testing.F) {
	for _, seed := range []string{
		``, `{`, `null`, `[]`, `[1]`, `"x"`, `{}`,
		`{"jsonrpc":"2.0","id":1,"method":"status"}`,
		`{"jsonrpc":"2.0","id":"a","method":"status","params":{"job_id":"x"}}`,
		`{"jsonrpc":"2.0","method":"status"}`,
		`{"jsonrpc":"2.0","id":1,"method":"stop_keep","params":{"job_id":null}}`,
		`{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"vram":"1Gb","gpu_ids":[0,"GPU-1"]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":"0,1","vram":4096,"interval":300,"busy_threshold":-1,"job_id":"j~1"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"interval":1e308,"util":-0}}`,
		`{"jsonrpc":"2.0","id":-1.5e3,"method":"list_gpus","params":null}`,
		`[{"jsonrpc":"2.0","id":1,"method":"status"},{"jsonrpc":"2.0","method":"x"},{}]`,
		`{"jsonrpc":"2.0","id":1,"method":"status","params":{"job_id":"\u0000"}}`,
		`{"jsonrpc":"2.0","id":[1],"method":"status"}`,
		`{"jsonrpc":"2.0","id":true,"method":"status"}`,
		`{"jsonrpc":"2.0","id":1,"id":2,"method":"status"}`,
		`{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"vram":"1GiB","vram":"0"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"status"},{"jsonrpc":"2.0","id":1,"method":"status"}]`,
		`[{"jsonrpc":"2.0","id":1,"method":"status","params":{"job_id":"a","job_id":"b"}},[]]`,
		`{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":""}}`,
		`{"jsonrpc":"2.0","id":1,"method":"stop_keep","params":{"job_id":""}}`,
		`{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":[{"a":1,"a":2}]}}`,
	} {
		f.Add([]byte(seed))
	}
	// Holders that exit at once, and few sessions: a fuzzed start_keep
	// costs little and cannot pile up processes.
	s := New(Config{Token: testToken, HolderPath: "/bin/true", Argv0: "true", MaxSessions: 4, Env: []string{}})
	f.Cleanup(func() { s.Shutdown() })
	f.Fuzz(func(t *testing.T, body []byte) {
		out := s.handleRPC(context.Background(), body)
		if out == nil {
			return // notifications only
		}
		var one rpcResponse
		var many []rpcResponse
		if json.Unmarshal(out, &many) == nil {
			if len(many) == 0 {
				t.Fatalf("empty batch answer to %q", body)
			}
		} else if err := json.Unmarshal(out, &one); err != nil {
			t.Fatalf("answer to %q is not JSON-RPC: %s", body, out)
		} else {
			many = []rpcResponse{one}
		}
		for _, r := range many {
			if r.JSONRPC != "2.0" || (r.Error == nil) == (r.Result == nil) || len(r.ID) == 0 {
				t.Fatalf("answer to %q: %s", body, out)
			}
			if e := r.Error; e != nil {
				switch e.Code {
				case codeParse, codeInvalidRequest, codeMethodNotFound, codeInvalidParams, codeInternal, codeUnavailable:
				default:
					t.Fatalf("answer to %q: unknown code %d", body, e.Code)
				}
			}
		}
	})
}

// FuzzMCPStdio: whatever keepgpu mcp reads, it answers each non-blank line
// with at most one line of valid JSON-RPC 2.0 (none for a notification),
// never panics, and serves on to the end of its input. Without a service,
// a tool's call is a tool error, not a failure of the server.
func FuzzMCPStdio(f *testing.F) {
	for _, seed := range []string{
		"", "\n", "{oops\n", "{}\n",
		`{"jsonrpc":"2.0","id":1,"method":"ping"}` + "\n",
		`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\r\n",
		`{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}` + "\n",
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"ping"}]` + "\n",
		"[]\n[1]\n",
		`{"jsonrpc":"2.0","id":1,"result":{}}` + "\n",
		`{"jsonrpc":"1.0","id":1,"method":"ping"}`,
		`{"id":1,"method":"tools/call","params":{"name":"status","arguments":{}}}` + "\n",
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}` + "\n",
		"{} {}\n", "\xff\n", "  \t \n",
	} {
		f.Add([]byte(seed))
	}
	noService := func(context.Context) (*Client, error) { return nil, ErrUnreachable }
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		m := &MCPStdio{Version: "fuzz", Connect: noService}
		if err := m.Run(context.Background(), bytes.NewReader(in), &out); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		lines := 0
		for _, l := range strings.Split(string(in), "\n") {
			if strings.TrimSpace(l) != "" {
				lines++
			}
		}
		answers := 0
		sc := bufio.NewScanner(&out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			answers++
			var one rpcResponse
			many := []rpcResponse{}
			if json.Unmarshal(sc.Bytes(), &many) != nil {
				if err := json.Unmarshal(sc.Bytes(), &one); err != nil {
					t.Fatalf("%q: answered %q", in, sc.Bytes())
				}
				many = []rpcResponse{one}
			}
			for _, r := range many {
				if r.JSONRPC != "2.0" || (r.Error == nil) == (r.Result == nil) || len(r.ID) == 0 {
					t.Fatalf("%q: answered %q", in, sc.Bytes())
				}
			}
		}
		if answers > lines {
			t.Fatalf("%q: %d lines in, %d answers", in, lines, answers)
		}
	})
}

// FuzzDuplicateMember: duplicateMember finds a member twice exactly when
// decoding every object of the document into a map loses a member.
func FuzzDuplicateMember(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":1}}`, `[{"a":1},{"a":1}]`, `{"a":1,"A":2}`, `{"\u0061":1,"a":2}`, `[[[{"x":[{"y":1,"y":2}]}]]]`, `"s"`, `1`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		err := duplicateMember(raw)
		if (err != nil) != losesMember(t, raw) {
			t.Fatalf("%s: duplicateMember = %v", raw, err)
		}
	})
}

// losesMember reports whether some object in raw has more members than
// it has distinct names.
func losesMember(t *testing.T, raw json.RawMessage) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		var ordered []json.RawMessage
		d := json.NewDecoder(bytes.NewReader(raw))
		d.Token()
		n := 0
		for d.More() {
			d.Token()
			var v json.RawMessage
			if err := d.Decode(&v); err != nil {
				t.Fatal(err)
			}
			ordered = append(ordered, v)
			n++
		}
		if n != len(obj) {
			return true
		}
		for _, v := range ordered {
			if losesMember(t, v) {
				return true
			}
		}
		return false
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		for _, v := range list {
			if losesMember(t, v) {
				return true
			}
		}
	}
	return false
}

package service

import (
	"context"
	"encoding/json"
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

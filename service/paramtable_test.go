package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestParamTable feeds every parameter of every method a garbage, an
// empty, a negative, a huge and a unicode value (as a JSON string, and as
// a JSON number where one is given), unless the value is valid for it;
// each must be refused with -32602 and a message naming the parameter.
func TestParamTable(t *testing.T) {
	s := New(Config{Token: testToken, HolderPath: "/bin/true", Argv0: "true", Env: []string{}, MaxSessions: 4})
	defer s.Shutdown()
	values := []struct {
		kind string
		v    any
	}{
		{"garbage", "%garbage/!"}, {"empty", ""}, {"negative", "-1"}, {"negative number", -1},
		{"huge", strings.Repeat("9", 300)}, {"huge number", json.RawMessage(strings.Repeat("9", 300))},
		{"unicode", "ünï©ødé"}, {"object", map[string]any{}}, {"list", []any{[]any{}}}, {"bool", true},
	}
	accepts := map[string]bool{
		"start_keep busy_threshold negative number": true, // -1: never pause
		"start_keep allow_partial bool":             true,
		"start_keep job_id negative":                true, // "-1" is a valid job id
		"stop_keep job_id negative":                 true,
		"status job_id negative":                    true,
	}
	params := map[string][]string{
		"start_keep": startParamNames,
		"stop_keep":  {"job_id"},
		"status":     {"job_id"},
	}
	cases := 0
	for method, names := range params {
		for _, name := range names {
			for _, v := range values {
				key := fmt.Sprintf("%s %s %s", method, name, v.kind)
				if accepts[key] {
					continue
				}
				cases++
				req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": map[string]any{name: v.v}})
				var r rpcResponse
				if err := json.Unmarshal(s.handleRPC(context.Background(), req), &r); err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				if r.Error == nil || r.Error.Code != codeInvalidParams || !strings.Contains(r.Error.Message, name) {
					t.Errorf("%s: %+v %+v; want -32602 naming %s", key, r.Error, r.Result, name)
				}
			}
		}
	}
	t.Logf("%d cases", cases)
}

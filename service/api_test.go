package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestAuth: every route wants the token; without it, or with a wrong one,
// the answer is the same bare 401 whatever the route.
func TestAuth(t *testing.T) {
	ts := newTestServer(t, "ok")
	routes := []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/app.js"}, {"GET", "/health"}, {"POST", "/rpc"}, {"GET", "/api/gpus"},
		{"GET", "/api/sessions"}, {"POST", "/api/sessions"}, {"DELETE", "/api/sessions"},
		{"GET", "/api/sessions/x"}, {"DELETE", "/api/sessions/x"}, {"GET", "/no/such/thing"},
		{"PUT", "/rpc"}, {"GET", "/../../etc/passwd"},
	}
	creds := []struct {
		name string
		hdr  []string
	}{
		{"none", []string{"Authorization", ""}},
		{"wrong bearer", []string{"Authorization", "Bearer " + strings.Repeat("0", 64)}},
		{"token as basic", []string{"Authorization", "Basic " + testToken}},
		{"prefix of the token", []string{"Authorization", "Bearer " + testToken[:63]}},
		{"wrong header", []string{"Authorization", "", "X-KeepGPU-Token", "nope"}},
		{"wrong cookie", []string{"Authorization", "", "Cookie", cookieName + "=nope"}},
		{"empty bearer", []string{"Authorization", "Bearer "}},
	}
	for _, c := range creds {
		for _, r := range routes {
			t.Run(c.name+" "+r.method+" "+r.path, func(t *testing.T) {
				code, h, body := ts.do(r.method, r.path, `{"jsonrpc":"2.0","id":1,"method":"status"}`, c.hdr...)
				if code != 401 || body != "unauthorized\n" {
					t.Fatalf("HTTP %d %q; want 401 \"unauthorized\\n\"", code, body)
				}
				if h.Get("Allow") != "" || h.Get("Location") != "" || h.Get("Set-Cookie") != "" {
					t.Fatalf("401 reveals headers: %v", h)
				}
			})
		}
	}
	if n := len(ts.sessions.list()); n != 0 {
		t.Fatalf("unauthenticated requests made %d sessions", n)
	}

	t.Run("header kinds", func(t *testing.T) {
		for _, hdr := range [][]string{
			{"Authorization", "Bearer " + testToken},
			{"Authorization", "", "X-KeepGPU-Token", testToken},
			{"Authorization", "", "Cookie", cookieName + "=" + testToken},
		} {
			if code, _, body := ts.do("GET", "/health", "", hdr...); code != 200 || !strings.Contains(body, `"ok":true`) {
				t.Fatalf("%v: HTTP %d %s", hdr, code, body)
			}
		}
	})
	t.Run("token in the URL becomes a cookie", func(t *testing.T) {
		code, h, _ := ts.do("GET", "/?token="+testToken+"&x=1", "", "Authorization", "")
		if code != http.StatusSeeOther || h.Get("Location") != "/?x=1" {
			t.Fatalf("HTTP %d Location %q; want 303 to /?x=1", code, h.Get("Location"))
		}
		c := h.Get("Set-Cookie")
		for _, want := range []string{cookieName + "=" + testToken, "HttpOnly", "SameSite=Strict", "Path=/"} {
			if !strings.Contains(c, want) {
				t.Fatalf("Set-Cookie %q lacks %q", c, want)
			}
		}
		if code, _, _ := ts.do("GET", "/?token=nope", "", "Authorization", ""); code != 401 {
			t.Fatalf("wrong ?token=: HTTP %d", code)
		}
		if code, _, _ := ts.do("POST", "/rpc?token="+testToken, `{}`, "Authorization", ""); code != 401 {
			t.Fatalf("?token= on a POST: HTTP %d; want 401 (only a browser's GET trades it)", code)
		}
	})
	t.Run("cookie writes must be JSON", func(t *testing.T) {
		code, _, _ := ts.do("POST", "/api/sessions", "job_id=x", "Authorization", "", "Cookie", cookieName+"="+testToken,
			"Content-Type", "application/x-www-form-urlencoded")
		if code != http.StatusUnsupportedMediaType {
			t.Fatalf("form post with the cookie: HTTP %d; want 415", code)
		}
	})
}

// TestStatic serves the dashboard's own files and nothing else.
func TestStatic(t *testing.T) {
	ts := newTestServer(t, "ok")
	for _, p := range []string{"/", "/index.html", "/app.js", "/style.css"} {
		code, h, body := ts.do("GET", p, "")
		if code != 200 || body == "" || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("GET %s: HTTP %d, CSP %q, %d bytes", p, code, h.Get("Content-Security-Policy"), len(body))
		}
	}
	for _, p := range []string{"/web/index.html", "/../service/web.go", "/%2e%2e/go.mod", "/app.js/", "/.", "/index.html%00",
		"/..%2fweb.go", "/etc/passwd", "//etc/passwd", "/web.go"} {
		code, _, body := ts.do("GET", p, "")
		if code == 200 || strings.Contains(body, "package service") || strings.Contains(body, "module ") {
			t.Fatalf("GET %s: HTTP %d %.80q", p, code, body)
		}
	}
	if code, h, _ := ts.do("DELETE", "/", ""); code != 405 || h.Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("DELETE /: HTTP %d Allow %q", code, h.Get("Allow"))
	}
	if code, h, _ := ts.do("POST", "/app.js", "{}", "Content-Type", "application/json"); code != 405 || h.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /app.js: HTTP %d Allow %q", code, h.Get("Allow"))
	}
}

// TestRPCOnRoot: POST / is JSON-RPC, as on /rpc (KeepGPU takes both),
// behind the token; a cookie-borne call must be JSON.
func TestRPCOnRoot(t *testing.T) {
	ts := newTestServer(t, "ok")
	code, _, body := ts.do("POST", "/", `{"id":7,"method":"status"}`, "Content-Type", "application/json")
	if code != 200 || body != `{"jsonrpc":"2.0","result":{"active_jobs":[]},"id":7}`+"\n" {
		t.Fatalf("POST /: HTTP %d %s", code, body)
	}
	if code, _, body := ts.do("POST", "/", `{"jsonrpc":"2.0","method":"notifications/initialized"}`); code != 202 || body != "" {
		t.Fatalf("POST / notification: HTTP %d %q", code, body)
	}
	if code, _, body := ts.do("POST", "/", `{"id":1,"method":"status"}`, "Authorization", ""); code != 401 || body != "unauthorized\n" {
		t.Fatalf("POST / without the token: HTTP %d %q", code, body)
	}
	if code, _, _ := ts.do("POST", "/", `{"id":1,"method":"status"}`, "Authorization", "", "Cookie", cookieName+"="+testToken,
		"Content-Type", "application/x-www-form-urlencoded"); code != 415 {
		t.Fatalf("POST / as a form with the cookie: HTTP %d", code)
	}
}

// TestCanonicalRoutes: an API route answers only its plain spelling, as
// KeepGPU 1.0.0's do; an alias (a path that is not clean, an escaped route
// name) or a query string on /rpc or a collection is an unknown route,
// which starts or stops nothing; a session's path with a query string is
// a bad request. A job id may be escaped.
func TestCanonicalRoutes(t *testing.T) {
	ts := newTestServer(t, "ok")
	for _, c := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/api/gpus?all=1", 404, `{"error":{"message":"unknown endpoint: /api/gpus?all=1 (this route takes no query string)"}}`},
		{"GET", "/api/sessions?job_id=x", 404, "unknown endpoint"},
		{"POST", "/api/sessions?x", 404, "unknown endpoint"},
		{"DELETE", "/api/sessions?all", 404, "unknown endpoint"},
		{"POST", "/rpc?x=1", 404, "unknown endpoint"},
		{"GET", "/api/sessions/a?x=1", 400, `{"error":{"message":"invalid session path for job_id: /api/sessions/a takes no query string"}}`},
		{"DELETE", "/api/sessions/a?x=1", 400, "invalid session path"},
		{"POST", "//rpc", 404, `{"error":{"message":"unknown endpoint: //rpc"}}`},
		{"POST", "//api/sessions", 404, "unknown endpoint"},
		{"DELETE", "/api/./sessions", 404, "unknown endpoint"},
		{"POST", "/api/sessions/", 404, "unknown endpoint"},
		{"POST", "/%72pc", 404, "unknown endpoint: /%72pc"},
		{"POST", "/api%2Fsessions", 404, "unknown endpoint"},
		{"POST", "/api/%73essions", 404, "unknown endpoint"},
		{"GET", "/api%3Fsessions", 404, "unknown endpoint"},
		{"GET", "/%2Fapi/gpus", 404, "unknown endpoint"},
		{"POST", "/%2Frpc", 404, "unknown endpoint"},
		{"POST", "/rp%63", 404, "unknown endpoint"},
		{"POST", "/rpc/", 404, "unknown endpoint"},
		{"DELETE", "/api/sessions/a/b", 404, "unknown endpoint"},
		{"GET", "/api/sessions/a%2Fb", 400, `job_id \"a/b\"`},
		{"GET", "/api/sessions/%61", 200, `"job_id":"a"`},
		{"GET", "/health?x=1", 200, `"ok":true`},
		{"POST", "/rpc?", 200, `"result"`},
	} {
		code, h, body := ts.do(c.method, c.path, `{"jsonrpc":"2.0","id":1,"method":"status"}`, "Content-Type", "application/json")
		if code != c.code || !strings.Contains(body, c.body) || h.Get("Location") != "" {
			t.Errorf("%s %s: HTTP %d %s (Location %q); want %d containing %s", c.method, c.path, code, body, h.Get("Location"), c.code, c.body)
		}
	}
	if n := len(ts.sessions.list()); n != 0 {
		t.Fatalf("aliases made %d sessions", n)
	}
}

// TestREST covers every route and method of the REST API.
func TestREST(t *testing.T) {
	ts := newTestServer(t, "ok")
	check := func(method, path, body string, wantCode int, wantBody string) string {
		t.Helper()
		code, _, got := ts.do(method, path, body, "Content-Type", "application/json")
		if code != wantCode || !strings.Contains(got, wantBody) {
			t.Fatalf("%s %s %s: HTTP %d %s; want %d containing %q", method, path, body, code, got, wantCode, wantBody)
		}
		return got
	}
	check("GET", "/health", "", 200, `"ok":true`)
	check("HEAD", "/health", "", 200, "")
	check("GET", "/api/gpus", "", 200, `"uuid":"GPU-aaaa"`)
	check("GET", "/api/sessions", "", 200, `{"active_jobs":[]}`)
	// KeepGPU's codes: 200 for a start, 400 for a job id in use, 200 for a
	// session that does not exist.
	got := check("POST", "/api/sessions", `{"job_id":"rest-1","vram":"512MiB","gpu_ids":[0]}`, 200, `"job_id":"rest-1"`)
	if !strings.Contains(got, `"vram":"512MiB"`) || !strings.Contains(got, `"gpu_ids":[0]`) {
		t.Fatalf("POST /api/sessions: %s", got)
	}
	check("POST", "/api/sessions", `{"job_id":"rest-1"}`, 400, `already exists`)
	ts.waitState("rest-1", StateActive)
	check("GET", "/api/sessions/rest-1", "", 200, `"state":"active"`)
	check("GET", "/api/sessions", "", 200, `"job_id":"rest-1"`)
	check("GET", "/api/sessions/nope", "", 200, `{"active":false,"job_id":"nope","message":"job_id not found","state":null}`)
	check("DELETE", "/api/sessions/nope", "", 200, `{"stopped":[],"timed_out":[],"failed":[],"errors":{},"message":"job_id not found"}`)
	check("GET", "/api/sessions/a%20b", "", 400, `job_id \"a b\": use letters, digits`)
	check("DELETE", "/api/sessions/a~b", "", 200, `job_id not found`)
	check("DELETE", "/api/sessions/rest-1", "", 200, `"stopped":["rest-1"]`)
	check("GET", "/api/sessions/rest-1", "", 200, `"active":false`)
	check("POST", "/api/sessions", ``, 200, `"job_id":`) // every default
	check("DELETE", "/api/sessions", "", 200, `"stopped":["`)
	check("GET", "/api/sessions", "", 200, `{"active_jobs":[]}`)

	// Bad requests.
	check("POST", "/api/sessions", `{"job_id":`, 400, `not valid JSON`)
	check("POST", "/api/sessions", `{"vram":"1GiB","color":"red"}`, 400, `unknown parameter \"color\"`)
	check("POST", "/api/sessions", `[1,2]`, 400, `params must be a JSON object`)
	check("POST", "/api/sessions", `{"vram":"1Gb"}`, 400, `bit`)
	check("POST", "/api/sessions", `{"busy_threshold":101}`, 400, `busy_threshold 101: want -1 (never pause) or 0..100`)
	check("POST", "/api/sessions", `{"vram":"1GiB","vram":"2GiB"}`, 400, `params: duplicate member \"vram\"`)
	check("POST", "/api/sessions", `{"gpu_ids":""}`, 400, `gpu_ids: gpus \"\": empty`)
	check("POST", "/api/sessions", `{"job_id":"a/b"}`, 400, `job_id`)
	check("POST", "/api/sessions", `{"vram":"`+strings.Repeat("x", MaxBody)+`"}`, 413, `request body over 1000000 bytes`)
	// Unknown routes: JSON 404, whatever the method.
	check("GET", "/api/nothing", "", 404, `{"error":{"message":"unknown endpoint: /api/nothing"}}`)
	check("POST", "/api/nothing", "{}", 404, `unknown endpoint`)
	check("DELETE", "/api/sessions/a/b", "", 404, `unknown endpoint`)
	check("GET", "/nothing", "", 404, `{"error":{"message":"unknown endpoint: /nothing"}}`)
	check("GET", "/api", "", 404, `unknown endpoint`)

	// Wrong methods: 405 with Allow.
	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/health", "GET, HEAD"}, {"GET", "/rpc", "POST"}, {"DELETE", "/api/gpus", "GET, HEAD"},
		{"PUT", "/api/sessions", "GET, HEAD, POST, DELETE"}, {"POST", "/api/sessions/x", "GET, HEAD, DELETE"},
	} {
		code, h, body := ts.do(c.method, c.path, "{}", "Content-Type", "application/json")
		if code != 405 || h.Get("Allow") != c.allow || !strings.Contains(body, `"error"`) {
			t.Fatalf("%s %s: HTTP %d Allow %q %s; want 405 Allow %q", c.method, c.path, code, h.Get("Allow"), body, c.allow)
		}
	}
}

// TestRPC covers the JSON-RPC methods and every error code.
func TestRPC(t *testing.T) {
	ts := newTestServer(t, "ok")
	tests := []struct {
		name, req string
		want      string // a substring of the response
	}{
		{"parse error", `{"jsonrpc":"2.0",`, `{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: not valid JSON"},"id":null}`},
		{"empty body", ``, `"code":-32700`},
		{"not an object", `42`, `"code":-32600`},
		{"no version: a legacy direct call", `{"id":1,"method":"status"}`, `{"jsonrpc":"2.0","result":{"active_jobs":[]},"id":1}`},
		{"version 1", `{"jsonrpc":"1.0","id":1,"method":"status"}`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\" (or left out)"},"id":1}`},
		{"version not a string", `{"jsonrpc":2,"id":1,"method":"status"}`, `"code":-32600`},
		{"no id", `{"jsonrpc":"2.0","method":"status"}`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: a request needs an id (a string or a number); \"status\" is not a notification"},"id":null}`},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"status"}`, `"code":-32600,"message":"invalid request: id must be a string or a number"},"id":null`},
		{"legacy call without id", `{"method":"stop_keep"}`, `"code":-32600`},
		{"legacy notification with a bad version", `{"jsonrpc":"1.0","method":"notifications/initialized"}`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\" (or left out)"},"id":null}`},
		{"no method", `{"jsonrpc":"2.0","id":1}`, `"code":-32600`},
		{"method not a string", `{"jsonrpc":"2.0","id":1,"method":5}`, `"code":-32600`},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"status"}`, `"code":-32600,"message":"invalid request: id must be a string or a number"},"id":null`},
		{"unknown member", `{"jsonrpc":"2.0","id":1,"method":"status","extra":1}`, `unknown member \"extra\"`},
		{"params a string", `{"jsonrpc":"2.0","id":1,"method":"status","params":"x"}`, `"code":-32602`},
		{"params a list", `{"jsonrpc":"2.0","id":1,"method":"status","params":[]}`, `"code":-32602`},
		{"params null", `{"jsonrpc":"2.0","id":1,"method":"stop_keep","params":null}`, `{"jsonrpc":"2.0","error":{"code":-32602,"message":"invalid params: \"params\" must be an object of named parameters"},"id":1}`},
		{"unknown method", `{"jsonrpc":"2.0","id":"a","method":"reboot"}`, `{"jsonrpc":"2.0","error":{"code":-32601,"message":"method not found: \"reboot\" (methods: start_keep, stop_keep, status, list_gpus; MCP: initialize, ping, tools/list, tools/call)"},"id":"a"}`},
		{"status all", `{"jsonrpc":"2.0","id":1,"method":"status"}`, `{"jsonrpc":"2.0","result":{"active_jobs":[]},"id":1}`},
		{"status unknown", `{"jsonrpc":"2.0","id":1,"method":"status","params":{"job_id":"nope"}}`, `"result":{"active":false,"job_id":"nope","message":"job_id not found","state":null}`},
		{"status bad param", `{"jsonrpc":"2.0","id":1,"method":"status","params":{"job":"x"}}`, `unknown parameter \"job\" (known: job_id)`},
		{"stop unknown", `{"jsonrpc":"2.0","id":1,"method":"stop_keep","params":{"job_id":"nope"}}`, `"result":{"stopped":[],"timed_out":[],"failed":[],"errors":{},"message":"job_id not found"}`},
		{"stop all of none", `{"jsonrpc":"2.0","id":1,"method":"stop_keep"}`, `"result":{"stopped":[],"timed_out":[],"failed":[],"errors":{}}`},
		{"list_gpus", `{"jsonrpc":"2.0","id":1,"method":"list_gpus","params":{}}`, `"utilization":null`},
		{"list_gpus params", `{"jsonrpc":"2.0","id":1,"method":"list_gpus","params":{"all":true}}`, `unknown parameter \"all\" (known: none)`},
		{"bits refused", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"vram":"1Gib"}}`, `"code":-32602`},
		{"vram fraction of a byte", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"vram":1.5}}`, `vram: 1.5: want a whole number`},
		{"vram object", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"vram":{}}}`, `vram: want a string or a number`},
		{"negative gpu", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":[-1]}}`, `gpu_ids: -1: not a GPU ordinal`},
		{"duplicate gpu", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":[1,1]}}`, `given twice`},
		{"empty gpu list", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":[]}}`, `gpu_ids: empty list`},
		{"gpu junk", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":[true]}}`, `"code":-32602`},
		{"interval", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"interval":"soon"}}`, `interval \"soon\": want a duration`},
		{"interval too short", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"interval":0.001}}`, `want between 10ms and 24h`},
		{"threshold float", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"busy_threshold":2.5}}`, `busy_threshold: want an integer, -1 (never pause) or 0..100`},
		{"util", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"util":101}}`, `util 101: want 0..100`},
		{"allow_partial", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"allow_partial":"yes"}}`, `allow_partial: want true or false`},
		{"job id dots", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"job_id":".."}}`, `job_id \"..\": not allowed`},
		{"job id space", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"job_id":"a b"}}`, `use letters, digits`},
		{"job id long", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"job_id":"` + strings.Repeat("a", 129) + `"}}`, `longer than 128`},
		{"gpu_ids empty string", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":""}}`, `"code":-32602,"message":"gpu_ids: gpus \"\": empty`},
		{"gpu_ids blank string", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":"  "}}`, `"code":-32602`},
		{"gpu_ids not canonical", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":"01"}}`, `write the ordinal \"01\" as 1`},
		{"gpu_ids list entry not canonical", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"gpu_ids":["+1"]}}`, `write the ordinal \"+1\" as 1`},
		{"vram string fraction of a byte", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"vram":"1.5"}}`, `not a whole number of bytes`},
		{"vram zero", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"vram":0}}`, `less than 4 bytes`},
		{"duplicate id", `{"jsonrpc":"2.0","id":1,"id":2,"method":"status"}`, `"code":-32600,"message":"invalid request: duplicate member \"id\""`},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"status","method":"stop_keep"}`, `duplicate member \"method\"`},
		{"duplicate param", `{"jsonrpc":"2.0","id":1,"method":"stop_keep","params":{"job_id":"a","job_id":"b"}}`, `duplicate member \"job_id\"`},
		{"duplicate in batch", `[{"jsonrpc":"2.0","id":1,"method":"status"},{"jsonrpc":"2.0","id":2,"method":"status","params":{"job_id":"a","job_id":"a"}}]`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: duplicate member \"job_id\""},"id":null}`},
		{"stop empty job id", `{"jsonrpc":"2.0","id":1,"method":"stop_keep","params":{"job_id":""}}`, `"code":-32602,"message":"job_id: empty"`},
		{"status bad job id", `{"jsonrpc":"2.0","id":1,"method":"status","params":{"job_id":"../x"}}`, `"code":-32602`},
		{"job id number", `{"jsonrpc":"2.0","id":1,"method":"start_keep","params":{"job_id":5}}`, `job_id: want a string`},
		{"empty batch", `[]`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: empty batch"},"id":null}`},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"status"},{"jsonrpc":"2.0","method":"notifications/initialized"},7]`, `[{"jsonrpc":"2.0","result":{"active_jobs":[]},"id":1},{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: want a JSON object"},"id":null}]`},
		{"batch too big", `[` + strings.Repeat(`{},`, maxBatch) + `{}]`, `batch of 65 requests`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := ts.do("POST", "/rpc", tt.req, "Content-Type", "application/json")
			if code != 200 || !strings.Contains(body, tt.want) || h.Get("Content-Type") != "application/json" {
				t.Fatalf("HTTP %d %s\nwant 200 containing %s", code, body, tt.want)
			}
		})
	}
	t.Run("notification", func(t *testing.T) {
		code, _, body := ts.do("POST", "/rpc", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, "Content-Type", "application/json")
		if code != 202 || body != "" {
			t.Fatalf("HTTP %d %q; want 202 and nothing", code, body)
		}
		code, _, body = ts.do("POST", "/rpc", `[{"jsonrpc":"2.0","method":"notifications/nope"}]`, "Content-Type", "application/json")
		if code != 202 || body != "" {
			t.Fatalf("batch of notifications: HTTP %d %q; want 202 and nothing", code, body)
		}
	})
	t.Run("oversize", func(t *testing.T) {
		code, _, body := ts.do("POST", "/rpc", `{"jsonrpc":"2.0","id":1,"method":"status","params":{"job_id":"`+strings.Repeat("a", MaxBody)+`"}}`)
		if code != 413 || !strings.Contains(body, "over 1000000 bytes") {
			t.Fatalf("HTTP %d %.100s", code, body)
		}
	})
	t.Run("start, status, stop", func(t *testing.T) {
		r := ts.rpc("start_keep", map[string]any{"gpu_ids": []any{0, "GPU-aaaa"}, "vram": 1 << 20, "interval": 0.5,
			"busy_threshold": -1, "job_id": "rpc-1", "util": 0, "allow_partial": true})
		if fmt.Sprint(r["result"]) != "map[job_id:rpc-1]" {
			t.Fatalf("start_keep: %v", r)
		}
		st := ts.waitState("rpc-1", StateActive)
		b, _ := json.Marshal(st.Params)
		if string(b) != `{"gpu_ids":[0,"GPU-aaaa"],"vram":"1048576","interval":0.5,"busy_threshold":-1,"util":0,"allow_partial":true,"platform":"auto"}` {
			t.Fatalf("params: %s", b)
		}
		if !st.Active || st.LastError != nil || st.BytesHeld != 1<<30 || len(st.GPUs) != 1 || st.GPUs[0].Kernel != "running" || st.HeldSince == nil {
			t.Fatalf("status: %+v", st)
		}
		r = ts.rpc("stop_keep", map[string]any{"job_id": "rpc-1"})
		if b, _ := json.Marshal(r["result"]); string(b) != `{"errors":{},"failed":[],"stopped":["rpc-1"],"timed_out":[]}` {
			t.Fatalf("stop_keep: %s", b)
		}
		waitGone(t, st.PID)
	})
}

// TestSameJobID: of concurrent starts with one job id, exactly one wins.
func TestSameJobID(t *testing.T) {
	ts := newTestServer(t, "ok")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- ts.client.Call(context.Background(), "start_keep", map[string]any{"job_id": "same"}, nil)
		}()
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		if err == nil {
			won++
			continue
		}
		var re *RPCError
		if !asRPC(err, &re) || re.Code != codeInvalidParams || !strings.Contains(re.Message, `job_id "same" already exists`) {
			t.Fatalf("losing start: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d starts won; want 1", won)
	}
	if n := len(ts.sessions.list()); n != 1 {
		t.Fatalf("%d sessions; want 1", n)
	}
}

func asRPC(err error, re **RPCError) bool {
	e, ok := err.(*RPCError)
	*re = e
	return ok
}

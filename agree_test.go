package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keepgpu/keepgpu/service"
)

// TestCLIAndAPIAgree: the command line (flag or KEEPGPU_* variable) and
// the API (JSON-RPC, REST and MCP share its parameters) take and refuse
// the same values of every setting they share, because both ask the same
// function.
func TestCLIAndAPIAgree(t *testing.T) {
	srv := service.New(service.Config{Token: "t", HolderPath: "/bin/true", Argv0: "true", Env: []string{}, MaxSessions: 1000})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Shutdown()
	cl := service.NewClient(strings.TrimPrefix(hs.URL, "http://"), "t")

	values := map[string][]string{
		"vram":           {"1GiB", "1gb", "1Gb", "1.5", "1.5GiB", "0", "3", "4", "50%", "0%", "max", "", " ", "1e3", "-1", "1.0001KB", "2PiB", "ünï"},
		"gpus":           {"all", "", " ", "0", "0,1", "01", "+1", "-0", "-1", "0,0", "GPU-abc", "GPU-", "0,,1"},
		"interval":       {"2s", "0.5", "300", "0", "-1", "NaN", "Inf", "1e30", "5ms", "24h", "25h", "soon", ""},
		"util":           {"0", "30", "100", "101", "-1", "abc", ""},
		"busy-threshold": {"-1", "0", "100", "-2", "101", "abc", ""},
	}
	param := map[string]string{"vram": "vram", "gpus": "gpu_ids", "interval": "interval", "util": "util", "busy-threshold": "busy_threshold"}
	cases := 0
	for flag, vals := range values {
		for _, v := range vals {
			cases++
			cliErr := parseOnly(t, []string{"hold", "--" + flag, v})
			if cliErr == nil {
				var cli CLI
				p, _ := newParser(&cli, nil, nil)
				p.Parse([]string{"hold", "--" + flag, v})
				_, cliErr = cli.Hold.holderSpec(func(string) {})
			}
			var value any = v
			if flag == "util" || flag == "busy-threshold" {
				value = jsonNumber(v)
			}
			apiErr := cl.Call(context.Background(), "start_keep", map[string]any{param[flag]: value}, nil)
			var re *service.RPCError
			if errors.As(apiErr, &re) && re.Code == -32000 {
				apiErr = nil // taken; then /bin/true, the holder, exited before holding
			}
			if apiErr != nil && !(errors.As(apiErr, &re) && re.Code == -32602) {
				t.Fatalf("%s %q: API: %v", param[flag], v, apiErr)
			}
			if (cliErr == nil) != (apiErr == nil) {
				t.Errorf("--%s %q: the CLI says %v, the API says %v", flag, v, cliErr, apiErr)
			}
		}
	}
	t.Logf("%d values", cases)
}

// jsonNumber is s as a JSON number when it is one, else s as a string
// (which the API refuses for an integer parameter, as kong does).
func jsonNumber(s string) any {
	var n int
	for i, r := range s {
		if r == '-' && i == 0 {
			continue
		}
		if r < '0' || r > '9' {
			return s
		}
	}
	if s == "" || s == "-" {
		return s
	}
	neg := s[0] == '-'
	for _, r := range strings.TrimPrefix(s, "-") {
		n = n*10 + int(r-'0')
	}
	if neg {
		n = -n
	}
	return n
}

package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/keeper"
)

// Params are a session's settings: its job id and what its holder holds.
type Params struct {
	JobID string
	holder.Spec
}

// Defaults of a session's settings: keepgpu's keep-flag defaults.
const (
	DefaultVRAM          = "1GiB"
	DefaultInterval      = 2 * time.Second
	DefaultBusyThreshold = 25
	DefaultUtil          = 30
)

// maxJobID bounds a job id's length.
const maxJobID = 128

var jobIDRE = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

// CheckJobID reports whether id is a valid job id: letters, digits, '.',
// '_', '-', '~', at most 128 of them, and neither "." nor "..".
func CheckJobID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("job_id: empty")
	case len(id) > maxJobID:
		return fmt.Errorf("job_id: longer than %d characters", maxJobID)
	case id == "." || id == "..":
		return fmt.Errorf("job_id %q: not allowed", id)
	case !jobIDRE.MatchString(id):
		return fmt.Errorf("job_id %q: use letters, digits, '.', '_', '-' and '~' only", id)
	}
	return nil
}

// CheckHost checks the host the service listens on or is reached at: an
// IP address or a host name. An empty host is refused: it would listen on
// every interface.
func CheckHost(h string) error {
	switch {
	case h == "":
		return errors.New("empty host; want an address such as 127.0.0.1, or a host name")
	case net.ParseIP(h) != nil:
		return nil
	case len(h) > 253 || !hostRE.MatchString(h):
		return fmt.Errorf("host %q: want an IP address or a host name (letters, digits, '-' and '.')", h)
	}
	return nil
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)

// paramError is a bad parameter: JSON-RPC -32602, HTTP 400.
func paramError(format string, args ...any) *apiError {
	return &apiError{Code: codeInvalidParams, Status: 400, Message: fmt.Sprintf(format, args...)}
}

// decodeObject reads raw (absent, null or a JSON object) as named members,
// refusing any not in allowed.
func decodeObject(raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, *apiError) {
	m := map[string]json.RawMessage{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return m, nil
	}
	if raw[0] != '{' {
		return nil, paramError("params must be a JSON object of named parameters")
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, paramError("params: %v", err)
	}
	if err := duplicateMember(raw); err != nil {
		return nil, paramError("params: %v", err)
	}
	var unknown []string
	for k := range m {
		if !contains(allowed, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		want := "none"
		if len(allowed) > 0 {
			want = strings.Join(allowed, ", ")
		}
		return nil, paramError("unknown parameter %s (known: %s)", strings.Join(unknown, ", "), want)
	}
	return m, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// startParamNames are start_keep's parameters: KeepGPU's, then keepgpu's own.
var startParamNames = []string{"gpu_ids", "vram", "interval", "busy_threshold", "job_id", "util", "allow_partial", "platform"}

// parseStart reads start_keep's parameters, filling in the defaults.
func parseStart(raw json.RawMessage) (Params, *apiError) {
	m, aerr := decodeObject(raw, startParamNames...)
	if aerr != nil {
		return Params{}, aerr
	}
	p := Params{Spec: holder.Spec{GPUs: keeper.GPUs{All: true}, Interval: DefaultInterval,
		BusyThreshold: DefaultBusyThreshold, Util: DefaultUtil}}
	p.VRAM, _ = keeper.ParseVRAM(DefaultVRAM)

	if v := m["gpu_ids"]; !isNull(v) {
		g, err := parseGPUIDs(v)
		if err != nil {
			return Params{}, paramError("gpu_ids: %v", err)
		}
		p.GPUs = g
	}
	if v := m["vram"]; !isNull(v) {
		s, err := stringOrNumber(v, true)
		if err != nil {
			return Params{}, paramError("vram: %v", err)
		}
		if p.VRAM, err = keeper.ParseVRAM(s); err != nil {
			return Params{}, paramError("vram: %v", err)
		}
	}
	if v := m["interval"]; !isNull(v) {
		s, err := stringOrNumber(v, false)
		if err != nil {
			return Params{}, paramError("interval: %v", err)
		}
		i, err := keeper.ParseInterval(s)
		if err != nil {
			return Params{}, paramError("%v", err)
		}
		p.Interval = time.Duration(i)
	}
	if p.BusyThreshold, aerr = intParam(m, "busy_threshold", p.BusyThreshold, keeper.CheckBusyThreshold, keeper.BusyThresholdRange); aerr != nil {
		return Params{}, aerr
	}
	if p.Util, aerr = intParam(m, "util", p.Util, keeper.CheckUtil, keeper.UtilRange); aerr != nil {
		return Params{}, aerr
	}
	if v := m["allow_partial"]; !isNull(v) {
		if err := json.Unmarshal(v, &p.AllowPartial); err != nil {
			return Params{}, paramError("allow_partial: want true or false")
		}
	}
	if v := m["platform"]; !isNull(v) {
		var name string
		if err := json.Unmarshal(v, &name); err != nil {
			return Params{}, paramError("platform: want auto, cuda or rocm")
		}
		var err error
		if p.Platform, err = keeper.ParsePlatform(name); err != nil {
			return Params{}, paramError("%v", err)
		}
	}
	if v := m["job_id"]; !isNull(v) {
		if err := json.Unmarshal(v, &p.JobID); err != nil {
			return Params{}, paramError("job_id: want a string")
		}
		if err := CheckJobID(p.JobID); err != nil {
			return Params{}, paramError("%v", err)
		}
	}
	return p, nil
}

// StartParams are start_keep's parameters for p, as parseStart reads them
// back: what `keepgpu start` sends.
func (p Params) StartParams() map[string]any {
	m := map[string]any{
		"vram":           p.VRAM.String(),
		"interval":       p.Interval.Seconds(),
		"busy_threshold": p.BusyThreshold,
		"util":           p.Util,
		"allow_partial":  p.AllowPartial,
	}
	if !p.GPUs.All {
		m["gpu_ids"] = p.GPUs.String()
	}
	if p.JobID != "" {
		m["job_id"] = p.JobID
	}
	if p.Platform != "" {
		m["platform"] = p.Platform.String()
	}
	return m
}

// intParam reads the integer parameter name, which check accepts (want
// says what that is), or keeps def.
func intParam(m map[string]json.RawMessage, name string, def int, check func(int) error, want string) (int, *apiError) {
	v := m[name]
	if isNull(v) {
		return def, nil
	}
	var n int
	if err := json.Unmarshal(v, &n); err != nil {
		return def, paramError("%s: want an integer, %s", name, want)
	}
	if err := check(n); err != nil {
		return def, paramError("%s %v", name, err)
	}
	return n, nil
}

// stringOrNumber returns a JSON string's value or a JSON number's text.
// integer requires the number to be a whole one.
func stringOrNumber(raw json.RawMessage, integer bool) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&n) != nil {
		return "", fmt.Errorf("want a string or a number")
	}
	if integer {
		if _, err := strconv.ParseUint(n.String(), 10, 64); err != nil {
			return "", fmt.Errorf("%s: want a whole number of bytes or a size such as \"1GiB\"", n)
		}
	}
	return n.String(), nil
}

// parseGPUIDs reads gpu_ids: a list of ordinals (KeepGPU's form) and UUIDs,
// or a string as --gpus takes it ("0,1", "all").
func parseGPUIDs(raw json.RawMessage) (keeper.GPUs, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return keeper.ParseGPUs(s)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return keeper.GPUs{}, fmt.Errorf("want a list of GPU ordinals or UUIDs")
	}
	if len(list) == 0 {
		return keeper.GPUs{}, fmt.Errorf("empty list (omit gpu_ids, or pass null, for all GPUs)")
	}
	parts := make([]string, len(list))
	for i, e := range list {
		var n int
		var u string
		switch {
		case json.Unmarshal(e, &n) == nil:
			if n < 0 {
				return keeper.GPUs{}, fmt.Errorf("%d: not a GPU ordinal", n)
			}
			parts[i] = strconv.Itoa(n)
		case json.Unmarshal(e, &u) == nil:
			if strings.Contains(u, ",") || strings.EqualFold(strings.TrimSpace(u), "all") || strings.TrimSpace(u) == "" {
				return keeper.GPUs{}, fmt.Errorf("%q: want one GPU ordinal or UUID per entry", u)
			}
			parts[i] = u
		default:
			return keeper.GPUs{}, fmt.Errorf("%s: want a GPU ordinal or a UUID", e)
		}
	}
	return keeper.ParseGPUs(strings.Join(parts, ","))
}

// jobIDParam reads the optional job_id of stop_keep and status.
func jobIDParam(raw json.RawMessage) (string, *apiError) {
	m, aerr := decodeObject(raw, "job_id")
	if aerr != nil {
		return "", aerr
	}
	var id string
	if v := m["job_id"]; !isNull(v) {
		if err := json.Unmarshal(v, &id); err != nil {
			return "", paramError("job_id: want a string")
		}
		if err := CheckJobID(id); err != nil {
			return "", paramError("%v", err)
		}
	}
	return id, nil
}

// ParamsJSON is how a session's settings are shown: KeepGPU's names
// (gpu_ids null for all GPUs, interval in seconds), then keepgpu's.
type ParamsJSON struct {
	GPUIDs        []any   `json:"gpu_ids"`
	VRAM          string  `json:"vram"`
	Interval      float64 `json:"interval"`
	BusyThreshold int     `json:"busy_threshold"`
	Util          int     `json:"util"`
	AllowPartial  bool    `json:"allow_partial"`
	Platform      string  `json:"platform"` // auto, cuda or rocm
}

func (p Params) json() ParamsJSON {
	j := ParamsJSON{VRAM: p.VRAM.String(), Interval: p.Interval.Seconds(),
		BusyThreshold: p.BusyThreshold, Util: p.Util, AllowPartial: p.AllowPartial, Platform: p.Platform.String()}
	if !p.GPUs.All {
		for _, e := range p.GPUs.Entries {
			if n, err := strconv.Atoi(e); err == nil {
				j.GPUIDs = append(j.GPUIDs, n)
			} else {
				j.GPUIDs = append(j.GPUIDs, e)
			}
		}
	}
	return j
}

package keeper

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
)

// UnmarshalText parses a --vram value; see ParseVRAM.
func (v *VRAM) UnmarshalText(b []byte) error {
	p, err := ParseVRAM(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// MarshalText returns the size as the user wrote it.
func (v VRAM) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// maxGPUs bounds a --gpus list, as KeepGPU does.
const maxGPUs = 64

// GPUs selects GPUs by CUDA ordinal (as the driver numbers them after
// CUDA_VISIBLE_DEVICES) or by UUID. The zero value selects all.
type GPUs struct {
	All     bool
	Entries []string // ordinals as decimal strings, or UUIDs (or unique UUID prefixes)
}

// ParseGPUs reads "all" or a comma-separated list of ordinals and UUIDs
// (or unique UUID prefixes). An empty value is refused, never read as
// "all": an unset variable in a script must not select every GPU. Ordinals
// must be written canonically (1, not +1, 01 or -0), as KeepGPU 1.0.0
// requires; empty entries, duplicates and more than 64 entries are refused.
func ParseGPUs(s string) (GPUs, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return GPUs{}, errors.New(`gpus "": empty; write all, or GPU ordinals or UUIDs separated by commas`)
	case strings.EqualFold(s, "all"):
		return GPUs{All: true}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxGPUs {
		return GPUs{}, fmt.Errorf("gpus %q: more than %d entries", s, maxGPUs)
	}
	seen := map[string]bool{}
	g := GPUs{}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			return GPUs{}, fmt.Errorf("gpus %q: empty entry", s)
		case isUUID(p):
			if len(p) == len("GPU-") || strings.IndexFunc(p, notUUIDRune) >= 0 {
				return GPUs{}, fmt.Errorf("gpus %q: %q is not a UUID: want GPU- or MIG- and hex digits and dashes", s, p)
			}
		default:
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 {
				return GPUs{}, fmt.Errorf("gpus %q: %q is neither a GPU ordinal (0, 1, …) nor a UUID (GPU-…)", s, p)
			}
			if strconv.Itoa(n) != p {
				return GPUs{}, fmt.Errorf("gpus %q: write the ordinal %q as %d", s, p, n)
			}
		}
		if seen[strings.ToLower(p)] {
			return GPUs{}, fmt.Errorf("gpus %q: %s given twice", s, p)
		}
		seen[strings.ToLower(p)] = true
		g.Entries = append(g.Entries, p)
	}
	return g, nil
}

func isUUID(s string) bool {
	u := strings.ToUpper(s)
	return strings.HasPrefix(u, "GPU-") || strings.HasPrefix(u, "MIG-")
}

func notUUIDRune(r rune) bool {
	return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-')
}

// UnmarshalText parses a --gpus value; see ParseGPUs.
func (g *GPUs) UnmarshalText(b []byte) error {
	p, err := ParseGPUs(string(b))
	if err != nil {
		return err
	}
	*g = p
	return nil
}

// String returns "all" or the comma-separated entries.
func (g GPUs) String() string {
	if g.All || len(g.Entries) == 0 {
		return "all"
	}
	return strings.Join(g.Entries, ",")
}

// Pick returns the selected devices in the order given. An ordinal or UUID
// that matches no visible GPU is an error naming what the driver shows.
func (g GPUs) Pick(devs []cuda.DeviceInfo) ([]cuda.DeviceInfo, error) {
	return g.pick(devs, "CUDA_VISIBLE_DEVICES")
}

// pick is Pick where the GPUs are numbered after the variables vars.
func (g GPUs) pick(devs []cuda.DeviceInfo, vars string) ([]cuda.DeviceInfo, error) {
	if g.All || len(g.Entries) == 0 {
		return devs, nil
	}
	var out []cuda.DeviceInfo
	seen := map[int]bool{}
	for _, e := range g.Entries {
		d, err := pickOne(e, devs, vars)
		if err != nil {
			return nil, err
		}
		if seen[d.Ordinal] {
			return nil, fmt.Errorf("gpus: %s names gpu %d twice", g, d.Ordinal)
		}
		seen[d.Ordinal] = true
		out = append(out, d)
	}
	return out, nil
}

func pickOne(e string, devs []cuda.DeviceInfo, vars string) (cuda.DeviceInfo, error) {
	if !isUUID(e) {
		n, _ := strconv.Atoi(e)
		if n >= len(devs) {
			return cuda.DeviceInfo{}, fmt.Errorf("gpu %d: no such GPU; this process sees %d (ordinals 0..%d, after %s)", n, len(devs), len(devs)-1, vars)
		}
		return devs[n], nil
	}
	var match []cuda.DeviceInfo
	for _, d := range devs {
		if strings.HasPrefix(strings.ToLower(d.UUID), strings.ToLower(e)) {
			match = append(match, d)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return cuda.DeviceInfo{}, fmt.Errorf("gpu %s: no visible GPU has this UUID", e)
	}
	return cuda.DeviceInfo{}, fmt.Errorf("gpu %s: UUID prefix matches %d GPUs", e, len(match))
}

// Interval is a period given as a Go duration ("2s", "500ms") or, as
// KeepGPU takes it, a plain number of seconds ("300", "0.5").
type Interval time.Duration

// ParseInterval reads an Interval; it must be between 10ms and 24h.
func ParseInterval(s string) (Interval, error) {
	s = strings.TrimSpace(s)
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("interval %q: want a duration such as 2s or 500ms, or a number of seconds", s)
		}
		if f < 0 || f > (24*time.Hour).Seconds() {
			return 0, fmt.Errorf("interval %q: want between 10ms and 24h", s)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 10*time.Millisecond || d > 24*time.Hour {
		return 0, fmt.Errorf("interval %q: want between 10ms and 24h", s)
	}
	return Interval(d), nil
}

// UnmarshalText parses an interval; see ParseInterval.
func (i *Interval) UnmarshalText(b []byte) error {
	p, err := ParseInterval(string(b))
	if err != nil {
		return err
	}
	*i = p
	return nil
}

// String returns the interval as a Go duration.
func (i Interval) String() string { return time.Duration(i).String() }

// What CheckUtil and CheckBusyThreshold accept, in words.
const (
	UtilRange          = "0..100"
	BusyThresholdRange = "-1 (never pause) or 0..100"
)

// CheckUtil checks a target utilization: 0..100 percent (0 holds VRAM
// only). The caller names the flag or field in front of the error.
func CheckUtil(n int) error {
	if n < 0 || n > 100 {
		return fmt.Errorf("%d: want %s", n, UtilRange)
	}
	return nil
}

// CheckBusyThreshold checks a busy threshold: 0..100 percent, or -1 for
// never pausing.
func CheckBusyThreshold(n int) error {
	if n < -1 || n > 100 {
		return fmt.Errorf("%d: want %s", n, BusyThresholdRange)
	}
	return nil
}

// Timeout is a length of time that may be 0, which means no limit: a Go
// duration ("90s", "1h30m"), never negative.
type Timeout time.Duration

// ParseTimeout reads a Timeout.
func ParseTimeout(s string) (Timeout, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q: must not be negative (0 means no limit)", s)
	}
	return Timeout(d), nil
}

// UnmarshalText parses a timeout; see ParseTimeout.
func (t *Timeout) UnmarshalText(b []byte) error {
	p, err := ParseTimeout(string(b))
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// String returns the timeout as a Go duration.
func (t Timeout) String() string { return time.Duration(t).String() }

// Period is how often something is done: a Go duration from 1ms to 24h.
type Period time.Duration

// ParsePeriod reads a Period.
func ParsePeriod(s string) (Period, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < time.Millisecond || d > 24*time.Hour {
		return 0, fmt.Errorf("duration %q: want between 1ms and 24h", s)
	}
	return Period(d), nil
}

// UnmarshalText parses a period; see ParsePeriod.
func (p *Period) UnmarshalText(b []byte) error {
	v, err := ParsePeriod(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// String returns the period as a Go duration.
func (p Period) String() string { return time.Duration(p).String() }

// parseDuration reads a Go duration, with the input in the error.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a Go duration such as 90s, 500ms or 1h30m", s)
	}
	return d, nil
}

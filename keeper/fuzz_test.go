package keeper

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseVRAM: ParseVRAM never panics, keeps what it takes within its
// limits, and reads its own String back to the same size (the holder's
// command line carries a size as String writes it).
func FuzzParseVRAM(f *testing.F) {
	for _, s := range []string{"1GiB", "1.5 GB", "4096", "50%", "max", "1gb", "1Gb", "0", "1.5", ".5KiB", "1e3", "100.0000001%", "99999999999999999999PiB", "", "1e3MB", "..", "9999999999999PB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVRAM(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseVRAM(%q): empty error", s)
			}
			return
		}
		switch {
		case v.Max:
		case v.Percent != 0:
			if !(v.Percent > 0 && v.Percent <= 100) {
				t.Fatalf("ParseVRAM(%q): percent %v", s, v.Percent)
			}
		default:
			if v.Bytes < MinBytes || v.Bytes > MaxBytes {
				t.Fatalf("ParseVRAM(%q): %d bytes", s, v.Bytes)
			}
		}
		w, err := ParseVRAM(v.String())
		if err != nil || w.Bytes != v.Bytes || w.Percent != v.Percent || w.Max != v.Max {
			t.Fatalf("ParseVRAM(%q) = %+v; its String %q reads back as %+v, %v", s, v, v.String(), w, err)
		}
	})
}

// FuzzParseGPUs: ParseGPUs never panics, never reads anything but "all" as
// every GPU, keeps its entries canonical, and reads its String back.
func FuzzParseGPUs(f *testing.F) {
	for _, s := range []string{"all", "", " ", "0", "1,0", "+1", "-0", "01", "GPU-abc,2", "MIG-1", "GPU-", "0,,1", "1,1", strings.Repeat("1,", 64) + "1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGPUs(s)
		if err != nil {
			return
		}
		if g.All != strings.EqualFold(strings.TrimSpace(s), "all") {
			t.Fatalf("ParseGPUs(%q) = %+v", s, g)
		}
		if !g.All && (len(g.Entries) == 0 || len(g.Entries) > maxGPUs) {
			t.Fatalf("ParseGPUs(%q): %d entries", s, len(g.Entries))
		}
		for _, e := range g.Entries {
			if n, err := strconv.Atoi(e); err == nil && strconv.Itoa(n) != e {
				t.Fatalf("ParseGPUs(%q): entry %q not canonical", s, e)
			}
		}
		h, err := ParseGPUs(g.String())
		if err != nil || h.String() != g.String() {
			t.Fatalf("ParseGPUs(%q) = %s; reads back as %s, %v", s, g, h, err)
		}
	})
}

// FuzzDurations: ParseInterval, ParseTimeout and ParsePeriod never panic,
// keep within their ranges, and read their own String back.
func FuzzDurations(f *testing.F) {
	for _, s := range []string{"2s", "300", "0.5", "-1s", "0", "NaN", "Inf", "1e30", "24h", "24h0m0.000000001s", "1ms", "9223372036.854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if i, err := ParseInterval(s); err == nil {
			d := time.Duration(i)
			if d < 10*time.Millisecond || d > 24*time.Hour {
				t.Fatalf("ParseInterval(%q) = %v", s, d)
			}
			if j, err := ParseInterval(i.String()); err != nil || j != i {
				t.Fatalf("ParseInterval(%q) = %v; reads back as %v, %v", s, i, j, err)
			}
		}
		if to, err := ParseTimeout(s); err == nil {
			if to < 0 {
				t.Fatalf("ParseTimeout(%q) = %v", s, to)
			}
			if u, err := ParseTimeout(to.String()); err != nil || u != to {
				t.Fatalf("ParseTimeout(%q) = %v; reads back as %v, %v", s, to, u, err)
			}
		}
		if p, err := ParsePeriod(s); err == nil {
			if time.Duration(p) < time.Millisecond || time.Duration(p) > 24*time.Hour {
				t.Fatalf("ParsePeriod(%q) = %v", s, p)
			}
		}
	})
}

// FuzzPercentages: the command line (an integer flag, as kong reads it)
// and the API (a JSON number) agree on every utilization and busy
// threshold, because both ask CheckUtil and CheckBusyThreshold.
func FuzzPercentages(f *testing.F) {
	for _, s := range []string{"0", "-1", "100", "101", "-2", "30", "99999999999999999999", "1.5", "1e2", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cli, cerr := strconv.ParseInt(s, 10, 64)
		var api int
		aerr := json.Unmarshal([]byte(s), &api)
		if cerr != nil || aerr != nil || int64(api) != cli {
			return // one of them refuses it as a number
		}
		for _, check := range []func(int) error{CheckUtil, CheckBusyThreshold} {
			if (check(int(cli)) == nil) != (check(api) == nil) {
				t.Fatalf("%q: the CLI and the API disagree", s)
			}
		}
		if err := CheckUtil(api); (err == nil) != (api >= 0 && api <= 100) {
			t.Fatalf("CheckUtil(%d) = %v", api, err)
		}
		if err := CheckBusyThreshold(api); (err == nil) != (api >= -1 && api <= 100) {
			t.Fatalf("CheckBusyThreshold(%d) = %v", api, err)
		}
	})
}

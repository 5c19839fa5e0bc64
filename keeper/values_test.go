package keeper

import (
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
)

func TestParseGPUs(t *testing.T) {
	tests := []struct {
		in   string
		all  bool
		want string
		err  string
	}{
		{in: "", err: "empty"},
		{in: "  ", err: "empty"},
		{in: "all", all: true},
		{in: "ALL", all: true},
		{in: "0", want: "0"},
		{in: "1,0", want: "1,0"},
		{in: " 2 , 3 ", want: "2,3"},
		{in: "03", err: "write the ordinal"},
		{in: "+1", err: "write the ordinal"},
		{in: "-0", err: "write the ordinal"},
		{in: "00", err: "write the ordinal"},
		{in: "GPU-", err: "not a UUID"},
		{in: "GPU-ü", err: "not a UUID"},
		{in: "99999999999999999999", err: "neither a GPU ordinal"},
		{in: "GPU-abc,1", want: "GPU-abc,1"},
		{in: "MIG-1234", want: "MIG-1234"},
		{in: "0,,1", err: "empty entry"},
		{in: "-1", err: "neither a GPU ordinal"},
		{in: "x", err: "neither a GPU ordinal"},
		{in: "1,1", err: "given twice"},
		{in: "1,01", err: "write the ordinal"},
		{in: "GPU-a,gpu-A", err: "given twice"},
		{in: strings.Repeat("1,", 64) + "1", err: "more than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			g, err := ParseGPUs(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseGPUs(%q) = %v, %v; want error %q", tt.in, g, err, tt.err)
				}
				return
			}
			if err != nil || g.All != tt.all || (!tt.all && g.String() != tt.want) {
				t.Fatalf("ParseGPUs(%q) = %+v, %v; want all=%v %q", tt.in, g, err, tt.all, tt.want)
			}
		})
	}
}

func TestPick(t *testing.T) {
	devs := []cuda.DeviceInfo{
		{Ordinal: 0, UUID: "GPU-aaaa1111-0000-0000-0000-000000000000"},
		{Ordinal: 1, UUID: "GPU-aaaa2222-0000-0000-0000-000000000000"},
		{Ordinal: 2, UUID: "GPU-bbbb0000-0000-0000-0000-000000000000"},
	}
	tests := []struct {
		in   string
		want []int
		err  string
	}{
		{in: "all", want: []int{0, 1, 2}},
		{in: "2,0", want: []int{2, 0}},
		{in: "GPU-bbbb0000-0000-0000-0000-000000000000", want: []int{2}},
		{in: "gpu-BBBB", want: []int{2}},
		{in: "GPU-aaaa2,0", want: []int{1, 0}},
		{in: "GPU-aaaa", err: "matches 2 GPUs"},
		{in: "GPU-cccc", err: "no visible GPU"},
		{in: "3", err: "this process sees 3"},
		{in: "2,GPU-bbbb", err: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			sel, err := ParseGPUs(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sel.Pick(devs)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Pick(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("Pick(%q) = %v, %v; want ordinals %v", tt.in, got, err, tt.want)
			}
			for i, d := range got {
				if d.Ordinal != tt.want[i] {
					t.Fatalf("Pick(%q)[%d] = gpu %d; want %d", tt.in, i, d.Ordinal, tt.want[i])
				}
			}
		})
	}
}

func TestParseInterval(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "2s", want: 2 * time.Second},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "300", want: 300 * time.Second},
		{in: "0.5", want: 500 * time.Millisecond},
		{in: "1m30s", want: 90 * time.Second},
		{in: "0", err: true},
		{in: "-1s", err: true},
		{in: "1ms", err: true},
		{in: "25h", err: true},
		{in: "soon", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseInterval(tt.in)
			if (err != nil) != tt.err || (!tt.err && time.Duration(got) != tt.want) {
				t.Fatalf("ParseInterval(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in      string
		timeout time.Duration // -1: refused
		period  time.Duration // -1: refused
	}{
		{"0", 0, -1},
		{"0s", 0, -1},
		{"1s", time.Second, time.Second},
		{"1ms", time.Millisecond, time.Millisecond},
		{"999us", 999 * time.Microsecond, -1},
		{"24h", 24 * time.Hour, 24 * time.Hour},
		{"25h", 25 * time.Hour, -1},
		{"-5s", -1, -1},
		{"-1ns", -1, -1},
		{"", -1, -1},
		{"5", -1, -1},
		{"soon", -1, -1},
		{"1s ", time.Second, time.Second},
		{"99999999999h", -1, -1},
		{"１s", -1, -1},
	}
	for _, tt := range tests {
		to, err := ParseTimeout(tt.in)
		if (tt.timeout < 0) != (err != nil) || err == nil && time.Duration(to) != tt.timeout {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", tt.in, to, err, tt.timeout)
		}
		p, err := ParsePeriod(tt.in)
		if (tt.period < 0) != (err != nil) || err == nil && time.Duration(p) != tt.period {
			t.Errorf("ParsePeriod(%q) = %v, %v; want %v", tt.in, p, err, tt.period)
		}
		if err != nil && !strings.Contains(err.Error(), "duration") {
			t.Errorf("ParsePeriod(%q): %v does not say duration", tt.in, err)
		}
	}
}

func TestPercentages(t *testing.T) {
	for n := -3; n <= 103; n++ {
		if err := CheckUtil(n); (err == nil) != (n >= 0 && n <= 100) {
			t.Errorf("CheckUtil(%d) = %v", n, err)
		}
		if err := CheckBusyThreshold(n); (err == nil) != (n >= -1 && n <= 100) {
			t.Errorf("CheckBusyThreshold(%d) = %v", n, err)
		}
	}
}

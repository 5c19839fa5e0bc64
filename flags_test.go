package main

import (
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/keeper"
)

// TestKeepFlags parses keep flags (and their KEEPGPU_* environment
// defaults) the way the commands see them.
func TestKeepFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(f KeepFlags) bool
		err  string
	}{
		{name: "defaults", args: []string{"hold"}, want: func(f KeepFlags) bool {
			return f.GPUs.All && f.VRAM.Bytes == 1<<30 && f.Util == 30 && f.BusyThreshold == 25 &&
				time.Duration(f.Interval) == 2*time.Second && f.LogFormat == "text"
		}},
		{name: "bare keepgpu is hold", args: []string{"--vram", "2GiB"}, want: func(f KeepFlags) bool { return f.VRAM.Bytes == 2<<30 }},
		{name: "gpu-ids alias", args: []string{"hold", "--gpu-ids", "1,0"}, want: func(f KeepFlags) bool { return f.GPUs.String() == "1,0" }},
		{name: "util-threshold alias, -1", args: []string{"hold", "--util-threshold", "-1"}, want: func(f KeepFlags) bool { return f.BusyThreshold == -1 }},
		{name: "plain seconds", args: []string{"hold", "--interval", "300"}, want: func(f KeepFlags) bool { return time.Duration(f.Interval) == 300*time.Second }},
		{name: "percent", args: []string{"hold", "--vram", "50%"}, want: func(f KeepFlags) bool { return f.VRAM.Percent == 50 }},
		{name: "env default", args: []string{"hold"}, env: map[string]string{"KEEPGPU_VRAM": "3GiB", "KEEPGPU_GPUS": "GPU-abc", "KEEPGPU_UTIL": "10", "KEEPGPU_BUSY_THRESHOLD": "50", "KEEPGPU_INTERVAL": "1s"},
			want: func(f KeepFlags) bool {
				return f.VRAM.Bytes == 3<<30 && f.GPUs.String() == "GPU-abc" && f.Util == 10 && f.BusyThreshold == 50 && time.Duration(f.Interval) == time.Second
			}},
		{name: "flag beats env", args: []string{"hold", "--vram", "1MiB"}, env: map[string]string{"KEEPGPU_VRAM": "3GiB"}, want: func(f KeepFlags) bool { return f.VRAM.Bytes == 1<<20 }},
		{name: "wrap takes them too", args: []string{"wrap", "--vram", "max", "--", "true"}, want: func(f KeepFlags) bool { return f.VRAM.Max }},
		{name: "bits refused", args: []string{"hold", "--vram", "1Gb"}, err: "unit of bits"},
		{name: "bad gpu list", args: []string{"hold", "--gpus", "0,,1"}, err: "empty entry"},
		{name: "bad interval", args: []string{"hold", "--interval", "soon"}, err: "want a duration"},
		{name: "bad env", args: []string{"hold"}, env: map[string]string{"KEEPGPU_UTIL": "lots"}, err: "KEEPGPU_UTIL"},
		{name: "bad log format", args: []string{"hold", "--log-format", "xml"}, err: "log-format"},
		{name: "platform default", args: []string{"hold"}, want: func(f KeepFlags) bool { return f.Platform == keeper.PlatformAuto }},
		{name: "KeepGPU's platform variable", args: []string{"hold"}, env: map[string]string{"KEEP_GPU_PLATFORM": "ROCm"}, want: func(f KeepFlags) bool { return f.Platform == keeper.PlatformROCm }},
		{name: "keepgpu's platform variable first", args: []string{"hold"}, env: map[string]string{"KEEPGPU_PLATFORM": "cuda", "KEEP_GPU_PLATFORM": "rocm"}, want: func(f KeepFlags) bool { return f.Platform == keeper.PlatformCUDA }},
		{name: "platform flag beats env", args: []string{"wrap", "--platform", "cuda", "--", "true"}, env: map[string]string{"KEEP_GPU_PLATFORM": "rocm"}, want: func(f KeepFlags) bool { return f.Platform == keeper.PlatformCUDA }},
		{name: "empty platform variable", args: []string{"hold"}, env: map[string]string{"KEEP_GPU_PLATFORM": ""}, want: func(f KeepFlags) bool { return f.Platform == keeper.PlatformAuto }},
		{name: "bad platform variable", args: []string{"hold"}, env: map[string]string{"KEEP_GPU_PLATFORM": "metal"}, err: `KEEP_GPU_PLATFORM="metal"`},
		{name: "bad platform", args: []string{"hold", "--platform", "mps"}, err: `platform "mps": keepgpu holds NVIDIA (cuda) and AMD (rocm) GPUs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"KEEPGPU_VRAM", "KEEPGPU_GPUS", "KEEPGPU_UTIL", "KEEPGPU_BUSY_THRESHOLD", "KEEPGPU_INTERVAL", "KEEPGPU_PLATFORM", "KEEP_GPU_PLATFORM"} {
				t.Setenv(k, tt.env[k])
			}
			unsetEmpty()
			var cli CLI
			p, err := newParser(&cli, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ctx, err := p.Parse(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse(%q) error %v; want %q", tt.args, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			f := cli.Hold.KeepFlags
			if ctx.Command() == "wrap <command>" {
				f = cli.Wrap.KeepFlags
			}
			if !tt.want(f) {
				t.Fatalf("Parse(%q) = %+v", tt.args, f)
			}
		})
	}
}

// TestKeepFlagsRanges checks the limits the commands enforce on top of
// parsing.
func TestKeepFlagsRanges(t *testing.T) {
	tests := []struct {
		flags KeepFlags
		err   string
	}{
		{flags: KeepFlags{Util: 101}, err: "--util 101: want 0..100"},
		{flags: KeepFlags{Util: -1}, err: "--util -1"},
		{flags: KeepFlags{BusyThreshold: -2}, err: "--busy-threshold -2"},
		{flags: KeepFlags{BusyThreshold: 101}, err: "--busy-threshold 101"},
		{flags: KeepFlags{Util: 30, BusyThreshold: 25, Threshold: "x"}, err: "neither an integer"},
		{flags: KeepFlags{Util: 0, BusyThreshold: -1}},
		{flags: KeepFlags{Util: 100, BusyThreshold: 100}},
	}
	for _, tt := range tests {
		_, err := tt.flags.spec(func(string) {})
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("spec(%+v) = %v; want error %q", tt.flags, err, tt.err)
		}
	}
	var warned string
	f := KeepFlags{Util: 30, Threshold: "2GiB"}
	spec, err := f.spec(func(w string) { warned = w })
	if err != nil || spec.VRAM.Bytes != 2<<30 || !strings.Contains(warned, "deprecated") {
		t.Errorf("--threshold 2GiB: %+v, %v, warning %q", spec.VRAM, err, warned)
	}
}

// TestHolderArgs decodes the holder's command line, as holder.Spec.Args
// writes it, into the same spec, in the environment holder.Env leaves of a
// supervisor's with KEEPGPU_* settings.
func TestHolderArgs(t *testing.T) {
	gpus, err := keeper.ParseGPUs("GPU-abc,2")
	if err != nil {
		t.Fatal(err)
	}
	vram := func(s string) keeper.VRAM {
		v, err := keeper.ParseVRAM(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		spec holder.Spec
	}{
		{"defaults", holder.Spec{GPUs: keeper.GPUs{All: true}, VRAM: vram("1GiB"), Util: 30, BusyThreshold: 25, Interval: 2 * time.Second, Platform: keeper.PlatformAuto}},
		{"everything", holder.Spec{GPUs: gpus, VRAM: vram("75%"), Util: 0, BusyThreshold: -1, Interval: 1500 * time.Millisecond, AllowPartial: true, TreeOf: 4242, Platform: keeper.PlatformROCm}},
		{"max", holder.Spec{GPUs: keeper.GPUs{All: true}, VRAM: vram("max"), Util: 100, BusyThreshold: 100, Interval: 24 * time.Hour, Platform: keeper.PlatformCUDA}},
		{"bytes", holder.Spec{GPUs: keeper.GPUs{All: true}, VRAM: vram("123456789"), Util: 1, BusyThreshold: 0, Interval: 10 * time.Millisecond, Platform: keeper.PlatformAuto}},
	}
	t.Setenv("KEEPGPU_VRAM", "3GiB")
	t.Setenv("KEEPGPU_ALLOW_PARTIAL", "true")
	t.Setenv("KEEPGPU_THRESHOLD", "50")
	t.Setenv("KEEPGPU_GPUS", "7")
	t.Setenv("KEEPGPU_PLATFORM", "rocm")
	kept := map[string]bool{}
	for _, kv := range holder.Env(os.Environ()) {
		kept[kv] = true
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !kept[kv] {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cli CLI
			p, err := newParser(&cli, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			args := tt.spec.Args()
			if _, err := p.Parse(args); err != nil {
				t.Fatalf("Parse(%q): %v", args, err)
			}
			if !cli.Hold.Supervised {
				t.Errorf("Parse(%q): not supervised", args)
			}
			got, err := cli.Hold.holderSpec(func(w string) { t.Errorf("warning %q", w) })
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.spec) {
				t.Errorf("Parse(%q) = %+v\nwant %+v", args, got, tt.spec)
			}
		})
	}
}

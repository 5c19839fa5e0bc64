package main

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/keeper"
)

// clearKeepgpuEnv unsets every KEEPGPU_* variable for the test.
func clearKeepgpuEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "KEEPGPU_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
}

// TestDirect runs without kong exactly what kong would run: the holder's
// command line as holder.Spec.Args writes it becomes the HoldCmd kong makes
// of it; version and relay are recognised alone; anything else, and the
// holder's command line in an environment with KEEPGPU_* settings (which
// kong would read), is left to kong.
func TestDirect(t *testing.T) {
	clearKeepgpuEnv(t)
	if v, ok := os.LookupEnv("KEEP_GPU_PLATFORM"); ok {
		t.Setenv("KEEP_GPU_PLATFORM", v) // restored after the test
		os.Unsetenv("KEEP_GPU_PLATFORM")
	}
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
	specs := []holder.Spec{
		{GPUs: keeper.GPUs{All: true}, VRAM: vram("1GiB"), Util: 30, BusyThreshold: 25, Interval: 2 * time.Second},
		{GPUs: gpus, VRAM: vram("75%"), Util: 0, BusyThreshold: -1, Interval: 1500 * time.Millisecond, AllowPartial: true, TreeOf: 4242},
		{GPUs: keeper.GPUs{All: true}, VRAM: vram("max"), Util: 100, BusyThreshold: 100, Interval: 24 * time.Hour, TreeOf: 9},
		{GPUs: gpus, VRAM: vram("1GiB"), Util: 30, BusyThreshold: 25, Interval: time.Second, Platform: keeper.PlatformROCm, TreeOf: 5},
		{GPUs: keeper.GPUs{All: true}, VRAM: vram("1GiB"), Util: 30, BusyThreshold: 25, Interval: time.Second, Platform: keeper.PlatformCUDA, AllowPartial: true},
	}
	std := &stdio{out: &bytes.Buffer{}, err: &bytes.Buffer{}}
	for i, spec := range specs {
		t.Run(fmt.Sprintf("holder %d", i), func(t *testing.T) {
			args := spec.Args()
			if direct(args, std) == nil {
				t.Fatalf("direct(%q) = nil", args)
			}
			var cli CLI
			p, err := newParser(&cli, std.out, std.err)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Parse(args); err != nil {
				t.Fatalf("Parse(%q): %v", args, err)
			}
			got, _ := holder.ParseArgs(args)
			if fast := supervisedHold(got); !reflect.DeepEqual(*fast, cli.Hold) {
				t.Errorf("%q: without kong %+v\nkong            %+v", args, *fast, cli.Hold)
			}
			for _, kv := range [][2]string{{"KEEPGPU_QUIET", "true"}, {"KEEP_GPU_PLATFORM", "rocm"}} {
				t.Run(kv[0], func(t *testing.T) {
					t.Setenv(kv[0], kv[1])
					if direct(args, std) != nil {
						t.Errorf("direct(%q) with %s set is not nil", args, kv[0])
					}
				})
			}
		})
	}
	for _, args := range [][]string{{"version"}, {"relay"}} {
		if direct(args, std) == nil {
			t.Errorf("direct(%q) = nil", args)
		}
	}
	for _, args := range [][]string{nil, {}, {"version", "--help"}, {"relay", "x"}, {"hold"}, {"hold", "--supervised"}, {"wrap", "--", "true"}} {
		if direct(args, std) != nil {
			t.Errorf("direct(%q) is not nil", args)
		}
	}
}

// TestDirectVersion prints the same line with and without kong.
func TestDirectVersion(t *testing.T) {
	var fast, slow bytes.Buffer
	if code := run([]string{"version"}, &fast, &fast); code != 0 {
		t.Fatalf("version: exit %d: %s", code, fast.String())
	}
	var cli CLI
	p, err := newParser(&cli, &slow, &slow)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := p.Parse([]string{"version"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.Run(); err != nil {
		t.Fatal(err)
	}
	if fast.String() != slow.String() || !strings.HasPrefix(fast.String(), "keepgpu ") {
		t.Errorf("version without kong %q, with kong %q", fast.String(), slow.String())
	}
}

// parsed is the outcome of parsing one command line: what was printed,
// the error or exit status, and the value of the command it selected.
type parsed struct {
	out, err string
	fail     string
	exit     int
	value    any
}

// parseWith parses args with p (whose writers are out and errw), catching
// kong's exit (--help).
func parseWith(p *kong.Kong, args []string, out, errw *bytes.Buffer) (res parsed) {
	defer func() {
		res.out, res.err = out.String(), errw.String()
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			res.exit = int(c)
		}
	}()
	ctx, err := p.Parse(args)
	if err != nil {
		res.fail = err.Error()
		return res
	}
	// The selected command's value: the first field of the model that the
	// command line chose.
	name := ctx.Selected().Name
	target := p.Model.Target
	for i := range target.NumField() {
		if f := target.Type().Field(i); commandName(f) == name {
			res.value = target.Field(i).Interface()
		}
	}
	return res
}

// TestCommandParser parses with the model of one command exactly as with
// the whole CLI: the same values, errors and help text.
func TestCommandParser(t *testing.T) {
	clearKeepgpuEnv(t)
	var names []string
	ty := reflect.TypeFor[CLI]()
	for i := range ty.NumField() {
		if f := ty.Field(i); f.Tag.Get("cmd") != "" || strings.Contains(string(f.Tag), `cmd:""`) {
			names = append(names, commandName(f))
		}
	}
	if len(names) < 12 {
		t.Fatalf("found %d commands in CLI: %q", len(names), names)
	}
	lines := [][]string{
		{"wrap", "--vram", "2GiB", "--ready-marker", "go", "--max-hold", "1h", "--", "python", "-u", "x.py", "--vram", "9"},
		{"wrap", "--no-release-on-gpu-use", "--require-gpu", "-q", "true"},
		{"wrap", "--util", "101", "--", "true"},
		{"wrap", "--bogus", "--", "true"},
		{"wrap"},
		{"hold", "--gpus", "0,1", "--busy-threshold", "-1", "--interval", "300", "--until-file", "/tmp/x"},
		{"hold", "--vram", "1Gb"},
		{"hold", "extra"},
		{"ready", "--no-wait", "--timeout", "5s"},
		{"list-gpus", "--json"},
		{"version", "extra"},
		{"relay", "x"},
		{"stop", "--all"},
		{"start", "--vram", "1GiB", "--job-id", "a b"},
		{"service-stop", "--force"},
	}
	for _, n := range names {
		lines = append(lines, []string{n}, []string{n, "--help"}, []string{n, "-h"}, []string{n, "--nope"})
	}
	for _, args := range lines {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var o1, e1, o2, e2 bytes.Buffer
			one, err := commandParser(args, &stdio{out: &o1, err: &e1})
			if err != nil || one == nil {
				t.Fatalf("commandParser(%q) = %v, %v", args, one, err)
			}
			var cli CLI
			all, err := newParser(&cli, &o2, &e2)
			if err != nil {
				t.Fatal(err)
			}
			got, want := parseWith(one, args, &o1, &e1), parseWith(all, args, &o2, &e2)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("one command: %+v\nwhole CLI:   %+v", got, want)
			}
			if want.value == nil && want.fail == "" && want.out == "" {
				t.Errorf("%q: neither a command, an error nor help", args)
			}
		})
	}
	for _, args := range [][]string{nil, {"--vram", "2GiB"}, {"--help"}, {"wrapp"}, {"Wrap"}} {
		if p, err := commandParser(args, &stdio{out: &bytes.Buffer{}, err: &bytes.Buffer{}}); p != nil || err != nil {
			t.Errorf("commandParser(%q) = %v, %v; want the whole CLI", args, p, err)
		}
	}
}

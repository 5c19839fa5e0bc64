package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Targets for the median extra wall time of `keepgpu wrap -- true` over
// `true`, and over the init shims tini and dumb-init.
const (
	overheadLimit = 5 * time.Millisecond
	shimLimit     = 4 * time.Millisecond
	// helloRatio is the target for `keepgpu version` over a Go hello
	// world: what starting the binary costs beyond starting any Go program.
	helloRatio = 2.5
)

// helloSource is the Go hello world keepgpu's start-up is compared with.
const helloSource = "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"

// helloDynSource is the same hello world linked as keepgpu is: purego
// (which keepgpu loads the GPU drivers with) makes a CGO_ENABLED=0 binary
// dynamically linked against libc, so the dynamic loader runs before Go
// does.
const helloDynSource = "package main\n\nimport (\n\t\"os\"\n\n\t_ \"github.com/ebitengine/purego\"\n)\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"

// shims are the init shims `keepgpu wrap` is compared with, where they are
// installed (Debian: apt-get install tini dumb-init).
var shims = []struct {
	name string
	args []string // before `true`
}{
	{"tini", []string{"-s", "--"}},
	{"dumb-init", nil},
}

// startup is what the overhead runs measured of one keepgpu binary.
type startup struct {
	version, wrapped []time.Duration
	diff             []time.Duration   // wrap -- true − true, paired
	ratio, ratioDyn  []float64         // version ÷ hello world (static, dynamic), paired
	faults           []float64         // minor page faults of version
	shimDiff         [][]time.Duration // wrap -- true − each shim, paired
}

// overhead times `true` and `keepgpu wrap -- true` (on the fake node, so
// the holder starts as it would on a GPU node), b.cfg.runs times each,
// alternating to cancel drift. `keepgpu version` takes its turn too: the
// cost of starting the binary at all, against Go hello worlds linked
// statically and, as keepgpu is, dynamically; and so do `tini -s -- true`
// and `dumb-init true`, where installed, each paired with the wrap run of
// its turn. With a baseline binary, its wrap and version runs take their
// turns as well, and its figures are shown beside.
func (b *bench) overhead() ([]row, error) {
	fmt.Fprintf(b.log, "bench: true vs keepgpu wrap -- true, %d runs each\n", b.cfg.runs)
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	hello, helloErr := b.buildHello("hello", helloSource)
	helloDyn, helloDynErr := b.buildHello("hellodyn", helloDynSource)
	shimPaths := make([]string, len(shims))
	for i, s := range shims {
		shimPaths[i], _ = exec.LookPath(s.name) // "" where not installed
	}
	bins := b.binaries()
	got := make([]startup, len(bins))
	for i := range got {
		got[i].shimDiff = make([][]time.Duration, len(shims))
	}
	var plain []time.Duration
	var helloFaults, helloDynFaults []float64
	run := func(path string, args ...string) (time.Duration, *syscall.Rusage, error) {
		c := exec.Command(path, args...)
		c.Env = b.env
		d, err := timeRun(c)
		if err != nil {
			return 0, nil, fmt.Errorf("overhead: %w", err)
		}
		ru, _ := c.ProcessState.SysUsage().(*syscall.Rusage)
		return d, ru, nil
	}
	for i := 0; i < b.cfg.runs; i++ {
		p, _, err := run(truePath)
		if err != nil {
			return nil, err
		}
		plain = append(plain, p)
		var h, hd time.Duration
		if helloErr == nil {
			var ru *syscall.Rusage
			if h, ru, err = run(hello); err != nil {
				return nil, err
			}
			helloFaults = append(helloFaults, float64(ru.Minflt))
		}
		if helloDynErr == nil {
			var ru *syscall.Rusage
			if hd, ru, err = run(helloDyn); err != nil {
				return nil, err
			}
			helloDynFaults = append(helloDynFaults, float64(ru.Minflt))
		}
		shimTimes := make([]time.Duration, len(shims))
		for j, s := range shims {
			if shimPaths[j] == "" {
				continue
			}
			if shimTimes[j], _, err = run(shimPaths[j], append(append([]string{}, s.args...), truePath)...); err != nil {
				return nil, err
			}
		}
		for k, bin := range bins {
			w, err := timeRun(b.wrapWith(bin.path, nil, nil, "true"))
			if err != nil {
				return nil, fmt.Errorf("overhead: %w", err)
			}
			v, ru, err := run(bin.path, "version")
			if err != nil {
				return nil, err
			}
			g := &got[k]
			g.version, g.wrapped, g.diff = append(g.version, v), append(g.wrapped, w), append(g.diff, w-p)
			g.faults = append(g.faults, float64(ru.Minflt))
			if helloErr == nil {
				g.ratio = append(g.ratio, float64(v)/float64(h))
			}
			if helloDynErr == nil {
				g.ratioDyn = append(g.ratioDyn, float64(v)/float64(hd))
			}
			for j := range shims {
				if shimPaths[j] != "" {
					g.shimDiff[j] = append(g.shimDiff[j], w-shimTimes[j])
				}
			}
		}
	}
	// figure formats one figure of every binary: this build's, then
	// "(baseline …)".
	figure := func(f func(s startup) string) string {
		m := f(got[0])
		if len(got) > 1 {
			m += " (baseline " + f(got[1]) + ")"
		}
		return m
	}
	wall := func(xs []time.Duration) string {
		s := summarize(slices.Clone(xs))
		return fmt.Sprintf("p50 %s · p90 %s ms", ms(s.p50), ms(s.p90))
	}
	plus := func(xs []time.Duration) string {
		return fmt.Sprintf("%+.2f ms", float64(summarize(slices.Clone(xs)).p50)/1e6)
	}
	times := func(xs []float64) string { return fmt.Sprintf("%.2f×", median(xs)) }
	rows := []row{
		{figure: "`true` wall time", measured: wall(plain)},
		{figure: "`keepgpu version` wall time (starting the binary, for reference)", measured: figure(func(s startup) string { return wall(s.version) })},
		{figure: "`keepgpu wrap -- true` wall time (fake node, 2 GPUs)", measured: figure(func(s startup) string { return wall(s.wrapped) })},
		{figure: "`wrap -- true` − `true` (median of paired differences)", measured: figure(func(s startup) string { return plus(s.diff) }),
			target: "≤ +" + ms(overheadLimit) + " ms", ok: verdict(summarize(slices.Clone(got[0].diff)).p50 <= overheadLimit)},
	}
	r := row{figure: "`keepgpu version` ÷ a Go hello world (median of paired ratios)", target: fmt.Sprintf("≤ %.1f×", helloRatio)}
	if helloErr != nil {
		r.measured = "no hello world: " + helloErr.Error()
	} else {
		r.measured, r.ok = figure(func(s startup) string { return times(s.ratio) }), verdict(median(got[0].ratio) <= helloRatio)
	}
	rows = append(rows, r)
	r = row{figure: "`keepgpu version` ÷ a Go hello world linked as keepgpu is (dynamically, by purego), for reference"}
	if helloDynErr != nil {
		r.measured = "no such hello world: " + helloDynErr.Error()
	} else {
		r.measured = figure(func(s startup) string { return times(s.ratioDyn) })
	}
	rows = append(rows, r)
	faults := figure(func(s startup) string { return fmt.Sprintf("%.0f", median(s.faults)) })
	if helloErr == nil {
		faults += fmt.Sprintf("; hello world %.0f", median(helloFaults))
	}
	if helloDynErr == nil {
		faults += fmt.Sprintf(", linked as keepgpu %.0f", median(helloDynFaults))
	}
	rows = append(rows, row{figure: "`keepgpu version` minor page faults (median), for reference", measured: faults})
	for j, s := range shims {
		r := row{figure: fmt.Sprintf("`wrap -- true` − `%s` (median of paired differences)", strings.Join(append(append([]string{s.name}, s.args...), "true"), " ")),
			target: "≤ +" + ms(shimLimit) + " ms"}
		if shimPaths[j] == "" {
			r.measured = s.name + " not installed (Debian: apt-get install " + s.name + ")"
		} else {
			r.measured = figure(func(s startup) string { return plus(s.shimDiff[j]) })
			r.ok = verdict(summarize(slices.Clone(got[0].shimDiff[j])).p50 <= shimLimit)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// buildHello builds the Go program source with the go command into
// b.dir/name and returns the binary's path. A program that imports purego
// takes it from keepgpu's own module requirements, offline: from the
// module cache that building keepgpu filled.
func (b *bench) buildHello(name, source string) (string, error) {
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(source), 0o644); err != nil {
		return "", err
	}
	mod := "module " + name + "\n\ngo 1.21\n"
	env := append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if strings.Contains(source, "purego") {
		req, sum, err := puregoRequirement()
		if err != nil {
			return "", err
		}
		mod += "\nrequire " + req + "\n"
		if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
			return "", err
		}
		env = append(env, "GOFLAGS=-mod=mod", "GOPROXY=off")
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	c := exec.Command("go", "build", "-o", bin, ".")
	c.Dir = dir
	c.Env = env
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// puregoRequirement returns keepgpu's requirement of purego ("module
// version") and keepgpu's go.sum, read from the module's root (the working
// directory of scripts/bench.sh and of the package's tests).
func puregoRequirement() (string, []byte, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", nil, err
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", nil, err
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return "", nil, err
	}
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/ebitengine/purego" {
			return f[0] + " " + f[1], sum, nil
		}
	}
	return "", nil, fmt.Errorf("go.mod in %s does not require github.com/ebitengine/purego", root)
}

// moduleRoot finds the directory of keepgpu's go.mod from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/keepgpu/keepgpu\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no keepgpu go.mod above the working directory")
		}
		dir = parent
	}
}

// timeRun runs c, which must exit 0, and returns its wall time from start
// to reaped.
func timeRun(c *exec.Cmd) (time.Duration, error) {
	t := time.Now()
	err := runChecked(c)
	return time.Since(t), err
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// shims are the init shims `keepgpu wrap` is compared with, where they are
// installed (Debian: apt-get install tini dumb-init).
var shims = []struct {
	name string
	args []string // before `true`
}{
	{"tini", []string{"-s", "--"}},
	{"dumb-init", nil},
}

// overhead times `true` and `keepgpu wrap -- true` (on the fake node, so
// the holder starts as it would on a GPU node), b.cfg.runs times each,
// alternating to cancel drift. `keepgpu version` takes its turn too: the
// cost of starting the binary at all; and so do `tini -s -- true` and
// `dumb-init true`, where installed, each paired with the wrap run of its
// turn.
func (b *bench) overhead() ([]row, error) {
	fmt.Fprintf(b.log, "bench: true vs keepgpu wrap -- true, %d runs each\n", b.cfg.runs)
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	hello, helloErr := b.buildHello()
	shimPaths := make([]string, len(shims))
	for i, s := range shims {
		shimPaths[i], _ = exec.LookPath(s.name) // "" where not installed
	}
	var plain, version, wrapped, diff []time.Duration
	var ratios []float64 // keepgpu version ÷ hello world, paired
	shimDiff := make([][]time.Duration, len(shims))
	for i := 0; i < b.cfg.runs; i++ {
		c := exec.Command(truePath)
		c.Env = b.env
		p, err := timeRun(c)
		if err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		w, err := timeRun(b.wrap(nil, nil, "true"))
		if err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		c = exec.Command(b.cfg.keepgpu, "version")
		c.Env = b.env
		v, err := timeRun(c)
		if err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		plain, wrapped, version = append(plain, p), append(wrapped, w), append(version, v)
		if helloErr == nil {
			c = exec.Command(hello)
			c.Env = b.env
			h, err := timeRun(c)
			if err != nil {
				return nil, fmt.Errorf("overhead: %w", err)
			}
			ratios = append(ratios, float64(v)/float64(h))
		}
		diff = append(diff, w-p)
		for j, s := range shims {
			if shimPaths[j] == "" {
				continue
			}
			c = exec.Command(shimPaths[j], append(append([]string{}, s.args...), truePath)...)
			c.Env = b.env
			t, err := timeRun(c)
			if err != nil {
				return nil, fmt.Errorf("overhead: %w", err)
			}
			shimDiff[j] = append(shimDiff[j], w-t)
		}
	}
	wall := func(s stats) string { return fmt.Sprintf("p50 %s · p90 %s ms", ms(s.p50), ms(s.p90)) }
	d := summarize(diff)
	rows := []row{
		{figure: "`true` wall time", measured: wall(summarize(plain))},
		{figure: "`keepgpu version` wall time (starting the binary, for reference)", measured: wall(summarize(version))},
		{figure: "`keepgpu wrap -- true` wall time (fake node, 2 GPUs)", measured: wall(summarize(wrapped))},
		{figure: "`wrap -- true` − `true` (median of paired differences)", measured: fmt.Sprintf("%+.2f ms", float64(d.p50)/1e6),
			target: "≤ +" + ms(overheadLimit) + " ms", ok: verdict(d.p50 <= overheadLimit)},
	}
	r := row{figure: "`keepgpu version` ÷ a Go hello world (median of paired ratios)", target: fmt.Sprintf("≤ %.1f×", helloRatio)}
	if helloErr != nil {
		r.measured = "no hello world: " + helloErr.Error()
	} else {
		m := median(ratios)
		r.measured, r.ok = fmt.Sprintf("%.2f×", m), verdict(m <= helloRatio)
	}
	rows = append(rows, r)
	for j, s := range shims {
		r := row{figure: fmt.Sprintf("`wrap -- true` − `%s` (median of paired differences)", strings.Join(append(append([]string{s.name}, s.args...), "true"), " ")),
			target: "≤ +" + ms(shimLimit) + " ms"}
		if shimPaths[j] == "" {
			r.measured = s.name + " not installed (Debian: apt-get install " + s.name + ")"
		} else {
			m := summarize(shimDiff[j]).p50
			r.measured, r.ok = fmt.Sprintf("%+.2f ms", float64(m)/1e6), verdict(m <= shimLimit)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// buildHello builds helloSource with the go command into b.dir and
// returns the binary's path.
func (b *bench) buildHello() (string, error) {
	dir := filepath.Join(b.dir, "hello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(helloSource), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hello")
	c := exec.Command("go", "build", "-o", bin, ".")
	c.Dir = dir
	c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// timeRun runs c, which must exit 0, and returns its wall time from start
// to reaped.
func timeRun(c *exec.Cmd) (time.Duration, error) {
	t := time.Now()
	err := runChecked(c)
	return time.Since(t), err
}

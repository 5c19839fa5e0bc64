package main

import (
	"bufio"
	"debug/buildinfo"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// row is one line of the report's table.
type row struct {
	figure   string
	measured string
	target   string // "" when the project sets none
	ok       string // "yes" or "**NO**"; "" when there is no target
	stable   bool   // a CPU-time figure, listed first
}

// stats summarizes a sample of durations.
type stats struct{ p50, p90, p99, max time.Duration }

// summarize returns the nearest-rank percentiles of xs, which it sorts.
func summarize(xs []time.Duration) stats {
	slices.Sort(xs)
	pct := func(p float64) time.Duration {
		k := int(math.Ceil(p / 100 * float64(len(xs))))
		return xs[min(max(k, 1), len(xs))-1]
	}
	return stats{p50: pct(50), p90: pct(90), p99: pct(99), max: xs[len(xs)-1]}
}

// latency formats s as "p50 · p99 · max" in milliseconds.
func (s stats) latency() string {
	return fmt.Sprintf("p50 %s · p99 %s · max %s ms", ms(s.p50), ms(s.p99), ms(s.max))
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**NO**"
}

// header describes the machine, the binary and the run, for above the
// table.
func (b *bench) header() ([]string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	model, cpus := cpuInfo()
	goVersion := "unknown"
	if bi, err := buildinfo.ReadFile(b.cfg.keepgpu); err == nil {
		goVersion = bi.GoVersion
	}
	return []string{
		"date: " + time.Now().Format("2006-01-02 15:04:05 -0700"),
		fmt.Sprintf("system: %s %s %s", unix.ByteSliceToString(u.Sysname[:]),
			unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:])),
		fmt.Sprintf("CPU: %s × %d", model, cpus),
		"Go: " + goVersion + " (keepgpu's build)",
		fmt.Sprintf("GPU: none — the project's fake driver libraries (internal/fakegpu), %d GPUs, holder --vram %s", gpus, vram),
		fmt.Sprintf("holding: `keepgpu hold --gpus all --vram %s --util %s` on fake nodes of %v GPUs, %d runs per count%s; "+
			"CPU of all the holder's threads (schedstat) and launches the fake driver counted, over %s after %s of settling, "+
			"median; then SIGTERM at a random point of the 100 ms cycle → exit; likewise the holder of "+
			"`keepgpu wrap --busy-threshold -1 -- sleep` with a foreign compute process (not of the command's tree) on each of its GPUs; "+
			"the nodes' state in %s",
			holdVRAM, holdUtil, holdCounts, b.cfg.holdReps, baselineNote(b.cfg.baseline), b.cfg.holdFor, holdSettle, holdPlace()),
		fmt.Sprintf("handoffs: %d per ready source, each a fresh `keepgpu wrap`; the signal comes at a random point "+
			"of the holder's 100 ms keep-alive cycle after it holds both GPUs; p50 · p99 · max", b.cfg.n),
		fmt.Sprintf("start-up: %d runs each of `true`, `keepgpu wrap -- true`, `keepgpu version`, `tini -s -- true`, `dumb-init true` "+
			"(where installed) and two Go hello worlds built here (static, and linked as keepgpu is), interleaved%s; "+
			"differences and ratios paired within each turn", b.cfg.runs, startupBaselineNote(b.cfg.baseline)),
		fmt.Sprintf("throughput: %d MiB of log lines from the wrapped command, read in 1 MiB reads, %d runs per variant, "+
			"interleaved: median (min–max), first read to EOF; keepgpu's own CPU: the wrapper's user+sys time "+
			"(start-up included) per GiB; MB = 10⁶ bytes", b.cfg.mib, b.cfg.reps),
	}, nil
}

// holdPlace names the file system of the holding runs' fake nodes.
func holdPlace() string {
	if holdDir() == "/dev/shm" {
		return "/dev/shm (tmpfs: the fake driver rewrites a record file at every launch)"
	}
	return "the temporary directory"
}

// baselineNote says which binary "baseline" figures come from.
func baselineNote(path string) string {
	if path == "" {
		return ""
	}
	return " and binary, taking turns with the baseline " + path
}

// startupBaselineNote says that the baseline binary's wrap and version
// runs take their turns too.
func startupBaselineNote(path string) string {
	if path == "" {
		return ""
	}
	return ", the baseline " + path + " taking its turns with `wrap -- true` and `version` too"
}

// cpuInfo returns the first CPU model name in /proc/cpuinfo and the number
// of processors listed there.
func cpuInfo() (model string, n int) {
	model = "unknown"
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return model, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		switch strings.TrimSpace(key) {
		case "processor":
			n++
		case "model name":
			if n == 1 {
				model = strings.TrimSpace(value)
			}
		}
	}
	return model, n
}

// printReport prints the header lines as a list, then the table.
func printReport(w io.Writer, header []string, rows []row) {
	fmt.Fprintln(w, "## keepgpu benchmark")
	fmt.Fprintln(w)
	for _, h := range header {
		fmt.Fprintln(w, "- "+h)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | measured | target | ok? |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rows {
		target := r.target
		if target == "" {
			target = "–"
		}
		ok := r.ok
		if ok == "" {
			ok = "–"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.figure, r.measured, target, ok)
	}
}

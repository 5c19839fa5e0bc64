package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// markerRatio is the target for stdout throughput through --ready-marker,
// as a fraction of a plain pipe's.
const markerRatio = 0.8

// marker is the --ready-marker text of the throughput runs.
const marker = "ready for GPU"

// Targets for the wrapper's CPU time per GiB relayed through --ready-marker.
const (
	relayBeforeLimit = 0.3 // s/GiB while it scans
	relayAfterLimit  = 0.1 // s/GiB after the match
)

// How a variant runs the writing command.
const (
	direct  = "direct"  // straight into the reader's pipe
	viaCat  = "cat"     // through `cat`: one more pipe, for reference
	wrapped = "wrapped" // under keepgpu wrap
)

// variant is one way of running the writing command.
type variant struct {
	label string
	how   string   // direct, viaCat or wrapped
	flags []string // wrap flags
	first string   // a first line the command writes
	limit float64  // the target ratio to the plain pipe; 0 for none
	note  string   // what to expect where there is no target
	relay string   // "before" or "after" the match: a relay CPU figure
	bin   string   // the keepgpu binary; "" for the one under test
}

// variants are the ways the writing command runs: the plain pipe first and
// the pipe through `cat` second, the bases of the ratios.
var variants = []variant{
	{label: "plain pipe (no keepgpu)", how: direct},
	{label: "plain pipe through `cat` (one more hop, for reference)", how: viaCat},
	{label: "`wrap` without a marker", how: wrapped, note: "≈ 1× plain: the same pipe, untouched"},
	{label: "`wrap --ready-marker`, never matches", how: wrapped, flags: []string{"--ready-marker", marker}, limit: markerRatio,
		relay: "before"},
	{label: "`wrap --ready-marker`, match in the first line", how: wrapped, flags: []string{"--ready-marker", marker},
		first: "bench: " + marker, limit: markerRatio, relay: "after"},
}

// variants returns the variants to run: the baseline binary's marker
// variants too, if there is one.
func (b *bench) variants() []variant {
	vs := append([]variant{}, variants...)
	if b.cfg.baseline != "" {
		for _, v := range variants {
			if v.relay != "" {
				v.label += ", baseline"
				v.bin = b.cfg.baseline
				vs = append(vs, v)
			}
		}
	}
	return vs
}

// throughput measures how fast the command's stdout reaches a reader
// through each variant, b.cfg.reps times each, the variants taking turns.
// For keepgpu wrap it also reads the CPU time the wrapper itself spent per
// GiB, a cost that does not depend on how the scheduler placed the pipe's
// ends.
func (b *bench) throughput() ([]row, error) {
	variants := b.variants()
	size := int64(b.cfg.mib) << 20
	fmt.Fprintf(b.log, "bench: stdout throughput, %d MiB × %d per variant\n", b.cfg.mib, b.cfg.reps)
	rates := make([][]float64, len(variants))
	cpu := make([][]float64, len(variants)) // wrapper CPU seconds per GiB
	for r := 0; r < b.cfg.reps; r++ {
		for i, v := range variants {
			rate, used, err := b.pipeRate(v, size)
			if err != nil {
				return nil, fmt.Errorf("throughput %s: %w", v.label, err)
			}
			rates[i] = append(rates[i], rate)
			cpu[i] = append(cpu[i], used.Seconds()*float64(1<<30)/float64(size))
		}
	}
	var rows []row
	for i, v := range variants {
		if v.relay == "" || v.bin != "" {
			continue
		}
		limit := relayBeforeLimit
		if v.relay == "after" {
			limit = relayAfterLimit
		}
		c := median(cpu[i])
		r := row{stable: true, figure: "`--ready-marker` relay CPU (the wrapper's), " + v.relay + " the match",
			measured: fmt.Sprintf("%.3f s/GiB", c), target: fmt.Sprintf("≤ %.1f s/GiB", limit), ok: verdict(c <= limit)}
		for j, w := range variants {
			if w.bin != "" && w.relay == v.relay {
				r.measured += fmt.Sprintf(" (baseline %.3f)", median(cpu[j]))
			}
		}
		rows = append(rows, r)
	}
	plain, cat := median(rates[0]), median(rates[1]) // median sorts
	for i, v := range variants {
		rate := median(rates[i])
		r := row{figure: "stdout throughput: " + v.label,
			measured: fmt.Sprintf("%.0f MB/s (%.0f–%.0f)", rate/1e6, rates[i][0]/1e6, rates[i][len(rates[i])-1]/1e6)}
		if v.how != direct {
			r.measured += fmt.Sprintf(" = %.2f× plain", rate/plain)
		}
		if v.how == wrapped {
			r.measured += fmt.Sprintf(", %.2f× `cat`; keepgpu's own CPU %.2f s/GiB", rate/cat, median(cpu[i]))
		}
		if v.limit > 0 {
			r.target = fmt.Sprintf("≥ %.1f× plain", v.limit)
			r.ok = verdict(rate/plain >= v.limit)
		} else {
			r.target = v.note
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// pipeRate runs the writing command as v says, reads its stdout from a
// pipe and returns the bytes per second from the first read to EOF and,
// under keepgpu wrap, the CPU time the wrapper used.
func (b *bench) pipeRate(v variant, size int64) (rate float64, wrapperCPU time.Duration, err error) {
	env := []string{childEnv + "=write", bytesEnv + "=" + strconv.FormatInt(size, 10), firstEnv + "=" + v.first}
	var c *exec.Cmd
	switch v.how {
	case direct:
		c = exec.Command(b.self)
	case viaCat:
		c = exec.Command("sh", "-c", `"$0" | cat`, b.self)
	case wrapped:
		bin := v.bin
		if bin == "" {
			bin = b.cfg.keepgpu
		}
		c = b.wrapWith(bin, v.flags, env, b.self)
	}
	if v.how != wrapped {
		c.Env = append(append([]string{}, b.env...), env...)
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := c.Start(); err != nil {
		return 0, 0, err
	}
	n, d, rerr := drain(out)
	if v.how == wrapped && rerr == nil {
		// EOF: keepgpu, which holds its stdout open to the end, has
		// exited; unreaped, its /proc entry still has its own CPU times.
		wrapperCPU, rerr = cpuTime(c.Process.Pid)
	}
	if err := c.Wait(); err != nil {
		return 0, 0, cmdError(c, err, stderr.String())
	}
	if rerr != nil {
		return 0, 0, rerr
	}
	want := size
	if v.first != "" {
		want += int64(len(v.first) + 1)
	}
	if n.total != want {
		return 0, 0, fmt.Errorf("read %d bytes, want %d", n.total, want)
	}
	if n.timed == 0 {
		return 0, 0, errors.New("everything came in one read: write more (-mib)")
	}
	return float64(n.timed) / d.Seconds(), wrapperCPU, nil
}

// cpuTime reads the user and system time process pid used itself, without
// its children, from /proc/PID/stat (in USER_HZ, 100 per second on Linux).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces, start
	// with the state (field 3); utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / 100, nil
}

// counts are the bytes drain read: all of them, and those after the first
// read, which its duration covers.
type counts struct{ total, timed int64 }

// drain reads r to EOF in 1 MiB reads and returns the bytes read and the
// time from the end of the first read to EOF.
func drain(r io.Reader) (counts, time.Duration, error) {
	buf := make([]byte, 1<<20)
	var n counts
	var first time.Time
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if n.total == 0 {
				first = time.Now()
			} else {
				n.timed += int64(k)
			}
			n.total += int64(k)
		}
		if err == io.EOF {
			return n, time.Since(first), nil
		}
		if err != nil {
			return n, 0, fmt.Errorf("read stdout: %w", err)
		}
	}
}

// median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

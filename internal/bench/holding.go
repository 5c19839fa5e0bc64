package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// holdCounts are the numbers of fake GPUs a holder holds in the holding
// runs.
var holdCounts = []int{1, 8, 16}

// Targets of the holding runs.
const (
	holdCPULimit      = 2.0  // ms of CPU per second per held GPU
	holdLaunchLimit   = 20.0 // kernel launches per second per GPU
	holdVRAM          = "64MiB"
	holdUtil          = "30"
	holdSettle        = 500 * time.Millisecond // after the holder holds, before measuring
	releaseFreedLimit = 10 * time.Millisecond  // p99 of SIGTERM → exited; DESIGN's handoff target
)

// binary is one keepgpu binary under test: this build, or the -baseline.
type binary struct{ label, path string }

func (b *bench) binaries() []binary {
	bins := []binary{{"this build", b.cfg.keepgpu}}
	if b.cfg.baseline != "" {
		bins = append(bins, binary{"baseline", b.cfg.baseline})
	}
	return bins
}

// holdSample is what one holding run measured.
type holdSample struct {
	cpu      float64       // ms of holder CPU per second per GPU
	launches float64       // kernel launches per second per GPU
	release  time.Duration // SIGTERM → holder exited
}

// holding runs `keepgpu hold --util 30` on fake nodes of 1, 8 and 16 GPUs,
// b.cfg.holdReps times each, every binary taking its turn: the holder's
// CPU time (all its threads, from /proc/PID/task/*/schedstat) and the
// kernel launches the fake driver counted over b.cfg.holdFor, then SIGTERM
// at a random point of the duty cycle and the time until the holder exited.
func (b *bench) holding() ([]row, error) {
	bins := b.binaries()
	dir, err := os.MkdirTemp(holdDir(), "kgbhold")
	if err != nil {
		return nil, fmt.Errorf("holding: %w", err)
	}
	defer os.RemoveAll(dir)
	nodes := map[int]*fakegpu.Node{}
	for _, n := range holdCounts {
		node, err := fakegpu.NewNode(filepath.Join(dir, "node"+strconv.Itoa(n)), b.node.LibDir, n)
		if err != nil {
			return nil, fmt.Errorf("holding: %w", err)
		}
		nodes[n] = node
	}
	fmt.Fprintf(b.log, "bench: holding %v fake GPUs, %s × %d per binary\n", holdCounts, b.cfg.holdFor, b.cfg.holdReps)
	samples := map[string]map[int][]holdSample{}
	for _, bin := range bins {
		samples[bin.label] = map[int][]holdSample{}
	}
	for r := 0; r < b.cfg.holdReps; r++ {
		for _, n := range holdCounts {
			for _, bin := range bins {
				s, err := b.holdOnce(bin.path, nodes[n], n)
				if err != nil {
					return nil, fmt.Errorf("holding %d GPUs with %s: %w", n, bin.path, err)
				}
				samples[bin.label][n] = append(samples[bin.label][n], s)
			}
		}
	}
	pick := func(label string, n int, f func(holdSample) float64) float64 {
		var xs []float64
		for _, s := range samples[label][n] {
			xs = append(xs, f(s))
		}
		return median(xs)
	}
	cpu := func(s holdSample) float64 { return s.cpu }
	launches := func(s holdSample) float64 { return s.launches }
	var rows []row
	for _, n := range holdCounts {
		c, l := pick(bins[0].label, n, cpu), pick(bins[0].label, n, launches)
		rc := row{stable: true, figure: fmt.Sprintf("holder CPU per held GPU, `hold --util 30`, %d fake GPU(s)", n),
			measured: fmt.Sprintf("%.2f ms/s", c), target: fmt.Sprintf("≤ %.0f ms/s", holdCPULimit), ok: verdict(c <= holdCPULimit)}
		rl := row{stable: true, figure: fmt.Sprintf("kernel launches per second per GPU, %d fake GPU(s)", n),
			measured: fmt.Sprintf("%.1f", l), target: fmt.Sprintf("≤ %.0f", holdLaunchLimit), ok: verdict(l <= holdLaunchLimit)}
		if len(bins) > 1 {
			rc.measured += fmt.Sprintf(" (baseline %.2f)", pick(bins[1].label, n, cpu))
			rl.measured += fmt.Sprintf(" (baseline %.1f)", pick(bins[1].label, n, launches))
		}
		rows = append(rows, rc, rl)
	}
	tree, err := b.treeWatch(dir)
	if err != nil {
		return nil, err
	}
	rows = append(rows, tree)
	for _, n := range holdCounts {
		st := func(label string) stats {
			var ds []time.Duration
			for _, s := range samples[label][n] {
				ds = append(ds, s.release)
			}
			return summarize(ds)
		}
		s := st(bins[0].label)
		r := row{figure: fmt.Sprintf("SIGTERM → holder exited (every byte freed), %d fake GPU(s)", n), measured: s.latency(),
			target: "p99 ≤ " + ms(releaseFreedLimit) + " ms", ok: verdict(s.p99 <= releaseFreedLimit)}
		if len(bins) > 1 {
			r.measured += " (baseline " + st(bins[1].label).latency() + ")"
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// holdOnce runs one holder of every GPU of node (n of them), measures it
// over b.cfg.holdFor and stops it with SIGTERM.
func (b *bench) holdOnce(bin string, node *fakegpu.Node, n int) (holdSample, error) {
	var s holdSample
	c := exec.Command(bin, "hold", "--gpus", "all", "--vram", holdVRAM, "--util", holdUtil)
	c.Env = append(append(cleanEnv(), node.Env()...), "XDG_RUNTIME_DIR="+b.dir)
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		return s, err
	}
	defer func() {
		c.Process.Kill()
		c.Wait()
	}()
	pid := c.Process.Pid
	if err := waitHolds(node, pid, n); err != nil {
		return s, cmdError(c, err, stderr.String())
	}
	time.Sleep(holdSettle)
	cpu0, err := threadsCPU(pid)
	if err != nil {
		return s, err
	}
	l0, err := launches(node, pid, n)
	if err != nil {
		return s, err
	}
	t0 := time.Now()
	time.Sleep(b.cfg.holdFor)
	cpu1, err := threadsCPU(pid)
	if err != nil {
		return s, err
	}
	l1, err := launches(node, pid, n)
	if err != nil {
		return s, err
	}
	el := time.Since(t0).Seconds()
	s.cpu = (cpu1 - cpu0).Seconds() * 1000 / el / float64(n)
	s.launches = float64(l1-l0) / el / float64(n)

	time.Sleep(rand.N(dutyWindow))
	fd, err := openPidfd(pid)
	if err != nil {
		return s, err
	}
	defer fd.close()
	t := monotonic()
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		return s, err
	}
	exited, err := fd.wait()
	if err != nil {
		return s, err
	}
	s.release = time.Duration(exited - t)
	if err := c.Wait(); err != nil {
		return s, cmdError(c, err, stderr.String())
	}
	for gpu := 0; gpu < n; gpu++ {
		procs, err := node.Procs(gpu)
		if err != nil {
			return s, err
		}
		for _, p := range procs {
			if p.PID == pid && p.Bytes > 0 {
				return s, fmt.Errorf("gpu %d: holder %d exited with %d bytes recorded", gpu, pid, p.Bytes)
			}
		}
	}
	return s, nil
}

// holdDir is where the fake nodes of the holding runs live: in memory
// (/dev/shm) where there is such a file system. The fake driver rewrites a
// process's record file at every kernel launch (new file, rename): on a
// disk file system that costs the holder more CPU than all the rest of a
// window's work, and a real driver has no such cost.
func holdDir() string {
	if f, err := os.CreateTemp("/dev/shm", "kgbprobe"); err == nil {
		f.Close()
		os.Remove(f.Name())
		return "/dev/shm"
	}
	return ""
}

// waitHolds waits until pid holds memory on each of node's n GPUs.
func waitHolds(node *fakegpu.Node, pid, n int) error {
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
		held := 0
		for gpu := 0; gpu < n; gpu++ {
			procs, err := node.Procs(gpu)
			if err != nil {
				return err
			}
			for _, p := range procs {
				if p.PID == pid && p.Bytes > 0 {
					held++
				}
			}
		}
		if held == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("holder %d holds %d of %d GPUs after %s", pid, held, n, waitLimit)
		}
	}
}

// launches sums the kernel launches the fake driver recorded for pid.
func launches(node *fakegpu.Node, pid, n int) (int, error) {
	sum := 0
	for gpu := 0; gpu < n; gpu++ {
		procs, err := node.Procs(gpu)
		if err != nil {
			return 0, err
		}
		for _, p := range procs {
			if p.PID == pid {
				sum += p.Launches
			}
		}
	}
	return sum, nil
}

// threadsCPU sums the time on CPU of every live thread of pid, in
// nanoseconds, from /proc/PID/task/*/schedstat.
func threadsCPU(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread is gone
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/task/%s/schedstat: %w", pid, t.Name(), err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// treeGPUs is the number of fake GPUs of the tree-watch runs.
const treeGPUs = 2

// treeWatch measures the holder of `keepgpu wrap` (which matches every held
// GPU's compute processes against the command's process tree every window)
// with a foreign compute process on each GPU, whose ancestry is not the
// command's: its CPU per held GPU, every binary taking its turn,
// b.cfg.holdReps times. --busy-threshold -1 keeps the kernel running
// beside the foreign process.
func (b *bench) treeWatch(dir string) (row, error) {
	r := row{stable: true, figure: fmt.Sprintf("holder CPU per held GPU under `wrap --busy-threshold -1 -- sleep`, "+
		"a foreign compute process on each of %d fake GPUs (the command's tree matched every window)", treeGPUs),
		target: fmt.Sprintf("≤ %.0f ms/s", holdCPULimit)}
	node, err := fakegpu.NewNode(filepath.Join(dir, "tree"), b.node.LibDir, treeGPUs)
	if err != nil {
		return r, fmt.Errorf("tree watch: %w", err)
	}
	foreign := exec.Command("sleep", "3600")
	if err := foreign.Start(); err != nil {
		return r, fmt.Errorf("tree watch: %w", err)
	}
	defer func() {
		foreign.Process.Kill()
		foreign.Wait()
	}()
	for gpu := 0; gpu < treeGPUs; gpu++ {
		if err := node.AddProcess(gpu, foreign.Process.Pid, 1<<20); err != nil {
			return r, fmt.Errorf("tree watch: %w", err)
		}
	}
	fmt.Fprintf(b.log, "bench: holder under wrap, a foreign process on each of %d fake GPUs, %s × %d per binary\n", treeGPUs, b.cfg.holdFor, b.cfg.holdReps)
	bins := b.binaries()
	cpu := make([][]float64, len(bins))
	for rep := 0; rep < b.cfg.holdReps; rep++ {
		for i, bin := range bins {
			c, err := b.treeWatchOnce(bin.path, node)
			if err != nil {
				return r, fmt.Errorf("tree watch with %s: %w", bin.path, err)
			}
			cpu[i] = append(cpu[i], c)
		}
	}
	m := median(cpu[0])
	r.measured, r.ok = fmt.Sprintf("%.2f ms/s", m), verdict(m <= holdCPULimit)
	if len(bins) > 1 {
		r.measured += fmt.Sprintf(" (baseline %.2f)", median(cpu[1]))
	}
	return r, nil
}

// treeWatchOnce runs `keepgpu wrap` around a sleep on node and returns its
// holder's CPU per held GPU over b.cfg.holdFor, in ms/s.
func (b *bench) treeWatchOnce(bin string, node *fakegpu.Node) (float64, error) {
	c := exec.Command(bin, "wrap", "--quiet", "--gpus", "all", "--vram", holdVRAM, "--util", holdUtil, "--busy-threshold", "-1", "--", "sleep", "3600")
	c.Env = append(append(cleanEnv(), node.Env()...), "XDG_RUNTIME_DIR="+b.dir)
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		return 0, err
	}
	defer func() {
		c.Process.Signal(syscall.SIGTERM) // forwarded to the sleep; keepgpu exits with it
		c.Wait()
	}()
	holder, err := waitHolder(node, c.Process.Pid, treeGPUs)
	if err != nil {
		return 0, cmdError(c, err, stderr.String())
	}
	time.Sleep(holdSettle)
	cpu0, err := threadsCPU(holder)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(b.cfg.holdFor)
	cpu1, err := threadsCPU(holder)
	if err != nil {
		return 0, err
	}
	return (cpu1 - cpu0).Seconds() * 1000 / time.Since(t0).Seconds() / treeGPUs, nil
}

// waitHolder waits until a child of wrapper holds memory on each of node's
// n GPUs, and returns its pid.
func waitHolder(node *fakegpu.Node, wrapper, n int) (int, error) {
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
		procs, err := node.Procs(0)
		if err != nil {
			return 0, err
		}
		for _, p := range procs {
			if p.Bytes > 0 && parentOf(p.PID) == wrapper && waitHolds(node, p.PID, n) == nil {
				return p.PID, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no holder of wrapper %d holds %d GPUs after %s", wrapper, n, waitLimit)
		}
	}
}

// parentOf returns pid's parent, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Targets for resident memory, in bytes (MB = 10⁶ bytes).
const (
	wrapperMemLimit = 15e6
	holderMemLimit  = 40e6
)

// mem is a process's resident memory now and at its peak, in bytes.
type mem struct{ rss, hwm uint64 }

// memory reads the resident memory of the wrapper and of the holder of
// `keepgpu wrap -- sleep S` halfway through, while both GPUs are held.
func (b *bench) memory() ([]row, error) {
	secs := strconv.FormatFloat(b.cfg.sleep.Seconds(), 'f', -1, 64)
	fmt.Fprintf(b.log, "bench: memory of keepgpu wrap -- sleep %s\n", secs)
	c := b.wrap(nil, nil, "sleep", secs)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	start := time.Now()
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	wrapper, holder, err := func() (w, h mem, err error) {
		pid, err := findHolder(b.node)
		if err != nil {
			return w, h, err
		}
		time.Sleep(time.Until(start.Add(b.cfg.sleep / 2)))
		if w, err = readMem(c.Process.Pid); err != nil {
			return w, h, err
		}
		h, err = readMem(pid)
		return w, h, err
	}()
	if werr := c.Wait(); werr != nil {
		return nil, fmt.Errorf("memory: %w", cmdError(c, werr, stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	return []row{
		memRow("wrapper memory (`keepgpu wrap -- sleep "+secs+"`)", wrapper, wrapperMemLimit),
		memRow("holder memory (holding 2 GPUs)", holder, holderMemLimit),
	}, nil
}

func memRow(figure string, m mem, limit float64) row {
	return row{
		figure:   figure,
		measured: fmt.Sprintf("VmRSS %.1f MB · VmHWM %.1f MB", float64(m.rss)/1e6, float64(m.hwm)/1e6),
		target:   fmt.Sprintf("VmHWM ≤ %.0f MB", limit/1e6),
		ok:       verdict(float64(m.hwm) <= limit),
	}
}

// readMem reads VmRSS and VmHWM from /proc/PID/status.
func readMem(pid int) (mem, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	var m mem
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		var dst *uint64
		switch key {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return mem{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, key, err)
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return mem{}, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return m, nil
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// pollPeriod is the --poll of the polling-only file source.
const pollPeriod = 50 * time.Millisecond

// source is one way of saying ready: the child role that gives the signal
// and the wrap flags that listen for it.
type source struct {
	role  string
	label string
	flags func(dir string) []string // dir: a fresh directory of this run
	limit time.Duration             // the target for p99; 0 for none
}

var sources = []source{
	{"file", "file `--ready-file` (inotify)", func(dir string) []string {
		return []string{"--ready-file", filepath.Join(dir, "ready")}
	}, 10 * time.Millisecond},
	{"poll", "file `--poll-only --poll 50ms`", func(dir string) []string {
		return []string{"--ready-file", filepath.Join(dir, "ready"), "--poll-only", "--poll", pollPeriod.String()}
	}, pollPeriod + 10*time.Millisecond},
	{"fifo", "FIFO `--ready-fifo`", func(dir string) []string {
		return []string{"--ready-fifo", filepath.Join(dir, "fifo")}
	}, 10 * time.Millisecond},
	{"marker", "marker `--ready-marker`", func(string) []string {
		return []string{"--ready-marker", marker}
	}, 10 * time.Millisecond},
	{"ready", "`keepgpu ready`", func(string) []string { return nil }, 10 * time.Millisecond},
	{"signal", "signal `--ready-signal USR2`", func(string) []string {
		return []string{"--ready-signal", "USR2"}
	}, 10 * time.Millisecond},
	{"exit", "command exit", func(string) []string { return nil }, 0},
}

// handoffs measures ready signal → holder exited, b.cfg.n times for each
// source, the sources taking turns so that drift touches all alike.
func (b *bench) handoffs() ([]row, error) {
	release := make(map[string][]time.Duration)
	var returned []time.Duration // `keepgpu ready` returning
	gone := 0                    // times the holder had exited when it returned
	for i := 0; i < b.cfg.n; i++ {
		if i%25 == 0 {
			fmt.Fprintf(b.log, "bench: handoffs %d/%d per source\n", i, b.cfg.n)
		}
		for _, s := range sources {
			h, err := b.handoff(s, i)
			if err != nil {
				return nil, fmt.Errorf("handoff %s #%d: %w", s.role, i, err)
			}
			release[s.role] = append(release[s.role], h.release)
			if s.role == "ready" {
				returned = append(returned, h.returned)
				if h.holderGone {
					gone++
				}
			}
		}
	}
	var rows []row
	for _, s := range sources {
		st := summarize(release[s.role])
		r := row{figure: "ready → holder exited: " + s.label, measured: st.latency()}
		if s.limit > 0 {
			r.target = "p99 ≤ " + ms(s.limit) + " ms"
			r.ok = verdict(st.p99 <= s.limit)
		}
		rows = append(rows, r)
		if s.role == "ready" {
			rows = append(rows, row{figure: "`keepgpu ready` called → returned",
				measured: fmt.Sprintf("%s; holder gone at return %d/%d", summarize(returned).latency(), gone, len(returned)),
				target:   "returns after the holder exited", ok: verdict(gone == len(returned))})
		}
	}
	return rows, nil
}

// handoffResult is what one handoff measured.
type handoffResult struct {
	release    time.Duration // ready signal → holder exited
	returned   time.Duration // for "ready": → `keepgpu ready` returned
	holderGone bool          // for "ready": the holder had exited by then
}

// handoff runs one `keepgpu wrap` for source s.
func (b *bench) handoff(s source, i int) (handoffResult, error) {
	var h handoffResult
	dir := filepath.Join(b.dir, "ready", s.role+strconv.Itoa(i))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return h, err
	}
	defer os.RemoveAll(dir)
	result := filepath.Join(dir, "result")
	c := b.wrap(s.flags(dir), []string{childEnv + "=" + s.role, resultEnv + "=" + result}, b.self)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	var exited int64 // for "exit": when the holder exited, seen from here
	var err error
	if s.role == "exit" {
		exited, err = b.exitHandoff(c)
	} else {
		err = c.Run()
	}
	if err != nil {
		return h, cmdError(c, err, stderr.String())
	}
	data, err := os.ReadFile(result)
	if err != nil {
		return h, fmt.Errorf("child result: %w", err)
	}
	if s.role == "exit" {
		var t0 int64
		if _, err := fmt.Sscan(string(data), &t0); err != nil {
			return h, fmt.Errorf("child result %q: %w", data, err)
		}
		h.release = time.Duration(exited - t0)
		return h, nil
	}
	var rel, ret, gone int64
	if _, err := fmt.Sscan(string(data), &rel, &ret, &gone); err != nil {
		return h, fmt.Errorf("child result %q: %w", data, err)
	}
	h.release, h.returned, h.holderGone = time.Duration(rel), time.Duration(ret), gone == 1
	return h, nil
}

// exitHandoff runs c, whose command exits once it reads a byte on stdin.
// It finds the holder first and returns the CLOCK_MONOTONIC time at which
// the holder exited: the command's exit is the ready signal, so the
// command cannot watch for it itself.
func (b *bench) exitHandoff(c *exec.Cmd) (exited int64, err error) {
	stdin, err := c.StdinPipe()
	if err != nil {
		return 0, err
	}
	if err := c.Start(); err != nil {
		return 0, err
	}
	defer func() {
		stdin.Close() // on failure, the command exits at EOF
		if werr := c.Wait(); err == nil {
			err = werr
		}
	}()
	pid, err := findHolder(b.node)
	if err != nil {
		return 0, err
	}
	fd, err := openPidfd(pid)
	if err != nil {
		return 0, err
	}
	defer fd.close()
	time.Sleep(phase())
	if _, err := stdin.Write([]byte{'\n'}); err != nil {
		return 0, fmt.Errorf("tell the command to exit: %w", err)
	}
	return fd.wait()
}

package main

import (
	"fmt"
	"os/exec"
	"time"
)

// overheadLimit is the target for the median extra wall time of
// `keepgpu wrap -- true` over `true`.
const overheadLimit = 5 * time.Millisecond

// overhead times `true` and `keepgpu wrap -- true` (on the fake node, so
// the holder starts as it would on a GPU node), b.cfg.runs times each,
// alternating to cancel drift. `keepgpu version` takes its turn too: the
// cost of starting the binary at all.
func (b *bench) overhead() ([]row, error) {
	fmt.Fprintf(b.log, "bench: true vs keepgpu wrap -- true, %d runs each\n", b.cfg.runs)
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	var plain, version, wrapped, diff []time.Duration
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
		diff = append(diff, w-p)
	}
	wall := func(s stats) string { return fmt.Sprintf("p50 %s · p90 %s ms", ms(s.p50), ms(s.p90)) }
	d := summarize(diff)
	return []row{
		{figure: "`true` wall time", measured: wall(summarize(plain))},
		{figure: "`keepgpu version` wall time (starting the binary, for reference)", measured: wall(summarize(version))},
		{figure: "`keepgpu wrap -- true` wall time (fake node, 2 GPUs)", measured: wall(summarize(wrapped))},
		{figure: "`wrap -- true` − `true` (median of paired differences)", measured: "+" + ms(d.p50) + " ms",
			target: "≤ +" + ms(overheadLimit) + " ms", ok: verdict(d.p50 <= overheadLimit)},
	}, nil
}

// timeRun runs c, which must exit 0, and returns its wall time from start
// to reaped.
func timeRun(c *exec.Cmd) (time.Duration, error) {
	t := time.Now()
	err := runChecked(c)
	return time.Since(t), err
}

// Command bench measures keepgpu wrap against the project's fake GPU
// driver (internal/fakegpu) and prints a Markdown table of the figures next
// to the project's targets:
//
//   - first the stable figures, CPU time: the holder's per held GPU and its
//     kernel launches per GPU on 1, 8 and 16 fake GPUs, and the wrapper's
//     per GiB relayed through --ready-marker, before and after the match;
//   - SIGTERM → holder exited;
//   - ready signal → holder exited, for every ready source;
//   - the wall time of `keepgpu wrap -- true` against `true`, `tini -s --
//     true` and `dumb-init true`, and of `keepgpu version` against a Go
//     hello world;
//   - stdout throughput through --ready-marker against a plain pipe;
//   - the memory of the wrapper and of the holder.
//
// Usage:
//
//	go run ./internal/bench -keepgpu PATH [-baseline PATH] [-n 100] [-runs 200] [-mib 1024] [-only STEPS]
//
// With -baseline, the holding and relay figures of a second binary (an
// earlier build) are measured too, the two binaries taking turns, and shown
// beside each figure.
//
// scripts/bench.sh builds keepgpu and runs this. The wrapped commands are
// this binary again, in a child role chosen by the KGBENCH_CHILD
// environment variable (see child.go).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// config is what one benchmark run measures and how much.
type config struct {
	keepgpu string        // the keepgpu binary under test
	n       int           // handoffs per ready source
	runs    int           // runs each of true and keepgpu wrap -- true
	mib     int           // MiB the command writes per throughput run
	reps    int           // throughput runs per variant
	sleep   time.Duration // how long the command of the memory run sleeps

	baseline string        // a keepgpu binary to compare with; "" for none
	holdFor  time.Duration // how long each holding run is measured
	holdReps int           // holding runs per GPU count and binary
	only     string        // comma-separated steps to run; "" for all
}

func main() {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(child(role))
	}
	cfg := config{}
	flag.StringVar(&cfg.keepgpu, "keepgpu", "", "the keepgpu binary to measure (required)")
	flag.IntVar(&cfg.n, "n", 100, "handoffs per ready source")
	flag.IntVar(&cfg.runs, "runs", 200, "runs each of true and keepgpu wrap -- true")
	flag.IntVar(&cfg.mib, "mib", 1024, "MiB written to stdout per throughput run")
	flag.IntVar(&cfg.reps, "reps", 9, "throughput runs per variant (the median is reported)")
	flag.DurationVar(&cfg.sleep, "sleep", 2*time.Second, "how long the command of the memory run sleeps")
	flag.StringVar(&cfg.baseline, "baseline", "", "a second keepgpu binary whose holding and relay figures are measured beside")
	flag.DurationVar(&cfg.holdFor, "hold", 3*time.Second, "how long each holding run is measured")
	flag.IntVar(&cfg.holdReps, "hold-reps", 5, "holding runs per GPU count and binary (the median is reported)")
	flag.StringVar(&cfg.only, "only", "", "run only these steps, comma-separated: holding, throughput, handoffs, overhead, memory")
	flag.Parse()
	if cfg.keepgpu == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: bench -keepgpu PATH [-baseline PATH] [-n N] [-runs N] [-mib N] [-reps N] [-sleep D] [-hold D] [-hold-reps N]")
		os.Exit(2)
	}
	if err := run(cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// run measures everything cfg asks for, reporting progress on log, and
// prints the report on out.
func run(cfg config, out, log io.Writer) error {
	if cfg.n < 1 || cfg.runs < 1 || cfg.mib < 1 || cfg.reps < 1 || cfg.holdReps < 1 || cfg.holdFor <= 0 {
		return fmt.Errorf("-n, -runs, -mib, -reps, -hold and -hold-reps must be at least 1")
	}
	b, err := newBench(cfg, log)
	if err != nil {
		return err
	}
	defer b.close()

	var rows []row
	steps := []struct {
		name string
		run  func() ([]row, error)
	}{{"holding", b.holding}, {"throughput", b.throughput}, {"handoffs", b.handoffs}, {"overhead", b.overhead}, {"memory", b.memory}}
	for _, step := range steps {
		if cfg.only != "" && !slices.Contains(strings.Split(cfg.only, ","), step.name) {
			continue
		}
		r, err := step.run()
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	h, err := b.header()
	if err != nil {
		return err
	}
	// The stable figures (CPU time) first, the wall-clock ones after.
	slices.SortStableFunc(rows, func(a, b row) int {
		switch {
		case a.stable && !b.stable:
			return -1
		case b.stable && !a.stable:
			return 1
		}
		return 0
	})
	printReport(out, h, rows)
	return nil
}

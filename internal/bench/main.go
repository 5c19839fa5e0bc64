// Command bench measures keepgpu wrap against the project's fake GPU
// driver (internal/fakegpu) and prints a Markdown table of the figures next
// to the project's targets:
//
//   - ready signal → holder exited, for every ready source;
//   - the wall time of `keepgpu wrap -- true` against `true`;
//   - stdout throughput through --ready-marker against a plain pipe;
//   - the memory of the wrapper and of the holder.
//
// Usage:
//
//	go run ./internal/bench -keepgpu PATH [-n 100] [-runs 200] [-mib 512]
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
}

func main() {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(child(role))
	}
	cfg := config{}
	flag.StringVar(&cfg.keepgpu, "keepgpu", "", "the keepgpu binary to measure (required)")
	flag.IntVar(&cfg.n, "n", 100, "handoffs per ready source")
	flag.IntVar(&cfg.runs, "runs", 200, "runs each of true and keepgpu wrap -- true")
	flag.IntVar(&cfg.mib, "mib", 512, "MiB written to stdout per throughput run")
	flag.IntVar(&cfg.reps, "reps", 7, "throughput runs per variant (the median is reported)")
	flag.DurationVar(&cfg.sleep, "sleep", 2*time.Second, "how long the command of the memory run sleeps")
	flag.Parse()
	if cfg.keepgpu == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: bench -keepgpu PATH [-n N] [-runs N] [-mib N] [-reps N] [-sleep D]")
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
	if cfg.n < 1 || cfg.runs < 1 || cfg.mib < 1 || cfg.reps < 1 {
		return fmt.Errorf("-n, -runs, -mib and -reps must be at least 1")
	}
	b, err := newBench(cfg, log)
	if err != nil {
		return err
	}
	defer b.close()

	var rows []row
	steps := []func() ([]row, error){b.handoffs, b.overhead, b.throughput, b.memory}
	for _, step := range steps {
		r, err := step()
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	h, err := b.header()
	if err != nil {
		return err
	}
	printReport(out, h, rows)
	return nil
}

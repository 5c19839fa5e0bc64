// Package holder is keepgpu's holder process: the one kind of keepgpu
// process that holds GPUs. It owns the holder's Spec and its encoding as a
// command line, Start (how a supervisor forks one), the event protocol a
// holder speaks on its stdout, and Run, the holder's own loop.
package holder

import (
	"strconv"
	"strings"
	"time"

	"github.com/keepgpu/keepgpu/keeper"
)

// Spec is what a holder holds and how. Args is its one encoding as a
// command line; `keepgpu hold` decodes that command line into a Spec again.
type Spec struct {
	GPUs          keeper.GPUs
	VRAM          keeper.VRAM
	Util          int           // percent of each window the keep-alive kernel runs, 0..100
	BusyThreshold int           // utilization not ours above which the kernel pauses; -1 never
	Interval      time.Duration // how often telemetry is read
	AllowPartial  bool          // keep the GPUs that started when others fail
	// Platform is whose GPUs to hold; "" leaves it to KEEP_GPU_PLATFORM in
	// the holder's environment, or auto.
	Platform keeper.Platform
	// TreeOf, when above 0, is the root of the wrapped command's process
	// tree: its processes are never foreign, and their use of a held GPU
	// releases it.
	TreeOf int
}

// options returns the keeper options the spec asks for.
func (s Spec) options() keeper.Options {
	return keeper.Options{
		VRAM:          s.VRAM,
		Util:          s.Util,
		BusyThreshold: s.BusyThreshold,
		Interval:      s.Interval,
		AllowPartial:  s.AllowPartial,
		Platform:      s.Platform,
	}
}

// Args is the holder's command line after argv[0]: `hold --supervised`
// told every setting explicitly, so that no KEEPGPU_* variable of the
// supervisor's environment can change it.
func (s Spec) Args() []string {
	args := []string{"hold", "--supervised",
		"--gpus", s.GPUs.String(), "--vram", s.VRAM.String(),
		"--util", strconv.Itoa(s.Util), "--busy-threshold", strconv.Itoa(s.BusyThreshold),
		"--interval", s.Interval.String()}
	if s.Platform != "" { // unset: the holder reads KEEP_GPU_PLATFORM, or takes auto
		args = append(args, "--platform", s.Platform.String())
	}
	if s.AllowPartial {
		args = append(args, "--allow-partial")
	}
	if s.TreeOf > 0 {
		args = append(args, "--tree-of", strconv.Itoa(s.TreeOf))
	}
	return args
}

// ParseArgs decodes the command line that Args writes (after argv[0]) into
// the Spec it encodes, without a command-line parser, so that a holder
// starts fast. ok is false for anything Args does not write, or not in its
// order, and for a value that does not parse: such a command line is left
// to the full parser of `keepgpu hold`, which decodes Args' command line
// into the same Spec.
func ParseArgs(args []string) (s Spec, ok bool) {
	const fixed = 12 // hold --supervised and five flags with their values
	if len(args) < fixed || args[0] != "hold" || args[1] != "--supervised" ||
		args[2] != "--gpus" || args[4] != "--vram" || args[6] != "--util" ||
		args[8] != "--busy-threshold" || args[10] != "--interval" {
		return Spec{}, false
	}
	var err error
	if s.GPUs, err = keeper.ParseGPUs(args[3]); err != nil {
		return Spec{}, false
	}
	if s.VRAM, err = keeper.ParseVRAM(args[5]); err != nil {
		return Spec{}, false
	}
	if s.Util, ok = decimal(args[7]); !ok {
		return Spec{}, false
	}
	if s.BusyThreshold, ok = decimal(args[9]); !ok {
		return Spec{}, false
	}
	iv, err := keeper.ParseInterval(args[11])
	if err != nil {
		return Spec{}, false
	}
	s.Interval = time.Duration(iv)
	rest := args[fixed:]
	if len(rest) >= 2 && rest[0] == "--platform" {
		if s.Platform, err = keeper.ParsePlatform(rest[1]); err != nil || string(s.Platform) != rest[1] {
			return Spec{}, false
		}
		rest = rest[2:]
	}
	if len(rest) > 0 && rest[0] == "--allow-partial" {
		s.AllowPartial, rest = true, rest[1:]
	}
	if len(rest) == 2 && rest[0] == "--tree-of" {
		if s.TreeOf, ok = decimal(rest[1]); !ok || s.TreeOf <= 0 {
			return Spec{}, false
		}
		rest = rest[2:]
	}
	if len(rest) > 0 {
		return Spec{}, false
	}
	return s, true
}

// decimal reads an integer as strconv.Itoa writes it, and nothing else
// ("010", "+1" and "0x1" are refused).
func decimal(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && strconv.Itoa(n) == s
}

// Env is environ less its KEEPGPU_* settings: the holder's environment,
// in which only its flags (see Args) say what to hold.
func Env(environ []string) []string {
	env := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "KEEPGPU_") {
			env = append(env, kv)
		}
	}
	return env
}

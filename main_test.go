package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
	"github.com/keepgpu/keepgpu/keeper"
)

// TestMain makes the test binary double as the keepgpu and fakegpu
// commands that the scripts run.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keepgpu": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
		"fakegpu": func() { os.Exit(fakegpu.Main(os.Args[1:], os.Stdout, os.Stderr)) },
		"sigs":    sigsMain,

		// KeepGPU's names for the same binary: run tells them apart.
		"keep-gpu":            func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
		"keep-gpu-mcp-server": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// sigsMain is `sigs LOG`: a command that records every signal it gets, one
// name per line in LOG, creates LOG.ready once it listens, and exits 0
// after SIGTERM.
func sigsMain() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sigs LOG")
		os.Exit(2)
	}
	c := make(chan os.Signal, 64)
	signal.Notify(c)
	log, err := os.OpenFile(os.Args[1], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[1]+".ready", nil, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for s := range c {
		sig := s.(syscall.Signal)
		if sig == syscall.SIGURG || sig == syscall.SIGCHLD {
			continue
		}
		name := unix.SignalName(sig)
		if name == "" {
			name = fmt.Sprintf("signal %d", int(sig))
		}
		fmt.Fprintln(log, name)
		if sig == syscall.SIGTERM {
			os.Exit(0)
		}
	}
}

// TestScripts runs testdata/script/*.txtar: the real binary, real child
// processes and signals, and the fake driver libraries in place of a GPU.
// Each script starts with FAKEGPU_DIR naming an empty node (no GPU) and
// LD_LIBRARY_PATH holding the fake libcuda.so.1 and libnvidia-ml.so.1
// (FAKEGPU_LIB, also FAKEGPU_CUDA_LIB; FAKEGPU_ROCM_LIB holds the fake HIP
// runtime and ROCm SMI). TestScriptsROCm runs many again on an AMD node.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(buildFakes(t), "cuda", "testdata/script", nil))
}

// scriptParams are the testscript settings of TestScripts and
// TestScriptsROCm: the scripts in dir (or files), on a node whose fake
// libraries are in libs, for platform (cuda or rocm: the scripts'
// KEEPGPU_TEST_PLATFORM, [cuda] and [rocm] conditions, and the libraries
// on LD_LIBRARY_PATH).
func scriptParams(libs fakeLibs, platform, dir string, files []string) testscript.Params {
	libDir := libs.cuda
	if platform == "rocm" {
		libDir = libs.rocm
	}
	return testscript.Params{
		Dir:       dir,
		Files:     files,
		Condition: func(cond string) (bool, error) { return platformCondition(platform, cond) },
		Setup: func(env *testscript.Env) error {
			env.Setenv("KEEPGPU_TEST_PLATFORM", platform)
			setUUIDs(env, platform)
			env.Setenv("FAKEGPU_DIR", filepath.Join(env.WorkDir, "node"))
			env.Setenv("FAKEGPU_LIB", libDir)
			env.Setenv("FAKEGPU_CUDA_LIB", libs.cuda)
			env.Setenv("FAKEGPU_ROCM_LIB", libs.rocm)
			env.Setenv("LD_LIBRARY_PATH", libDir)
			// Short socket paths: a Unix socket path has at most 107 bytes.
			tmp, err := os.MkdirTemp("", "kg")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(tmp) })
			env.Setenv("XDG_RUNTIME_DIR", tmp)
			// The race detector sleeps a second at exit by default, which
			// would make every release look a second slow.
			env.Setenv("GORACE", "atexit_sleep_ms=0")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"gpus":        cmdGPUs,
			"held":        cmdHeld,
			"killholders": cmdKillHolders,
			"free":        cmdFree,
			"freed":       cmdFreed,
			"running":     cmdRunning,
			"paused":      cmdPaused,
			"foreign":     cmdForeign,
			"signal":      cmdSignal,
			"exitcode":    cmdExitcode,
			"waitfile":    cmdWaitfile,
			"waitline":    cmdWaitline,
		},
	}
}

const waitLimit = 30 * time.Second // only a guard against a hang: conditions normally hold within milliseconds

func node(ts *testscript.TestScript) *fakegpu.Node {
	return &fakegpu.Node{Dir: ts.Getenv("FAKEGPU_DIR")}
}

func gpuArg(ts *testscript.TestScript, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		ts.Fatalf("gpu %q: not a number", s)
	}
	return n
}

// cmdGPUs: gpus N [KEY=VALUE...] — make the node have N GPUs, each with the
// settings given (total=8GiB, util=na, compute_mode=3, ...).
func cmdGPUs(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: gpus N [KEY=VALUE...]")
	}
	ts.Check(os.MkdirAll(ts.Getenv("FAKEGPU_DIR"), 0o755))
	n, err := fakegpu.NewNode(ts.Getenv("FAKEGPU_DIR"), "", gpuArg(ts, args[0]))
	ts.Check(err)
	for _, kv := range args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			ts.Fatalf("gpus: %q is not KEY=VALUE", kv)
		}
		if k == "total" {
			size, err := keeper.ParseVRAM(v)
			ts.Check(err)
			v = strconv.FormatUint(size.Bytes, 10)
		}
		for i := 0; i < gpuArg(ts, args[0]); i++ {
			ts.Check(n.Set(i, k, v))
		}
	}
}

// foreigners are the fake foreign processes each script started.
var foreigners sync.Map // *testscript.TestScript -> map[int]*exec.Cmd (by gpu)

// cmdForeign: foreign start GPU SIZE | foreign stop GPU — a live process
// (a sleep) that the fake NVML lists as a compute process on GPU.
func cmdForeign(ts *testscript.TestScript, neg bool, args []string) {
	v, _ := foreigners.LoadOrStore(ts, map[int]*exec.Cmd{})
	procs := v.(map[int]*exec.Cmd)
	switch {
	case len(args) == 3 && args[0] == "start":
		gpu := gpuArg(ts, args[1])
		size, err := keeper.ParseVRAM(args[2])
		ts.Check(err)
		cmd := exec.Command("sleep", "3600")
		ts.Check(cmd.Start())
		procs[gpu] = cmd
		ts.Defer(func() { cmd.Process.Kill(); cmd.Wait() })
		ts.Check(node(ts).AddProcess(gpu, cmd.Process.Pid, size.Bytes))
	case len(args) == 2 && args[0] == "stop":
		gpu := gpuArg(ts, args[1])
		cmd := procs[gpu]
		if cmd == nil {
			ts.Fatalf("foreign stop %d: none started", gpu)
		}
		ts.Check(node(ts).RemoveProcess(gpu, cmd.Process.Pid))
		cmd.Process.Kill()
		cmd.Wait()
		delete(procs, gpu)
	default:
		ts.Fatalf("usage: foreign start GPU SIZE | foreign stop GPU")
	}
}

// ours returns the records on gpu that are not foreign processes.
func ours(ts *testscript.TestScript, gpu int) []fakegpu.Proc {
	procs, err := node(ts).Procs(gpu)
	ts.Check(err)
	skip := map[int]bool{}
	if v, ok := foreigners.Load(ts); ok {
		for _, c := range v.(map[int]*exec.Cmd) {
			skip[c.Process.Pid] = true
		}
	}
	var out []fakegpu.Proc
	for _, p := range procs {
		if !skip[p.PID] {
			out = append(out, p)
		}
	}
	return out
}

// poll calls ok until it returns true, or fails the script with what last
// saw after waitLimit.
func poll(ts *testscript.TestScript, what string, ok func() (bool, string)) {
	deadline := time.Now().Add(waitLimit)
	for {
		done, saw := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s: gave up after %s; last saw %s", what, waitLimit, saw)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cmdHeld: [!] held GPU SIZE — wait until one live process holds a context
// and exactly SIZE bytes on GPU, as the fake driver records it (with !:
// until none does).
func cmdHeld(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: held GPU SIZE")
	}
	gpu := gpuArg(ts, args[0])
	size, err := keeper.ParseVRAM(args[1])
	ts.Check(err)
	size.Bytes += platformExtraBytes(ts)
	poll(ts, "held "+args[0]+" "+args[1], func() (bool, string) {
		procs := ours(ts, gpu)
		for _, p := range procs {
			if p.Alive && p.Contexts > 0 && p.Bytes == size.Bytes {
				return !neg, fmt.Sprintf("%+v", procs)
			}
		}
		return neg, fmt.Sprintf("%+v", procs)
	})
}

// cmdKillHolders: killholders GPU SIG — send SIG to every live process that
// is not a foreign one and has a record on GPU.
func cmdKillHolders(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: killholders GPU SIG")
	}
	sig := unix.SignalNum("SIG" + args[1])
	if sig == 0 {
		ts.Fatalf("killholders: unknown signal %s", args[1])
	}
	n := 0
	for _, p := range ours(ts, gpuArg(ts, args[0])) {
		if p.Alive {
			ts.Check(syscall.Kill(p.PID, sig))
			n++
		}
	}
	if n == 0 {
		ts.Fatalf("killholders: no live holder on gpu %s", args[0])
	}
}

// cmdFree: free GPU — wait until no live process but the foreign ones has
// a record on GPU. A driver takes back what a process held when it dies,
// as wrap relies on when it SIGKILLs a holder that is still loading the
// driver or allocating; the fake leaves such a record behind, marked dead.
//
// freed GPU is stricter, for holders that keepgpu never kills: no record
// at all, dead or alive, so every context was destroyed and every byte
// freed explicitly.
func cmdFree(ts *testscript.TestScript, neg bool, args []string) {
	waitFree(ts, "free", args, false)
}

func cmdFreed(ts *testscript.TestScript, neg bool, args []string) {
	waitFree(ts, "freed", args, true)
}

func waitFree(ts *testscript.TestScript, name string, args []string, strict bool) {
	if len(args) != 1 {
		ts.Fatalf("usage: %s GPU", name)
	}
	gpu := gpuArg(ts, args[0])
	poll(ts, name+" "+args[0], func() (bool, string) {
		var held []fakegpu.Proc
		for _, p := range ours(ts, gpu) {
			if strict || p.Alive {
				held = append(held, p)
			}
		}
		return len(held) == 0, fmt.Sprintf("%+v", held)
	})
}

func launches(ts *testscript.TestScript, gpu int) int {
	n := 0
	for _, p := range ours(ts, gpu) {
		if p.Alive {
			n += p.Launches
		}
	}
	return n
}

// cmdRunning: running GPU — wait until the keep-alive kernel launches on GPU.
func cmdRunning(ts *testscript.TestScript, neg bool, args []string) {
	gpu := gpuArg(ts, args[0])
	start := launches(ts, gpu)
	poll(ts, "running "+args[0], func() (bool, string) {
		n := launches(ts, gpu)
		return n > start, fmt.Sprintf("%d launches", n)
	})
}

// cmdPaused: paused GPU — wait until no kernel is launched on GPU for a
// whole second (the duty-cycle window is 100 ms).
func cmdPaused(ts *testscript.TestScript, neg bool, args []string) {
	gpu := gpuArg(ts, args[0])
	poll(ts, "paused "+args[0], func() (bool, string) {
		a := launches(ts, gpu)
		time.Sleep(time.Second)
		b := launches(ts, gpu)
		return a == b, fmt.Sprintf("%d launches in a second", b-a)
	})
}

// cmdSignal: signal SIG — send SIG (TERM, USR1, 2, …) to the background
// command started last.
func cmdSignal(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: signal SIG")
	}
	sig := unix.SignalNum("SIG" + strings.TrimPrefix(args[0], "SIG"))
	if n, err := strconv.Atoi(args[0]); err == nil {
		sig = syscall.Signal(n)
	}
	if sig == 0 {
		ts.Fatalf("signal %s: unknown", args[0])
	}
	bg := ts.BackgroundCmds()
	if len(bg) == 0 {
		ts.Fatalf("signal: no background command")
	}
	ts.Check(bg[len(bg)-1].Process.Signal(sig))
}

// cmdExitcode: exitcode N PROG ARGS... — run PROG and require exit status N
// exactly; its stdout and stderr are kept for the next commands.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode %q: not a number", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ts.Fatalf("%s killed by signal %v; want exit status %d", args[1], ws.Signal(), want)
		}
	case err != nil:
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d; want %d", args[1], got, want)
	}
}

// cmdWaitline: waitline FILE REGEXP — wait until a line of FILE matches.
func cmdWaitline(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waitline FILE REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	path := ts.MkAbs(args[0])
	poll(ts, "waitline "+args[0]+" "+args[1], func() (bool, string) {
		b, _ := os.ReadFile(path)
		return re.Match(b), fmt.Sprintf("%q", b)
	})
}

// cmdWaitfile: waitfile PATH — wait until PATH exists.
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitfile PATH")
	}
	path := ts.MkAbs(args[0])
	poll(ts, "waitfile "+args[0], func() (bool, string) {
		_, err := os.Stat(path)
		return err == nil, fmt.Sprint(err)
	})
}

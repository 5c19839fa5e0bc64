package wrap

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/signals"
)

// The test binary doubles as keepgpu wrap (WRAP_TEST=run: Run with the
// command in its arguments and the Config in WRAP_TEST_* variables) and as
// a fake holder (WRAP_TEST=holder-MODE), so that Run supervises real
// processes.
func TestMain(m *testing.M) {
	switch mode := os.Getenv("WRAP_TEST"); {
	case mode == "run":
		os.Exit(runWrap(os.Args[1:]))
	case strings.HasPrefix(mode, "holder-"):
		os.Exit(fakeHolder(strings.TrimPrefix(mode, "holder-")))
	}
	os.Exit(m.Run())
}

// cleanEnv is the environment without the test's own variables: a child's
// getenv finds the first of duplicate variables. The race detector's
// second of sleep at exit would make every fake holder slow to exit.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WRAP_TEST") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	return append(env, "GORACE=atexit_sleep_ms=0")
}

func runWrap(command []string) int {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := Config{
		Command:         command,
		Env:             cleanEnv(),
		SocketDir:       os.Getenv("WRAP_TEST_DIR"),
		RequireGPU:      os.Getenv("WRAP_TEST_REQUIRE") != "",
		ReleaseOnGPUUse: os.Getenv("WRAP_TEST_TREE") != "",
		Stdin:           devnull, Stdout: os.Stdout, Stderr: os.Stderr,
	}
	switch mode := os.Getenv("WRAP_TEST_HOLDER"); mode {
	case "":
	case "missing":
		cfg.Holder = &holder.Spec{}
		cfg.HolderOptions.Path = "/nonexistent/keepgpu"
	default:
		exe, _ := os.Executable()
		cfg.Holder = &holder.Spec{GPUs: keeper.GPUs{All: true}, Util: 30, BusyThreshold: 25, Interval: time.Second}
		cfg.HolderOptions = holder.Options{Path: exe, Env: append(cleanEnv(), "WRAP_TEST=holder-"+mode)}
	}
	if f := os.Getenv("WRAP_TEST_READY_FILE"); f != "" {
		s, err := signals.File(f, 50*time.Millisecond)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cfg.Sources = append(cfg.Sources, s)
	}
	return Run(cfg)
}

// fakeHolder speaks the holder's protocol without a GPU. Modes: ok (hold
// until SIGTERM), fail (cannot hold), args (say its argv in a warning,
// then hold), tree (report the wrapped command's use of the GPU and
// release by itself).
func fakeHolder(mode string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	enc := json.NewEncoder(os.Stdout)
	emit := func(e holder.Event) { e.Time = time.Now(); enc.Encode(e) }
	switch mode {
	case "fail":
		emit(holder.Event{Kind: holder.Error, GPU: -1, Message: "holding nothing: no driver"})
		return 1
	case "args":
		emit(holder.Event{Kind: holder.Warning, GPU: -1, Message: strings.Join(os.Args[1:], " ")})
	}
	emit(holder.Event{Kind: holder.Holding, GPU: -1, Message: "holding 1 GPU: fake",
		GPUs: []keeper.Status{{GPU: 0, UUID: "GPU-a", Bytes: 1 << 30, Kernel: keeper.KernelRunning}}})
	if mode == "tree" {
		emit(holder.Event{Kind: holder.TreeUse, GPU: 0, Reason: "process 42 of the wrapped command uses the GPU"})
		emit(holder.Event{Kind: holder.Released, GPU: -1, Reason: "the wrapped command uses the GPU (pid 42)"})
		return 0
	}
	s := <-sigs
	emit(holder.Event{Kind: holder.Released, GPU: -1, Reason: signals.Name(s)})
	return 0
}

// TestRun runs commands beside fake holders and checks what keepgpu wrap
// exits with and says.
func TestRun(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		holder  string // fake holder mode; "" none, "missing" a binary that is not there
		require bool
		tree    bool
		ready   bool // a ready file, WRAP_TEST_READY_FILE, exported as READY to the command
		command []string
		status  int
		stdout  string // regexp; PID stands for the wrap's pid
		stderr  []string
		not     []string // regexps stderr must not match
	}{
		{name: "exit status", command: []string{"sh", "-c", "exit 3"}, status: 3, not: []string{"."}},
		{name: "killed by a signal", command: []string{"sh", "-c", "kill -TERM $$"}, status: 128 + 15},
		{name: "not found", command: []string{"keepgpu-no-such-command"}, status: ExitNotFound,
			stderr: []string{`^keepgpu: keepgpu-no-such-command: command not found$`}},
		{name: "environment", command: []string{"sh", "-c", `echo "$KEEPGPU_PID $KEEPGPU_READY"`},
			stdout: `^PID /.*/ready\.sock\n$`},
		{name: "hold until exit", holder: "ok", require: true, command: []string{"true"},
			stderr: []string{`^keepgpu: holding 1 GPU: fake; until the command is ready$`,
				`^keepgpu: released the GPUs after .* \(command exited; .* to release\)$`}},
		{name: "released when ready", holder: "ok", require: true, ready: true,
			command: []string{"sh", "-c", `touch "$READY"; sleep 1; exit 4`},
			status:  4,
			stderr:  []string{`^keepgpu: released the GPUs after .* \(ready file .*/ready; .* to release\)$`}},
		{name: "require-gpu, holding fails", holder: "fail", require: true, command: []string{"touch", "ran"}, status: ExitFailed,
			stderr: []string{`^keepgpu: --require-gpu: holding nothing: no driver; not starting the command$`}},
		{name: "require-gpu, no holder binary", holder: "missing", require: true, command: []string{"touch", "ran"}, status: ExitFailed,
			stderr: []string{`^keepgpu: --require-gpu: cannot start the holder: .*/nonexistent/keepgpu`}},
		{name: "no holder binary", holder: "missing", command: []string{"sh", "-c", "exit 5"}, status: 5,
			stderr: []string{`^keepgpu: warning: holding nothing: cannot start the holder: .*; running the command anyway$`}},
		{name: "holding fails", holder: "fail", command: []string{"sh", "-c", "sleep 1; exit 6"}, status: 6,
			stderr: []string{`^keepgpu: warning: holding nothing: no driver; the command runs without held GPUs$`}},
		{name: "the process tree is the wrap's", holder: "args", tree: true, require: true, command: []string{"true"},
			stderr: []string{`^keepgpu: warning: hold --supervised --gpus all .* --tree-of PID$`}},
		{name: "without the process tree", holder: "args", require: true, command: []string{"true"},
			not: []string{`--tree-of`}},
		{name: "the command uses a GPU", holder: "tree", require: true, command: []string{"sh", "-c", "sleep 0.5"},
			stderr: []string{`^keepgpu: released the GPUs after .* \(the command started using gpu 0: process 42 of the wrapped command uses the GPU\)$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(exe, tt.command...)
			cmd.Dir = dir
			cmd.Env = append(cleanEnv(), "WRAP_TEST=run", "WRAP_TEST_DIR="+dir, "WRAP_TEST_HOLDER="+tt.holder)
			if tt.require {
				cmd.Env = append(cmd.Env, "WRAP_TEST_REQUIRE=1")
			}
			if tt.tree {
				cmd.Env = append(cmd.Env, "WRAP_TEST_TREE=1")
			}
			if tt.ready {
				f := filepath.Join(dir, "ready")
				cmd.Env = append(cmd.Env, "WRAP_TEST_READY_FILE="+f, "READY="+f)
			}
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			pid := strconv.Itoa(cmd.Process.Pid)
			if status != tt.status {
				t.Errorf("exit status %d; want %d", status, tt.status)
			}
			if tt.stdout != "" && !regexp.MustCompile(strings.ReplaceAll(tt.stdout, "PID", pid)).MatchString(stdout.String()) {
				t.Errorf("stdout %q; want %q", stdout.String(), tt.stdout)
			}
			for _, re := range tt.stderr {
				if !regexp.MustCompile("(?m)" + strings.ReplaceAll(re, "PID", pid)).MatchString(stderr.String()) {
					t.Errorf("stderr does not match %q:\n%s", re, stderr.String())
				}
			}
			for _, re := range tt.not {
				if regexp.MustCompile("(?m)" + re).MatchString(stderr.String()) {
					t.Errorf("stderr matches %q:\n%s", re, stderr.String())
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil && tt.status == ExitFailed {
				t.Error("the command ran")
			}
		})
	}
}

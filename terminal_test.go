package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

// These tests run `keepgpu wrap` in a pseudo-terminal, as a user at a shell
// prompt would: keepgpu's stdin, stdout and stderr are the terminal, and
// keepgpu is the session leader or runs under a shell that is. The command
// must behave exactly as it would without keepgpu: prompts, line input, a
// debugger, Ctrl+C, the foreground process group, job control.

// termLimit only guards against a hang: every condition normally holds
// within milliseconds.
const termLimit = 20 * time.Second

// gpuNode builds the fake driver libraries into a fresh directory and
// returns a node with gpus GPUs that uses them.
func gpuNode(t *testing.T, gpus int) *fakegpu.Node {
	t.Helper()
	dir := t.TempDir()
	libDir := filepath.Join(dir, "lib")
	if err := fakegpu.Build(libDir); err != nil {
		t.Fatal(err)
	}
	n, err := fakegpu.NewNode(filepath.Join(dir, "node"), libDir, gpus)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// termEnv is the environment of a keepgpu under test: a short private
// XDG_RUNTIME_DIR for its socket, no race-detector sleep at exit, and the
// node's libraries (or, with node nil, no driver library at all).
func termEnv(t *testing.T, node *fakegpu.Node) []string {
	t.Helper()
	rt, err := os.MkdirTemp("", "kg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "KEEPGPU_") || k == "PYTHONBREAKPOINT" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "XDG_RUNTIME_DIR="+rt, "GORACE=atexit_sleep_ms=0", "TERM=dumb")
	if node != nil {
		return append(env, node.Env()...)
	}
	return append(env, "LD_LIBRARY_PATH=", "FAKEGPU_DIR="+filepath.Join(rt, "nonode"))
}

// term is a command running in a pseudo-terminal, and everything the
// terminal has shown so far.
type term struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File

	mu   sync.Mutex
	out  []byte
	pos  int           // where the next expect starts looking
	read chan struct{} // closed once the master reads EOF or EIO
	more chan struct{} // signalled when output arrives

	waited  chan struct{}
	waitErr error
}

// startTerm starts `keepgpu wrap ARGS...` in dir in a pseudo-terminal.
func startTerm(t *testing.T, env []string, dir string, args ...string) *term {
	t.Helper()
	return startPty(t, env, dir, append([]string{"keepgpu", "wrap"}, args...)...)
}

// startPty starts argv in dir with the pty's tty as its stdin, stdout and
// stderr and as its controlling terminal (a new session).
func startPty(t *testing.T, env []string, dir string, argv ...string) *term {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	master, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, cmd: cmd, master: master,
		read: make(chan struct{}), more: make(chan struct{}, 1), waited: make(chan struct{})}
	go func() {
		defer close(tm.read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				tm.mu.Lock()
				tm.out = append(tm.out, buf[:n]...)
				tm.mu.Unlock()
				select {
				case tm.more <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return // EIO once no process has the tty open
			}
		}
	}()
	go func() {
		tm.waitErr = cmd.Wait()
		close(tm.waited)
	}()
	t.Cleanup(func() {
		select {
		case <-tm.waited:
		default:
			// A hang, or a shell left running: every process of the
			// session goes (a stopped one would outlive a mere hangup).
			killSession(cmd.Process.Pid)
			<-tm.waited
		}
		master.Close()
	})
	return tm
}

// killSession kills every process left in session sid.
func killSession(sid int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...
		i := strings.LastIndexByte(string(b), ')')
		fields := strings.Fields(string(b[i+1:]))
		if i < 0 || len(fields) < 4 || fields[3] != strconv.Itoa(sid) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// output is what the terminal has shown so far.
func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return string(tm.out)
}

// waitOutput waits until match finds something in the output from offset
// from; it returns the match's indices, relative to the whole output.
func (tm *term) waitOutput(what string, from int, match func([]byte) []int) []int {
	tm.t.Helper()
	deadline := time.After(termLimit)
	for {
		tm.mu.Lock()
		loc := match(tm.out[from:])
		tm.mu.Unlock()
		if loc != nil {
			for i := range loc {
				loc[i] += from
			}
			return loc
		}
		select {
		case <-tm.more:
		case <-tm.read:
			tm.mu.Lock()
			loc := match(tm.out[from:])
			tm.mu.Unlock()
			if loc == nil {
				tm.t.Fatalf("terminal closed before %s; it showed:\n%s", what, tm.output())
			}
		case <-deadline:
			tm.t.Fatalf("no %s after %s; the terminal showed:\n%s", what, termLimit, tm.output())
		}
	}
}

// expect waits until re matches the output after the previous expect's
// match, moves past the match and returns its submatches.
func (tm *term) expect(re string) []string {
	tm.t.Helper()
	rx := regexp.MustCompile(re)
	tm.mu.Lock()
	from := tm.pos
	tm.mu.Unlock()
	loc := tm.waitOutput(fmt.Sprintf("%q", re), from, rx.FindSubmatchIndex)
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.pos = loc[1]
	var subs []string
	for i := 0; i < len(loc); i += 2 {
		if loc[i] < 0 {
			subs = append(subs, "")
		} else {
			subs = append(subs, string(tm.out[loc[i]:loc[i+1]]))
		}
	}
	return subs
}

// await waits until re matches anywhere in the output, in whatever order it
// came with the rest; it does not move expect's position.
func (tm *term) await(re string) {
	tm.t.Helper()
	rx := regexp.MustCompile(re)
	tm.waitOutput(fmt.Sprintf("%q", re), 0, rx.FindIndex)
}

// send types s at the terminal.
func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.master, s); err != nil {
		tm.t.Fatalf("typing %q: %v", s, err)
	}
}

// wait waits for the process to exit and for the terminal to show everything
// written to it, and requires exit status 0.
func (tm *term) wait() {
	tm.t.Helper()
	select {
	case <-tm.waited:
	case <-time.After(termLimit):
		tm.t.Fatalf("%s did not exit after %s; the terminal showed:\n%s", tm.cmd.Args[0], termLimit, tm.output())
	}
	select {
	case <-tm.read:
	case <-time.After(termLimit):
		tm.t.Fatalf("the terminal stayed open %s after %s exited (a process kept it); it showed:\n%s", termLimit, tm.cmd.Args[0], tm.output())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(tm.waitErr, &ee):
		tm.t.Fatalf("%s: %v; want exit status 0; the terminal showed:\n%s", tm.cmd.Args[0], ee.ProcessState, tm.output())
	case tm.waitErr != nil:
		tm.t.Fatalf("%s: %v", tm.cmd.Args[0], tm.waitErr)
	}
}

// awaitHeld waits until keepgpu has said it holds the GPU and a live
// process holds memory on gpu 0 of node.
func awaitHeld(t *testing.T, tm *term, node *fakegpu.Node) {
	t.Helper()
	tm.await(`keepgpu: .*until the command is ready`)
	deadline := time.Now().Add(termLimit)
	for {
		procs, err := node.Procs(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs {
			if p.Alive && p.Contexts > 0 && p.Bytes > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live holder on gpu 0 after %s: %+v; the terminal showed:\n%s", termLimit, procs, tm.output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requireFree requires that nothing is left on gpu 0 of node: the holder
// freed what it held before keepgpu exited.
func requireFree(t *testing.T, tm *term, node *fakegpu.Node) {
	t.Helper()
	procs, err := node.Procs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 0 {
		t.Fatalf("gpu 0 still has records after keepgpu exited: %+v; the terminal showed:\n%s", procs, tm.output())
	}
}

// A prompt and a line read from the terminal work as without keepgpu, with
// a holder holding a GPU meanwhile and with no GPU at all.
func TestTerminalPromptAndRead(t *testing.T) {
	for _, gpus := range []int{1, 0} {
		t.Run(fmt.Sprintf("gpus=%d", gpus), func(t *testing.T) {
			var node *fakegpu.Node
			if gpus > 0 {
				node = gpuNode(t, gpus)
			}
			tm := startTerm(t, termEnv(t, node), t.TempDir(), "--vram", "1GiB", "--",
				"sh", "-c", `printf "name? "; read x; echo "got $x"`)
			if node != nil {
				awaitHeld(t, tm, node)
			}
			tm.expect(`name\? `)
			tm.send("hello\n")
			tm.expect(`got hello\r?\n`)
			tm.wait()
			if node != nil {
				requireFree(t, tm, node)
			}
		})
	}
}

// Python's debugger prompts and reads its commands from the terminal. (The
// program has one statement a line: pdb stops at the next line, and on a
// single line it would stop only after the print.)
func TestTerminalPythonDebugger(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	node := gpuNode(t, 1)
	tm := startTerm(t, termEnv(t, node), t.TempDir(), "--vram", "1GiB", "--",
		"python3", "-c", "x = 1\nbreakpoint()\nprint('after', x)\n")
	awaitHeld(t, tm, node)
	tm.expect(`\(Pdb\) `)
	tm.send("p x + 41\n")
	tm.expect(`\b42\r?\n`)
	tm.expect(`\(Pdb\) `)
	tm.send("c\n")
	tm.expect(`after 1\r?\n`)
	tm.wait()
	requireFree(t, tm, node)
}

// Ctrl+C at the terminal reaches the command once, as without keepgpu:
// the terminal sends SIGINT to its foreground process group, the
// command's, and keepgpu, outside it, neither gets nor forwards a copy. So
// the GPUs are released because the command exited, not because of a
// SIGINT.
func TestTerminalCtrlC(t *testing.T) {
	node := gpuNode(t, 1)
	dir := t.TempDir()
	tm := startTerm(t, termEnv(t, node), dir, "--vram", "1GiB", "--",
		"sh", "-c", `trap 'echo trapped-INT; n=$((n+1))' INT; n=0; echo ready; while [ ! -e stop ]; do sleep 0.05; done; echo "count=$n"`)
	awaitHeld(t, tm, node)
	tm.expect(`ready\r?\n`)
	tm.send("\x03") // VINTR
	tm.expect(`trapped-INT\r?\n`)
	if err := os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := tm.expect(`count=(\d+)\r?\n`)[1]; got != "1" {
		t.Errorf("the command got SIGINT %s times; want 1; the terminal showed:\n%s", got, tm.output())
	}
	tm.wait()
	if !regexp.MustCompile(`keepgpu: released the GPUs after .* \(command exited;`).MatchString(tm.output()) {
		t.Errorf("want the GPUs released because the command exited, not by Ctrl+C; the terminal showed:\n%s", tm.output())
	}
	requireFree(t, tm, node)
}

// The command runs in its own process group, in keepgpu's session, and
// that group is the terminal's foreground one.
func TestTerminalForegroundGroup(t *testing.T) {
	for _, gpus := range []int{1, 0} {
		t.Run(fmt.Sprintf("gpus=%d", gpus), func(t *testing.T) {
			var node *fakegpu.Node
			if gpus > 0 {
				node = gpuNode(t, gpus)
			}
			tm := startTerm(t, termEnv(t, node), t.TempDir(), "--", "sh", "-c", `echo "stat: $(cat /proc/$$/stat)"`)
			// pid (comm) state ppid pgrp session tty_nr tpgid ...
			m := tm.expect(`stat: (\d+) \(.*\) \S+ (\d+) (\d+) (\d+) -?\d+ (-?\d+) `)
			tm.wait()
			pid, ppid, pgrp, sid, tpgid := atoi(t, m[1]), atoi(t, m[2]), atoi(t, m[3]), atoi(t, m[4]), atoi(t, m[5])
			kg := tm.cmd.Process.Pid // a session and process group leader (pty.Start)
			if ppid != kg {
				t.Errorf("the command's parent is %d; want keepgpu, %d", ppid, kg)
			}
			if sid != kg {
				t.Errorf("the command is in session %d; want keepgpu's, %d", sid, kg)
			}
			if pgrp != pid {
				t.Errorf("the command (pid %d) is in process group %d; want its own", pid, pgrp)
			}
			if tpgid != pgrp {
				t.Errorf("the terminal's foreground process group is %d; want the command's, %d", tpgid, pgrp)
			}
		})
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// When the command exits, keepgpu gives the terminal back to its own
// process group before it exits, so that the shell that ran it (here a
// non-interactive one, which does not take the terminal back itself) can
// read from it again.
func TestTerminalGivenBack(t *testing.T) {
	node := gpuNode(t, 1)
	tm := startPty(t, termEnv(t, node), t.TempDir(), "sh", "-c",
		`keepgpu wrap --vram 1GiB -- sh -c 'printf "inner? "; read x; echo "inner got $x"'; printf "outer? "; read y; echo "outer got $y"`)
	awaitHeld(t, tm, node)
	tm.expect(`inner\? `)
	tm.send("one\n")
	tm.expect(`inner got one\r?\n`)
	tm.expect(`outer\? `)
	tm.send("two\n")
	tm.expect(`outer got two\r?\n`)
	tm.wait()
	requireFree(t, tm, node)
}

// startShell starts an interactive bash in a pseudo-terminal, with job
// control, and waits for its first prompt.
func startShell(t *testing.T, env []string) *term {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	tm := startPty(t, append(env, "INPUTRC=/dev/null", "HISTFILE=/dev/null"), t.TempDir(), "bash", "--norc", "--noprofile", "-i")
	tm.send("PS1='kg$ '; bind 'set enable-bracketed-paste off' 2>/dev/null; echo shell-$((20+1))\n")
	tm.expect(`shell-21\r?\n`)
	return tm
}

// Ctrl+Z stops the command and gives the terminal back to the shell, as
// without keepgpu; fg resumes it in the foreground.
func TestTerminalCtrlZ(t *testing.T) {
	tm := startShell(t, termEnv(t, nil))
	tm.send(`keepgpu wrap -q -- sh -c 'echo st""arted; read x; echo "resumed $x"'` + "\n")
	tm.expect(`started\r?\n`)
	tm.send("\x1a") // VSUSP
	tm.expect(`Stopped`)
	tm.expect(`kg\$ `)
	tm.send("echo back-$((1+1))\n")
	tm.expect(`back-2\r?\n`)
	tm.expect(`kg\$ `)
	tm.send("fg\n")
	tm.expect(`read x`) // fg names the job it resumes
	tm.send("go\n")
	tm.expect(`resumed go\r?\n`)
	tm.send("echo done-$((2+1))\n")
	tm.expect(`done-3\r?\n`)
}

// A wrapped command started in the background (&) from an interactive
// shell stays in the background: the shell keeps the terminal.
func TestTerminalBackgroundJob(t *testing.T) {
	tm := startShell(t, termEnv(t, nil))
	tm.send(`keepgpu wrap -q -- sh -c 'echo st""arted; sleep 2' &` + "\n")
	tm.expect(`started\r?\n`)
	for i := 1; i <= 3; i++ {
		tm.send(fmt.Sprintf("echo shell-$((40+%d))\n", i))
		tm.expect(fmt.Sprintf(`shell-%d\r?\n`, 40+i))
	}
	tm.send("wait; echo waited-$((1+1))\n")
	tm.expect(`waited-2\r?\n`)
}

// Signals that keepgpu's parent ignores stay ignored in the command, as
// they would without keepgpu, for every signal keepgpu can see was ignored:
// SIGHUP and SIGINT (the Go runtime keeps their inherited SIG_IGN) and
// SIGCONT, SIGTSTP, SIGTTIN and SIGTTOU (the runtime leaves them alone). The
// runtime replaces an inherited SIG_IGN of any other signal before keepgpu's
// code runs: the command gets those at their defaults, as the README says.
func TestIgnoredSignalsStayIgnored(t *testing.T) {
	env := termEnv(t, nil)
	sigIgn := func(script string) uint64 {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", cmd.Args, err)
		}
		v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "SigIgn:")
		if !ok {
			t.Fatalf("%s: %q", cmd.Args, out)
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		return mask
	}
	bit := func(sigs ...syscall.Signal) uint64 {
		var m uint64
		for _, s := range sigs {
			m |= 1 << (s - 1)
		}
		return m
	}
	kept := bit(syscall.SIGHUP, syscall.SIGINT, syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	const cmd = "grep SigIgn /proc/self/status"
	tests := []struct {
		name   string
		script string // runs %s: the command, or keepgpu wrap running it
		lost   uint64 // ignored without keepgpu, not under it
	}{
		{"nohup", `trap "" HUP; exec %s`, 0},
		{"job control signals", `trap "" TSTP TTIN TTOU CONT; exec %s`, 0},
		// A non-interactive shell starts a background job with SIGINT and
		// SIGQUIT ignored.
		{"background job", `%s & wait`, bit(syscall.SIGQUIT)},
		{"others are lost", `trap "" HUP INT QUIT PIPE TERM USR1 USR2 ALRM WINCH; exec %s`,
			bit(syscall.SIGQUIT, syscall.SIGPIPE, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGWINCH)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			without := sigIgn(fmt.Sprintf(tt.script, cmd))
			under := sigIgn(fmt.Sprintf(tt.script, "keepgpu wrap -q -- "+cmd))
			if want := without &^ tt.lost; under != want || without&^kept != tt.lost {
				t.Errorf("SigIgn without keepgpu %#x, under keepgpu wrap %#x; want %#x", without, under, want)
			}
		})
	}
}

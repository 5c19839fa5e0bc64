package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
	"github.com/keepgpu/keepgpu/service"
)

// The values every flag of every command is fed by TestFlagTable.
var hostileValues = []struct{ kind, value string }{
	{"garbage", "%garbage/!"},
	{"empty", ""},
	{"negative", "-1"},
	{"huge", strings.Repeat("9", 300)},
	{"unicode", "ünï©ødé"},
}

// flagAccepts lists the hostile values that are valid for a flag
// ("command --flag kind"), and why: TestFlagTable does not run them. Every
// other value must be refused. A new flag gets every case by construction;
// a value it takes goes here, with its reason.
var flagAccepts = map[string]string{
	// Any text without a newline is a marker.
	"wrap --ready-marker garbage":  "marker text",
	"wrap --ready-marker negative": "marker text",
	"wrap --ready-marker huge":     "marker text",
	"wrap --ready-marker unicode":  "marker text",
	// -1: never pause.
	"hold --busy-threshold negative":  "-1 never pauses",
	"wrap --busy-threshold negative":  "-1 never pauses",
	"start --busy-threshold negative": "-1 never pauses",
	"hold --threshold negative":       "-1 is a busy threshold",
	"wrap --threshold negative":       "-1 is a busy threshold",
	"start --threshold negative":      "-1 is a busy threshold",
	// "-1" is a valid job id (letters, digits, '.', '_', '-', '~').
	"start --job-id negative":  "a valid job id",
	"status --job-id negative": "a valid job id",
	"stop --job-id negative":   "a valid job id",
	// A file name may be "-1" or unicode; whether it can be made is
	// found out later.
	"wrap --ready-file negative":  "a file name",
	"wrap --ready-file unicode":   "a file name",
	"wrap --ready-fifo negative":  "a file name",
	"wrap --ready-fifo unicode":   "a file name",
	"hold --until-file negative":  "a file name",
	"hold --until-file unicode":   "a file name",
	"hold --until-fifo negative":  "a file name",
	"hold --until-fifo unicode":   "a file name",
	"hold --tree-of negative":     "hidden: 0 or less is no tree",
	"serve --daemon negative":     "hidden",
	"hold --supervised negative":  "hidden",
	"start --no-auto-start empty": "negated form takes no value",
}

// flagGood is a valid value for flags without a default, for the case of a
// bad KEEPGPU_* variable next to a good flag.
var flagGood = map[string]string{
	"gpus": "0", "max-hold": "1s", "until-file": "u.file", "until-fifo": "u.fifo", "threshold": "25",
	"ready-file": "r.file", "ready-fifo": "r.fifo", "ready-marker": "READY", "ready-signal": "USR2",
	"job-id": "j1", "listen": "127.0.0.1:8765", "tree-of": "1",
}

// flagCase is one hostile input to one flag of one command.
type flagCase struct {
	name    string
	command string   // "hold", "wrap", ...
	args    []string // after the command
	env     []string
	flag    string // what the message must name
	want    int    // exit status
}

// commandFlags returns every command of the CLI (hidden ones but relay,
// which has no flags) with its flags (help left out), from kong's model.
func commandFlags(t *testing.T) map[string][]*kong.Flag {
	var cli CLI
	p, err := newParser(&cli, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*kong.Flag{}
	for _, n := range p.Model.Node.Children {
		var flags []*kong.Flag
		for _, group := range n.AllFlags(false) {
			for _, f := range group {
				if f.Name != "help" {
					flags = append(flags, f)
				}
			}
		}
		out[n.Name] = flags
	}
	return out
}

// flagCases builds the table: each flag with each hostile value (bools as
// --flag=VALUE), expecting the usage exit status (125 for wrap, 2 for the
// others) and the flag named in the message.
func flagCases(t *testing.T) []flagCase {
	var cases []flagCase
	cmds := commandFlags(t)
	names := make([]string, 0, len(cmds))
	for c := range cmds {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, cmd := range names {
		want := 2
		if cmd == "wrap" {
			want = wrapExitFailed
		}
		for _, f := range cmds[cmd] {
			for _, v := range hostileValues {
				key := fmt.Sprintf("%s --%s %s", cmd, f.Name, v.kind)
				if _, ok := flagAccepts[key]; ok {
					continue
				}
				args := []string{"--" + f.Name, v.value}
				if f.IsBool() {
					args = []string{"--" + f.Name + "=" + v.value}
				}
				cases = append(cases, flagCase{name: key, command: cmd, args: args, flag: "--" + f.Name, want: want})
			}
		}
	}
	return cases
}

const wrapExitFailed = 125

// TestFlagTable feeds every flag of every command (from kong's model, so a
// new flag is covered without a new line here) a garbage, an empty, a
// negative, a huge and a unicode value, unless flagAccepts says the value
// is valid for it. Each case must exit with the usage status (125 for
// wrap, before the command starts; 2 otherwise) with a message naming the
// flag, and leave nothing held on the fake GPU node and no service behind.
func TestFlagTable(t *testing.T) {
	exe, err := exec.LookPath("keepgpu")
	if err != nil {
		t.Skip("keepgpu is not on PATH (testscript.Main puts the test binary there)")
	}
	libDir := t.TempDir()
	n, err := fakegpu.NewNode(filepath.Join(t.TempDir(), "node"), libDir, 1)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GORACE=atexit_sleep_ms=0"}
	base = append(base, n.Env()...)
	cases := flagCases(t)
	t.Logf("%d cases", len(cases))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runRefused(t, exe, base, n, c)
		})
	}
}

// runRefused runs one case in a directory and runtime directory of its
// own and checks what it left.
func runRefused(t *testing.T, exe string, base []string, n *fakegpu.Node, c flagCase) {
	dir := t.TempDir()
	rt, err := os.MkdirTemp("", "kg") // short: Unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(rt)
	args := append([]string{c.command}, c.args...)
	if c.command == "wrap" {
		args = append(args, "--", "touch", "ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = dir
	cmd.Env = append(append(append([]string{}, base...), "XDG_RUNTIME_DIR="+rt), c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdin = strings.NewReader("")
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("keepgpu %q: still running after 20s: the value was taken; stderr:\n%s", args, stderr.String())
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if code != c.want {
		t.Errorf("keepgpu %q: exit status %d, want %d; stderr:\n%s", args, code, c.want, stderr.String())
	}
	if !strings.Contains(stderr.String(), c.flag) {
		t.Errorf("keepgpu %q: the message does not name %s:\n%s", args, c.flag, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Errorf("keepgpu %q: the command ran", args)
	}
	if procs, _ := n.Procs(0); len(procs) > 0 {
		t.Errorf("keepgpu %q: left %+v on gpu 0", args, procs)
	}
	if m, _ := filepath.Glob(filepath.Join(rt, "keepgpu", "service-*.json")); len(m) > 0 {
		t.Errorf("keepgpu %q: a service was started (%s)", args, m)
		for _, path := range m { // stop it, and its sessions with it
			if p, err := service.ReadPIDFile(path); err == nil && p.Verify() == nil {
				syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
	}
}

// TestFlagEnvTable: for every flag with a KEEPGPU_* variable, a variable
// that does not parse is an error naming it, unless the flag is given: then
// the flag wins and the command line parses.
func TestFlagEnvTable(t *testing.T) {
	cmds := commandFlags(t)
	cases := 0
	for cmd, flags := range cmds {
		for _, f := range flags {
			if len(f.Envs) == 0 {
				continue
			}
			env := f.Envs[0]
			good, ok := flagGood[f.Name]
			if f.HasDefault {
				good = f.Default
			} else if f.IsBool() {
				good = "true"
			} else if !ok {
				t.Errorf("%s --%s: no default and no value in flagGood", cmd, f.Name)
				continue
			}
			arg := "--" + f.Name + "=" + good
			if f.Tag.Negatable != "" && good == "true" {
				arg = "--" + f.Name
			}
			tail := []string{}
			if cmd == "wrap" {
				tail = []string{"--", "true"}
			}
			for _, v := range hostileValues {
				if v.value == "" {
					continue // an empty variable counts as unset
				}
				name := fmt.Sprintf("%s %s=%s", cmd, env, v.kind)
				t.Run(name, func(t *testing.T) {
					t.Setenv(env, v.value)
					unsetEmpty()
					errWithout := parseOnly(t, append([]string{cmd}, tail...))
					if errWithout == nil {
						return // a valid value for this variable (flagAccepts says which)
					}
					cases++
					if !strings.Contains(errWithout.Error(), env) || !strings.Contains(errWithout.Error(), "--"+f.Name) {
						t.Errorf("%s=%q, no flag: error %q does not name %s and --%s", env, v.value, errWithout, env, f.Name)
					}
					args := append([]string{cmd, arg}, tail...)
					if err := parseOnly(t, args); err != nil {
						t.Errorf("%s=%q with %s: %v; the flag given must win", env, v.value, arg, err)
					}
				})
			}
		}
	}
	t.Logf("%d cases of a bad variable", cases)
}

// parseOnly parses args as keepgpu would, without running anything.
func parseOnly(t *testing.T, args []string) error {
	var cli CLI
	p, err := newParser(&cli, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse(args)
	return err
}

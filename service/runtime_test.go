package service

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRuntimeDir: created 0700; refused when open to others, a symbolic
// link, or someone else's.
func TestRuntimeDir(t *testing.T) {
	base := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", base)
	t.Setenv("SLURM_JOB_ID", "4242")
	if dir, err := RuntimeDir(); err != nil || dir != filepath.Join(base, "keepgpu", "slurm-4242") {
		t.Fatalf("in a Slurm job: %s %v", dir, err)
	}
	t.Setenv("SLURM_JOB_ID", "")
	dir, err := RuntimeDir()
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); dir != filepath.Join(base, "keepgpu") || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v", dir, fi.Mode())
	}
	os.Chmod(dir, 0o755)
	if _, err := RuntimeDir(); err == nil || !strings.Contains(err.Error(), "lets others in") {
		t.Fatalf("0755 dir: %v", err)
	}
	os.RemoveAll(dir)
	os.Symlink(t.TempDir(), dir)
	if _, err := RuntimeDir(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlinked dir: %v", err)
	}

	t.Setenv("TMPDIR", base)
	t.Setenv("XDG_RUNTIME_DIR", "/nonexistent/run/user/1000") // a batch job's, inherited from the login node
	if dir, err := RuntimeDir(); err != nil || dir != filepath.Join(base, "keepgpu-"+strconv.Itoa(os.Getuid())) {
		t.Fatalf("with a missing XDG_RUNTIME_DIR: %s %v", dir, err)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if dir, err := RuntimeDir(); err != nil || !strings.HasPrefix(filepath.Base(dir), "keepgpu-") {
		t.Fatalf("without XDG_RUNTIME_DIR: %s %v", dir, err)
	}
}

// TestToken: one token per user, 0600, 64 hex digits, made once even when
// raced.
func TestToken(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadToken(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadToken with none: %v", err)
	}
	var wg sync.WaitGroup
	toks := make([]string, 8)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if toks[i], err = EnsureToken(dir); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, tok := range toks {
		if tok != toks[0] || len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" {
			t.Fatalf("tokens %q", toks)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, tokenFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token mode %v", fi.Mode())
	}
	os.Chmod(filepath.Join(dir, tokenFile), 0o644)
	if _, err := ReadToken(dir); err == nil || !strings.Contains(err.Error(), "lets others in") {
		t.Fatalf("0644 token: %v", err)
	}
}

// TestPIDFileVerify: a PID file is trusted only while its pid is the
// process that wrote it.
func TestPIDFileVerify(t *testing.T) {
	self, err := Self("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := self.Verify(); err != nil {
		t.Fatalf("this process: %v", err)
	}
	p := self
	p.StartTime++
	if err := p.Verify(); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "another process now") {
		t.Fatalf("other start time: %v", err)
	}
	p = self
	p.Cmdline = []string{"keepgpu", "serve"}
	if err := p.Verify(); !errors.Is(err, ErrStale) {
		t.Fatalf("other command line: %v", err)
	}
	p = self
	p.PID = 1 << 30
	if err := p.Verify(); !errors.Is(err, ErrStale) {
		t.Fatalf("no such pid: %v", err)
	}

	path := filepath.Join(t.TempDir(), "x.json")
	if err := WritePIDFile(path, self); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPIDFile(path)
	if err != nil || got.PID != self.PID || got.StartTime != self.StartTime {
		t.Fatalf("ReadPIDFile: %+v %v", got, err)
	}
}

// TestStopDaemonGuards: service-stop never signals a process the PID file
// no longer describes, and without a PID file it signals nothing.
func TestStopDaemonGuards(t *testing.T) {
	dir := t.TempDir()
	tg := Target{Dir: dir, Host: "127.0.0.1", Port: 1}
	if _, err := StopDaemon(context.Background(), tg, true, time.Second); err == nil || !strings.Contains(err.Error(), "no keepgpu service of yours") {
		t.Fatalf("no PID file: %v", err)
	}

	// A PID file naming a live process that is not the service (a pid
	// recycled by a sleep, say).
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	st, err := ProcStartTime(sleep.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range []PIDFile{
		{PID: sleep.Process.Pid, StartTime: st, Cmdline: []string{"keepgpu", "serve", "--listen", "127.0.0.1:1"}},
		{PID: sleep.Process.Pid, StartTime: st + 1, Cmdline: []string{"sleep", "60"}},
	} {
		if err := WritePIDFile(PIDPath(dir, 1), forged); err != nil {
			t.Fatal(err)
		}
		_, err := StopDaemon(context.Background(), tg, true, time.Second)
		if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "signalled nothing") {
			t.Fatalf("forged %+v: %v", forged, err)
		}
		if !alive(sleep.Process.Pid) {
			t.Fatal("service-stop signalled a process that is not the service")
		}
		if _, err := os.Stat(PIDPath(dir, 1)); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("stale PID file left in place")
		}
	}
}

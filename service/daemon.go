package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target names a service as the commands do: the user's runtime dir, and
// the host and port it was asked to listen on (port 0: any free port, found
// again through its PID file).
type Target struct {
	Dir  string
	Host string
	Port int
}

// ParseListen reads HOST:PORT.
func ParseListen(s string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("--listen %q: want HOST:PORT: %v", s, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("--listen %q: port %q: want 0..65535", s, p)
	}
	if h == "" {
		h = DefaultHost
	}
	return h, n, nil
}

// Listen is the address the service is asked to listen on.
func (t Target) Listen() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Addr is the address to call: host:port, or for port 0 the address the
// running service recorded.
func (t Target) Addr() (string, error) {
	if t.Port != 0 {
		return t.Listen(), nil
	}
	p, err := ReadPIDFile(PIDPath(t.Dir, 0))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w for port 0 (no PID file %s)", ErrUnreachable, PIDPath(t.Dir, 0))
		}
		return "", err
	}
	if err := p.Verify(); err != nil {
		return "", fmt.Errorf("%w for port 0 (%v)", ErrUnreachable, err)
	}
	return p.Addr, nil
}

// Connect returns a client for the user's service at t, once it has
// answered /health with the user's token.
func Connect(ctx context.Context, t Target) (*Client, error) {
	addr, err := t.Addr()
	if err != nil {
		return nil, err
	}
	tok, err := ReadToken(t.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	c := NewClient(addr, tok)
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Health(hctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Daemon says how to start the service in the background.
type Daemon struct {
	Exe   string   // the keepgpu binary (default /proc/self/exe)
	Argv0 string   // default os.Args[0]
	Env   []string // default os.Environ()
	Wait  time.Duration
}

// StartDaemon starts `keepgpu serve --listen HOST:PORT --daemon` in a
// session of its own, with stdin from /dev/null and its output in the log
// file beside its PID file, and returns a client once it answers.
func StartDaemon(ctx context.Context, t Target, d Daemon) (*Client, PIDFile, error) {
	if d.Exe == "" {
		d.Exe = "/proc/self/exe"
	}
	if d.Argv0 == "" {
		d.Argv0 = os.Args[0]
	}
	if d.Env == nil {
		d.Env = os.Environ()
	}
	if d.Wait <= 0 {
		d.Wait = 20 * time.Second
	}
	if _, err := EnsureToken(t.Dir); err != nil {
		return nil, PIDFile{}, err
	}
	pidPath := PIDPath(t.Dir, t.Port)
	if p, err := ReadPIDFile(pidPath); err == nil {
		if p.Verify() == nil {
			return nil, p, fmt.Errorf("a keepgpu service of yours (pid %d) is recorded in %s but does not answer at %s; "+
				"see its log %s, or stop it with keepgpu service-stop --force", p.PID, pidPath, p.Addr, p.Log)
		}
		os.Remove(pidPath) // stale: that service is gone
	}
	logPath := LogPath(t.Dir, t.Port)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, PIDFile{}, fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, PIDFile{}, err
	}
	defer devnull.Close()
	fi, _ := logf.Stat()
	logStart := fi.Size()
	proc, err := os.StartProcess(d.Exe, []string{d.Argv0, "serve", "--listen", t.Listen(), "--daemon"}, &os.ProcAttr{
		Dir:   "/",
		Env:   d.Env,
		Files: []*os.File{devnull, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return nil, PIDFile{}, fmt.Errorf("starting the service: %w", err)
	}
	exited := make(chan string, 1)
	go func() {
		ps, err := proc.Wait()
		if err != nil {
			exited <- err.Error()
			return
		}
		exited <- ps.String()
	}()
	deadline := time.Now().Add(d.Wait)
	for {
		if c, err := Connect(ctx, t); err == nil {
			p, _ := ReadPIDFile(pidPath)
			return c, p, nil
		} else if errors.Is(err, ErrUnauthorized) {
			proc.Signal(syscall.SIGTERM)
			return nil, PIDFile{}, err
		}
		select {
		case how := <-exited:
			return nil, PIDFile{}, fmt.Errorf("the service exited (%s) before answering: %s", how, logTail(logPath, logStart))
		case <-ctx.Done():
			return nil, PIDFile{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, PIDFile{}, fmt.Errorf("the service (pid %d) did not answer within %s; see %s", proc.Pid, d.Wait, logPath)
		}
	}
}

// logTail returns what the log got after offset, shortened to its last lines.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return "see " + path
	}
	lines := strings.Split(strings.TrimSpace(string(b[offset:])), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n") + " (log: " + path + ")"
}

// Ensure connects to the user's service at t, starting it first when it
// is not running and auto allows. started says whether it did.
func Ensure(ctx context.Context, t Target, auto bool, d Daemon) (c *Client, started bool, err error) {
	c, err = Connect(ctx, t)
	if err == nil || !errors.Is(err, ErrUnreachable) || !auto {
		return c, false, err
	}
	c, _, err = StartDaemon(ctx, t, d)
	return c, err == nil, err
}

// ErrActiveSessions is service-stop refusing while sessions hold GPUs.
var ErrActiveSessions = errors.New("active keep sessions")

// StopDaemon stops the user's service at t: it signals the process in the
// PID file (SIGTERM; the service stops every session first, then exits)
// only after checking that pid is still that service, and waits for it to
// exit. Without force it refuses while sessions hold GPUs; with force it
// also kills a service that does not exit in time (its holders die with it).
// A stopped service (SIGSTOP, Ctrl+Z) is continued after its SIGTERM.
func StopDaemon(ctx context.Context, t Target, force bool, wait time.Duration) (PIDFile, error) {
	pidPath := PIDPath(t.Dir, t.Port)
	p, err := ReadPIDFile(pidPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return p, fmt.Errorf("no keepgpu service of yours is recorded for port %d (no %s); "+
				"a service started in a terminal by another runtime dir is stopped with Ctrl+C there", t.Port, pidPath)
		}
		return p, err
	}
	// A pidfd first, then the check: the signal goes to the process checked
	// even if the pid is recycled in between.
	proc, err := os.FindProcess(p.PID)
	if err != nil {
		return p, err
	}
	defer proc.Release()
	if err := p.Verify(); err != nil {
		os.Remove(pidPath)
		return p, fmt.Errorf("%w; removed it, signalled nothing", err)
	}
	if !force {
		c, err := Connect(ctx, t)
		if err != nil {
			return p, fmt.Errorf("the service (pid %d) does not answer (%v); use --force to stop it anyway", p.PID, err)
		}
		var st struct {
			ActiveJobs []Status `json:"active_jobs"`
		}
		if err := c.Call(ctx, "status", nil, &st); err != nil {
			return p, err
		}
		var ids []string
		for _, s := range st.ActiveJobs {
			if s.Active {
				ids = append(ids, s.JobID)
			}
		}
		if len(ids) > 0 {
			sort.Strings(ids)
			return p, fmt.Errorf("%w (%s): stop them first (keepgpu stop --all) or re-run with --force", ErrActiveSessions, strings.Join(ids, ", "))
		}
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			os.Remove(pidPath)
			return p, nil
		}
		return p, err
	}
	proc.Signal(syscall.SIGCONT) // a stopped service (Ctrl+Z) takes its SIGTERM only once continued
	if gone(ctx, proc, wait) {
		return p, nil
	}
	if !force {
		return p, fmt.Errorf("the service (pid %d) did not exit within %s of SIGTERM; use --force to kill it", p.PID, wait)
	}
	proc.Signal(syscall.SIGKILL) // its holders get their parent-death signal
	if gone(ctx, proc, 5*time.Second) {
		os.Remove(pidPath)
		return p, nil
	}
	return p, fmt.Errorf("the service (pid %d) did not exit after SIGKILL", p.PID)
}

// gone waits up to d for proc to exit.
func gone(ctx context.Context, proc *os.Process, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := proc.Signal(syscall.Signal(0)); errors.Is(err, os.ErrProcessDone) {
			return true
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", proc.Pid)); err == nil && zombie(st) {
			return true // exited; its parent has not reaped it yet
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

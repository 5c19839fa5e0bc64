package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	goio "io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/keeper"
	"github.com/keepgpu/keepgpu/service"
	"github.com/keepgpu/keepgpu/signals"
)

// serviceFlags say where the service is: KeepGPU's --host and --port, or
// --listen HOST:PORT.
type serviceFlags struct {
	Host   string     `name:"host" default:"127.0.0.1" help:"Service host."`
	Port   int        `name:"port" default:"8765" help:"Service port; 0 picks a free one, which the other commands find through the service's PID file."`
	Listen listenFlag `name:"listen" placeholder:"HOST:PORT" help:"Host and port in one; overrides --host and --port."`
}

// target resolves the flags and the user's runtime dir.
func (f *serviceFlags) target() (service.Target, error) {
	host, port := f.Host, f.Port
	if f.Listen != "" {
		var err error
		if host, port, err = service.ParseListen(string(f.Listen)); err != nil {
			return service.Target{}, usageError{err}
		}
	}
	if err := service.CheckHost(host); err != nil {
		flag := "--host"
		if f.Listen != "" {
			flag = "--listen"
		}
		return service.Target{}, usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	if port < 0 || port > 65535 {
		return service.Target{}, usageError{fmt.Errorf("--port %d: want 0..65535", port)}
	}
	dir, err := service.RuntimeDir()
	if err != nil {
		return service.Target{}, err
	}
	return service.Target{Dir: dir, Host: host, Port: port}, nil
}

// flagsFor is what to add to a hint so that it reaches the same service.
func flagsFor(t service.Target) string {
	s := ""
	if t.Host != service.DefaultHost {
		s += " --host " + t.Host
	}
	if t.Port != service.DefaultPort {
		s += fmt.Sprintf(" --port %d", t.Port)
	}
	return s
}

// connect returns a client for the user's running service.
func connect(t service.Target, io *stdio) (*service.Client, error) {
	c, err := service.Connect(context.Background(), t)
	if errors.Is(err, service.ErrUnreachable) {
		return nil, fmt.Errorf("%w (start one with %[2]s start or %[2]s serve%[3]s)", err, io.cmdName(), flagsFor(t))
	}
	return c, err
}

func printJSON(w goio.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ServeCmd is `keepgpu serve`: the service in the foreground.
type ServeCmd struct {
	serviceFlags
	StopTimeout keeper.Period `name:"stop-timeout" default:"10s" placeholder:"DURATION" help:"How long a session's holder has to release after SIGTERM before it is killed."`
	Daemon      bool          `name:"daemon" hidden:"" env:"-" help:"Started by keepgpu start: its output is the daemon log."`
}

// Run serves until SIGINT, SIGTERM or SIGHUP (or keepgpu service-stop),
// then stops every session and returns once their holders have exited. A
// second signal exits at once; the holders follow through their
// parent-death signal.
func (c *ServeCmd) Run(io *stdio) error {
	t, err := c.target()
	if err != nil {
		return err
	}
	tok, err := service.EnsureToken(t.Dir)
	if err != nil {
		return err
	}
	pidPath := service.PIDPath(t.Dir, t.Port)
	if p, err := service.ReadPIDFile(pidPath); err == nil && p.Verify() == nil {
		return fmt.Errorf("a keepgpu service of yours already runs for port %d (pid %d, at http://%s/)", t.Port, p.PID, p.Addr)
	}
	ln, err := net.Listen("tcp", t.Listen())
	if err != nil {
		return fmt.Errorf("%w (another service on this port? keepgpu status%s, or choose another --port)", err, flagsFor(t))
	}
	if ip := net.ParseIP(t.Host); t.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(io.err, "keepgpu: warning: listening on %s: reachable from other machines, over plain HTTP (the token protects it, but travels in the clear)\n", t.Host)
	}
	addr := ln.Addr().String()
	self, err := service.Self(addr)
	if err != nil {
		ln.Close()
		return err
	}
	self.Daemon = c.Daemon
	if c.Daemon {
		self.Log = service.LogPath(t.Dir, t.Port)
	}
	if err := service.WritePIDFile(pidPath, self); err != nil {
		ln.Close()
		return err
	}
	defer service.RemovePIDFile(pidPath)

	hosts := []string{t.Host}
	if ip := net.ParseIP(t.Host); ip != nil && ip.IsUnspecified() {
		// Every interface: the machine's own name reaches it too.
		if name, err := os.Hostname(); err == nil {
			hosts = append(hosts, name)
		}
	}
	srv := service.New(service.Config{Token: tok, StopTimeout: time.Duration(c.StopTimeout), Version: buildVersion(), Log: io.err,
		Hosts: hosts})
	fmt.Fprintf(io.out, "keepgpu: serving http://%s/ (pid %d)\n", addr, os.Getpid())
	fmt.Fprintf(io.out, "Dashboard: http://%s/?token=%s\n", addr, tok)
	fmt.Fprintf(io.out, "Stop with Ctrl+C or %s service-stop%s; every session is stopped first.\n", io.cmdName(), flagsFor(t))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		s := <-sigs
		fmt.Fprintf(io.err, "keepgpu: %s: stopping every session, then the service (again to exit at once)\n", signals.Name(s))
		cancel()
		s = <-sigs
		fmt.Fprintf(io.err, "keepgpu: %s: exiting now; the holders release as they die\n", signals.Name(s))
		service.RemovePIDFile(pidPath)
		os.Exit(1)
	}()
	go watchPIDFile(ctx, pidPath, func() {
		fmt.Fprintf(io.err, "keepgpu: %s is gone: nobody can reach this service any more; stopping every session, then the service\n", pidPath)
		cancel()
	})
	err = service.Serve(ctx, ln, srv)
	fmt.Fprintf(io.err, "keepgpu: service stopped\n")
	return err
}

// watchPIDFile calls gone once path no longer names this process: the
// runtime dir was wiped (a logout clears $XDG_RUNTIME_DIR), so the owner's
// commands can no longer find the service nor its token.
func watchPIDFile(ctx context.Context, path string, gone func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, err := service.ReadPIDFile(path)
		if errors.Is(err, fs.ErrNotExist) || err == nil && p.PID != os.Getpid() {
			gone()
			return
		}
	}
}

// StartCmd is `keepgpu start`: a session in the service, started in the
// background first if needed.
type StartCmd struct {
	KeepFlags
	serviceFlags
	JobID     jobIDFlag      `name:"job-id" placeholder:"ID" help:"The session's id (default: a random UUID): letters, digits, '.', '_', '-', '~'."`
	AutoStart bool           `name:"auto-start" default:"true" negatable:"" help:"Start the service in the background when it is not running."`
	Wait      keeper.Timeout `name:"wait" default:"60s" placeholder:"DURATION" help:"Wait this long for the session to hold its GPUs (the service itself waits up to 30s before it answers; 0: no longer)."`
	JSON      bool           `name:"json" help:"Print the session's status as JSON instead of the summary."`
}

// Run checks the flags before anything starts, makes sure the service runs,
// starts the session and, unless --wait 0, waits until it holds (or failed).
func (c *StartCmd) Run(io *stdio) error {
	spec, err := c.spec(func(w string) { fmt.Fprintf(io.err, "keepgpu: warning: %s\n", w) })
	if err != nil {
		return err
	}
	t, err := c.target()
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, started, err := service.Ensure(ctx, t, c.AutoStart, service.Daemon{})
	if err != nil {
		if errors.Is(err, service.ErrUnreachable) && !c.AutoStart {
			return fmt.Errorf("%w, and --no-auto-start was given (start one with keepgpu serve%s)", err, flagsFor(t))
		}
		return err
	}
	if started {
		fmt.Fprintf(io.out, "Auto-started the keepgpu service at %s (log: %s)\n", cl.URL(), service.LogPath(t.Dir, t.Port))
	}
	if h, err := cl.Health(ctx); err == nil {
		for _, k := range service.VisibilityVars {
			mine, set := os.LookupEnv(k)
			theirs := h.CUDAVisibleDevices
			if k != "CUDA_VISIBLE_DEVICES" || h.VisibleDevices != nil {
				v, ok := h.VisibleDevices[k]
				theirs = envPtr(v, ok)
			}
			if set != (theirs != nil) || set && mine != *theirs {
				fmt.Fprintf(io.err, "keepgpu: warning: the service's holders see %s=%s, not yours (%s): GPU ordinals refer to its view; UUIDs are safer\n",
					k, showEnv(theirs), showEnv(envPtr(mine, set)))
			}
		}
	}

	var r struct {
		JobID string `json:"job_id"`
	}
	params := service.Params{JobID: string(c.JobID), Spec: spec}.StartParams()
	if err := cl.Call(ctx, "start_keep", params, &r); err != nil {
		var re *service.RPCError
		if started && errors.As(err, &re) && re.Code == service.CodeUnavailable {
			// Nothing can hold here: the service this start began would
			// only sit idle. Stop it, as KeepGPU does.
			if _, serr := service.StopDaemon(ctx, t, false, 10*time.Second); serr != nil {
				fmt.Fprintf(io.err, "keepgpu: warning: stopping the service it started: %v\n", serr)
			}
		}
		return err
	}
	st, err := waitStarted(ctx, cl, r.JobID, time.Duration(c.Wait))
	if err != nil {
		return err
	}
	failed := st.State == service.StateRuntimeFailed
	if c.JSON {
		if err := printJSON(io.out, st); err != nil {
			return err
		}
	} else if !failed { // a failed session was not started: no summary, no hints
		fmt.Fprintf(io.out, "Started keep session job_id=%s\n", r.JobID)
		switch st.State {
		case service.StateActive:
			fmt.Fprintf(io.out, "%s\n", sessionLine(st))
		case service.StateStarting:
			if c.Wait > 0 {
				fmt.Fprintf(io.out, "Still starting after %s: see %s status --job-id %s%s\n", c.Wait, io.cmdName(), r.JobID, flagsFor(t))
			}
		}
		if !c.Quiet {
			fmt.Fprintf(io.out, "Dashboard: %s\n", cl.DashboardURL())
			fmt.Fprintf(io.out, "Next: %[3]s status --job-id %[1]s%[2]s | %[3]s stop --job-id %[1]s%[2]s\n", r.JobID, flagsFor(t), io.cmdName())
			fmt.Fprintf(io.out, "When all sessions are done, stop the service with: %s service-stop%s\n", io.cmdName(), flagsFor(t))
		}
	}
	if failed {
		return fmt.Errorf("session %s failed: %s (%s stop --job-id %s%s clears it)", r.JobID, deref(st.LastError), io.cmdName(), r.JobID, flagsFor(t))
	}
	return nil
}

// waitStarted polls the session until it leaves the starting state, or d
// has passed.
func waitStarted(ctx context.Context, cl *service.Client, id string, d time.Duration) (service.Status, error) {
	deadline := time.Now().Add(d)
	for {
		var st service.Status
		if err := cl.Call(ctx, "status", map[string]any{"job_id": id}, &st); err != nil {
			return st, err
		}
		if st.State != service.StateStarting || !time.Now().Before(deadline) {
			return st, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessionLine says what a session holds, in one line.
func sessionLine(st service.Status) string {
	parts := make([]string, len(st.GPUs))
	for i, g := range st.GPUs {
		parts[i] = fmt.Sprintf("gpu %d (%s, %s) %s", g.GPU, g.UUID, g.Name, cuda.FormatBytes(g.Bytes))
	}
	line := fmt.Sprintf("Holding %d GPU%s: %s", len(st.GPUs), plural(len(st.GPUs)), strings.Join(parts, ", "))
	if st.Paused {
		line += "; kernel paused: " + st.PausedReason
	}
	return line
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func envPtr(v string, set bool) *string {
	if !set {
		return nil
	}
	return &v
}

func showEnv(v *string) string {
	if v == nil {
		return "(unset)"
	}
	return fmt.Sprintf("%q", *v)
}

// StatusCmd is `keepgpu status`.
type StatusCmd struct {
	serviceFlags
	JobID jobIDFlag `name:"job-id" placeholder:"ID" help:"The session to show (default: every session)."`
}

// Run prints the status as JSON; an unknown job id exits 1 (as keep-gpu,
// 0: KeepGPU reports it as a session that is not active).
func (c *StatusCmd) Run(io *stdio) error {
	t, err := c.target()
	if err != nil {
		return err
	}
	cl, err := connect(t, io)
	if err != nil {
		return err
	}
	params := map[string]any{}
	if c.JobID != "" {
		params["job_id"] = string(c.JobID)
	}
	var r json.RawMessage
	if err := cl.Call(context.Background(), "status", params, &r); err != nil {
		return err
	}
	var b bytes.Buffer
	json.Indent(&b, r, "", "  ")
	fmt.Fprintln(io.out, b.String())
	var nf struct{ Message string }
	if json.Unmarshal(r, &nf) == nil && nf.Message == "job_id not found" && !io.keepGPU() {
		return fmt.Errorf("no session %q", c.JobID)
	}
	return nil
}

// StopCmd is `keepgpu stop`.
type StopCmd struct {
	serviceFlags
	JobID jobIDFlag `name:"job-id" xor:"which" placeholder:"ID" help:"The session to stop."`
	All   bool      `name:"all" xor:"which" env:"-" help:"Stop every session."`
}

// Run stops the session(s), returns once their holders have exited, and
// prints stop_keep's result as JSON; anything not stopped cleanly exits 1
// (as keep-gpu, 0: KeepGPU's stop tells it in the result alone). With
// --all, a service that does not answer but that its PID file shows to be
// the user's is stopped through its PID file, and every session with it,
// as KeepGPU's stop --all force-stops the daemon it started.
func (c *StopCmd) Run(io *stdio) error {
	t, err := c.target()
	if err != nil {
		return err
	}
	if c.JobID == "" && !c.All {
		return usageError{errors.New("give --job-id ID or --all")}
	}
	params := map[string]any{}
	if !c.All {
		params["job_id"] = string(c.JobID)
	}
	var r service.StopResult
	cl, err := connect(t, io)
	if err == nil {
		err = cl.Call(context.Background(), "stop_keep", params, &r)
	}
	forced := false
	if err != nil {
		if !c.All || !unanswered(err) {
			return err
		}
		if r, err = forceStop(t, err); err != nil {
			return err
		}
		forced = true
	}
	if err := printJSON(io.out, r); err != nil {
		return err
	}
	switch {
	case forced, io.keepGPU():
		return nil
	case r.Message != "":
		return fmt.Errorf("%s: %s", c.JobID, r.Message)
	case len(r.Failed)+len(r.TimedOut) > 0:
		return fmt.Errorf("not stopped cleanly: %s", strings.Join(append(r.TimedOut, r.Failed...), ", "))
	}
	return nil
}

// unanswered reports whether err says the service did not answer: nothing
// listens, or it did not answer in time.
func unanswered(err error) bool {
	var ne net.Error
	return errors.Is(err, service.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// forceStopWait is how long a service that does not answer has to stop
// its sessions and exit after SIGTERM before it is killed: its sessions'
// stop timeout (10s by default), and the time to stop serving.
const forceStopWait = 20 * time.Second

// forceStop stops the service at t that did not answer (cause) through its
// PID file, if that names a live service of the user's: its sessions are
// stopped as it exits, or, if it has to be killed, their holders exit with
// it (their parent-death signal). With no such service, nothing holds GPUs
// through it, and cause is the error.
func forceStop(t service.Target, cause error) (service.StopResult, error) {
	p, err := service.ReadPIDFile(service.PIDPath(t.Dir, t.Port))
	if err != nil || p.Verify() != nil {
		return service.StopResult{}, cause
	}
	if _, err := service.StopDaemon(context.Background(), t, true, forceStopWait); err != nil {
		return service.StopResult{}, fmt.Errorf("%v; stopping it through its PID file: %w", cause, err)
	}
	return service.StopResult{Stopped: []string{}, TimedOut: []string{}, Failed: []string{}, Errors: map[string]string{},
		Message: fmt.Sprintf("the service (pid %d) did not answer (%v); stopped it through its PID file, and every session with it: "+
			"their holders have exited or exit with it, releasing their VRAM", p.PID, cause)}, nil
}

// ServiceStopCmd is `keepgpu service-stop`.
type ServiceStopCmd struct {
	serviceFlags
	Force bool          `name:"force" env:"-" help:"Stop the service even while sessions hold GPUs (they are stopped first), and kill it if it does not exit."`
	Wait  keeper.Period `name:"wait" default:"60s" placeholder:"DURATION" help:"How long the service has to stop its sessions and exit."`
}

// Run stops the user's service through its PID file, after checking that
// the pid is still that service.
func (c *ServiceStopCmd) Run(io *stdio) error {
	t, err := c.target()
	if err != nil {
		return err
	}
	p, err := service.StopDaemon(context.Background(), t, c.Force, time.Duration(c.Wait))
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "Stopped the keepgpu service at http://%s/ (pid %d)\n", p.Addr, p.PID)
	return nil
}

// MCPCmd is `keepgpu mcp`: an MCP server on stdin and stdout whose tools
// (start_keep, stop_keep, status, list_gpus) call the user's service,
// starting it in the background when needed. Only protocol messages go to
// stdout; anything else goes to stderr or the service's log.
type MCPCmd struct {
	serviceFlags
	AutoStart    bool `name:"auto-start" default:"true" negatable:"" help:"Start the service in the background when it is not running."`
	KeepSessions bool `name:"keep-sessions" help:"Leave the sessions started through this server holding when the client goes (by default they are stopped)."`
}

// Run serves MCP until stdin closes or SIGINT, SIGTERM or SIGHUP, then stops the
// sessions it started (unless --keep-sessions) and returns once their
// GPUs are released.
func (c *MCPCmd) Run(io *stdio) error {
	t, err := c.target()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var cl *service.Client
	connect := func(ctx context.Context) (*service.Client, error) {
		mu.Lock()
		defer mu.Unlock()
		if cl != nil {
			if _, err := cl.Health(ctx); err == nil {
				return cl, nil
			}
		}
		c2, _, err := service.Ensure(ctx, t, c.AutoStart, service.Daemon{})
		if err != nil {
			return nil, err
		}
		cl = c2
		return cl, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second signal ends keepgpu mcp at once
	srv := &service.MCPStdio{Version: buildVersion(), Connect: connect, KeepSessions: c.KeepSessions, Log: io.err}
	return srv.Run(ctx, os.Stdin, io.out)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

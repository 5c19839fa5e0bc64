// Package wrap runs a command beside a GPU holder: the exec shim behind
// `keepgpu wrap`. The command runs as it would without keepgpu; the holder
// is released when the command says it is GPU-ready or exits.
package wrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepgpu/keepgpu/holder"
	"github.com/keepgpu/keepgpu/signals"
)

// Config describes one wrapped run.
type Config struct {
	// Command is the command and its arguments, as given.
	Command []string
	// Env is the command's environment; wrap adds KEEPGPU_PID and
	// KEEPGPU_READY.
	Env []string
	// Holder is what the holder holds; nil means hold nothing. It is
	// started as HolderOptions say, with the command's stderr as its own.
	Holder        *holder.Spec
	HolderOptions holder.Options
	// ReleaseOnGPUUse releases the GPUs as soon as a process of the
	// command's tree uses a held one (and never counts the tree's processes
	// as foreign).
	ReleaseOnGPUUse bool
	// Sources are the configured ready sources (file, FIFO, signal). They
	// are closed when Run returns.
	Sources []signals.Source
	// Marker, when set, watches the command's stdout and stderr, which then
	// pass through keepgpu instead of going straight to the terminal.
	Marker *signals.MarkerSource
	// ReadySignal is not forwarded to the command: it releases the GPUs.
	ReadySignal os.Signal
	// SocketDir is where the `keepgpu ready` socket is made (a private
	// directory is created inside it).
	SocketDir string
	// RequireGPU starts the command only once the GPUs are held; failing to
	// hold exits 125 without starting it.
	RequireGPU bool
	// MaxHold releases the GPUs after this long; 0 never.
	MaxHold time.Duration
	// Quiet keeps keepgpu's own lines off stderr, except warnings.
	Quiet                 bool
	Stdin, Stdout, Stderr *os.File
	// Signals is the catch of every signal that CatchSignals started
	// early; nil means Run starts it.
	Signals *Catch
}

// Catch is keepgpu wrap's catch of every signal it forwards, armed in the
// background.
type Catch struct {
	c     chan os.Signal
	armed chan struct{} // closed once every signal is caught
}

// CatchSignals starts catching, in the background, every signal that
// keepgpu wrap forwards to its command: all but KILL, STOP and 32-34,
// which the Go runtime keeps. Signals that keepgpu's parent ignored
// (nohup's SIGHUP, a shell's SIGINT for a background job) stay ignored, for
// keepgpu and for the command. Arming about 60 signals takes the Go runtime
// a millisecond or more (a round trip to its signal thread for each), so a
// caller starts it as early as it can, before it parses its flags; Run
// waits for it only just before it starts the command, so that no signal
// is lost once the command runs. Caught signals are reset to their
// defaults in the processes keepgpu starts.
func CatchSignals() *Catch {
	c := &Catch{c: make(chan os.Signal, 64), armed: make(chan struct{})}
	catch, ignore := dispositions()
	if len(ignore) > 0 { // Ignore() with no arguments ignores every signal
		signal.Ignore(ignore...)
	}
	go func() {
		defer close(c.armed)
		signal.Notify(c.c, catch...)
	}()
	return c
}

// proc is a process wrap started and reaps itself.
type proc struct {
	pid    int
	done   bool
	status syscall.WaitStatus
}

// Run starts the holder and the command, forwards signals to the command,
// releases the holder on the first ready signal, and returns the exit status
// keepgpu wrap must exit with: the command's, 128+N if signal N killed it,
// 125/126/127 as ExitFailed, ExitNotExecutable and ExitNotFound say. It
// returns after the command has exited and the holder is gone.
func Run(cfg Config) int {
	none := make(chan holder.Event)
	close(none)
	w := &wrapper{cfg: cfg, start: time.Now(), events: none} // events until a holder starts
	return w.run()
}

type wrapper struct {
	cfg    Config
	start  time.Time
	sigs   chan os.Signal
	holder *proc
	child  *proc
	events <-chan holder.Event
	sock   *signals.ReadySocket

	foreground  bool      // the command has its own process group, in the terminal's foreground
	releasing   time.Time // when SIGTERM went to the holder
	releaseWhy  string
	holdingLine bool // "holding" was printed
	holderErr   string
	lastRelease string // the holder's own reason for releasing, if it did
	copies      sync.WaitGroup
	pipes       []*markerPipe // the command's stdout and stderr, with --ready-marker
}

// markerPipe is the read end of a pipe the command writes its stdout or
// stderr to, copied to dst by keepgpu while the command runs.
type markerPipe struct {
	r, dst  *os.File
	handed  atomic.Bool   // r was closed to stop the copy: a relay takes over
	stopped chan struct{} // closed when the copy has ended
}

func (w *wrapper) logf(format string, args ...any) {
	if !w.cfg.Quiet {
		fmt.Fprintf(w.cfg.Stderr, "keepgpu: "+format+"\n", args...)
	}
}

func (w *wrapper) warnf(format string, args ...any) {
	fmt.Fprintf(w.cfg.Stderr, "keepgpu: warning: "+format+"\n", args...)
}

func (w *wrapper) run() int {
	defer func() {
		for _, s := range w.cfg.Sources {
			s.Close()
		}
		if w.cfg.Marker != nil {
			w.cfg.Marker.Close()
		}
	}()
	path, err := lookPath(w.cfg.Command[0])
	if err != nil {
		fmt.Fprintln(w.cfg.Stderr, err)
		return err.(*execError).status
	}

	// Every signal is caught before the command starts, so that none is
	// lost; the catch arms while the socket is set up (see CatchSignals). A
	// signal before then finds no command to forward to (and the holder
	// follows keepgpu out).
	catch := w.cfg.Signals
	if catch == nil {
		catch = CatchSignals()
	}
	w.sigs = catch.c

	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		w.warnf("cannot become a child subreaper: %v", err)
	}

	if dir, err := os.MkdirTemp(w.cfg.SocketDir, "keepgpu-"); err != nil {
		w.warnf("no keepgpu ready socket: %v", err)
	} else if w.sock, err = signals.Listen(dir + "/ready.sock"); err != nil {
		w.warnf("no keepgpu ready socket: %v", err)
		os.RemoveAll(dir)
	} else {
		defer os.RemoveAll(dir)
		defer w.sock.Close()
	}

	// The command and the holder start without waiting on each other. The
	// command must not start before every signal is caught: while the
	// catch still arms, the holder starts first; once it is armed, the
	// command starts first and the holder's start overlaps the command's.
	// With --require-gpu the command starts only once the GPUs are held.
	holderFirst := w.cfg.RequireGPU
	select {
	case <-catch.armed:
	default:
		holderFirst = true
	}
	var holderErr error
	if holderFirst {
		holderErr = w.startHolder()
	}
	<-catch.armed
	if w.cfg.RequireGPU {
		why := ""
		if holderErr != nil {
			why = "cannot start the holder: " + holderErr.Error()
		} else {
			why = w.awaitHolding()
		}
		if why != "" {
			fmt.Fprintf(w.cfg.Stderr, "keepgpu: --require-gpu: %s; not starting the command\n", why)
			return ExitFailed
		}
	}
	if err := w.startChild(path); err != nil {
		fmt.Fprintln(w.cfg.Stderr, err)
		w.release("the command did not start")
		w.awaitHolderExit()
		var ee *execError
		if errors.As(err, &ee) {
			return ee.status
		}
		return ExitNotExecutable
	}
	if !holderFirst {
		holderErr = w.startHolder()
	}
	if w.foreground {
		// The command owns the terminal now and keepgpu is in the
		// background: writing its lines (with stty tostop) or handing the
		// terminal back at the end must not stop it or loop on SIGTTOU.
		// The command and the holder were started before this and keep
		// the defaults.
		signal.Ignore(syscall.SIGTTOU, syscall.SIGTTIN)
	}
	if holderErr != nil {
		w.warnf("holding nothing: cannot start the holder: %v; running the command anyway", holderErr)
	}
	return w.loop()
}

// dispositions splits the signals keepgpu can catch (all but KILL, STOP
// and 32-34, which the Go runtime keeps) into those it catches and forwards
// and those it was started with ignored, which stay ignored.
func dispositions() (catch, ignore []os.Signal) {
	untouched := ignoredUntouched()
	for n := 1; n <= 64; n++ {
		sig := syscall.Signal(n)
		switch {
		case sig == syscall.SIGKILL || sig == syscall.SIGSTOP || (n >= 32 && n <= 34):
		case ignoredAtStart(sig, untouched) && sig != syscall.SIGCHLD: // an ignored SIGCHLD would reap the command for us, status and all
			ignore = append(ignore, sig)
		default:
			catch = append(catch, sig)
		}
	}
	return catch, ignore
}

// startHolder starts the holder (see holder.Start), telling it that
// keepgpu's own process tree is the command's when ReleaseOnGPUUse is set.
func (w *wrapper) startHolder() error {
	if w.cfg.Holder == nil {
		return nil
	}
	spec := *w.cfg.Holder
	if w.cfg.ReleaseOnGPUUse {
		spec.TreeOf = os.Getpid()
	}
	o := w.cfg.HolderOptions
	o.Stderr = w.cfg.Stderr
	h, err := holder.Start(spec, o)
	if err != nil {
		return err
	}
	w.holder, w.events = &proc{pid: h.Process.Pid}, h.Events
	h.Process.Release() // wrap reaps with wait4 itself
	return nil
}

// awaitHolding waits, for --require-gpu, until the holder holds the GPUs or
// fails; it returns why holding failed, or "".
func (w *wrapper) awaitHolding() string {
	if w.holder == nil {
		return "no holder"
	}
	for {
		select {
		case e, ok := <-w.events:
			if !ok {
				if w.holderErr != "" {
					return w.holderErr
				}
				return "the holder exited before holding"
			}
			w.handleEvent(e)
			if e.Kind == holder.Holding {
				return ""
			}
		case s := <-w.sigs:
			switch s {
			case syscall.SIGCHLD, syscall.SIGURG:
				continue
			case syscall.SIGINT, syscall.SIGTERM:
				w.release(signals.Name(s))
				w.awaitHolderExit()
				return "interrupted by " + signals.Name(s)
			}
		}
	}
}

// startChild starts the command: in its own process group and in the
// terminal's foreground when stdin is a terminal (so Ctrl+C and a debugger's
// prompt reach it as they would without keepgpu), in keepgpu's process group
// otherwise.
func (w *wrapper) startChild(path string) error {
	env := append(append([]string{}, w.cfg.Env...), fmt.Sprintf("KEEPGPU_PID=%d", os.Getpid()))
	if w.sock != nil {
		env = append(env, signals.ReadyEnv+"="+w.sock.Path())
	}
	files := []*os.File{w.cfg.Stdin, w.cfg.Stdout, w.cfg.Stderr}
	var pipes []*os.File
	if w.cfg.Marker != nil {
		for i, dst := range []*os.File{w.cfg.Stdout, w.cfg.Stderr} {
			r, wr, err := os.Pipe()
			if err != nil {
				return &execError{ExitFailed, fmt.Sprintf("keepgpu: --ready-marker: %v", err)}
			}
			// A roomier pipe means fewer wake-ups per megabyte copied; the
			// kernel may refuse (pipe-max-size), which costs only speed.
			// (Through SyscallConn, not Fd, which would make r blocking,
			// so that Close wakes a copy blocked reading it: see handOver.)
			if rc, err := r.SyscallConn(); err == nil {
				rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
			}
			files[i+1] = wr
			pipes = append(pipes, wr)
			p := &markerPipe{r: r, dst: dst, stopped: make(chan struct{})}
			w.pipes = append(w.pipes, p)
			w.copies.Add(1)
			go func() {
				defer w.copies.Done()
				defer close(p.stopped)
				err := w.cfg.Marker.Copy(dst, r)
				if p.handed.Load() {
					return // waitCopies closed r: a relay copies the rest
				}
				defer r.Close()
				if err != nil {
					// Our end is gone (a closed stdout): let the command see
					// the broken pipe it would have seen without keepgpu.
					io.Copy(io.Discard, r)
				}
			}()
		}
	}
	sys := &syscall.SysProcAttr{}
	if w.foreground = inForeground(w.cfg.Stdin); w.foreground {
		sys.Setpgid = true
		sys.Foreground = true
		sys.Ctty = 0
	}
	p, err := os.StartProcess(path, w.cfg.Command, &os.ProcAttr{Env: env, Files: files, Sys: sys})
	for _, f := range pipes {
		f.Close()
	}
	if err != nil {
		return startError(w.cfg.Command[0], err)
	}
	w.child = &proc{pid: p.Pid}
	p.Release()
	return nil
}

// inForeground reports whether f is a terminal whose foreground process
// group is keepgpu's: only then may the command take the terminal over (a
// keepgpu started in the background with & must leave it to the shell).
func inForeground(f *os.File) bool {
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// loop forwards signals, reaps, and releases the holder on the first ready
// signal, until the command has exited and the holder is gone.
func (w *wrapper) loop() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan signals.Source, 1)
	srcs := append([]signals.Source{}, w.cfg.Sources...)
	if w.sock != nil {
		srcs = append(srcs, w.sock)
	}
	if w.cfg.Marker != nil {
		srcs = append(srcs, w.cfg.Marker)
	}
	go func() {
		s, err := signals.First(ctx, srcs...)
		switch {
		case err == nil:
			ready <- s
		case s != nil && ctx.Err() == nil && !errors.Is(err, signals.ErrClosed):
			w.warnf("ready %s: %v", s.Name(), err)
		}
	}()
	var maxHold <-chan time.Time
	if w.cfg.MaxHold > 0 {
		maxHold = time.After(w.cfg.MaxHold)
	}
	events := w.events
	for {
		if w.child.done && (w.holder == nil || w.holder.done) && events == nil {
			break
		}
		select {
		case s := <-w.sigs:
			w.signal(s)
		case src := <-ready:
			w.release(w.readyWhy(src))
		case <-maxHold:
			w.release("--max-hold " + w.cfg.MaxHold.String())
		case e, ok := <-events:
			if !ok {
				events = nil
				w.reap() // the holder closed its events: it is exiting
				continue
			}
			w.handleEvent(e)
		case <-time.After(time.Second):
			w.reap() // a SIGCHLD coalesced with another is not lost
		}
	}
	w.finishRelease()
	w.restoreTerminal()
	w.waitCopies()
	return exitStatus(w.child.status)
}

// readyWhy names what fired for the released line.
func (w *wrapper) readyWhy(src signals.Source) string {
	type pather interface{ Path() string }
	switch src.Name() {
	case "ready":
		return "keepgpu ready"
	case "marker":
		return "ready marker"
	case "signal":
		return "ready signal " + signals.Name(w.cfg.ReadySignal)
	}
	if p, ok := src.(pather); ok {
		return "ready " + src.Name() + " " + p.Path()
	}
	return "ready " + src.Name()
}

// signal handles one signal caught by keepgpu.
func (w *wrapper) signal(s os.Signal) {
	sig, _ := s.(syscall.Signal)
	switch sig {
	case syscall.SIGCHLD:
		w.reap()
		return
	case syscall.SIGURG, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE:
		// The Go runtime's own; keepgpu's own terminal access; and a broken
		// pipe of keepgpu's (a ready client that hung up), which says
		// nothing to the command.
		return
	}
	if w.cfg.ReadySignal != nil && s == w.cfg.ReadySignal {
		return // the ready source has it
	}
	if sig == syscall.SIGCONT && w.foreground {
		w.continueChild()
		return
	}
	if !w.child.done {
		if err := syscall.Kill(w.child.pid, sig); err != nil && err != syscall.ESRCH {
			w.warnf("forwarding %s: %v", signals.Name(s), err)
		}
	}
	if sig == syscall.SIGINT || sig == syscall.SIGTERM {
		w.release(signals.Name(s))
	}
}

// release asks the holder to hand the GPUs back (once).
func (w *wrapper) release(why string) {
	if !w.releasing.IsZero() {
		return
	}
	w.releasing = time.Now()
	w.releaseWhy = why
	if w.holder == nil || w.holder.done {
		w.released(nil) // nothing held: the caller may go on at once
		return
	}
	if !w.holdingLine {
		// Still loading the driver or allocating: do not wait for that to
		// finish only to undo it. A process that dies hands everything it
		// held back to the driver before its parent can reap it.
		syscall.Kill(w.holder.pid, syscall.SIGKILL)
		return
	}
	syscall.Kill(w.holder.pid, syscall.SIGTERM)
}

// reap collects every exited child: the command, the holder, and orphans
// of the command's tree that were reparented to keepgpu.
func (w *wrapper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|syscall.WUNTRACED, nil)
		if pid <= 0 || err != nil {
			return
		}
		switch {
		case ws.Stopped():
			if w.child != nil && pid == w.child.pid {
				w.childStopped()
			}
		case w.child != nil && pid == w.child.pid:
			w.child.done, w.child.status = true, ws
			w.release("command exited")
		case w.holder != nil && pid == w.holder.pid:
			w.holder.done, w.holder.status = true, ws
			w.holderExited()
		}
	}
}

// childStopped follows the command into a job-control stop (Ctrl+Z in the
// terminal): keepgpu takes the terminal back and stops itself, so the shell
// sees its job stopped and gets the terminal, as without keepgpu. The holder
// keeps holding. When the shell continues keepgpu (fg, bg), signal hands
// the terminal back to the command if keepgpu is in the foreground, and
// continues the command's process group.
func (w *wrapper) childStopped() {
	if !w.foreground {
		return // not a terminal job: whoever stopped the command continues it
	}
	w.restoreTerminal()
	syscall.Kill(os.Getpid(), syscall.SIGSTOP)
}

// continueChild resumes the command after keepgpu was continued.
func (w *wrapper) continueChild() {
	if !w.foreground || w.child.done {
		return
	}
	if inForeground(w.cfg.Stdin) {
		unix.IoctlSetPointerInt(int(w.cfg.Stdin.Fd()), unix.TIOCSPGRP, w.child.pid)
	}
	syscall.Kill(-w.child.pid, syscall.SIGCONT)
}

// holderExited reports the end of the hold.
func (w *wrapper) holderExited() {
	// The holder wrote its last events before exiting; read them first.
	if w.events != nil {
		for e := range w.events {
			w.handleEvent(e)
		}
	}
	held := time.Since(w.start).Round(time.Millisecond)
	switch {
	case !w.holdingLine && w.holderErr != "":
		w.warnf("%s; the command runs without held GPUs", w.holderErr)
	case !w.holdingLine && !w.releasing.IsZero():
		w.logf("stopped the holder before any GPU was held (%s after %s)", w.releaseWhy, held)
	case !w.holdingLine:
		w.warnf("the GPU holder exited (%s) before holding anything; the command goes on", describe(w.holder.status))
	case !w.releasing.IsZero():
		w.logf("released the GPUs after %s (%s; %s to release)", held, w.releaseWhy,
			time.Since(w.releasing).Round(10*time.Microsecond))
	case w.lastRelease != "":
		w.logf("released the GPUs after %s (%s)", held, w.lastRelease)
	default:
		w.warnf("the GPU holder exited (%s); the command goes on", describe(w.holder.status))
	}
	w.releasing = time.Now() // nothing left to release
	w.released(nil)
}

// released answers every `keepgpu ready` caller.
func (w *wrapper) released(err error) {
	if w.sock != nil {
		w.sock.Released(err)
	}
}

func (w *wrapper) handleEvent(e holder.Event) {
	switch e.Kind {
	case holder.Holding:
		w.holdingLine = true
		if w.releasing.IsZero() {
			w.logf("%s; until the command is ready", e.Message)
		}
	case holder.Paused, holder.Resumed, holder.Telemetry, holder.KernelFailed:
		w.logf("%s", e.Message)
	case holder.Released:
		// The holder released by itself: a signal sent to it directly (under
		// Slurm's proctrack/linuxproc every process of the job gets the TERM).
		if w.lastRelease == "" && e.Reason != "" {
			w.lastRelease = "the holder got " + e.Reason
		}
	case holder.TreeUse:
		w.lastRelease = fmt.Sprintf("the command started using gpu %d: %s", e.GPU, e.Reason)
	case holder.Warning:
		w.warnf("%s", e.Text())
	case holder.Error:
		w.holderErr = e.Text()
	}
}

// awaitHolderExit waits until the holder is gone; sigs are still forwarded.
func (w *wrapper) awaitHolderExit() {
	kill := time.After(30 * time.Second)
	events := w.events
	for w.holder != nil && !w.holder.done {
		select {
		case s := <-w.sigs:
			if w.child != nil {
				w.signal(s)
			} else if s == syscall.SIGCHLD {
				w.reap()
			}
		case e, ok := <-events:
			if ok {
				w.handleEvent(e)
			} else {
				events = nil // the holder is exiting; its SIGCHLD follows
				w.reap()
			}
		case <-kill:
			w.warnf("the holder did not exit 30s after SIGTERM; killing it (the driver frees its memory)")
			syscall.Kill(w.holder.pid, syscall.SIGKILL)
		case <-time.After(50 * time.Millisecond):
			w.reap()
		}
	}
}

// finishRelease makes sure the holder is gone before keepgpu exits.
func (w *wrapper) finishRelease() {
	w.release("command exited")
	w.awaitHolderExit()
}

// restoreTerminal gives the terminal back to keepgpu's process group, which
// the shell that started keepgpu expects in the foreground.
// It does so only while the command's group holds the terminal: after a bg
// the shell has it, and keeps it.
func (w *wrapper) restoreTerminal() {
	if !w.foreground {
		return
	}
	fd := int(w.cfg.Stdin.Fd())
	if pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err == nil && pgrp == w.child.pid {
		unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, unix.Getpgrp())
	}
}

// copyGrace is how long keepgpu, after the command exited, goes on copying
// its output itself before handing the pipes to a relay.
const copyGrace = 100 * time.Millisecond

// waitCopies lets the marker copies drain what the command wrote. A
// descendant left running in the background may keep the pipe open for
// long; it must neither keep keepgpu from exiting with the command's status
// nor lose its output (or get SIGPIPE): after a short grace, each pipe
// still open is handed to a relay process (keepgpu's own binary, `relay`),
// which copies it on until every writer is gone, as the terminal would have
// received it without keepgpu.
func (w *wrapper) waitCopies() {
	done := make(chan struct{})
	go func() { w.copies.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(copyGrace):
	}
	// A copy blocked writing to keepgpu's own stdout (a reader that does
	// not read) is abandoned after a while, as before.
	abandon := time.After(2 * time.Second)
	for _, p := range w.pipes {
		relayed, err := w.handOver(p, abandon)
		if err != nil {
			w.warnf("output of the command's background processes after it exited is lost: %v", err)
		}
		if relayed == nil {
			continue
		}
		if err := w.relay(relayed, p.dst); err != nil {
			w.warnf("output of the command's background processes after it exited is lost: %v", err)
		}
		relayed.Close()
	}
}

// handOver stops p's copy and returns a new descriptor of the pipe for a
// relay, or nil if the copy had ended (every writer gone) or could not be
// stopped before abandon. The copy is stopped by closing its descriptor:
// what it read is written out, what it had not read stays in the pipe.
func (w *wrapper) handOver(p *markerPipe, abandon <-chan time.Time) (*os.File, error) {
	select {
	case <-p.stopped:
		return nil, nil
	default:
	}
	rc, err := p.r.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if cerr := rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	dup := os.NewFile(uintptr(fd), "command output")
	p.handed.Store(true)
	p.r.Close() // wakes the copy, in a read or a splice
	select {
	case <-p.stopped:
		return dup, nil
	case <-abandon:
		dup.Close()
		return nil, errors.New("it could not be written out within 2s of the command's exit")
	}
}

// relay starts a process that copies r to dst until r's writers are all
// gone. It is started in a process group of its own, with nothing of
// keepgpu's but r and dst, and left to run after keepgpu exits.
func (w *wrapper) relay(r, dst *os.File) error {
	path, argv0 := w.cfg.HolderOptions.Path, w.cfg.HolderOptions.Argv0
	if path == "" {
		path = "/proc/self/exe"
	}
	if argv0 == "" {
		argv0 = os.Args[0]
	}
	p, err := os.StartProcess(path, []string{argv0, "relay"}, &os.ProcAttr{
		Env:   holder.Env(os.Environ()),
		Files: []*os.File{r, dst, w.cfg.Stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return err
	}
	return p.Release()
}

func describe(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "signal " + signals.Name(ws.Signal())
	}
	return "unknown status"
}

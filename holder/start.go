package holder

import (
	"os"
	"runtime"
	"sync"
	"syscall"
)

// Options say how Start runs the holder. The zero value runs this
// process's own binary with a clean copy of its environment.
type Options struct {
	// Path is the keepgpu binary (default /proc/self/exe) and Argv0 its
	// argv[0] (default os.Args[0]).
	Path  string
	Argv0 string
	// Env is the holder's environment (default Env(os.Environ())).
	Env []string
	// Stderr receives the holder's own diagnostics (default os.Stderr).
	Stderr *os.File
}

// Holder is a started holder process.
type Holder struct {
	// Process is the holder; the caller waits for it (or reaps it).
	Process *os.Process
	// Events are the holder's events as it reports them. The channel is
	// closed when the holder closes its stdout, that is when it exits.
	Events <-chan Event
}

// Start starts a holder for s: stdin /dev/null, stdout a pipe whose events
// arrive on the Holder's Events, stderr o.Stderr; in a process group of its
// own, so that a terminal's Ctrl+C reaches the supervisor (which then
// releases in order) and not the holder; with SIGTERM as its parent-death
// signal, so that it releases the GPUs when its supervisor dies. The
// holder releases on SIGTERM.
func Start(s Spec, o Options) (*Holder, error) {
	if o.Path == "" {
		o.Path = "/proc/self/exe"
	}
	if o.Argv0 == "" {
		o.Argv0 = os.Args[0]
	}
	if o.Env == nil {
		o.Env = Env(os.Environ())
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	argv := append([]string{o.Argv0}, s.Args()...)
	p, out, err := fork(o.Path, argv, o.Env, o.Stderr)
	if err != nil {
		return nil, err
	}
	events := make(chan Event, 64)
	go func() {
		defer out.Close()
		decode(out, events)
	}()
	return &Holder{Process: p, Events: events}, nil
}

// The parent-death signal follows the thread that forks, not the process:
// a holder forked from a thread that later exits would get its SIGTERM
// then, while its supervisor still runs. So every holder is forked from
// one goroutine that stays locked to its thread and never returns: that
// thread lives exactly as long as the supervisor.
var (
	forkOnce sync.Once
	forkReqs chan forkReq
)

type forkReq struct {
	path   string
	argv   []string
	env    []string
	stderr *os.File
	reply  chan forkResult
}

type forkResult struct {
	proc *os.Process
	out  *os.File // the read end of the holder's stdout
	err  error
}

// fork starts path on the forking thread; see forkReqs.
func fork(path string, argv, env []string, stderr *os.File) (*os.Process, *os.File, error) {
	forkOnce.Do(func() {
		forkReqs = make(chan forkReq)
		go forkLoop()
	})
	r := forkReq{path: path, argv: argv, env: env, stderr: stderr, reply: make(chan forkResult, 1)}
	forkReqs <- r
	res := <-r.reply
	return res.proc, res.out, res.err
}

func forkLoop() {
	runtime.LockOSThread() // never unlocked: see forkReqs
	for r := range forkReqs {
		r.reply <- forkOne(r)
	}
}

func forkOne(r forkReq) forkResult {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return forkResult{err: err}
	}
	defer devnull.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		return forkResult{err: err}
	}
	p, err := os.StartProcess(r.path, r.argv, &os.ProcAttr{
		Env:   r.env,
		Files: []*os.File{devnull, wr, r.stderr},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true},
	})
	wr.Close()
	if err != nil {
		rd.Close()
		return forkResult{err: err}
	}
	return forkResult{proc: p, out: rd}
}

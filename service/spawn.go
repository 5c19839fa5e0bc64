package service

import (
	"os"
	"runtime"
	"sync"
	"syscall"
)

// The parent-death signal is tied to the thread that forks, not to the
// process: a holder started from a thread that later exits would get its
// SIGTERM then, while the service still runs. So every holder is forked
// from one goroutine that stays locked to its thread and never returns:
// that thread lives exactly as long as the service.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	path  string
	argv  []string
	env   []string
	reply chan spawnResult
}

type spawnResult struct {
	proc *os.Process
	out  *os.File // the read end of the holder's stdout
	err  error
}

// spawn starts path with argv and env: stdin /dev/null, stdout a pipe
// returned to the caller, stderr the service's own; in a process group of
// its own (a terminal's Ctrl+C reaches the service, which then stops its
// sessions in order), with SIGTERM as its parent-death signal.
func spawn(path string, argv, env []string) (*os.Process, *os.File, error) {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go spawnLoop()
	})
	r := spawnReq{path: path, argv: argv, env: env, reply: make(chan spawnResult, 1)}
	spawnReqs <- r
	res := <-r.reply
	return res.proc, res.out, res.err
}

func spawnLoop() {
	runtime.LockOSThread() // never unlocked: see above
	for r := range spawnReqs {
		r.reply <- spawnOne(r)
	}
}

func spawnOne(r spawnReq) spawnResult {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return spawnResult{err: err}
	}
	defer devnull.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		return spawnResult{err: err}
	}
	p, err := os.StartProcess(r.path, r.argv, &os.ProcAttr{
		Env:   r.env,
		Files: []*os.File{devnull, wr, os.Stderr},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true},
	})
	wr.Close()
	if err != nil {
		rd.Close()
		return spawnResult{err: err}
	}
	return spawnResult{proc: p, out: rd}
}

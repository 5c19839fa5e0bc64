package holder

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// descends reports whether pid is root or one of its descendants,
// following parent links as the kernel reports them. Orphans of the tree
// count as long as root is their subreaper (keepgpu wrap makes itself one).
//
// Under keepgpu wrap every held GPU's compute processes are checked every
// window, so the answer for each pid is remembered (see known) and /proc is
// walked only for a process not seen before. A remembered answer holds for
// as long as the same process lives: a process outside root's tree never
// enters it (an orphan goes to a subreaper among its ancestors, or init),
// and one inside stays inside while root is its subreaper. A process that
// ends, and a new one that reuses its pid, are told apart by a descriptor
// of the first one's /proc/PID/stat, which fails to read once it is gone.
func descends(pid, root int) bool {
	if pid == root {
		return true
	}
	if pid <= 1 {
		return false
	}
	knownMu.Lock()
	defer knownMu.Unlock()
	if known == nil {
		known = make(map[treeKey]member)
	}
	k := treeKey{pid, root}
	if m, ok := known[k]; ok {
		if m.alive() {
			return m.in
		}
		m.close()
		delete(known, k)
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // gone already
	}
	m := member{stat: fd}
	ppid, err := m.parent()
	if err != nil {
		m.close()
		return false
	}
	in, sure := walk(ppid, root)
	if len(known) >= maxKnown {
		forgetGone()
	}
	if !sure || len(known) >= maxKnown {
		m.close()
		return in
	}
	m.in = in
	known[k] = m
	return in
}

// maxKnown bounds the processes remembered (and the descriptors held
// open); beyond it, /proc is walked every time, as for a process not seen
// before.
const maxKnown = 256

// known remembers, for each pid asked about and the root it was asked
// about, whether it descends from root.
var (
	knownMu sync.Mutex
	known   map[treeKey]member
	walks   int // walks of /proc, for tests
)

type treeKey struct{ pid, root int }

// member is what descends remembers of one process.
type member struct {
	stat int  // an open descriptor of the process's /proc/PID/stat
	in   bool // it descends from the root
}

// alive reports whether the process that m.stat was opened for still
// exists (a zombie does): reads of the descriptor fail with ESRCH once it
// has been reaped, even when another process has its pid by now.
func (m member) alive() bool {
	var buf [64]byte
	_, err := unix.Pread(m.stat, buf[:], 0)
	return err == nil
}

// parent reads the process's parent pid from m.stat.
func (m member) parent() (int, error) {
	var buf [1024]byte
	n, err := unix.Pread(m.stat, buf[:], 0)
	if err != nil {
		return 0, err
	}
	return parentPID(string(buf[:n]))
}

func (m member) close() { unix.Close(m.stat) }

// forgetGone drops the processes that have ended from known.
func forgetGone() {
	for k, m := range known {
		if !m.alive() {
			m.close()
			delete(known, k)
		}
	}
}

// walk follows parent links up from pid, which is a parent's, and reports
// whether it meets root, and whether the answer is sure (false when a
// process on the way ended under it). An ancestor already known answers
// for the rest of the way.
func walk(pid, root int) (in, sure bool) {
	walks++
	for i := 0; i < 512 && pid > 1; i++ { // the bound only guards against a pid cycle while processes come and go
		if pid == root {
			return true, true
		}
		if m, ok := known[treeKey{pid, root}]; ok && m.alive() {
			return m.in, true
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false, false
		}
		if pid, err = parentPID(string(b)); err != nil {
			return false, false
		}
	}
	return pid == root, pid <= 1
}

// parentPID reads the parent's pid from the text of /proc/PID/stat:
// "PID (COMM) STATE PPID …". COMM may hold spaces and parentheses, so the
// fields after it are found after the last ')'.
func parentPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, errors.New("stat: no parent pid")
	}
	return strconv.Atoi(f[1])
}

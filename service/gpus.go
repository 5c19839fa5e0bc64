package service

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keepgpu/keepgpu/inventory"
)

// GPU, Process and GPUList are list_gpus's answer: see package inventory.
type (
	GPU     = inventory.GPU
	Process = inventory.Process
	GPUList = inventory.List
)

// gpuCacheFor is how long one reading of the GPUs serves every caller.
const gpuCacheFor = time.Second

// gpuLister reads the GPUs by running `keepgpu list-gpus --json --local`
// (inventory.Local in a process of its own), and concurrent callers share
// one reading. It does not call inventory.Local itself: the service is a
// supervisor, and supervisors never load a driver library; a fault in the
// driver would take every session's supervision with it, and a listing
// that hangs in the driver is killed here after 20s, which a call in this
// process could not be.
type gpuLister struct {
	cfg *Config

	mu       sync.Mutex
	last     GPUList
	at       time.Time
	inflight chan struct{}
}

func (l *gpuLister) list(ctx context.Context) GPUList {
	for {
		l.mu.Lock()
		if !l.at.IsZero() && time.Since(l.at) < gpuCacheFor {
			r := l.last
			l.mu.Unlock()
			return r
		}
		if wait := l.inflight; wait != nil {
			l.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return GPUList{GPUs: []GPU{}, Error: ctx.Err().Error()}
			}
		}
		done := make(chan struct{})
		l.inflight = done
		l.mu.Unlock()

		r := l.read()
		l.mu.Lock()
		l.last, l.at, l.inflight = r, time.Now(), nil
		l.mu.Unlock()
		close(done)
		return r
	}
}

func (l *gpuLister) read() GPUList {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.cfg.HolderPath, "list-gpus", "--json", "--local")
	cmd.Args[0] = l.cfg.Argv0
	cmd.Env = l.cfg.Env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, "keepgpu: "), "error: ")
		if msg == "" {
			msg = err.Error()
		}
		return GPUList{GPUs: []GPU{}, Error: msg}
	}
	var r GPUList
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return GPUList{GPUs: []GPU{}, Error: "list-gpus: " + err.Error()}
	}
	if r.GPUs == nil {
		r.GPUs = []GPU{}
	}
	return r
}

// annotate fills in who each process is: its command, its user, and the
// session it holds for. It copies, leaving the cached list alone.
func annotate(r GPUList, holders map[int]string) GPUList {
	out := GPUList{GPUs: make([]GPU, len(r.GPUs)), Error: r.Error, Note: r.Note}
	for i, g := range r.GPUs {
		g.Processes = append([]Process{}, g.Processes...)
		for j := range g.Processes {
			p := &g.Processes[j]
			p.JobID = holders[p.PID]
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/comm"); err == nil {
				p.Command = strings.TrimSpace(string(b))
			}
			p.User = procUser(p.PID)
		}
		out.GPUs[i] = g
	}
	return out
}

var userNames sync.Map // uid string -> name

// procUser returns the name of the user owning pid, or its uid.
func procUser(pid int) string {
	fi, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return ""
	}
	uid := strconv.Itoa(owner(fi))
	if n, ok := userNames.Load(uid); ok {
		return n.(string)
	}
	name := uid
	if u, err := user.LookupId(uid); err == nil {
		name = u.Username
	}
	userNames.Store(uid, name)
	return name
}

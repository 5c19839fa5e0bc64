package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// maxMCPLine bounds one line of MCP input; a longer line is answered with
// an error and skipped.
const maxMCPLine = 4 << 20

// maxOwedWait bounds how long `keepgpu mcp` waits, once its input has
// ended, for the answers to requests still running; maxOwedWaitSignalled
// once it was signalled.
const (
	maxOwedWait          = 2 * time.Minute
	maxOwedWaitSignalled = 5 * time.Second
)

// MCPStdio is `keepgpu mcp`: MCP, and the service's own methods, as
// newline-delimited JSON-RPC on stdin and stdout. MCP's methods
// (initialize, ping, tools/list) are answered here; the tools and the
// direct methods are calls to the user's service.
type MCPStdio struct {
	Version string
	// Connect returns a client of the service, starting it if need be.
	Connect func(context.Context) (*Client, error)
	// KeepSessions leaves the sessions started through this server
	// running when it ends; by default it stops them, as KeepGPU's stdio
	// server does.
	KeepSessions bool
	// Log gets a line for what happens at the end; nil for none.
	Log io.Writer

	mu      sync.Mutex
	started map[string]bool
}

// Run serves until in ends or ctx is done. Lines are answered in order,
// one at a time, as KeepGPU's stdio server does: a call that a client
// sends after a start_keep sees the session. Each answer is one line. A
// line that is not JSON gets a -32700 parse error, one that is not a
// request -32600, and serving goes on.
//
// Once in has ended, or ctx is done, Run waits for the call in progress
// (at most maxOwedWait; after ctx is done, maxOwedWaitSignalled), then,
// unless KeepSessions, stops every session started through it and returns
// once their GPUs are released.
func (m *MCPStdio) Run(ctx context.Context, in io.Reader, out io.Writer) error {
	srv := &mcpServer{version: m.Version, call: m.forward, started: m.note}
	write := func(b []byte) error {
		_, err := out.Write(append(b, '\n'))
		return err
	}
	var current atomic.Pointer[chan struct{}] // the call in progress: closed once answered
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(in, 64<<10)
		for {
			line, tooLong, err := readLine(r)
			switch {
			case tooLong:
				write(mustJSON(errorResponse(nullID, codeInvalidRequest, fmt.Sprintf("invalid request: line over %d bytes", maxMCPLine))))
			case ctx.Err() != nil:
				readErr <- nil // ending: no new call
				return
			case len(line) > 0:
				done := make(chan struct{})
				current.Store(&done)
				if a := answerRPC(context.WithoutCancel(ctx), line, srv.dispatch); a != nil {
					write(a)
				}
				close(done)
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
		}
	}()
	var err error
	wait := maxOwedWait
	select {
	case err = <-readErr:
	case <-ctx.Done():
		wait = maxOwedWaitSignalled
	}
	if c := current.Load(); c != nil {
		select {
		case <-*c:
		case <-time.After(wait):
		}
	}
	if !m.KeepSessions {
		m.stopStarted()
	}
	return err
}

// forward calls method on the service.
func (m *MCPStdio) forward(ctx context.Context, method string, params json.RawMessage) (any, *apiError) {
	c, err := m.Connect(ctx)
	if err != nil {
		return nil, unavailable(err.Error())
	}
	var p any // nil: the client sends {}
	if len(params) > 0 {
		p = params
	}
	var r json.RawMessage
	if err := c.Call(ctx, method, p, &r); err != nil {
		var re *RPCError
		if errors.As(err, &re) {
			return nil, &apiError{Code: re.Code, Message: re.Message}
		}
		return nil, unavailable(err.Error())
	}
	return r, nil
}

func (m *MCPStdio) note(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started == nil {
		m.started = map[string]bool{}
	}
	m.started[id] = true
}

// stopStarted stops the sessions started through m, in parallel, and
// returns once they are released.
func (m *MCPStdio) stopStarted() {
	m.mu.Lock()
	ids := make([]string, 0, len(m.started))
	for id := range m.started {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	sort.Strings(ids)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := m.Connect(ctx)
	if err != nil {
		m.logf("keepgpu mcp: cannot stop the sessions it started (%v): %v", ids, err)
		return
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r StopResult
			if err := c.Call(ctx, "stop_keep", map[string]any{"job_id": id}, &r); err != nil {
				m.logf("keepgpu mcp: stopping session %s: %v", id, err)
				return
			}
			if len(r.Stopped) > 0 {
				m.logf("keepgpu mcp: the client went: stopped session %s (keepgpu mcp --keep-sessions keeps them)", id)
			} else if len(r.Failed)+len(r.TimedOut) > 0 {
				m.logf("keepgpu mcp: session %s not stopped cleanly: %v", id, r.Errors)
			}
		}()
	}
	wg.Wait()
}

func (m *MCPStdio) logf(format string, args ...any) {
	if m.Log != nil {
		fmt.Fprintf(m.Log, format+"\n", args...)
	}
}

// readLine returns the next line of r without its line ending, trimmed of
// blanks, or reports that it was longer than maxMCPLine (and skips it).
func readLine(r *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > maxMCPLine+2 {
			tooLong = true
		} else {
			buf = append(buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			buf = nil
		}
		return bytes.TrimSpace(buf), tooLong, err
	}
}

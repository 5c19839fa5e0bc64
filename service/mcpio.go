package service

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxMCPLine bounds one line of MCP input; a longer line is answered with
// an error and skipped.
const maxMCPLine = mcp.DefaultMaxLineLength

// MCPTransport is the transport `keepgpu mcp` serves on: newline-delimited
// JSON-RPC read from in and written to out. Unlike the SDK's own stdio
// transport, which ends the session at the first line it cannot read (and
// with it every reply still owed), a line that is not JSON gets a -32700
// parse error, and a JSON line that is not a JSON-RPC message (or has a
// member twice, or is over 4 MiB) gets -32600; the session carries on with
// the next line. See [MCPLines].
//
// At the end of in, the session ends only once every request read has been
// answered (or after maxOwedWait): replies still owed are not lost.
func MCPTransport(in io.Reader, out io.Writer) mcp.Transport {
	o := &owed{ids: map[string]bool{}, none: make(chan struct{}, 1)}
	w := &lockedWriter{w: out, owed: o}
	pr, pw := io.Pipe()
	go func() {
		err := MCPLines(in, writerFunc(func(p []byte) (int, error) {
			o.read(p)
			return pw.Write(p)
		}), w)
		o.wait(maxOwedWait)
		pw.CloseWithError(err)
	}()
	return &mcp.IOTransport{Reader: pr, Writer: w}
}

// maxOwedWait bounds how long `keepgpu mcp` waits, once its input has
// ended, for the answers to requests still running.
const maxOwedWait = 2 * time.Minute

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// owed are the ids of the requests passed on and not yet answered.
type owed struct {
	mu   sync.Mutex
	ids  map[string]bool
	none chan struct{} // gets a value when ids becomes empty
}

// read notes the requests in a line passed on to the server.
func (o *owed) read(line []byte) { o.note(line, true) }

// wrote notes the answers in a line the server wrote.
func (o *owed) wrote(line []byte) { o.note(line, false) }

func (o *owed) note(line []byte, request bool) {
	var msgs []map[string]json.RawMessage
	if json.Unmarshal(line, &msgs) != nil {
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) != nil {
			return
		}
		msgs = append(msgs, m)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range msgs {
		id, ok := m["id"]
		_, isRequest := m["method"]
		if !ok || isRequest != request {
			continue
		}
		var v any
		if json.Unmarshal(id, &v) != nil {
			continue
		}
		key := string(mustJSON(v))
		if request {
			o.ids[key] = true
			continue
		}
		delete(o.ids, key)
		if len(o.ids) == 0 {
			select {
			case o.none <- struct{}{}:
			default:
			}
		}
	}
}

// wait returns once no request is owed an answer, or after d.
func (o *owed) wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		o.mu.Lock()
		n := len(o.ids)
		o.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-o.none:
		case <-t.C:
			return
		}
	}
}

// lockedWriter makes each Write whole: the SDK writes one message per
// Write, and so do MCPLines' answers, so lines never interleave.
type lockedWriter struct {
	mu   sync.Mutex
	w    io.Writer
	owed *owed
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.w.Write(p)
	if l.owed != nil {
		l.owed.wrote(p)
	}
	return n, err
}

func (l *lockedWriter) Close() error { return nil }

// MCPLines copies the JSON-RPC messages of in, one per line, to good, and
// answers each line that is not one on bad with a JSON-RPC error (one Write
// per answer). Blank lines are skipped. It returns nil at the end of in,
// or the first error reading in or writing.
func MCPLines(in io.Reader, good, bad io.Writer) error {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, tooLong, err := readLine(r)
		if len(line) > 0 || tooLong {
			answer := checkMCPLine(line, tooLong)
			var werr error
			if answer != nil {
				_, werr = bad.Write(answer)
			} else {
				_, werr = good.Write(append(line, '\n'))
			}
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
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

// checkMCPLine returns the error answer a line deserves, or nil for a
// JSON-RPC message (or batch) to pass on.
func checkMCPLine(line []byte, tooLong bool) []byte {
	switch {
	case tooLong:
		return mcpError(nullID, codeInvalidRequest, fmt.Sprintf("invalid request: line over %d bytes", maxMCPLine))
	case !json.Valid(line):
		return mcpError(nullID, codeParse, "parse error: not valid JSON")
	}
	if err := duplicateMember(line); err != nil {
		return mcpError(nullID, codeInvalidRequest, "invalid request: "+err.Error())
	}
	if line[0] != '[' {
		if _, err := jsonrpc.DecodeMessage(line); err != nil {
			return mcpError(lineID(line), codeInvalidRequest, "invalid request: "+err.Error())
		}
		return nil
	}
	var batch []json.RawMessage
	if json.Unmarshal(line, &batch) != nil || len(batch) == 0 {
		return mcpError(nullID, codeInvalidRequest, "invalid request: empty batch")
	}
	ids := map[string]bool{}
	for _, m := range batch {
		if _, err := jsonrpc.DecodeMessage(m); err != nil {
			return mcpError(nullID, codeInvalidRequest, "invalid request in batch: "+err.Error())
		}
		if id := lineID(m); string(id) != "null" {
			if ids[string(id)] {
				return mcpError(nullID, codeInvalidRequest, fmt.Sprintf("invalid request: id %s twice in a batch", id))
			}
			ids[string(id)] = true
		}
	}
	return nil
}

// lineID is the id of a request object, if it has a valid one, else null.
func lineID(line []byte) json.RawMessage {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(line, &m) != nil || !validID(m.ID) {
		return nullID
	}
	return m.ID
}

func mcpError(id json.RawMessage, code int, msg string) []byte {
	return append(mustJSON(errorResponse(id, code, msg)), '\n')
}

package signals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// MarkerSource fires when a marker text appears in the command's output.
// See [Marker].
type MarkerSource struct {
	latch
	text []byte
}

// Marker returns a source that fires when text appears inside one line of
// the output passed through [MarkerSource.Copy]. text must be non-empty and
// must not contain a newline (such a marker could never lie inside a line).
// Close only ends Waits; Copy goes on copying.
func Marker(text string) (*MarkerSource, error) {
	switch {
	case text == "":
		return nil, errors.New("ready marker: empty text")
	case bytes.ContainsAny([]byte(text), "\n"):
		return nil, fmt.Errorf("ready marker %q: contains a newline", text)
	}
	return &MarkerSource{latch: newLatch(), text: []byte(text)}, nil
}

// Name returns "marker".
func (m *MarkerSource) Name() string { return "marker" }

// Wait blocks until the marker has been seen by Copy, ctx is done or m is
// closed.
func (m *MarkerSource) Wait(ctx context.Context) error { return m.wait(ctx) }

// Close makes pending and later Waits return ErrClosed (nil if the marker
// was already seen) and stops Copy's scanning. It is safe to call twice.
func (m *MarkerSource) Close() error {
	m.close()
	return nil
}

// Copy copies src to dst byte for byte until src reports EOF (then it
// returns nil) or a read or write fails (then it returns that error). Each
// chunk is written as soon as it is read, with no line buffering, and only
// then scanned for the marker, so all output up to and including the marker
// reaches dst before Waits return. A marker split across reads is found; one
// split by a newline is not (the marker has none). Once the marker has been
// seen, by this Copy or by another, or m is closed, the rest is a plain
// io.Copy. Copy may run concurrently for stdout and stderr on one m.
func (m *MarkerSource) Copy(dst io.Writer, src io.Reader) error {
	buf := make([]byte, 256*1024)
	keep := len(m.text) - 1
	// tail holds the last keep bytes seen, newlines included, followed
	// by scratch room for the first keep bytes of the next chunk: a match
	// across a chunk boundary lies within those 2*keep bytes.
	tail := make([]byte, 0, 2*keep)
	for !m.hasFired() && !isClosed(m.closed) {
		n, rerr := src.Read(buf)
		if n > 0 {
			p := buf[:n]
			if err := writeAll(dst, p); err != nil {
				return err
			}
			edge := append(tail, p[:min(keep, n)]...)
			if bytes.Contains(edge, m.text) || bytes.Contains(p, m.text) {
				m.fire()
			}
			if n >= keep {
				tail = append(tail[:0], p[n-keep:]...)
			} else {
				tail = append(tail[:0], edge[max(0, len(edge)-keep):]...)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
	_, err := io.Copy(dst, src)
	return err
}

// writeAll writes p to w, reporting a short write as io.ErrShortWrite.
func writeAll(w io.Writer, p []byte) error {
	n, err := w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

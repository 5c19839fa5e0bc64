package signals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// MarkerSource fires when a marker text appears in the command's output.
// See [Marker].
type MarkerSource struct {
	latch
	find finder
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
	return &MarkerSource{latch: newLatch(), find: newFinder([]byte(text))}, nil
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
// seen, by this Copy or by another, or m is closed, the rest is copied
// without scanning. Copy may run concurrently for stdout and stderr on one
// m.
//
// When src is a pipe, Copy moves the data inside the kernel where dst
// allows it: into a pipe it duplicates each chunk with tee(2) and reads the
// copy only to scan it; after the match it splices (splice(2)) into a pipe,
// a socket or a file not opened for appending, touching no byte. A pipe
// dst smaller than 1 MiB is grown to 1 MiB, as wrap's own pipes are, so
// that each wake-up moves more. Anything else (a terminal, an appending
// file, any io.Writer) gets read and write.
func (m *MarkerSource) Copy(dst io.Writer, src io.Reader) error {
	if df, ok := dst.(*os.File); ok {
		if sf, ok := src.(*os.File); ok {
			if done, err := m.copyFiles(df, sf); done {
				return err
			}
		}
	}
	var sc scanner
	buf := make([]byte, 256*1024)
	for !m.done() {
		n, rerr := src.Read(buf)
		if n > 0 {
			if err := writeAll(dst, buf[:n]); err != nil {
				return err
			}
			m.scan(&sc, buf[:n])
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

// done reports whether scanning is over: the marker was seen or m closed.
func (m *MarkerSource) done() bool { return m.hasFired() || isClosed(m.closed) }

// scanner is one stream's scanning state: the last len(marker)-1 bytes
// seen, newlines included, followed by scratch room for the first
// len(marker)-1 bytes of the next chunk: a match across a chunk boundary
// lies within those bytes.
type scanner struct{ tail []byte }

// scan looks for the marker in p, the chunk that follows what sc has seen,
// and fires m if it is there.
func (m *MarkerSource) scan(sc *scanner, p []byte) {
	keep := len(m.find.text) - 1
	if sc.tail == nil {
		sc.tail = make([]byte, 0, 2*keep)
	}
	edge := append(sc.tail, p[:min(keep, len(p))]...)
	if m.find.in(edge) || m.find.in(p) {
		m.fire()
	}
	if len(p) >= keep {
		sc.tail = append(sc.tail[:0], p[len(p)-keep:]...)
	} else {
		sc.tail = append(sc.tail[:0], edge[max(0, len(edge)-keep):]...)
	}
}

// finder searches for one marker. It runs bytes.IndexByte (vectorised) for
// the marker's rarest byte in log text, by a static table, and compares
// the marker around each hit: on text whose bytes often match the marker's
// first byte, which is where bytes.Index slows down, the rare byte seldom
// occurs. Where it too occurs often, the search hands over to bytes.Index.
type finder struct {
	text []byte
	at   int  // the anchor's offset in text
	b    byte // text[at]
}

// commonBytes lists the bytes of English text and program logs, the most
// frequent first; bytes not listed count as rarer than any listed.
const commonBytes = " e\nta0oi1nsr2l.d5c3h4u9m6p87:_-fg/=,bywv()[]kx'\"EzSTjqARIONLC%DPMUG+BFHKWYVX#JQZ"

// rarity is each byte's rank in commonBytes, higher for rarer.
var rarity = func() (r [256]int) {
	for i := range r {
		r[i] = len(commonBytes)
	}
	for i := len(commonBytes) - 1; i >= 0; i-- {
		r[commonBytes[i]] = i
	}
	return r
}()

func newFinder(text []byte) finder {
	f := finder{text: text}
	for i, c := range text {
		if rarity[c] > rarity[text[f.at]] {
			f.at = i
		}
	}
	f.b = text[f.at]
	return f
}

// in reports whether p contains the marker.
func (f *finder) in(p []byte) bool {
	n := len(f.text)
	if len(p) < n {
		return false
	}
	// The anchor of a match lies in p[f.at : end].
	end := len(p) - (n - 1 - f.at)
	fails := 0
	for i := f.at; i < end; {
		j := bytes.IndexByte(p[i:end], f.b)
		if j < 0 {
			return false
		}
		i += j
		if bytes.Equal(p[i-f.at:i-f.at+n], f.text) {
			return true
		}
		i++
		// Too many false hits for the bytes scanned: the anchor is not
		// rare in this text.
		if fails++; fails > 4+i>>4 {
			return bytes.Contains(p[i-f.at:], f.text)
		}
	}
	return false
}

// writeAll writes p to w, reporting a short write as io.ErrShortWrite.
func writeAll(w io.Writer, p []byte) error {
	n, err := w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

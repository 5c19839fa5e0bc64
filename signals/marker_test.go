package signals

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

const testMarker = "KEEPGPU_READY"

func newMarker(t *testing.T, text string) *MarkerSource {
	t.Helper()
	m, err := Marker(text)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// chunkReader returns its chunks one per Read, so tests choose exactly how
// the stream is split.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// splits returns every way to cut s into two reads, and one read per byte.
func splits(s string) map[string][][]byte {
	out := map[string][][]byte{}
	for i := 0; i <= len(s); i++ {
		out[fmt.Sprintf("split%02d", i)] = [][]byte{[]byte(s[:i]), []byte(s[i:])}
	}
	var bytewise [][]byte
	for i := range len(s) {
		bytewise = append(bytewise, []byte{s[i]})
	}
	out["byte by byte"] = bytewise
	return out
}

func TestMarkerScan(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   bool
	}{
		{"start of line", "KEEPGPU_READY rest\n", true},
		{"middle of line", "data 42% KEEPGPU_READY now\n", true},
		{"end of line", "loaded. KEEPGPU_READY\nnext line\n", true},
		{"later line", "one\ntwo\nthree KEEPGPU_READY\n", true},
		{"no trailing newline", "epoch 0 KEEPGPU_READY", true},
		{"whole stream", "KEEPGPU_READY", true},
		{"after a false start", "KEEPGPU_REKEEPGPU_READY\n", true},
		{"repeated prefix", "KKKEEPKEEPGPU_READY", true},
		{"after a partial line", "KEEPGPU_REA\nKEEPGPU_READY\n", true},
		{"absent", "nothing to see\n", false},
		{"prefix only", "KEEPGPU_READ", false},
		{"spans a newline", "KEEPGPU_\nREADY\n", false},
		{"spans a CRLF", "KEEPGPU_REA\r\nDY", false},
		{"newline right before last byte", "KEEPGPU_READ\nY", false},
		{"different case", "keepgpu_ready\n", false},
	}
	for _, tt := range tests {
		for split, chunks := range splits(tt.stream) {
			t.Run(tt.name+"/"+split, func(t *testing.T) {
				m := newMarker(t, testMarker)
				var out bytes.Buffer
				if err := m.Copy(&out, &chunkReader{chunks}); err != nil {
					t.Fatalf("Copy = %v", err)
				}
				if out.String() != tt.stream {
					t.Fatalf("copied %q, want %q", out.String(), tt.stream)
				}
				if m.hasFired() != tt.want {
					t.Fatalf("fired = %v, want %v", m.hasFired(), tt.want)
				}
			})
		}
	}
}

func TestMarkerSingleByte(t *testing.T) {
	m := newMarker(t, "!")
	var out bytes.Buffer
	if err := m.Copy(&out, &chunkReader{[][]byte{[]byte("abc"), []byte("d!e")}}); err != nil {
		t.Fatal(err)
	}
	if !m.hasFired() || out.String() != "abcd!e" {
		t.Fatalf("fired = %v, copied %q", m.hasFired(), out.String())
	}
}

func TestMarkerInvalid(t *testing.T) {
	for _, text := range []string{"", "two\nlines", "\n"} {
		if m, err := Marker(text); err == nil || m != nil {
			t.Errorf("Marker(%q) = %v, %v; want an error", text, m, err)
		}
	}
}

// randomChunks is a reader that returns data in reads of random size, from
// one byte to 100 KiB.
type randomChunks struct {
	data []byte
	rng  *rand.Rand
}

func (r *randomChunks) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(100<<10))
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// binaryStream returns 8 MiB of random binary data whose only newline-free
// stretch of 3 MiB holds the marker in its middle when withMarker is set.
func binaryStream(withMarker bool) []byte {
	data := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{1, 2, 3}).Read(data)
	line := data[2<<20 : 5<<20]
	line[0], line[len(line)-1] = '\n', '\n'
	for i := 1; i < len(line)-1; i++ {
		if line[i] == '\n' {
			line[i] = 0
		}
	}
	if withMarker {
		copy(line[len(line)/2:], testMarker)
	}
	return data
}

func TestMarkerBinaryStream(t *testing.T) {
	for _, withMarker := range []bool{true, false} {
		data := binaryStream(withMarker)
		if bytes.Contains(data, []byte(testMarker)) != withMarker {
			t.Fatal("test data is not what it should be")
		}
		m := newMarker(t, testMarker)
		h := sha256.New()
		src := &randomChunks{data, rand.New(rand.NewPCG(3, 4))}
		if err := m.Copy(h, src); err != nil {
			t.Fatal(err)
		}
		if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
			t.Fatal("copied stream differs from the source")
		}
		if m.hasFired() != withMarker {
			t.Fatalf("fired = %v, want %v", m.hasFired(), withMarker)
		}
	}
}

// orderWriter records, for each write, how many bytes had already been
// written and whether the marker had already fired.
type orderWriter struct {
	m       *MarkerSource
	written int
	early   []int // offsets of writes made after the marker fired
}

func (w *orderWriter) Write(p []byte) (int, error) {
	if w.m.hasFired() {
		w.early = append(w.early, w.written)
	}
	w.written += len(p)
	return len(p), nil
}

// TestMarkerDeliversBeforeFiring checks that every byte up to the end of the
// marker reaches dst before Wait can return.
func TestMarkerDeliversBeforeFiring(t *testing.T) {
	stream := "prelude\nline with KEEPGPU_READY inside\ntail\n"
	end := strings.Index(stream, testMarker) + len(testMarker)
	for split, chunks := range splits(stream) {
		t.Run(split, func(t *testing.T) {
			m := newMarker(t, testMarker)
			w := &orderWriter{m: m}
			if err := m.Copy(w, &chunkReader{chunks}); err != nil {
				t.Fatal(err)
			}
			if !m.hasFired() {
				t.Fatal("did not fire")
			}
			for _, off := range w.early {
				if off < end {
					t.Fatalf("fired before bytes from offset %d (marker ends at %d) were written", off, end)
				}
			}
		})
	}
}

// TestMarkerNoDelay checks that each chunk is passed on before the next
// read, that is, without waiting for a newline.
func TestMarkerNoDelay(t *testing.T) {
	m := newMarker(t, testMarker)
	pr, pw := io.Pipe()
	out := make(chan string)
	dst := writerFunc(func(p []byte) (int, error) {
		out <- string(p)
		return len(p), nil
	})
	copied := make(chan error, 1)
	go func() { copied <- m.Copy(dst, pr) }()
	for _, chunk := range []string{"no newline yet", " KEEPGPU_", "READY", " still none"} {
		go pw.Write([]byte(chunk))
		if got := <-out; got != chunk {
			t.Fatalf("got %q, want %q", got, chunk)
		}
	}
	pw.Close()
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if !m.hasFired() {
		t.Fatal("did not fire")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestMarkerStdoutAndStderr(t *testing.T) {
	for _, markerOn := range []string{"stdout", "stderr"} {
		t.Run(markerOn, func(t *testing.T) {
			m := newMarker(t, testMarker)
			streams := map[string][]byte{
				"stdout": binaryStream(false),
				"stderr": bytes.Repeat([]byte("warning: slow\n"), 100_000),
			}
			streams[markerOn] = append(streams[markerOn], "KEEPGPU_READY\nand more after it\n"...)
			done := waitAsync(guardCtx(t), m)
			var wg sync.WaitGroup
			outs := map[string]*bytes.Buffer{}
			for name, data := range streams {
				pr, pw := io.Pipe()
				out := new(bytes.Buffer)
				outs[name] = out
				wg.Add(2)
				go func() {
					defer wg.Done()
					if err := m.Copy(out, pr); err != nil {
						t.Errorf("%s Copy = %v", name, err)
					}
				}()
				go func() {
					defer wg.Done()
					defer pw.Close()
					src := &randomChunks{data, rand.New(rand.NewPCG(5, 6))}
					io.Copy(pw, src)
				}()
			}
			wg.Wait()
			if err := recv(t, done); err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
			for name, data := range streams {
				if !bytes.Equal(outs[name].Bytes(), data) {
					t.Errorf("%s copied differs from the source", name)
				}
			}
		})
	}
}

var errTest = errors.New("test failure")

type errReader struct{ data []byte }

func (r *errReader) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, errTest
	}
	return n, nil
}

func TestMarkerCopyErrors(t *testing.T) {
	for _, fired := range []bool{false, true} {
		m := newMarker(t, testMarker)
		if fired {
			m.fire() // the plain io.Copy path must behave the same
		}
		var out bytes.Buffer
		if err := m.Copy(&out, &errReader{[]byte("last words")}); !errors.Is(err, errTest) {
			t.Errorf("fired=%v: Copy with failing reader = %v, want %v", fired, err, errTest)
		}
		if out.String() != "last words" {
			t.Errorf("fired=%v: copied %q before the read error, want %q", fired, out.String(), "last words")
		}
		failing := writerFunc(func(p []byte) (int, error) { return 0, errTest })
		if err := m.Copy(failing, strings.NewReader("data")); !errors.Is(err, errTest) {
			t.Errorf("fired=%v: Copy with failing writer = %v, want %v", fired, err, errTest)
		}
		short := writerFunc(func(p []byte) (int, error) { return len(p) - 1, nil })
		if err := m.Copy(short, strings.NewReader("data")); !errors.Is(err, io.ErrShortWrite) {
			t.Errorf("fired=%v: Copy with short writer = %v, want %v", fired, err, io.ErrShortWrite)
		}
	}
}

func TestMarkerWaitCloseCancel(t *testing.T) {
	m := newMarker(t, testMarker)
	ctx, cancel := context.WithCancel(context.Background())
	done := waitAsync(ctx, m)
	cancel()
	if err := recv(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want %v", err, context.Canceled)
	}
	done = waitAsync(guardCtx(t), m)
	m.Close()
	m.Close()
	if err := recv(t, done); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v, want %v", err, ErrClosed)
	}
	// Copy keeps copying after Close.
	var out bytes.Buffer
	if err := m.Copy(&out, strings.NewReader("x KEEPGPU_READY")); err != nil || out.String() != "x KEEPGPU_READY" {
		t.Fatalf("Copy after Close = %v, copied %q", err, out.String())
	}
}

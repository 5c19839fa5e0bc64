package signals

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseReadySignal: ParseReadySignal never panics, never takes a
// signal keepgpu refuses, and reads the number of what it took back.
func FuzzParseReadySignal(f *testing.F) {
	for _, s := range []string{"USR2", "SIGUSR1", "usr2", "12", "012", "+12", "32", "33", "34", "35", "64", "65", "KILL", "RTMIN", "SIGRTMAX", "", "SIG", "ÜSR2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseReadySignal(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("ParseReadySignal(%q): error %q does not quote the value", s, err)
			}
			return
		}
		if sig < 1 || sig > 64 {
			t.Fatalf("ParseReadySignal(%q) = %d", s, sig)
		}
		if why, ok := refused[sig]; ok {
			t.Fatalf("ParseReadySignal(%q) = %v, which %s", s, sig, why)
		}
		if again, err := ParseReadySignal(strconv.Itoa(int(sig))); err != nil || again != sig {
			t.Fatalf("ParseReadySignal(%q) = %d; %d reads back as %v, %v", s, sig, sig, again, err)
		}
	})
}

// FuzzReadySocket: whatever a client sends, the ready socket answers by
// its protocol (one request line of at most 64 bytes: "ready" is accepted
// and, once released, answered "released"; anything else is an unknown
// request), fires only on "ready", and never hangs.
func FuzzReadySocket(f *testing.F) {
	for _, s := range []string{"ready\n", "ready\r\n", "ready", "READY\n", "\n", "", "ready\nready\n", "ready \n", strings.Repeat("r", 63) + "\n", strings.Repeat("r", 64) + "\n", "rea\x00dy\n", "ready\n\xff\xfe"} {
		f.Add([]byte(s))
	}
	dir := shortDir(f)
	n := 0
	f.Fuzz(func(t *testing.T, req []byte) {
		n++
		s, err := Listen(filepath.Join(dir, strconv.Itoa(n)+".sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Released(nil)
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(guard))
		c.Write(req)
		c.(*net.UnixConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%q: reading the answer: %v", req, err)
		}
		line := req
		if i := bytes.IndexByte(req, '\n'); i >= 0 {
			line = req[:i+1]
		}
		ready := len(line) <= maxRequest && len(line) > 0 && strings.TrimRight(string(line), "\r\n") == "ready"
		want := "error unknown request\n"
		if ready {
			want = "accepted\nreleased\n"
		} else if len(req) == 0 {
			want = "" // hung up without a request
		}
		if string(got) != want {
			t.Fatalf("%q: answered %q, want %q", req, got, want)
		}
		if s.hasFired() != ready {
			t.Fatalf("%q: fired %v", req, s.hasFired())
		}
	})
}

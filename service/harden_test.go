package service

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveOn runs s with Serve on a loopback port and returns its address.
func serveOn(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, s) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// TestSlowBody: a client that sends its headers, then its body a byte at a
// time, is cut off once the body timeout has passed.
func TestSlowBody(t *testing.T) {
	s := New(Config{Token: testToken, HolderPath: "/bin/true", Env: []string{},
		HeaderTimeout: 200 * time.Millisecond, BodyTimeout: 500 * time.Millisecond})
	addr := serveOn(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"jsonrpc":"2.0","id":1,"method":"status"}`
	fmt.Fprintf(c, "POST /rpc HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, testToken, len(body))
	start := time.Now()
	cut := false
	for i := 0; i < len(body) && !cut; i++ {
		if _, err := c.Write([]byte{body[i]}); err != nil {
			cut = true
		}
		time.Sleep(100 * time.Millisecond)
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF || err != nil && !isTimeout(err) {
			cut = true
		}
	}
	if !cut {
		t.Fatalf("a body sent a byte per 100ms was still read after %s", time.Since(start).Round(time.Millisecond))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cut off after %s; want about 500ms", d)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestSlowHeaders: a client that never finishes its headers is cut off.
func TestSlowHeaders(t *testing.T) {
	s := New(Config{Token: testToken, HolderPath: "/bin/true", Env: []string{}, HeaderTimeout: 200 * time.Millisecond})
	addr := serveOn(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n", addr)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	io.Copy(io.Discard, c)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("connection with unfinished headers open for %s", d)
	}
}

// TestHostAllowList: requests must name the service by a loopback name,
// an IP address or the host it was told to listen on; other names (a DNS
// rebinding page's) are refused before the token is even looked at.
func TestHostAllowList(t *testing.T) {
	s := New(Config{Token: testToken, HolderPath: "/bin/true", Env: []string{}, Hosts: []string{"node7.cluster"}})
	addr := serveOn(t, s)
	_, port, _ := net.SplitHostPort(addr)
	for _, tt := range []struct {
		host string
		code int
	}{
		{"127.0.0.1:" + port, 200},
		{"localhost:" + port, 200},
		{"LOCALHOST", 200},
		{"localhost.", 200},
		{"[::1]:" + port, 200},
		{"127.0.0.2", 200},
		{"10.1.2.3:" + port, 200},
		{"node7.cluster:" + port, 200},
		{"Node7.Cluster", 200},
		{"evil.example:" + port, 421},
		{"localhost.evil.example", 421},
		{"127.0.0.1.nip.io", 421},
		{"node7.cluster.evil.example", 421},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", tt.host, testToken)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("Host %s: %v", tt.host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("Host %s: HTTP %d %s; want %d", tt.host, resp.StatusCode, b, tt.code)
		}
		if tt.code == 421 && !strings.Contains(string(b), "not a name of this service") {
			t.Errorf("Host %s: %s", tt.host, b)
		}
	}
}

package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Client calls a service's JSON-RPC API with the user's token.
type Client struct {
	Addr  string // host:port
	Token string
	HTTP  *http.Client
}

// ErrUnreachable says nothing listens at the address.
var ErrUnreachable = errors.New("no keepgpu service is running")

// ErrUnauthorized says a service answered but refused the token: it is
// not this user's (another user's service on the same port, say).
var ErrUnauthorized = errors.New("the service there refused your token: it was not started by you (another user's service on this port? choose another --port)")

// RPCError is a JSON-RPC error the service answered with.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return e.Message }

// NewClient returns a client for addr.
func NewClient(addr, token string) *Client {
	return &Client{Addr: addr, Token: token, HTTP: &http.Client{Timeout: 2 * time.Minute}}
}

// URL is the service's base URL.
func (c *Client) URL() string { return "http://" + c.Addr + "/" }

// DashboardURL is the URL that lets a browser in: with the token, once.
func (c *Client) DashboardURL() string { return c.URL() + "?token=" + c.Token }

func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrUnreachable, c.Addr)
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%w at %s (%v)", ErrUnreachable, c.Addr, op.Err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: %w", c.Addr, ErrUnauthorized)
	case http.StatusOK, http.StatusAccepted:
		return b, nil
	}
	return nil, fmt.Errorf("%s %s: HTTP %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
}

// Health asks GET /health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	b, err := c.do(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("%s/health: %w", c.Addr, err)
	}
	return h, nil
}

// Call calls method with params and decodes its result into result. A
// JSON-RPC error comes back as *RPCError.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	if string(p) == "null" { // nil, or a nil map: no parameters
		p = []byte("{}")
	}
	req, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": json.RawMessage(p)})
	if err != nil {
		return err
	}
	b, err := c.do(ctx, http.MethodPost, "/rpc", req)
	if err != nil {
		return err
	}
	var resp struct {
		Result json.RawMessage `json:"result"`
		Error  *RPCError       `json:"error"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(resp.Result, result)
}

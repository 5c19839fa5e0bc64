// Package service is keepgpu's local daemon: it supervises sessions
// (holder processes), serves the JSON-RPC and REST APIs and the dashboard
// to the user who started it (and no one else), and speaks MCP.
package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/keepgpu/keepgpu/holder"
)

// Config configures a Server.
type Config struct {
	// Token is the secret every request must carry.
	Token string
	// HolderPath is the keepgpu binary holders and GPU listings run
	// (default /proc/self/exe), with argv[0] Argv0 (default os.Args[0]).
	HolderPath string
	Argv0      string
	// Env is the holders' environment (default: this process's, less
	// KEEPGPU_* settings, which the holder's flags replace; see holder.Env).
	Env []string
	// StopTimeout is how long a holder has to exit after SIGTERM before it
	// is killed (default 10s).
	StopTimeout time.Duration
	// MaxSessions bounds the sessions, failed ones included (default 256).
	MaxSessions int
	// Version is reported by /health.
	Version string
	// Log receives a line per session event; nil for none.
	Log io.Writer
	// Hosts are the names, besides loopback names and IP addresses, that
	// requests may carry in their Host header: the host the service was
	// told to listen on. Any other name is refused (421), so a web page
	// whose name an attacker points at this machine (DNS rebinding) gets
	// nowhere even before the token is checked.
	Hosts []string
	// StartWait bounds how long start_keep waits for a new session's
	// holder to hold (default 30s); a session still starting then is
	// answered as such.
	StartWait time.Duration
	// HeaderTimeout bounds reading a request's headers, BodyTimeout the
	// whole request, body included (defaults 10s and 30s): a client that
	// sends slowly is cut off.
	HeaderTimeout, BodyTimeout time.Duration
}

// MaxBody is the largest request body accepted (KeepGPU's limit).
const MaxBody = 1_000_000

// Server is the service: an http.Handler over its sessions.
type Server struct {
	cfg      Config
	sessions *sessions
	lister   *gpuLister
	mcp      *mcpServer
	started  time.Time
	mux      *http.ServeMux
}

// New returns a Server for cfg, with the defaults filled in.
func New(cfg Config) *Server {
	if cfg.HolderPath == "" {
		cfg.HolderPath = "/proc/self/exe"
	}
	if cfg.Argv0 == "" {
		cfg.Argv0 = os.Args[0]
	}
	if cfg.Env == nil {
		cfg.Env = holder.Env(os.Environ())
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 256
	}
	if cfg.StartWait <= 0 {
		cfg.StartWait = 30 * time.Second
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 10 * time.Second
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	s := &Server{cfg: cfg, started: time.Now()}
	s.sessions = newSessions(&s.cfg)
	s.lister = &gpuLister{cfg: &s.cfg}
	s.mcp = &mcpServer{version: cfg.Version, call: s.direct}
	s.routes()
	return s
}

// Shutdown refuses new sessions and stops every session, in parallel. It
// returns once every holder has exited (or been killed after the stop
// timeout).
func (s *Server) Shutdown() StopResult { return s.sessions.shutdown() }

// Live is the number of sessions whose holder still runs.
func (s *Server) Live() int { return s.sessions.live() }

// Serve serves s on ln until ctx is done, then stops every session before
// it stops serving: a client asking what happened is answered until the
// holders are gone.
func Serve(ctx context.Context, ln net.Listener, s *Server) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.HeaderTimeout,
		ReadTimeout:       s.cfg.BodyTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Shutdown()
		return err
	case <-ctx.Done():
	}
	s.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = hs.Close()
	}
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// cookieName holds the token for the browser once it came as ?token=.
const cookieName = "keepgpu_token"

// ServeHTTP checks the Host header and the token, then serves the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if !s.hostOK(r.Host) {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMisdirectedRequest)
		fmt.Fprintf(w, "Host %q is not a name of this service: use 127.0.0.1, localhost or the address it listens on\n", r.Host)
		return
	}
	if q := r.URL.Query(); q.Has("token") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// The browser's way in: trade the token in the URL for a cookie,
		// and take the token out of the address bar and history.
		if !s.tokenOK(q.Get("token")) {
			unauthorized(w)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.cfg.Token, Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
		q.Del("token")
		clean := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
		http.Redirect(w, r, clean.String(), http.StatusSeeOther)
		return
	}
	byCookie := false
	tok := ""
	if a := r.Header.Get("Authorization"); a != "" {
		if t, ok := strings.CutPrefix(a, "Bearer "); ok {
			tok = strings.TrimSpace(t)
		}
	} else if t := r.Header.Get("X-KeepGPU-Token"); t != "" {
		tok = t
	} else if c, err := r.Cookie(cookieName); err == nil {
		tok, byCookie = c.Value, true
	}
	if !s.tokenOK(tok) {
		unauthorized(w)
		return
	}
	if byCookie && r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodDelete &&
		!isJSON(r.Header.Get("Content-Type")) {
		// A page elsewhere can make the browser post a form, never JSON
		// without asking first: cookie-borne writes must be JSON.
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	if !s.canonical(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// canonical answers, as KeepGPU 1.0.0 does, a request for an API route
// spelt in any but its plain form, and reports whether the request is to
// be served: a path that is not clean (//rpc, /api/./gpus) or a route name
// spelt with escapes (/%72pc, /api%2Fsessions) is an unknown route (404),
// never a redirect to the route, and so is a query string on /rpc or a
// collection (/api/gpus?all=1); a session's path with a query string is a
// bad session path (400). Only a job id in /api/sessions/{id} may be
// escaped.
func (s *Server) canonical(w http.ResponseWriter, r *http.Request) bool {
	esc, p := r.URL.EscapedPath(), r.URL.Path
	clean := path.Clean(esc)
	if strings.HasSuffix(esc, "/") && clean != "/" {
		clean += "/"
	}
	member := strings.HasPrefix(esc, "/api/sessions/")
	api := p == "/rpc" || p == "/api" || strings.HasPrefix(p, "/api/")
	switch {
	case clean != esc, api && esc != p && !member:
		writeError(w, http.StatusNotFound, "unknown endpoint: "+esc)
		return false
	case r.URL.RawQuery == "":
		return true
	case member:
		writeError(w, http.StatusBadRequest, "invalid session path for job_id: "+esc+" takes no query string")
		return false
	case p == "/rpc" || p == "/api/gpus" || p == "/api/sessions":
		writeError(w, http.StatusNotFound, "unknown endpoint: "+esc+"?"+r.URL.RawQuery+" (this route takes no query string)")
		return false
	}
	return true
}

// hostOK reports whether a request's Host header names this service: a
// loopback name (localhost, *.localhost), an IP address, or one of
// Config.Hosts. A name is what DNS rebinding needs; an address is not.
func (s *Server) hostOK(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || net.ParseIP(host) != nil {
		return true
	}
	for _, h := range s.cfg.Hosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

// tokenOK compares in constant time (and independent of length).
func (s *Server) tokenOK(t string) bool {
	if t == "" || s.cfg.Token == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(t)), sha256.Sum256([]byte(s.cfg.Token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// unauthorized says nothing about what is behind it.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, "unauthorized\n")
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// routes builds the mux. Every route answers a wrong method with 405 and
// an Allow header.
func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/health", methods{"GET": s.health}.serve)
	s.mux.HandleFunc("/rpc", methods{"POST": s.rpc}.serve)
	s.mux.HandleFunc("/api/gpus", methods{"GET": s.apiGPUs}.serve)
	s.mux.HandleFunc("/api/sessions", methods{"GET": s.apiList, "POST": s.apiStart, "DELETE": s.apiStopAll}.serve)
	s.mux.HandleFunc("/api/sessions/{id}", methods{"GET": s.apiGet, "DELETE": s.apiStop}.serve)
	s.mux.HandleFunc("/{$}", methods{"GET": s.static, "POST": s.rpc}.serve) // KeepGPU takes JSON-RPC on / too
	s.mux.HandleFunc("/", s.static)
}

// methods routes one path by method; HEAD is served as GET.
type methods map[string]http.HandlerFunc

func (m methods) serve(w http.ResponseWriter, r *http.Request) {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if h, ok := m[method]; ok {
		h(w, r)
		return
	}
	var allow []string
	for _, k := range []string{"GET", "HEAD", "POST", "DELETE"} {
		if _, ok := m[k]; ok || (k == "HEAD" && m["GET"] != nil) {
			allow = append(allow, k)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

// Health is GET /health.
type Health struct {
	OK                 bool    `json:"ok"`
	Version            string  `json:"version,omitempty"`
	PID                int     `json:"pid"`
	UptimeSeconds      float64 `json:"uptime_seconds"`
	Sessions           int     `json:"sessions"`
	CUDAVisibleDevices *string `json:"cuda_visible_devices"` // what the holders see; null if unset
	// VisibleDevices holds each of VisibilityVars set in the holders'
	// environment.
	VisibleDevices map[string]string `json:"visible_devices"`
}

// VisibilityVars are the variables that number the GPUs a holder sees:
// NVIDIA's, then ROCm's.
var VisibilityVars = []string{"CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h := Health{OK: true, Version: s.cfg.Version, PID: os.Getpid(), UptimeSeconds: time.Since(s.started).Seconds(),
		Sessions: s.sessions.live(), VisibleDevices: map[string]string{}}
	for _, kv := range s.cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "CUDA_VISIBLE_DEVICES" {
			h.CUDAVisibleDevices = &v
		}
		if slices.Contains(VisibilityVars, k) {
			h.VisibleDevices[k] = v
		}
	}
	writeJSON(w, http.StatusOK, h)
}

// readBody reads a bounded request body; it answers 413 itself.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxBody))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	return b, true
}

func (s *Server) rpc(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	out := s.handleRPC(r.Context(), body)
	if out == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(out, '\n'))
}

// gpus lists the GPUs and says which processes are this service's holders.
func (s *Server) gpus(ctx context.Context) GPUList {
	return annotate(s.lister.list(ctx), s.sessions.holderPIDs())
}

// apiGPUs answers 503 when the GPUs cannot be listed (no driver library,
// a driver that fails to initialise), with KeepGPU's error type, as
// list_gpus answers -32000; a driver that sees no GPU is an empty list.
func (s *Server) apiGPUs(w http.ResponseWriter, r *http.Request) {
	l := s.gpus(r.Context())
	if len(l.GPUs) == 0 && l.Error != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{
			"message": l.Error, "type": "DeviceEnumerationUnavailableError"}})
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) apiList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"active_jobs": s.sessions.list()})
}

// apiGet answers a session that does not exist as KeepGPU does: 200,
// {"active": false, ...}.
func (s *Server) apiGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := CheckJobID(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.status(id))
}

func (s *Server) apiStart(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 && !json.Valid(body) {
		writeError(w, http.StatusBadRequest, "request body is not valid JSON")
		return
	}
	p, aerr := parseStart(body)
	if aerr == nil {
		var st Status
		if st, aerr = s.sessions.start(p); aerr == nil {
			// 200, not 201: KeepGPU's code, which its users' scripts check.
			w.Header().Set("Location", "/api/sessions/"+url.PathEscape(st.JobID))
			writeJSON(w, http.StatusOK, st)
			return
		}
	}
	writeError(w, aerr.Status, aerr.Message)
}

func (s *Server) apiStopAll(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.sessions.stop(""))
}

// apiStop answers a session that does not exist as KeepGPU does: 200, a
// result whose message says so.
func (s *Server) apiStop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := CheckJobID(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.sessions.stop(id))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError writes KeepGPU's REST error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"message": msg}})
}

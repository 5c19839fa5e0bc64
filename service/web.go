package service

import (
	"embed"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
)

// The dashboard: plain HTML, CSS and JavaScript, embedded in the binary.
//
//go:embed web
var webFS embed.FS

// webFiles maps each URL path the dashboard has to its file; nothing else
// is served, so no path can reach outside it.
var webFiles = func() map[string][]byte {
	files := map[string][]byte{}
	entries, _ := fs.ReadDir(webFS, "web")
	for _, e := range entries {
		if !e.IsDir() {
			b, _ := webFS.ReadFile("web/" + e.Name())
			files["/"+e.Name()] = b
		}
	}
	files["/"] = files["/index.html"]
	return files
}()

// csp keeps the dashboard to its own files: no inline script, no other origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	b, ok := webFiles[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown endpoint: "+r.URL.Path)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: GET, HEAD)", r.Method, r.URL.Path))
		return
	}
	name := r.URL.Path
	if name == "/" {
		name = "/index.html"
	}
	w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Write(b)
}

package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// uiFiles holds the built web UI: `npm ci && npm run build` in web/ui writes web/ui/dist
// (index.html plus content-hashed files under assets/). The folder always holds a .keep file so
// that the package compiles before the UI is built; the server then serves a placeholder page
// that says how to build the UI.
//
//go:embed all:ui/dist
var uiFiles embed.FS

// uiAssetsCacheControl is the Cache-Control of the UI's content-hashed assets: a changed file
// gets a new name, so a cached one never goes stale (one year, the longest RFC 9111 allows
// caches to rely on, marked immutable so that reloads do not revalidate).
const uiAssetsCacheControl = "public, max-age=31536000, immutable"

// uiIndexCacheControl is the Cache-Control of index.html: revalidated on every load, so a new
// release's asset names are picked up at once.
const uiIndexCacheControl = "no-cache"

// UI returns the built web UI's files rooted at its index.html, and whether the UI is built
// (false: only the .keep placeholder is embedded).
func UI() (fs.FS, bool) {
	sub, err := fs.Sub(uiFiles, "ui/dist")
	if err != nil {
		panic("BUG: embedded ui/dist is not a directory: " + err.Error())
	}
	if _, err := fs.Stat(sub, "index.html"); err != nil {
		return sub, false
	}
	return sub, true
}

// serveUI serves GET / (index.html, or the placeholder page when the UI is not built) and
// GET /assets/... (the hashed bundle files, cached for a year).
func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	ui, built := UI()
	if r.URL.Path == "/" {
		if !built {
			w.Header().Set("Cache-Control", uiIndexCacheControl)
			s.serveIndex(w, r)
			return
		}
		w.Header().Set("Cache-Control", uiIndexCacheControl)
		index, err := fs.ReadFile(ui, "index.html")
		if err != nil {
			s.respondError(w, r, &apiError{typ: errorInternal, err: fmt.Errorf("reading the embedded index.html: %w", err)})
			return
		}
		// The ETag lets a no-cache revalidation end in 304 Not Modified.
		sum := sha256.Sum256(index)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
		return
	}
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if !built || !strings.HasPrefix(name, "assets/") {
		s.respondError(w, r, &apiError{typ: errorNotFound, err: errNoUIFile(r.URL.Path, built)})
		return
	}
	if _, err := fs.Stat(ui, name); err != nil {
		s.respondError(w, r, &apiError{typ: errorNotFound, err: errNoUIFile(r.URL.Path, built)})
		return
	}
	w.Header().Set("Cache-Control", uiAssetsCacheControl)
	http.ServeFileFS(w, r, ui, name)
}

type uiFileError struct {
	path  string
	built bool
}

func (e uiFileError) Error() string {
	if !e.built {
		return "no UI file " + e.path + ": the web UI is not built into this binary (run `make build`, which runs npm ci && npm run build in web/ui)"
	}
	return "no UI file " + e.path + " (the UI's files are / and /assets/...)"
}

func errNoUIFile(p string, built bool) error { return uiFileError{path: p, built: built} }

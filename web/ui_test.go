package web

import (
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"testing"
)

// TestUIServing checks what GET / and GET /assets/... answer with the UI this test binary
// embeds: the built UI (index.html no-cache with an ETag, hashed assets cached for a year) or,
// before `npm run build`, the placeholder page that says how to build it.
func TestUIServing(t *testing.T) {
	f := newFixture(t)
	get := func(p string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		resp, body := f.do(t, "GET", p, "", nil, hdr)
		return resp, string(body)
	}
	ui, built := UI()
	_, statErr := os.Stat("ui/dist/index.html")
	if built != (statErr == nil) {
		t.Fatalf("the embedded UI is built=%v but ui/dist/index.html exists=%v: the test binary is stale", built, statErr == nil)
	}
	resp, index := get("/", nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET /: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	// Both pages list the API (the built index.html in its <noscript>).
	if !strings.Contains(index, "POST /api/v1/query") {
		t.Fatalf("GET / does not list the API:\n%s", index)
	}
	resp, body := get("/assets/none.js", nil)
	if resp.StatusCode != 404 || !strings.Contains(body, `"errorType":"not_found"`) {
		t.Fatalf("GET /assets/none.js: %d %s", resp.StatusCode, body)
	}
	if !built {
		t.Log("the UI is not built (npm run build in web/ui): checked the placeholder page only")
		if !strings.Contains(body, "make build") || !strings.Contains(index, "make build") {
			t.Fatalf("the placeholder does not say how to build the UI:\n%s\n%s", index, body)
		}
		return
	}
	if !strings.Contains(index, `<script type="module"`) {
		t.Fatalf("GET / is not the built index.html:\n%s", index)
	}
	if etag == "" {
		t.Fatal("GET / has no ETag")
	}
	if resp, _ := get("/", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("GET / with If-None-Match %s: %d, want 304", etag, resp.StatusCode)
	}
	assets, err := fs.Glob(ui, "assets/*")
	if err != nil || len(assets) == 0 {
		t.Fatalf("no built assets: %v", err)
	}
	for _, a := range assets {
		if !strings.Contains(index, "/"+a) {
			t.Errorf("index.html does not reference %s", a)
		}
		want, err := fs.ReadFile(ui, a)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := get("/"+a, nil)
		if resp.StatusCode != 200 || body != string(want) {
			t.Errorf("GET /%s: %d, %d bytes, want 200 and %d bytes", a, resp.StatusCode, len(body), len(want))
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("GET /%s: Cache-Control %q", a, cc)
		}
		if ct := resp.Header.Get("Content-Type"); path.Ext(a) == ".js" && !strings.Contains(ct, "javascript") {
			t.Errorf("GET /%s: Content-Type %q", a, ct)
		}
	}
}

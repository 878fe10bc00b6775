package demoapp

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// assets holds the page templates, the static files and the OpenAPI
// document, all compiled into the binary.
//
//go:embed assets
var assets embed.FS

// staticFile is one file served under /static/.
type staticFile struct {
	contentType string
	etag        string
	body        []byte
}

// staticTypes are the Content-Types of the static files, by extension.
var staticTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
}

// mustReadAsset returns an embedded file. The files are fixed at build
// time, so a missing one is a build defect and panics.
func mustReadAsset(name string) []byte {
	b, err := fs.ReadFile(assets, "assets/"+name)
	if err != nil {
		panic(fmt.Sprintf("demoapp: reading embedded %s: %v", name, err))
	}
	return b
}

// parsePages parses the HTML templates. Like mustReadAsset, it panics on a
// build defect; the tests render every page.
func parsePages() *template.Template {
	return template.Must(template.ParseFS(assets, "assets/*.html"))
}

// loadStatic reads the files under assets/static, each with a strong ETag
// so that browsers revalidate instead of downloading them again.
func loadStatic() map[string]staticFile {
	entries, err := fs.ReadDir(assets, "assets/static")
	if err != nil {
		panic(fmt.Sprintf("demoapp: reading embedded static files: %v", err))
	}
	files := make(map[string]staticFile, len(entries))
	for _, e := range entries {
		ctype, ok := staticTypes[path.Ext(e.Name())]
		if !ok || e.IsDir() {
			panic(fmt.Sprintf("demoapp: embedded static file %s has no known type", e.Name()))
		}
		body := mustReadAsset("static/" + e.Name())
		sum := sha256.Sum256(body)
		files[e.Name()] = staticFile{
			contentType: ctype,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
			body:        body,
		}
	}
	return files
}

func (a *App) serveStatic(w http.ResponseWriter, r *http.Request) {
	f, ok := a.static[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// render executes the page template name with data and sends it as an
// uncacheable HTML page.
func (a *App) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := a.pages.ExecuteTemplate(&buf, name, data); err != nil {
		a.logger.Error("rendering page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// forwardedHeader is one request header that Moat sets, as received.
type forwardedHeader struct {
	Name   string
	Values []string
	About  string
}

// forwardedHeaders are the request headers the index page shows, with what
// each tells the backend.
var forwardedHeaders = []struct{ name, about string }{
	{"X-Request-Id", "A unique id Moat gave this request. It appears in Moat's access log, in its security events and on its error pages, so one request can be followed end to end."},
	{"X-Forwarded-For", "Your address as Moat saw it. Moat writes this header itself: one sent by a client is believed only from a proxy that Moat was told to trust."},
	{"X-Forwarded-Proto", "The scheme you used to reach Moat: https when Moat terminated TLS for you."},
	{"X-Forwarded-Host", "The host name you asked for."},
	{"Forwarded", "The standard form (RFC 7239) of the same facts, when Moat sends it."},
}

// endpointRow is one line of the index page's endpoint table.
type endpointRow struct {
	Method, Path, Summary string
	Link                  bool
}

// indexData is what the index page shows.
type indexData struct {
	Forwarded  []forwardedHeader
	ViaProxy   bool   // an X-Request-Id arrived
	RemoteAddr string // the backend's TCP peer
	Origin     string // scheme://host the visitor used, as far as the backend can tell
	Endpoints  []endpointRow
}

func (a *App) index(w http.ResponseWriter, r *http.Request) {
	d := indexData{
		RemoteAddr: r.RemoteAddr,
		Origin:     visitorOrigin(r),
		ViaProxy:   r.Header.Get("X-Request-Id") != "",
	}
	for _, f := range forwardedHeaders {
		d.Forwarded = append(d.Forwarded, forwardedHeader{Name: f.name, Values: r.Header.Values(f.name), About: f.about})
	}
	for _, e := range a.endpoints {
		if e.summary == "" {
			continue
		}
		d.Endpoints = append(d.Endpoints, endpointRow{Method: e.method, Path: e.displayPath(), Summary: e.summary, Link: e.link})
	}
	a.render(w, r, http.StatusOK, "index.html", d)
}

// visitorOrigin guesses the scheme and host the visitor typed, for the
// commands the index page suggests. It only ever ends up as page text.
func visitorOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := strings.ToLower(strings.TrimSpace(firstValue(r.Header.Get("X-Forwarded-Proto")))); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := strings.TrimSpace(firstValue(r.Header.Get("X-Forwarded-Host"))); h != "" {
		host = h
	}
	return scheme + "://" + host
}

// firstValue returns the first element of a comma-separated header value.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return first
}

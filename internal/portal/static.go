package portal

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var staticFS embed.FS

// staticMaxAge is how long browsers may reuse an asset without asking.
// Pages link assets with a version query derived from their content, so a
// new Moat build's pages load its new assets at once.
const staticMaxAge = "public, max-age=3600"

// contentTypes lists the extensions StaticHandler serves; a file of any
// other kind is not embedded by mistake into the served set.
var contentTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
	".svg": "image/svg+xml",
}

type asset struct {
	body        []byte
	etag        string // strong, quoted
	version     string // short content hash for the URL query
	contentType string
}

type assetSet map[string]*asset

// loadAssets reads and hashes the embedded static files.
func loadAssets() (assetSet, error) {
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("reading portal assets: %w", err)
	}
	set := make(assetSet, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		ct, ok := contentTypes[path.Ext(e.Name())]
		if !ok {
			return nil, fmt.Errorf("portal asset %s: no content type for its extension", e.Name())
		}
		body, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading portal asset %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(body)
		tag := base64.RawURLEncoding.EncodeToString(sum[:18])
		set[e.Name()] = &asset{
			body:        body,
			etag:        `"` + tag + `"`,
			version:     tag[:12],
			contentType: ct,
		}
	}
	return set, nil
}

// url returns the address of an asset with its version query.
func (s assetSet) url(name string) (string, error) {
	a, ok := s[name]
	if !ok {
		return "", fmt.Errorf("no portal asset %q", name)
	}
	return StaticPrefix + name + "?v=" + a.version, nil
}

// StaticHandler serves the portal's stylesheet, script and icon, embedded in
// the binary, under StaticPrefix; mount it there. It answers GET and HEAD
// with a strong ETag (honouring If-None-Match), Cache-Control public for an
// hour, the asset's Content-Type and X-Content-Type-Options: nosniff. Other
// paths are 404 and other methods 405. It is safe for concurrent use.
func StaticHandler() http.Handler {
	set, err := loadAssets()
	if err != nil {
		// The assets are compiled in; tests load them, so this cannot
		// happen in a released binary.
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		name, ok := strings.CutPrefix(r.URL.Path, StaticPrefix)
		a := set[name]
		if !ok || a == nil {
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", staticMaxAge)
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}

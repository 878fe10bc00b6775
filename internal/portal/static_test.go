package portal

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestStaticHandler(t *testing.T) {
	srv := httptest.NewServer(StaticHandler())
	defer srv.Close()
	get := func(t *testing.T, method, path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	for _, tt := range []struct {
		name, ctype, contains string
	}{
		{"portal.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"},
		{"webauthn.js", "text/javascript; charset=utf-8", "navigator.credentials"},
		{"moat.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, http.MethodGet, StaticPrefix+tt.name, nil)
			if res.StatusCode != http.StatusOK || !strings.Contains(body, tt.contains) {
				t.Fatalf("status %d, body without %q", res.StatusCode, tt.contains)
			}
			h := res.Header
			if h.Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type %q, want %q", h.Get("Content-Type"), tt.ctype)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("no nosniff")
			}
			if h.Get("Cache-Control") != "public, max-age=3600" {
				t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
			}
			etag := h.Get("ETag")
			if !regexp.MustCompile(`^"[A-Za-z0-9_-]{16,}"$`).MatchString(etag) {
				t.Fatalf("ETag %q is not strong", etag)
			}
			res, body = get(t, http.MethodGet, StaticPrefix+tt.name, map[string]string{"If-None-Match": etag})
			if res.StatusCode != http.StatusNotModified || body != "" {
				t.Errorf("If-None-Match: status %d", res.StatusCode)
			}
			res, _ = get(t, http.MethodGet, StaticPrefix+tt.name, map[string]string{"If-None-Match": `"other"`})
			if res.StatusCode != http.StatusOK {
				t.Errorf("stale If-None-Match: status %d", res.StatusCode)
			}
			res, body = get(t, http.MethodHead, StaticPrefix+tt.name, nil)
			if res.StatusCode != http.StatusOK || body != "" || res.Header.Get("ETag") != etag {
				t.Errorf("HEAD: status %d, %d bytes", res.StatusCode, len(body))
			}
			res, _ = get(t, http.MethodGet, StaticPrefix+tt.name+"?v=anything", nil)
			if res.StatusCode != http.StatusOK {
				t.Errorf("versioned URL: status %d", res.StatusCode)
			}
			res, _ = get(t, http.MethodPost, StaticPrefix+tt.name, nil)
			if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("POST: status %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
			}
		})
	}

	for _, path := range []string{
		StaticPrefix, StaticPrefix + "nope.css", StaticPrefix + "../templates/login.html",
		StaticPrefix + "%2e%2e/templates/login.html", StaticPrefix + "static/portal.css",
		"/portal.css", StaticPrefix + "PORTAL.CSS",
	} {
		t.Run("404 "+path, func(t *testing.T) {
			if res, _ := get(t, http.MethodGet, path, nil); res.StatusCode != http.StatusNotFound {
				t.Errorf("status %d, want 404", res.StatusCode)
			}
		})
	}
}

// TestPagesLinkAssets checks that every asset a page links is served, and
// that its version changes with its content.
func TestPagesLinkAssets(t *testing.T) {
	p := testPages(t)
	w := render(t, p, http.StatusOK, PageLogin, LoginData{CSRF: testToken})
	refs := regexp.MustCompile(`(?:href|src)="(/\.moat/static/[^"]+)"`).FindAllStringSubmatch(w.Body.String(), -1)
	if len(refs) < 3 {
		t.Fatalf("page links %d assets, want the stylesheet, script and icon", len(refs))
	}
	h := StaticHandler()
	set, err := loadAssets()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range refs {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, m[1], nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: status %d", m[1], rec.Code)
		}
		name := strings.TrimPrefix(m[1][:strings.IndexByte(m[1], '?')], StaticPrefix)
		if !strings.HasSuffix(m[1], "?v="+set[name].version) || !strings.Contains(rec.Header().Get("ETag"), set[name].version) {
			t.Errorf("%s: version does not match the content hash", m[1])
		}
	}
}

// TestAssetsFollowCSP checks the static files for what OwnPagesCSP would
// block or what would weaken it.
func TestAssetsFollowCSP(t *testing.T) {
	js, err := staticFS.ReadFile("static/webauthn.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"eval(", "new Function", "innerHTML", "outerHTML", "document.write", "setAttribute(\"style", ".style.", "insertAdjacentHTML"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("webauthn.js uses %s", bad)
		}
	}
	css, _ := staticFS.ReadFile("static/portal.css")
	for _, bad := range []string{"@import", "url(", "expression("} {
		if strings.Contains(string(css), bad) {
			t.Errorf("portal.css uses %s, which loads or runs something", bad)
		}
	}
	if !strings.Contains(string(css), ":focus-visible") {
		t.Errorf("portal.css has no visible focus style")
	}
	svg, _ := staticFS.ReadFile("static/moat.svg")
	for _, bad := range []string{"<script", "style=", "href", " on"} {
		if strings.Contains(string(svg), bad) {
			t.Errorf("moat.svg contains %q", bad)
		}
	}
}

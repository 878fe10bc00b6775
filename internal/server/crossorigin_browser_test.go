//go:build unix

package server

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/cors"
	"github.com/moatgw/moat/internal/csrf"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/session"
)

// TestCrossSiteBrowser has headless Chromium, signed in to the gateway,
// send the same auto-submitting form and the same credentialed fetch from
// the gateway's own origin and from a page on another port of the same
// host. Another port is the same site, so the SameSite=Lax session cookie
// goes along and only Moat's CSRF check stands between the page and the
// upstream. A route with a CORS policy then lets the origin it lists read
// credentialed answers and post, and a third, unlisted origin neither. Every
// assertion is on what the upstream received, what the page could read
// and the events Moat recorded.
func TestCrossSiteBrowser(t *testing.T) {
	bin := gatewayChromium(t)
	up := &crossSiteUpstream{}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	other := crossSiteOrigin(t) // listed in the CORS policy of /api
	third := crossSiteOrigin(t) // listed nowhere
	g := startLoginGatewayWith(t, "", loginAccounts, func(string) string {
		return crossSiteRoutes(upSrv.URL, other.URL)
	})
	g.addUser(t, "bea", "user")
	b := startDevtools(t, bin)

	// Sign in through the login page, as a person does.
	b.navigate(g.base + "/app/page")
	b.waitFor(`location.pathname === "` + portal.PathLogin + `" && document.readyState === "complete"`)
	b.typeInto("#username", "bea")
	b.typeInto("#password", testPassword)
	b.click(`form[action="` + portal.PathLogin + `"] button[type="submit"]`)
	b.waitFor(`location.pathname === "/app/page" && document.readyState === "complete"`)
	crossSiteSessionCookie(t, b, g.base)

	// Another port of the same host: same site, another origin.
	if !strings.HasPrefix(other.URL, "https://127.0.0.1:") || !strings.HasPrefix(g.base, "https://127.0.0.1:") || other.URL == g.base {
		t.Fatalf("origins %s and %s are not two ports of one host", other.URL, g.base)
	}

	origins := []struct {
		name     string
		forge    string // prefix of the page that auto-submits the form
		page     string // a page of the origin to run the fetch in
		accepted bool
		site     string // Sec-Fetch-Site the browser sends
	}{
		{name: "own origin", forge: g.base + "/app", page: g.base + "/app/page", accepted: true, site: "same-origin"},
		{name: "other port", forge: other.URL, page: other.URL + "/page", accepted: false, site: "same-site"},
	}
	for _, o := range origins {
		t.Run(o.name+"/form", func(t *testing.T) {
			target := g.base + "/app/form"
			mark := up.mark()
			b.navigate(o.forge + "/forge?to=" + url.QueryEscape(target))
			b.waitFor(`location.href === "` + target + `" && document.readyState === "complete"`)
			status := crossSiteNavStatus(b)
			got := up.since(mark, http.MethodPost, "/app/form")
			if !o.accepted {
				if status != http.StatusForbidden {
					t.Errorf("the browser landed on a %d, want 403", status)
				}
				if len(got) != 0 {
					t.Errorf("the upstream received the forged form: %+v", got)
				}
				crossSiteRefused(t, g.events, csrf.RuleCrossSite, http.MethodPost, "/app/form", "bea")
				return
			}
			if status != http.StatusOK {
				t.Errorf("the browser landed on a %d, want 200", status)
			}
			if len(got) != 1 {
				t.Fatalf("the upstream received %d form posts, want 1: %+v", len(got), got)
			}
			crossSiteSaw(t, got[0], "bea", o.site, "note=sent")
		})

		t.Run(o.name+"/fetch", func(t *testing.T) {
			b.navigate(o.page)
			b.waitFor(`location.href === "` + o.page + `" && document.readyState === "complete"`)
			mark := up.mark()
			// A text/plain body needs no preflight: the browser sends the
			// POST, cookie and all, and Moat alone decides.
			res := crossSiteFetch(t, b, g.base+"/app/fetch",
				`{method: "POST", credentials: "include", headers: {"Content-Type": "text/plain"}, body: "note=sent"}`)
			got := up.since(mark, http.MethodPost, "/app/fetch")
			if !o.accepted {
				if !strings.HasPrefix(res, "rejected:") {
					t.Errorf("the page read the answer: %q", res)
				}
				if len(got) != 0 {
					t.Errorf("the upstream received the forged fetch: %+v", got)
				}
				crossSiteRefused(t, g.events, csrf.RuleCrossSite, http.MethodPost, "/app/fetch", "bea")
				return
			}
			if !strings.HasPrefix(res, "200 ") || !strings.Contains(res, "received POST /app/fetch") {
				t.Errorf("fetch from the own origin = %q, want 200 from the upstream", res)
			}
			if len(got) != 1 {
				t.Fatalf("the upstream received %d fetches, want 1: %+v", len(got), got)
			}
			crossSiteSaw(t, got[0], "bea", o.site, "note=sent")
		})
	}

	api := g.base + "/api/data"
	jsonPost := `{method: "POST", credentials: "include", headers: {"Content-Type": "application/json"}, body: '{"note":"sent"}'}`

	t.Run("cors/allowed origin", func(t *testing.T) {
		b.navigate(other.URL + "/page")
		b.waitFor(`location.origin === "` + other.URL + `" && document.readyState === "complete"`)
		mark := up.mark()

		res := crossSiteFetch(t, b, api, `{credentials: "include"}`)
		if a := crossSiteAPIAnswer(t, res); a.User != "bea" || a.Method != http.MethodGet {
			t.Errorf("credentialed GET read %+v, want bea's GET", a)
		}
		// JSON needs a preflight, which Moat answers from the policy.
		res = crossSiteFetch(t, b, api, jsonPost)
		if a := crossSiteAPIAnswer(t, res); a.User != "bea" || a.Method != http.MethodPost {
			t.Errorf("credentialed POST read %+v, want bea's POST", a)
		}
		if pre := up.since(mark, http.MethodOptions, "/api/data"); len(pre) != 0 {
			t.Errorf("a preflight reached the upstream: %+v", pre)
		}
		got := up.since(mark, http.MethodPost, "/api/data")
		if len(got) != 1 {
			t.Fatalf("the upstream received %d posts, want 1: %+v", len(got), got)
		}
		crossSiteSaw(t, got[0], "bea", "same-site", `{"note":"sent"}`)
		if got[0].Origin != other.URL {
			t.Errorf("the upstream saw Origin %q, want %q", got[0].Origin, other.URL)
		}
	})

	t.Run("cors/unlisted origin", func(t *testing.T) {
		b.navigate(third.URL + "/page")
		b.waitFor(`location.origin === "` + third.URL + `" && document.readyState === "complete"`)
		mark := up.mark()

		// A GET is sent whatever the policy (it must change nothing), but
		// its answer stays out of the page's reach.
		if res := crossSiteFetch(t, b, api, `{credentials: "include"}`); !strings.HasPrefix(res, "rejected:") {
			t.Errorf("an unlisted origin read a credentialed answer: %q", res)
		}
		// The preflight is refused, so the POST is never sent.
		if res := crossSiteFetch(t, b, api, jsonPost); !strings.HasPrefix(res, "rejected:") {
			t.Errorf("an unlisted origin posted JSON: %q", res)
		}
		crossSiteRefused(t, g.events, cors.RuleOrigin, http.MethodOptions, "/api/data", "")
		// A POST that needs no preflight reaches Moat, which refuses it.
		if res := crossSiteFetch(t, b, api,
			`{method: "POST", credentials: "include", headers: {"Content-Type": "text/plain"}, body: "note=sent"}`); !strings.HasPrefix(res, "rejected:") {
			t.Errorf("an unlisted origin posted text: %q", res)
		}
		crossSiteRefused(t, g.events, csrf.RuleCrossSite, http.MethodPost, "/api/data", "bea")
		for _, m := range []string{http.MethodPost, http.MethodOptions} {
			if got := up.since(mark, m, "/api/data"); len(got) != 0 {
				t.Errorf("the upstream received %s from an unlisted origin: %+v", m, got)
			}
		}
	})
}

// crossSiteRoutes are the routes of TestCrossSiteBrowser: /app and /api for
// signed-in users, /api with a CORS policy that lets allowed read and post
// with credentials.
func crossSiteRoutes(upstream, allowed string) string {
	return fmt.Sprintf(`  - name: app
    path: /app
    policy: authenticated
    upstreams: [%[1]s]
  - name: api
    path: /api
    policy: authenticated
    upstreams: [%[1]s]
    cors:
      allowed_origins: [%[2]s]
      allow_credentials: true
      allowed_methods: [GET, POST]
      allowed_headers: [Content-Type]
  - name: site
    path: /
    policy: public
    upstreams: [%[1]s]
`, upstream, allowed)
}

// crossSiteRequest is what the upstream received in one request.
type crossSiteRequest struct {
	Method, Path string
	FetchSite    string // Sec-Fetch-Site
	Origin       string
	User         string // the identity Moat passed on
	Body         string
}

// crossSiteUpstream records every request it receives. It serves a page
// that auto-submits a form (/app/forge), plain pages, and on /api a JSON
// answer naming the user and method.
type crossSiteUpstream struct {
	mu  sync.Mutex
	got []crossSiteRequest
}

func (u *crossSiteUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	req := crossSiteRequest{
		Method: r.Method, Path: r.URL.Path, FetchSite: r.Header.Get("Sec-Fetch-Site"),
		Origin: r.Header.Get("Origin"), User: r.Header.Get(headerUser), Body: string(body),
	}
	u.mu.Lock()
	u.got = append(u.got, req)
	u.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/app/forge":
		crossSiteForgePage(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/"):
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(crossSiteAnswer{User: req.User, Method: req.Method})
	default:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>upstream</title><p>received %s %s</p>\n", template.HTMLEscapeString(r.Method), template.HTMLEscapeString(r.URL.Path))
	}
}

// mark returns a position in the record, for since.
func (u *crossSiteUpstream) mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

// since returns the requests with method and path received after mark.
func (u *crossSiteUpstream) since(mark int, method, path string) []crossSiteRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []crossSiteRequest
	for _, r := range u.got[mark:] {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// crossSiteAnswer is the JSON the upstream answers on /api.
type crossSiteAnswer struct {
	User   string `json:"user"`
	Method string `json:"method"`
}

// crossSiteOrigin starts a site of its own on another loopback port: an
// empty page at /page and at /forge a page that posts a form to the URL in
// its query parameter "to" as soon as it loads.
func crossSiteOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/forge":
			crossSiteForgePage(w, r)
		case "/page":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, "<!doctype html><title>another origin</title><p>nothing to see</p>\n")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// crossSiteForgePage writes a page whose form posts itself, on load, to the
// URL in r's query parameter "to".
func crossSiteForgePage(w http.ResponseWriter, r *http.Request) {
	page := template.Must(template.New("forge").Parse(`<!doctype html>
<title>form</title>
<form method="post" action="{{.}}"><input type="hidden" name="note" value="sent"></form>
<script>document.forms[0].submit()</script>
`))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, r.URL.Query().Get("to"))
}

// crossSiteSessionCookie checks that the browser holds the session cookie
// as Moat set it: Secure, HttpOnly and SameSite=Lax, so that a same-site
// page's requests carry it.
func crossSiteSessionCookie(t *testing.T, b *devtools, base string) {
	t.Helper()
	var res struct {
		Cookies []struct {
			Name     string `json:"name"`
			Secure   bool   `json:"secure"`
			HTTPOnly bool   `json:"httpOnly"`
			SameSite string `json:"sameSite"`
		} `json:"cookies"`
	}
	b.call(b.session, "Network.getCookies", map[string]any{"urls": []string{base + "/"}}, &res)
	for _, c := range res.Cookies {
		if c.Name == session.CookieName {
			if !c.Secure || !c.HTTPOnly || c.SameSite != "Lax" {
				t.Fatalf("session cookie secure=%v httpOnly=%v sameSite=%q, want true, true, Lax", c.Secure, c.HTTPOnly, c.SameSite)
			}
			return
		}
	}
	t.Fatalf("the browser holds no %s after signing in: %+v", session.CookieName, res.Cookies)
}

// crossSiteFetch runs fetch(url, init) in the page and returns "STATUS
// BODY" when the script can read the answer, or "rejected: ERROR" when
// fetch rejects.
func crossSiteFetch(t *testing.T, b *devtools, url, init string) string {
	t.Helper()
	u, _ := json.Marshal(url)
	expr := `fetch(` + string(u) + `, ` + init + `).then(r => r.text().then(t => r.status + " " + t), e => "rejected: " + e)`
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &res)
	if res.ExceptionDetails != nil {
		t.Fatalf("fetch %s: %s", url, res.ExceptionDetails.Text)
	}
	var s string
	if err := json.Unmarshal(res.Result.Value, &s); err != nil {
		t.Fatalf("fetch %s: %s is not a string", url, res.Result.Value)
	}
	return s
}

// crossSiteAPIAnswer decodes a readable 200 answer of /api.
func crossSiteAPIAnswer(t *testing.T, res string) crossSiteAnswer {
	t.Helper()
	body, ok := strings.CutPrefix(res, "200 ")
	var a crossSiteAnswer
	if !ok || json.Unmarshal([]byte(body), &a) != nil {
		t.Errorf("the page could not read a 200 JSON answer: %q", res)
	}
	return a
}

// crossSiteNavStatus returns the HTTP status of the page the browser shows.
func crossSiteNavStatus(b *devtools) int {
	b.t.Helper()
	v, err := b.eval(`performance.getEntriesByType("navigation")[0].responseStatus`)
	var n int
	if err != nil || json.Unmarshal(v, &n) != nil {
		b.t.Fatalf("reading the page's status: %v (%s)", err, v)
	}
	return n
}

// crossSiteSaw checks what the upstream received: from user, with fetch
// metadata site, and body.
func crossSiteSaw(t *testing.T, got crossSiteRequest, user, site, body string) {
	t.Helper()
	if got.User != user {
		t.Errorf("the upstream saw user %q, want %q", got.User, user)
	}
	if got.FetchSite != site {
		t.Errorf("the upstream saw Sec-Fetch-Site %q, want %q", got.FetchSite, site)
	}
	if got.Body != body {
		t.Errorf("the upstream received body %q, want %q", got.Body, body)
	}
}

// crossSiteRefused waits for the request.denied event Moat records for
// method and path with rule, by principal ("" for none), and fails the
// test when it does not come.
func crossSiteRefused(t *testing.T, rec *recorder, rule, method, path, principal string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var seen []string
		for _, e := range rec.all() {
			if e.Kind != "request.denied" || e.Details["method"] != method || e.Details["path"] != path {
				continue
			}
			if e.Rule == rule && e.Principal == principal {
				return
			}
			seen = append(seen, e.Rule+" by "+e.Principal)
		}
		if time.Now().After(deadline) {
			t.Errorf("no request.denied event %s by %q for %s %s (saw %v)", rule, principal, method, path, seen)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

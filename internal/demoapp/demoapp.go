// Package demoapp is the built-in upstream that `moat demo` starts on a
// loopback port and puts behind the gateway, so that a newcomer can watch
// Moat's protections work within a minute.
//
// It behaves like a careless real backend on purpose: it announces itself
// with Server and X-Powered-By banners, leaks a stack trace on /boom, echoes
// the request headers it received on /headers and has an unprotected admin
// area under /admin/. Seen through Moat, the banners are gone, the trace is
// masked, spoofed forwarding and identity headers never arrive and the admin
// area is denied. It also serves a small JSON API described by an OpenAPI
// document, an HTML page explaining what the visitor is looking at, and a
// server-sent events stream that shows responses pass through unbuffered.
//
// Every endpoint is one line of the table returned by App.routes; a new
// endpoint is a new line there and a handler method. The index page lists
// the table, and the tests check that each line answers and that every
// route under /api/ is in the OpenAPI document.
package demoapp

import (
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/assertion"
)

// Banners the backend announces on every response, for Moat to remove.
const (
	ServerBanner    = "demo-backend/1.0"
	PoweredByBanner = "DemoFramework 3.2"
)

// App is the demo backend. It is an [http.Handler] and is safe for
// concurrent use. Its state (the item store) lives in memory and is lost when
// the App is dropped.
type App struct {
	logger     *slog.Logger
	store      *store
	pages      *template.Template
	static     map[string]staticFile
	openAPIDoc []byte
	endpoints  []endpoint
	mux        *http.ServeMux

	tick  time.Duration // time between two events on /events
	ticks int           // events sent on /events before it ends

	verifier atomic.Pointer[assertion.Verifier] // checks X-Moat-Assertion on /whoami
}

// OpenAPIDocument returns the OpenAPI 3.0 document of the backend's JSON
// API, as it serves it at /api/openapi.json.
func (a *App) OpenAPIDocument() []byte { return a.openAPIDoc }

// VerifyAssertionsWith makes /whoami check the X-Moat-Assertion header
// with v, as a backend behind Moat would. It is safe to call while the app
// serves.
func (a *App) VerifyAssertionsWith(v *assertion.Verifier) { a.verifier.Store(v) }

// endpoint is one route of the demo backend.
type endpoint struct {
	method  string // HTTP method; GET also answers HEAD
	path    string // http.ServeMux path pattern
	summary string // shown on the index page; empty hides the endpoint there
	link    bool   // the index page links to the path
	handler http.HandlerFunc
}

// pattern is the endpoint's http.ServeMux pattern.
func (e endpoint) pattern() string { return e.method + " " + e.path }

// displayPath is the path as a visitor would type it.
func (e endpoint) displayPath() string { return strings.TrimSuffix(e.path, "{$}") }

// New returns the demo backend. logger receives a few lines about what the
// backend does (items created, the admin area reached); nil discards them.
func New(logger *slog.Logger) *App {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &App{
		logger:     logger.With("component", "demoapp"),
		store:      newStore(maxItems, seedItems),
		pages:      parsePages(),
		static:     loadStatic(),
		openAPIDoc: mustReadAsset("openapi.json"),
		tick:       time.Second,
		ticks:      10,
		mux:        http.NewServeMux(),
	}
	a.endpoints = a.routes()
	for _, e := range a.endpoints {
		a.mux.HandleFunc(e.pattern(), e.handler)
	}
	return a
}

// routes lists every endpoint of the backend. The order is the order of the
// index page's endpoint table.
func (a *App) routes() []endpoint {
	return []endpoint{
		{method: "GET", path: "/{$}", summary: "This page.", handler: a.index},
		{method: "GET", path: "/static/{file}", handler: a.serveStatic},

		{method: "GET", path: "/api/items", summary: "List the items (JSON).", link: true, handler: a.listItems},
		{method: "POST", path: "/api/items", summary: `Add an item: {"name": "...", "price": 1.5}.`, handler: a.createItem},
		{method: "GET", path: "/api/items/{id}", summary: "One item, or 404 problem+json.", handler: a.getItem},
		{method: "DELETE", path: "/api/items/{id}", summary: "Remove an item.", handler: a.deleteItem},
		{method: "GET", path: "/api/openapi.json", summary: "OpenAPI 3.0 description of the items API.", link: true, handler: a.openAPI},

		{method: "GET", path: "/headers", summary: "Echoes the request headers this backend received.", link: true, handler: a.echoHeaders},
		{method: "GET", path: "/events", summary: "Server-sent events: one tick a second, ten ticks.", link: true, handler: a.events},
		{method: "GET", path: "/boom", summary: "Fails with a 500 and a stack trace, for Moat to mask.", link: true, handler: a.boom},
		{method: "GET", path: "/admin/", summary: "An admin area that Moat's demo policy denies.", link: true, handler: a.admin},
		{method: "GET", path: "/me", summary: "Who is signed in, as Moat tells the backend (X-Moat-User, X-Moat-Roles).", link: true, handler: a.me},
		{method: "GET", path: "/ops/", summary: "An operations area for users with the admin role.", link: true, handler: a.ops},
		{method: "GET", path: "/whoami", summary: "The caller as Moat's signed assertion proves it: a session, or an API key.", handler: a.whoamiAPI},
	}
}

// ServeHTTP answers r, adding the backend's banners to every response.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", ServerBanner)
	h.Set("X-Powered-By", PoweredByBanner)
	a.mux.ServeHTTP(w, r)
}

// writeJSON sends v as a JSON document with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only the backend's own values are encoded; they always marshal.
		http.Error(w, "encoding response", http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// problemDoc is an RFC 9457 problem document.
type problemDoc struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// writeProblem sends an application/problem+json error. The request id
// that Moat put on the request, if any, is echoed so that a user can match
// the answer with Moat's logs.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	b, _ := json.MarshalIndent(problemDoc{
		Type:      "about:blank",
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		RequestID: r.Header.Get("X-Request-Id"),
	}, "", "  ")
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

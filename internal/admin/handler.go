package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// MaxBody is the largest request body the API accepts, in bytes. No
// endpoint reads one; a small one (such as "{}") is ignored.
const MaxBody = 1 << 10

// Refusal reasons of the handler itself, beside those of Allowed.
const (
	ReasonCrossOrigin = "cross_origin" // a cookie-authenticated state change from another origin
	ReasonTarget      = "target"       // the target user has permissions the caller lacks
	ReasonSelf        = "self"         // the caller tried to disable their own account
)

// apiPrefix is where the endpoints are.
const apiPrefix = Prefix + "api/"

// Options configure a Handler.
type Options struct {
	Accounts *accounts.Service // required
	APIKeys  *apikey.Service   // required
	Events   event.Recorder    // nil drops events
	Now      func() time.Time  // nil means time.Now
	// MFAMaxAge is how recently a second factor must have been used for
	// users:manage and apikeys:manage; 0 means DefaultMFAMaxAge.
	MFAMaxAge time.Duration
	Logger    *slog.Logger // nil discards
	// PublicURL is where users reach Moat (accounts.public_url). Its origin
	// is trusted by the cross-origin check, so that a request whose Host
	// was rewritten by a proxy in front of Moat is still recognised as
	// same-origin. Empty trusts no origin beyond the request's own host.
	PublicURL string
}

// Handler serves the administration API. It is safe for concurrent use.
type Handler struct {
	o      Options
	cop    *http.CrossOriginProtection
	routes []route
}

// New returns a Handler. It fails when Accounts or APIKeys is missing,
// MFAMaxAge is negative or PublicURL is not an http or https URL.
func New(o Options) (*Handler, error) {
	if o.Accounts == nil || o.APIKeys == nil {
		return nil, errors.New("admin: accounts and api keys are required")
	}
	if o.MFAMaxAge < 0 {
		return nil, fmt.Errorf("admin: negative mfa maximum age %v", o.MFAMaxAge)
	}
	if o.MFAMaxAge == 0 {
		o.MFAMaxAge = DefaultMFAMaxAge
	}
	if o.Events == nil {
		o.Events = event.Discard{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "admin")
	cop := http.NewCrossOriginProtection()
	if o.PublicURL != "" {
		origin, err := originOf(o.PublicURL)
		if err != nil {
			return nil, fmt.Errorf("admin: public url: %w", err)
		}
		if err := cop.AddTrustedOrigin(origin); err != nil {
			return nil, fmt.Errorf("admin: public url: %w", err)
		}
	}
	return &Handler{o: o, cop: cop, routes: routes()}, nil
}

// originOf returns the "scheme://host[:port]" of an http or https URL.
func originOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http or https URL", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// route is one endpoint: its method, its path after apiPrefix ("*" stands
// for one non-empty segment, the argument), the permission it needs (""
// for any authenticated caller), the action its events are named after
// ("" for none), and what it does.
type route struct {
	method string
	path   []string
	perm   Permission
	action string
	serve  func(h *Handler, ctx context.Context, c *call) (any, error)
}

func routes() []route {
	return []route{
		{http.MethodGet, []string{"whoami"}, "", "", (*Handler).whoami},
		{http.MethodGet, []string{"users"}, UsersRead, "users_list", (*Handler).listUsers},
		{http.MethodGet, []string{"users", "*", "sessions"}, SessionsRead, "sessions_list", (*Handler).listSessions},
		{http.MethodPost, []string{"users", "*", "revoke-sessions"}, SessionsRevoke, "revoke_sessions", (*Handler).revokeSessions},
		{http.MethodPost, []string{"users", "*", "disable"}, UsersDisable, "disable", (*Handler).disable},
		{http.MethodPost, []string{"users", "*", "enable"}, UsersDisable, "enable", (*Handler).enable},
		{http.MethodPost, []string{"users", "*", "reset-mfa"}, UsersManage, "reset_mfa", (*Handler).resetMFA},
		{http.MethodPost, []string{"users", "*", "reset-password"}, UsersManage, "reset_password", (*Handler).resetPassword},
		{http.MethodGet, []string{"apikeys"}, APIKeysRead, "apikeys_list", (*Handler).listAPIKeys},
		{http.MethodPost, []string{"apikeys", "*", "revoke"}, APIKeysManage, "apikey_revoke", (*Handler).revokeAPIKey},
	}
}

// call is one request being served.
type call struct {
	r       *http.Request
	info    *request.Info // may be nil outside the gateway
	p       *authn.Principal
	rt      *route
	arg     string            // the path argument, a user name or a key id
	details map[string]string // facts for the security event
}

// refusal is an action's refusal on policy grounds: it answers e and is
// recorded as admin.denied with reason.
type refusal struct {
	reason string
	e      *problem.Error
}

func (r *refusal) Error() string { return "refused: " + r.reason }

// ServeHTTP answers one request under Prefix. The request's principal is
// request.From(r.Context()).Principal, set by the gateway; without one the
// answer is 401. Then, in order: an unknown path is 404, a wrong method
// 405 with Allow, a body over MaxBody 413, a state change authenticated
// other than by an API key from another origin 403, and a caller without
// the endpoint's permission 403. Each refusal from 401 on is an
// admin.denied event and each action an admin.<action> event.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{r: r, info: request.From(r.Context()), details: map[string]string{}}
	if c.info != nil {
		c.p = c.info.Principal
	}
	if c.p == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="moat"`)
		h.deny(w, c, ReasonUnauthenticated, &problem.Error{Status: http.StatusUnauthorized,
			Detail: "Sign in, or send an API key: the administration API needs an authenticated caller."})
		return
	}
	rt, allow, arg := h.match(r)
	if rt == nil {
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			h.fail(w, c, &problem.Error{Status: http.StatusMethodNotAllowed, Detail: "Use " + strings.Join(allow, " or ") + " here."})
			return
		}
		h.fail(w, c, &problem.Error{Status: http.StatusNotFound, Detail: "There is no such administration endpoint."})
		return
	}
	c.rt, c.arg = rt, arg
	if arg != "" {
		c.details["target"] = clip(arg)
	}
	if e := readBody(w, r); e != nil {
		h.fail(w, c, e)
		return
	}
	if c.p.Method != authn.MethodAPIKey {
		// Only a cookie is sent by a browser on its own, so only requests
		// that did not bring their credential themselves need this.
		if err := h.cop.Check(r); err != nil {
			h.deny(w, c, ReasonCrossOrigin, &problem.Error{Status: http.StatusForbidden, Title: "Cross-origin request refused",
				Detail: "A change made with a session cookie must come from a page of Moat's own origin.", Err: err})
			return
		}
	}
	if rt.perm != "" {
		if ok, reason := Allowed(c.p, rt.perm, h.o.Now(), h.o.MFAMaxAge); !ok {
			h.deny(w, c, reason, h.refusalProblem(c, reason))
			return
		}
	}
	resp, err := rt.serve(h, r.Context(), c)
	var ref *refusal
	var pe *problem.Error
	switch {
	case errors.As(err, &ref):
		h.deny(w, c, ref.reason, ref.e)
		return
	case errors.As(err, &pe):
		h.record(c, "admin."+rt.action, event.Failure, string(rt.perm), map[string]string{"status": strconv.Itoa(pe.Status)})
		h.fail(w, c, pe)
		return
	case err != nil:
		h.record(c, "admin."+rt.action, event.Failure, string(rt.perm), map[string]string{"status": "500"})
		h.fail(w, c, &problem.Error{Status: http.StatusInternalServerError, Detail: "The action could not be completed; see Moat's log.", Err: err})
		return
	}
	if rt.action != "" {
		h.record(c, "admin."+rt.action, event.Success, string(rt.perm), nil)
	}
	h.writeJSON(w, c, resp)
}

// match finds the route for r. With none, allow lists the methods the
// path does take (none for an unknown path).
func (h *Handler) match(r *http.Request) (rt *route, allow []string, arg string) {
	rest, ok := strings.CutPrefix(r.URL.Path, apiPrefix)
	if !ok {
		return nil, nil, ""
	}
	segs := strings.SplitN(rest, "/", 4)
	for i := range h.routes {
		cand := &h.routes[i]
		a, ok := matchPath(cand.path, segs)
		if !ok {
			continue
		}
		if cand.method == r.Method {
			return cand, nil, a
		}
		if !slices.Contains(allow, cand.method) {
			allow = append(allow, cand.method)
		}
	}
	slices.Sort(allow)
	return nil, allow, ""
}

func matchPath(pattern, segs []string) (arg string, ok bool) {
	if len(pattern) != len(segs) {
		return "", false
	}
	for i, p := range pattern {
		switch {
		case p == "*" && segs[i] != "":
			arg = segs[i]
		case p != segs[i]:
			return "", false
		}
	}
	return arg, true
}

// readBody reads and drops a request body of at most MaxBody bytes, and
// refuses a larger one.
func readBody(w http.ResponseWriter, r *http.Request) *problem.Error {
	tooLarge := &problem.Error{Status: http.StatusRequestEntityTooLarge,
		Detail: fmt.Sprintf("The administration API takes no request body; at most %d bytes are accepted.", MaxBody)}
	if r.ContentLength > MaxBody {
		return tooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge
	case err != nil:
		return &problem.Error{Status: http.StatusBadRequest, Detail: "The request body could not be read.", Err: err}
	}
	return nil
}

// refusalProblem is the answer to a refusal by Allowed.
func (h *Handler) refusalProblem(c *call, reason string) *problem.Error {
	switch reason {
	case ReasonMethod:
		return &problem.Error{Status: http.StatusForbidden,
			Detail: "The administration API takes a signed-in session or an API key of a user, nothing else."}
	case ReasonMFAMissing, ReasonMFAStale:
		e := &problem.Error{Status: http.StatusForbidden, Title: "Recent second factor required"}
		within := fmtDuration(h.o.MFAMaxAge)
		if c.p.Method == authn.MethodAPIKey {
			e.Detail = fmt.Sprintf("%s needs a second factor confirmed within the last %s, which an API key cannot give: "+
				"sign in with a second factor and do this from that session.", c.rt.perm, within)
		} else {
			e.Detail = fmt.Sprintf("%s needs a second factor confirmed within the last %s: confirm it at %s, then try again.",
				c.rt.perm, within, portal.PathStepUp)
		}
		return e
	}
	return &problem.Error{Status: http.StatusForbidden,
		Detail: fmt.Sprintf("This needs the %s permission, which none of your roles grants.", c.rt.perm)}
}

func fmtDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0 && d >= 2*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	case d == time.Minute:
		return "minute"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + " minutes"
	}
	return d.String()
}

// deny records an admin.denied event for reason and answers e.
func (h *Handler) deny(w http.ResponseWriter, c *call, reason string, e *problem.Error) {
	d := map[string]string{"reason": reason}
	rule := "admin." + reason
	if c.rt != nil {
		if c.rt.perm != "" {
			d["permission"] = string(c.rt.perm)
		}
		if c.rt.action != "" {
			d["action"] = c.rt.action
		}
	}
	h.record(c, "admin.denied", event.Denied, rule, d)
	h.fail(w, c, e)
}

// fail answers e, logging the internal cause of a server error.
func (h *Handler) fail(w http.ResponseWriter, c *call, e *problem.Error) {
	if e.Status >= 500 {
		h.o.Logger.Error("admin request failed", "request_id", c.requestID(), "path", c.r.URL.Path, "err", e.Err)
	}
	problem.Write(w, c.r, c.requestID(), e)
}

// writeJSON answers 200 with v as JSON. Answers are never cached: some
// carry an enrollment token.
func (h *Handler) writeJSON(w http.ResponseWriter, c *call, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.fail(w, c, &problem.Error{Status: http.StatusInternalServerError, Err: fmt.Errorf("encoding the answer: %w", err)})
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}

// record sends a security event about c: who (the principal's subject;
// its method and, for an API key, the key id in the details), the target
// of the action, and extra details.
func (h *Handler) record(c *call, kind string, outcome event.Outcome, rule string, extra map[string]string) {
	e := event.Event{Time: h.o.Now(), Kind: kind, Outcome: outcome, Rule: rule, Details: map[string]string{}}
	for k, v := range c.details {
		e.Details[k] = v
	}
	for k, v := range extra {
		e.Details[k] = v
	}
	if c.p != nil {
		e.Principal = c.p.Subject
		e.Details["method"] = c.p.Method
		if c.p.KeyID != "" {
			e.Details["key_id"] = c.p.KeyID
		}
	}
	if c.info != nil {
		e.RequestID, e.Route = c.info.ID, c.info.Route
		if c.info.ClientIP.IsValid() {
			e.ClientIP = c.info.ClientIP.String()
		}
	}
	h.o.Events.Record(c.r.Context(), e)
}

// clip bounds a client-chosen value kept in an event.
func clip(s string) string {
	const limit = 128
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "…"
}

func (c *call) requestID() string {
	if c.info == nil {
		return ""
	}
	return c.info.ID
}

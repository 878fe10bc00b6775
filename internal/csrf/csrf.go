// Package csrf protects the applications behind Moat against cross-site
// request forgery (CSRF) on requests a browser authenticates by itself with
// Moat's session cookie.
//
// A Protection is compiled once per route. Its Check judges a request with
// an unsafe method (anything but GET, HEAD and OPTIONS) in three steps, the
// first that applies deciding:
//
//  1. Fetch metadata: Sec-Fetch-Site "same-origin" or "none" (the user
//     typed the address or used a bookmark) passes; "same-site" and
//     "cross-site" are refused unless the Origin header names a trusted
//     origin. Browsers set this header themselves and pages cannot forge
//     it; every current browser sends it.
//  2. Origin: without Sec-Fetch-Site, an Origin header must name the
//     request's own origin (https and its Host) or a trusted origin.
//  3. Token: a client that sends neither header (a script with a cookie
//     jar, an old browser, a privacy filter) must present a token bound to
//     its session, in a request header or in a form field. The token is
//     base64url(nonce || HMAC-SHA-256(k, binding || nonce)), where nonce is
//     16 random bytes, binding identifies the session (the gateway passes,
//     for example, a hash of the session id) and k is derived from the
//     gateway's CSRF key. A forger can neither read a victim's token nor
//     compute one without the key, and a token from the forger's own
//     session does not match the victim's binding.
//
// Tokens reach the application in two ways. Single-page applications read
// them from a cookie that scripts may read (SetCookie) and send them back in
// a header. Server-rendered forms get them from Moat itself: InjectForms
// rewrites text/html responses on the fly, adding a hidden field to every
// form that posts to the page's own origin.
//
// Requests authenticated by a bearer token or an API key need no CSRF
// protection: a browser never attaches those to a request on its own, so a
// forged request carries none. The gateway therefore calls Check only for
// requests authenticated by the session cookie. TLS client certificates and
// HTTP Basic credentials, by contrast, are sent by browsers on cross-site
// requests too; CheckOrigin applies steps 1 and 2 to such requests.
//
// # Safe methods must not change state
//
// CSRF protection covers unsafe methods only: GET, HEAD and OPTIONS always
// pass. This is only sound if the application never changes state on a
// GET. A GET is what a browser sends for an <img>, <script> or <link> tag,
// a link, a redirect or a prefetch, from any site, with the user's cookies
// attached (SameSite=Lax cookies too, for top-level navigations). A page on
// any site can therefore make a logged-in user's browser send any GET to the
// application. Moat lets every GET through, because links and bookmarks
// from elsewhere must keep working and a GET from a link or an image cannot
// carry a token. An application that deletes, transfers, subscribes or logs
// out on a GET can thus be driven by any page its users visit. Use POST,
// PUT, PATCH or DELETE for every action that changes something, and let GET
// only read.
//
// See https://www.w3.org/TR/fetch-metadata/,
// https://www.rfc-editor.org/rfc/rfc6454 (the Origin header) and
// https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html.
package csrf

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// Defaults for Config.
const (
	// DefaultHeader is the request header that carries a token. It is
	// Moat's own name so as not to collide with an application's CSRF
	// header (X-CSRF-Token is common).
	DefaultHeader = "X-Moat-CSRF-Token"
	// DefaultField is the form field InjectForms adds and Check reads.
	DefaultField = "moat_csrf"
	// DefaultCookie is the readable cookie holding a token for scripts.
	// The __Host- prefix makes browsers accept it only when Secure,
	// host-only and Path=/, so a sibling subdomain cannot plant one. It is
	// not the portal's __Host-moat_csrf, which lives on the same hosts.
	DefaultCookie = "__Host-moat_csrf_token"
	// DefaultMaxFormBytes is how much of a form body Check reads, at most,
	// to find the token field.
	DefaultMaxFormBytes = 64 << 10
)

// KeySize is the size of the key New takes.
const KeySize = 32

// Rules name the check that refused a request, for security events.
const (
	RuleCrossSite    = "csrf.cross_site"    // Sec-Fetch-Site says same-site or cross-site, from an untrusted origin
	RuleOrigin       = "csrf.origin"        // the Origin header names an untrusted origin
	RuleTokenMissing = "csrf.token_missing" // neither header, and no token
	RuleTokenInvalid = "csrf.token_invalid" // a token that is malformed, forged or bound to another session
)

// Error is a refusal by Check: the rule that refused and a short,
// non-secret detail for the log. It never contains a token.
type Error struct {
	Rule   string // one of the Rule constants
	Detail string
	Err    error // underlying cause, such as a body read error; may be nil
}

func (e *Error) Error() string {
	msg := "csrf: " + e.Rule
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(rule, format string, args ...any) *Error {
	return &Error{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// Config is the CSRF configuration of one route. The zero Config is valid:
// no trusted origins and the default names.
type Config struct {
	// TrustedOrigins may send unsafe requests across sites, besides the
	// request's own origin. Each is an exact origin, scheme://host[:port]
	// with scheme http or https and no path, compared after lower-casing
	// and dropping the scheme's default port.
	TrustedOrigins []string
	// TrustOrigin, if not nil, is asked about an Origin that is neither
	// the request's own nor in TrustedOrigins; true trusts it. It must be
	// safe for concurrent use. The gateway can pass the route's CORS
	// policy, for origins allowed credentialed cross-origin requests.
	// It is never asked about "null".
	TrustOrigin func(origin string) bool

	HeaderName   string // request header with a token; default DefaultHeader
	FieldName    string // form field with a token; default DefaultField
	CookieName   string // readable token cookie, must start with "__Host-"; default DefaultCookie
	MaxFormBytes int64  // form body prefix read for the field; default DefaultMaxFormBytes
}

// Protection is the CSRF protection of one route. It is immutable after New
// and safe for concurrent use.
type Protection struct {
	macKey    [sha256.Size]byte
	trusted   map[string]bool
	trustFunc func(string) bool
	header    string
	field     string
	cookie    string
	maxForm   int64
}

// New compiles cfg with key, KeySize bytes from a cryptographic source, the
// same on every instance of a cluster. New keeps no reference to key. The
// key is only used through a derived key, so it may be shared with other
// uses that derive their own. Every problem in cfg is reported at once.
func New(key []byte, cfg Config) (*Protection, error) {
	var errs []error
	if len(key) != KeySize {
		errs = append(errs, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize))
	}
	p := &Protection{
		trusted:   make(map[string]bool, len(cfg.TrustedOrigins)),
		trustFunc: cfg.TrustOrigin,
		header:    http.CanonicalHeaderKey(orDefault(cfg.HeaderName, DefaultHeader)),
		field:     orDefault(cfg.FieldName, DefaultField),
		cookie:    orDefault(cfg.CookieName, DefaultCookie),
		maxForm:   cfg.MaxFormBytes,
	}
	for i, o := range cfg.TrustedOrigins {
		n, err := normalizeOrigin(o)
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted origin %d: %w", i, err))
			continue
		}
		p.trusted[n] = true
	}
	if !httpguts.ValidHeaderFieldName(p.header) {
		errs = append(errs, fmt.Errorf("header name %q is not a valid header field name", clip(p.header)))
	}
	if !isFieldName(p.field) {
		errs = append(errs, fmt.Errorf("field name %q: use 1 to 64 letters, digits, '_', '-' or '.'", clip(p.field)))
	}
	if !strings.HasPrefix(p.cookie, "__Host-") || !httpguts.ValidHeaderFieldName(p.cookie) {
		errs = append(errs, fmt.Errorf("cookie name %q must start with __Host- and be a valid cookie name", clip(p.cookie)))
	}
	switch {
	case p.maxForm == 0:
		p.maxForm = DefaultMaxFormBytes
	case p.maxForm < 1024 || p.maxForm > 16<<20:
		errs = append(errs, fmt.Errorf("max form bytes is %d, must be between 1 KiB and 16 MiB", p.maxForm))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("csrf: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("moat csrf token v1"))
	m.Sum(p.macKey[:0])
	return p, nil
}

// HeaderName returns the request header that carries a token.
func (p *Protection) HeaderName() string { return p.header }

// FieldName returns the form field that carries a token.
func (p *Protection) FieldName() string { return p.field }

// CookieName returns the name of the readable token cookie.
func (p *Protection) CookieName() string { return p.cookie }

// Check reports whether r, a request authenticated by the session cookie of
// the session that binding identifies, may go on: nil or an *Error naming
// the rule that refused it. GET, HEAD and OPTIONS always pass; other
// methods go through the steps in the package documentation.
//
// The gateway calls Check only for requests authenticated by the session
// cookie (see the package documentation for the others); binding is a
// value stable for the session's lifetime and different between sessions,
// such as a hash of its id. Check fails closed: several Sec-Fetch-Site or
// Origin headers, an unknown Sec-Fetch-Site value, Origin "null", several
// token headers, and, when the token decides, an empty binding or a body
// it cannot read are refusals.
//
// When the token is needed and not in the header, and the body is a form
// (application/x-www-form-urlencoded or multipart/form-data), Check reads
// at most Config.MaxFormBytes of it to find the field and then puts what it
// read back in front of r.Body, so the upstream receives the same bytes. It
// writes nothing else. Check is safe for concurrent use with different
// requests.
func (p *Protection) Check(r *http.Request, binding []byte) error {
	if isSafe(r.Method) {
		return nil
	}
	decided, err := p.checkHeaders(r)
	if decided || err != nil {
		return err
	}
	tok, err := p.requestToken(r)
	if err != nil {
		return err
	}
	if err := p.verify(binding, tok); err != nil {
		return err
	}
	return nil
}

// CheckOrigin applies only the fetch metadata and Origin steps to r, for
// requests with credentials that browsers attach on their own but no
// session to bind a token to (a TLS client certificate, HTTP Basic). It
// fails open for a request with neither header, as net/http's
// CrossOriginProtection does: such a request comes from a program, not from
// a page in a browser. Otherwise it fails closed like Check. It does not
// read the body and is safe for concurrent use.
func (p *Protection) CheckOrigin(r *http.Request) error {
	if isSafe(r.Method) {
		return nil
	}
	_, err := p.checkHeaders(r)
	return err
}

// Handler returns a handler that runs next for the requests Check accepts
// and answers the others with 403 Forbidden. binding returns the session
// binding of a request authenticated by the session cookie and nil for any
// other request, which is not checked. The gateway, which also records a
// security event, calls Check itself; Handler serves simpler set-ups and
// tests.
func (p *Protection) Handler(next http.Handler, binding func(*http.Request) []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b := binding(r); b != nil {
			if err := p.Check(r, b); err != nil {
				reqID := ""
				if info := request.From(r.Context()); info != nil {
					reqID = info.ID
				}
				problem.Write(w, r, reqID, &problem.Error{
					Status: http.StatusForbidden,
					Title:  "Cross-site request refused",
					Detail: "This request was not sent from the application's own pages. Reload the page and try again.",
					Err:    err,
				})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkHeaders applies the fetch metadata and Origin steps. decided is true
// when one of the headers allowed the request; err is set when one refused
// it; neither means that the request has neither header.
func (p *Protection) checkHeaders(r *http.Request) (decided bool, err error) {
	origins := r.Header.Values("Origin")
	if len(origins) > 1 {
		return false, refuse(RuleOrigin, "%d Origin headers", len(origins))
	}
	origin := ""
	if len(origins) == 1 {
		origin = origins[0]
	}
	switch site := r.Header.Values("Sec-Fetch-Site"); len(site) {
	case 0:
	case 1:
		switch site[0] {
		case "same-origin", "none":
			return true, nil
		case "same-site", "cross-site":
			if p.trustedOrigin(origin) {
				return true, nil
			}
			return false, refuse(RuleCrossSite, "Sec-Fetch-Site %q, Origin %q", site[0], clip(origin))
		default:
			return false, refuse(RuleCrossSite, "unknown Sec-Fetch-Site %q", clip(site[0]))
		}
	default:
		return false, refuse(RuleCrossSite, "%d Sec-Fetch-Site headers", len(site))
	}
	if len(origins) == 0 {
		return false, nil
	}
	if own, ok := ownOrigin(r.Host); ok && origin == own {
		return true, nil
	}
	if p.trustedOrigin(origin) {
		return true, nil
	}
	return false, refuse(RuleOrigin, "Origin %q, Host %q", clip(origin), clip(r.Host))
}

// trustedOrigin reports whether origin, as sent by a browser, is trusted.
// Browsers send origins lower case without a default port, the form the
// trusted origins are kept in, so the lookup is exact.
func (p *Protection) trustedOrigin(origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	if p.trusted[origin] {
		return true
	}
	return p.trustFunc != nil && p.trustFunc(origin)
}

func isSafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// clip shortens client-controlled values quoted in errors and logs.
func clip(s string) string {
	const max = 100
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// isFieldName accepts names safe as is in an HTML attribute value and a
// form body.
func isFieldName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Package headers compiles the security response headers Moat adds to every
// HTTPS response: HSTS (RFC 6797), X-Content-Type-Options, X-Frame-Options
// with the matching CSP frame-ancestors, Referrer-Policy,
// Cross-Origin-Opener-Policy and Permissions-Policy.
//
// A Set is compiled once per route from config and applied to each response
// just before its header is written, so upstream values cannot weaken it.
package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/config"
)

// Off in a header's config value removes that header.
const Off = "off"

// Defaults, chosen to be safe for any application: they forbid framing,
// MIME sniffing, cross-origin opener access, leaking full URLs to other
// origins, and powerful browser features nobody asked for.
const (
	DefaultFrameOptions      = "DENY"
	DefaultReferrerPolicy    = "strict-origin-when-cross-origin"
	DefaultOpenerPolicy      = "same-origin"
	DefaultPermissionsPolicy = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
)

// OwnPagesCSP is the policy on pages Moat itself renders: no script or style
// from anywhere but Moat, nothing inline, no framing.
const OwnPagesCSP = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Set is a compiled list of response headers. It is immutable and safe for
// concurrent use.
type Set struct {
	fixed          []field  // always set, overwriting upstream values
	csp            []string // set only when the response has no CSP of its own
	frameAncestors string   // enforced in a CSP of the response's own; "" when framing is left to it
}

type field struct {
	name  string // canonical
	value []string
}

// Compile builds the Set for one route. Route values override the global
// ones; an empty value keeps the default and "off" removes the header.
// hsts may be nil when the listener is not HTTPS.
func Compile(global, route config.Headers, hsts *config.HSTS) (*Set, error) {
	pick := func(name, routeV, globalV, def string) (string, error) {
		v := def
		if globalV != "" {
			v = globalV
		}
		if routeV != "" {
			v = routeV
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return "", fmt.Errorf("%s: value must not contain line breaks or NUL", name)
		}
		if strings.EqualFold(strings.TrimSpace(v), Off) {
			return "", nil
		}
		return strings.TrimSpace(v), nil
	}
	var errs []error
	s := &Set{}
	add := func(name, v string) {
		if v != "" {
			s.fixed = append(s.fixed, field{http.CanonicalHeaderKey(name), []string{v}})
		}
	}
	if hsts != nil {
		add("Strict-Transport-Security", HSTSValue(*hsts))
	}
	add("X-Content-Type-Options", "nosniff")
	xfo, err := pick("frame_options", route.FrameOptions, global.FrameOptions, DefaultFrameOptions)
	errs = append(errs, err)
	switch strings.ToUpper(xfo) {
	case "", "DENY", "SAMEORIGIN":
		xfo = strings.ToUpper(xfo)
	default:
		errs = append(errs, fmt.Errorf("frame_options: %q is not DENY, SAMEORIGIN or off", xfo))
	}
	add("X-Frame-Options", xfo)
	for _, h := range []struct{ name, key, routeV, globalV, def string }{
		{"Referrer-Policy", "referrer_policy", route.ReferrerPolicy, global.ReferrerPolicy, DefaultReferrerPolicy},
		{"Cross-Origin-Opener-Policy", "cross_origin_opener_policy", route.CrossOriginOpenerPolicy, global.CrossOriginOpenerPolicy, DefaultOpenerPolicy},
		{"Permissions-Policy", "permissions_policy", route.PermissionsPolicy, global.PermissionsPolicy, DefaultPermissionsPolicy},
	} {
		v, err := pick(h.key, h.routeV, h.globalV, h.def)
		errs = append(errs, err)
		add(h.name, v)
	}
	defCSP := ""
	switch xfo {
	case "DENY":
		s.frameAncestors = "frame-ancestors 'none'"
	case "SAMEORIGIN":
		s.frameAncestors = "frame-ancestors 'self'"
	}
	defCSP = s.frameAncestors
	csp, err := pick("content_security_policy", route.ContentSecurityPolicy, global.ContentSecurityPolicy, defCSP)
	errs = append(errs, err)
	if csp != "" {
		s.csp = []string{csp}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// HSTSValue renders a Strict-Transport-Security value.
func HSTSValue(h config.HSTS) string {
	age := h.MaxAge.D()
	if age <= 0 {
		age = 2 * 365 * 24 * time.Hour
	}
	v := "max-age=" + strconv.FormatInt(int64(age/time.Second), 10)
	if h.IncludeSubdomains == nil || *h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// Apply writes the set into h: the fixed headers overwrite whatever is there,
// the CSP is added only when h has none, and a CSP h has is made to carry
// the configured frame-ancestors. It shares the Set's one-element
// value slices with h (an append to them copies), so it does not allocate.
func (s *Set) Apply(h http.Header) {
	for _, f := range s.fixed {
		h[f.name] = f.value
	}
	own, ok := h["Content-Security-Policy"]
	switch {
	case !ok:
		if s.csp != nil {
			h["Content-Security-Policy"] = s.csp
		}
	case s.frameAncestors != "":
		// Browsers ignore X-Frame-Options when a CSP has frame-ancestors,
		// so the response's own CSP must not be able to allow framing.
		h["Content-Security-Policy"] = withFrameAncestors(own, s.frameAncestors)
	}
}

// withFrameAncestors returns the policies with their frame-ancestors
// directive replaced by fa, or fa added where there is none.
func withFrameAncestors(policies []string, fa string) []string {
	out := make([]string, len(policies))
	for i, p := range policies {
		var b strings.Builder
		found := false
		for _, d := range strings.Split(p, ";") {
			d = strings.TrimSpace(d)
			if d == "" {
				continue
			}
			name, _, _ := strings.Cut(d, " ")
			if strings.EqualFold(name, "frame-ancestors") {
				if found {
					continue
				}
				d, found = fa, true
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(d)
		}
		if !found {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(fa)
		}
		out[i] = b.String()
	}
	return out
}

package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// Names of the CSRF cookie, header and form field.
const (
	// CSRFCookie holds the browser's random CSRF id. The __Host- prefix
	// makes browsers accept it only when Secure, host-only and Path=/, so
	// a sibling subdomain cannot plant one.
	CSRFCookie = "__Host-moat_csrf"
	// CSRFHeader carries the token on requests made by webauthn.js.
	CSRFHeader = "X-Moat-CSRF"
)

// Errors of CSRF.Check.
var (
	ErrCSRFOrigin = errors.New("csrf: request from another origin")
	ErrCSRFToken  = errors.New("csrf: missing or invalid token")
)

const (
	csrfKeySize = 32
	csrfIDSize  = 32
	// csrfLabel separates these MACs from any other use of the key.
	csrfLabel = "moat portal csrf v1\x00"
	// maxCSRFFormBytes bounds the form body Check reads to find the token;
	// the portal's forms are a few hundred bytes.
	maxCSRFFormBytes = 64 << 10
)

// b64 encodes ids and tokens. Decoding is strict, so that each value has a
// single accepted spelling.
var b64 = base64.RawURLEncoding.Strict()

// CSRF protects the portal's own forms against cross-site request forgery
// with two independent checks, both of which a state-changing request must
// pass:
//
//   - Fetch metadata: the browser's Sec-Fetch-Site header must say the
//     request comes from the portal's own origin (or from the user, "none").
//     Browsers without it are held to the Origin header, which must then be
//     absent or name the request's own https origin. This is the same check
//     as net/http's CrossOriginProtection.
//   - A token: a random id lives in the __Host-moat_csrf cookie (Secure,
//     HttpOnly, SameSite=Strict), set before any session exists, so the
//     login form is protected too. Each form carries HMAC-SHA-256(key, id)
//     in its "csrf" field, and webauthn.js sends it in the X-Moat-CSRF
//     header. A forger can neither read the cookie nor compute the MAC
//     without the server's key, and cannot set the cookie on the portal's
//     host, so a double-submitted pair that matches was issued by Moat to
//     this browser.
//
// The token needs no server-side state, so it works on every instance of a
// cluster that shares the key. It is bound to the browser's cookie, not to a
// form or a session, and stays valid as long as the cookie does; the fetch
// metadata check stands in front of it.
//
// See https://www.w3.org/TR/fetch-metadata/ and
// https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html.
type CSRF struct {
	key [csrfKeySize]byte
}

// NewCSRF returns a CSRF keyed with key, which must be 32 bytes from a
// cryptographic source, the same on every instance serving the portal.
// NewCSRF keeps a copy.
func NewCSRF(key []byte) (*CSRF, error) {
	if len(key) != csrfKeySize {
		return nil, fmt.Errorf("csrf key is %d bytes, want %d", len(key), csrfKeySize)
	}
	c := &CSRF{}
	copy(c.key[:], key)
	return c, nil
}

// Token returns the token for the browser's CSRF id, to put into a page's
// forms. When the request has no valid CSRF cookie, Token makes a new id and
// sets the cookie on w, so it must be called before the response's header is
// written; calls for the same response reuse the id. It is safe for
// concurrent use.
func (c *CSRF) Token(w http.ResponseWriter, r *http.Request) string {
	id := requestCSRFID(r)
	if id == nil {
		id = responseCSRFID(w)
	}
	if id == nil {
		id = make([]byte, csrfIDSize)
		_, _ = rand.Read(id) // never fails
		http.SetCookie(w, &http.Cookie{
			Name:     CSRFCookie,
			Value:    b64.EncodeToString(id),
			Path:     "/",
			Secure:   true,
			HttpOnly: true,
			SameSite: http.SameSiteStrictMode,
		})
	}
	return b64.EncodeToString(c.mac(id))
}

// Check reports whether r may change state: nil, ErrCSRFOrigin or
// ErrCSRFToken (possibly wrapped). GET, HEAD and OPTIONS always pass; every
// other method must pass both checks described on CSRF.
//
// Check fails closed: a request it cannot judge, with several Sec-Fetch-Site
// or Origin headers, an unknown Sec-Fetch-Site value, a missing or malformed
// cookie or token, or a form body it cannot read, is refused. When the token
// is not in the X-Moat-CSRF header, Check parses the form body (at most 64
// KiB), so a handler afterwards finds the fields in r.PostForm. It does not
// write anything, and is safe for concurrent use.
func (c *CSRF) Check(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if err := checkOrigin(r); err != nil {
		return err
	}
	id := requestCSRFID(r)
	if id == nil {
		return fmt.Errorf("%w: no csrf cookie", ErrCSRFToken)
	}
	tok := r.Header.Values(CSRFHeader)
	var got string
	switch len(tok) {
	case 0:
		if r.PostForm == nil && r.Body != nil {
			r.Body = http.MaxBytesReader(nil, r.Body, maxCSRFFormBytes)
		}
		if err := r.ParseForm(); err != nil {
			return fmt.Errorf("%w: reading form: %v", ErrCSRFToken, err)
		}
		vals := r.PostForm[FieldCSRF]
		if len(vals) != 1 {
			return fmt.Errorf("%w: %d csrf fields", ErrCSRFToken, len(vals))
		}
		got = vals[0]
	case 1:
		got = tok[0]
	default:
		return fmt.Errorf("%w: several %s headers", ErrCSRFToken, CSRFHeader)
	}
	mac, err := b64.DecodeString(got)
	if err != nil || !hmac.Equal(mac, c.mac(id)) {
		return ErrCSRFToken
	}
	return nil
}

// Handler returns a handler that runs next only for requests Check
// accepts, and answers the others with 403 Forbidden.
func (c *CSRF) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Check(r); err != nil {
			reqID := ""
			if info := request.From(r.Context()); info != nil {
				reqID = info.ID
			}
			problem.Write(w, r, reqID, &problem.Error{
				Status: http.StatusForbidden,
				Title:  "Form expired or sent from another site",
				Detail: "Moat did not accept this form. Go back, reload the page and try again.",
				Err:    err,
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (c *CSRF) mac(id []byte) []byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(csrfLabel))
	m.Write(id)
	return m.Sum(nil)
}

// checkOrigin is the fetch metadata half of Check.
func checkOrigin(r *http.Request) error {
	switch site := r.Header.Values("Sec-Fetch-Site"); len(site) {
	case 0:
	case 1:
		switch site[0] {
		case "same-origin", "none":
			return nil
		}
		return fmt.Errorf("%w: Sec-Fetch-Site %q", ErrCSRFOrigin, site[0])
	default:
		return fmt.Errorf("%w: several Sec-Fetch-Site headers", ErrCSRFOrigin)
	}
	switch origin := r.Header.Values("Origin"); len(origin) {
	case 0:
		// Not a browser, or one that sends neither header on a
		// same-origin POST: the token decides.
		return nil
	case 1:
		if r.Host != "" && strings.EqualFold(origin[0], "https://"+r.Host) {
			return nil
		}
		return fmt.Errorf("%w: Origin %q", ErrCSRFOrigin, origin[0])
	default:
		return fmt.Errorf("%w: several Origin headers", ErrCSRFOrigin)
	}
}

// requestCSRFID returns the id in the request's CSRF cookie, or nil when it
// has none or it is malformed.
func requestCSRFID(r *http.Request) []byte {
	ck, err := r.Cookie(CSRFCookie)
	if err != nil {
		return nil
	}
	return decodeCSRFID(ck.Value)
}

// responseCSRFID returns the id of a CSRF cookie already set on w.
func responseCSRFID(w http.ResponseWriter) []byte {
	for _, line := range w.Header().Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(line)
		if err == nil && ck.Name == CSRFCookie {
			return decodeCSRFID(ck.Value)
		}
	}
	return nil
}

func decodeCSRFID(v string) []byte {
	if len(v) != b64.EncodedLen(csrfIDSize) {
		return nil
	}
	id, err := b64.DecodeString(v)
	if err != nil || len(id) != csrfIDSize {
		return nil
	}
	return id
}

package jwtauth

import (
	"errors"
	"net/http"
	"strings"
)

// ErrUnavailable means an issuer's keys could not be fetched and no key
// held from an earlier fetch matches the token. Verify then returns an
// *Error with Reason ReasonUnavailable that wraps ErrUnavailable (match it
// with errors.Is): the caller answers 503 and never accepts the token.
var ErrUnavailable = errors.New("token issuer keys unavailable")

// RFC 6750 error codes.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidToken   = "invalid_token"
)

// Reasons a token is refused, as Error.Reason gives them.
const (
	ReasonMalformed   = "malformed"        // not a JWS in compact serialization, undecodable, or not a JSON object
	ReasonTooLarge    = "too_large"        // longer than Options.MaxTokenBytes
	ReasonEncrypted   = "encrypted"        // a JWE (five segments), never accepted
	ReasonAlg         = "alg"              // alg not accepted for the issuer (none, HS*, ...), or not fitting the key
	ReasonCrit        = "crit"             // a "crit" header: no critical extension is supported
	ReasonCompressed  = "compressed"       // a "zip" header
	ReasonNested      = "nested"           // cty JWT: a nested token
	ReasonKid         = "kid"              // no key of the issuer has this kid
	ReasonSignature   = "signature"        // the signature does not verify
	ReasonIssuer      = "issuer"           // iss missing or not a configured issuer
	ReasonAudience    = "audience"         // aud holds none of the issuer's audiences
	ReasonExpired     = "expired"          // exp passed (beyond the clock skew)
	ReasonNotYetValid = "not_yet_valid"    // nbf in the future (beyond the clock skew)
	ReasonIATFuture   = "iat_future"       // iat in the future (beyond the clock skew)
	ReasonClaims      = "claims"           // exp or the subject missing, or a time claim not a number
	ReasonUnavailable = "jwks_unavailable" // the issuer's keys could not be fetched: answer 503
)

// Error is a refused token. Code and Description are safe to send to the
// client: they never echo the token or other client input. Reason is a
// short machine-readable word for security events and metrics.
type Error struct {
	Code        string // RFC 6750 error code: CodeInvalidToken, or CodeInvalidRequest for a missing or oversized token; empty with ReasonUnavailable
	Description string // human-readable, public
	Reason      string // Reason* constant
	err         error  // internal cause, for logs only
}

func (e *Error) Error() string {
	s := "bearer token refused (" + e.Reason + "): " + e.Description
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

// Unwrap returns the internal cause: ErrUnavailable, wrapping the fetch
// error, for ReasonUnavailable; nil otherwise.
func (e *Error) Unwrap() error { return e.err }

// Status is the HTTP status to answer with: 503 when the issuer's keys are
// unavailable, 400 for invalid_request, 401 otherwise.
func (e *Error) Status() int {
	switch {
	case e.Reason == ReasonUnavailable:
		return http.StatusServiceUnavailable
	case e.Code == CodeInvalidRequest:
		return http.StatusBadRequest
	}
	return http.StatusUnauthorized
}

// WWWAuthenticate returns the value of the WWW-Authenticate header for e,
// as RFC 6750 section 3 defines it:
//
//	Bearer error="invalid_token", error_description="the token has expired"
//
// Characters that a quoted value may not hold there (the double quote,
// the backslash, controls and non-ASCII) are left out. Without a Code it
// is a bare "Bearer" challenge.
func (e *Error) WWWAuthenticate() string {
	code := quotable(e.Code)
	if code == "" {
		return "Bearer"
	}
	s := `Bearer error="` + code + `"`
	if d := quotable(e.Description); d != "" {
		s += `, error_description="` + d + `"`
	}
	return s
}

// quotable keeps the characters RFC 6750 allows in the error and
// error_description attributes: %x20-21 / %x23-5B / %x5D-7E.
func quotable(s string) string {
	ok := func(c byte) bool { return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' }
	clean := true
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if ok(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// newError returns the refusal for reason, with its code and description.
func newError(reason string) *Error {
	e := &Error{Code: CodeInvalidToken, Reason: reason}
	switch reason {
	case ReasonMalformed:
		e.Description = "the access token is malformed"
	case ReasonTooLarge:
		e.Code = CodeInvalidRequest
		e.Description = "the access token is too large"
	case ReasonEncrypted:
		e.Description = "encrypted access tokens are not accepted"
	case ReasonAlg:
		e.Description = "the token's signing algorithm is not accepted"
	case ReasonCrit:
		e.Description = "the token has critical header parameters that are not supported"
	case ReasonCompressed:
		e.Description = "compressed access tokens are not accepted"
	case ReasonNested:
		e.Description = "nested access tokens are not accepted"
	case ReasonKid:
		e.Description = "the token's signing key is not known"
	case ReasonSignature:
		e.Description = "the token's signature is invalid"
	case ReasonIssuer:
		e.Description = "the token's issuer is not trusted"
	case ReasonAudience:
		e.Description = "the token is not meant for this service"
	case ReasonExpired:
		e.Description = "the token has expired"
	case ReasonNotYetValid:
		e.Description = "the token is not valid yet"
	case ReasonIATFuture:
		e.Description = "the token was issued in the future"
	case ReasonClaims:
		e.Description = "the token lacks a required claim or has one of the wrong type"
	case ReasonUnavailable:
		e.Code = ""
		e.Description = "the token issuer's keys cannot be fetched; try again later"
	default:
		e.Description = "the access token is invalid"
	}
	return e
}

// missingToken is the refusal of an empty token.
func missingToken() *Error {
	return &Error{Code: CodeInvalidRequest, Reason: ReasonMalformed, Description: "the request carries no access token"}
}

// unavailable is the refusal when is's keys could not be fetched; cause
// says why, for logs.
func unavailable(cause error) *Error {
	e := newError(ReasonUnavailable)
	if cause == nil || errors.Is(cause, ErrUnavailable) {
		e.err = ErrUnavailable
	} else {
		e.err = errors.Join(ErrUnavailable, cause)
	}
	return e
}

// FromRequest returns the token of an "Authorization: Bearer <token>"
// header when the token is JWT-shaped: three dot-separated base64url
// segments (the first two non-empty; the signature may be empty, so that
// unsigned tokens reach Verify and are refused there). It returns "" for
// anything else: no or several Authorization headers, another scheme, or
// a bearer token of another shape such as a Moat API key, which is left
// to its own authenticator. It does not verify the token.
func FromRequest(r *http.Request) string {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return ""
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	tok = strings.Trim(tok, " ")
	if !jwtShaped(tok) {
		return ""
	}
	return tok
}

// jwtShaped reports whether s is three base64url segments separated by
// dots, the first two non-empty.
func jwtShaped(s string) bool {
	dots, seg := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if seg == 0 || dots == 2 {
				return false
			}
			dots++
			seg = 0
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			seg++
		default:
			return false
		}
	}
	return dots == 2
}

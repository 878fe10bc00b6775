// Package assertion verifies the identity assertion that the Moat gateway
// sends to upstream services in the X-Moat-Assertion header.
//
// The assertion is a JWT (RFC 7519) that Moat signs with Ed25519 (EdDSA,
// RFC 8037) for every request it passes to the upstream on behalf of an
// authenticated principal. It names the principal, how it authenticated,
// its roles and scopes, and the route it is for. Moat publishes its public
// keys as a JWK Set at https://<gateway>/.well-known/moat/jwks.json and
// rotates them; a Verifier fetches and caches that set.
//
// An upstream that trusts the assertion must be reachable only through
// Moat: the assertion proves who Moat authenticated, and it can be
// replayed by anyone who sees it until it expires.
//
// The package needs only the standard library and go-jose.
package assertion

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Header is the request header that carries the assertion.
const Header = "X-Moat-Assertion"

// JWKSPath is where Moat publishes the keys assertions are signed with, on
// every host it serves: pass the gateway's base URL plus JWKSPath to
// NewVerifier.
const JWKSPath = "/.well-known/moat/jwks.json"

// TokenType is the JOSE "typ" header of every Moat assertion.
const TokenType = "moat-assertion+jwt"

// Leeway is how far the verifier's clock may be from the gateway's when it
// checks "exp", "nbf" and "iat".
const Leeway = 30 * time.Second

// maxTokenSize bounds what Verify parses.
const maxTokenSize = 16 << 10

var (
	// ErrInvalid is wrapped by every error for an assertion that is not
	// valid: malformed, badly signed, for another issuer or audience,
	// expired or not yet valid.
	ErrInvalid = errors.New("invalid assertion")
	// ErrUnavailable is wrapped by errors for an assertion that could not
	// be checked because the gateway's key set could not be fetched.
	ErrUnavailable = errors.New("assertion keys unavailable")
)

// Claims is what a verified assertion says. Times are zero when absent.
type Claims struct {
	Issuer   string // "iss": the gateway's URL
	Subject  string // "sub": the principal's stable id
	Audience string // "aud": the route the request was made to
	Method   string // "method": session, jwt, apikey or mtls
	Name     string // "name": a human-readable name

	Roles  []string // "roles"
	Scopes []string // "scopes"
	AMR    []string // "amr": how the user proved who they are: pwd, otp, webauthn, ...

	AuthTime time.Time // "auth_time": when the user last proved it
	IssuedAt time.Time // "iat"
	Expiry   time.Time // "exp"

	// RequestID is the "rid" claim, present only when the gateway signs
	// each request apart (its assertion cache is off). Otherwise the
	// request id is in the X-Request-Id header, which the signature does
	// not cover.
	RequestID string
	ID        string // "jti": the assertion's unique id; one assertion may serve several requests
	IdP       string // "idp": who authenticated the principal: "moat", or a token or OIDC issuer
	SessionID string // "sid": the login session's non-secret id
	KeyID     string // "key_id": the API key's id

	// Extra holds the "ext" claim: claims of the principal's token that the
	// gateway is configured to pass on, by name.
	Extra map[string]any
}

// wireClaims are the names Moat signs, beyond the registered ones.
type wireClaims struct {
	RequestID string           `json:"rid"`
	Method    string           `json:"method"`
	Name      string           `json:"name"`
	Roles     []string         `json:"roles"`
	Scopes    []string         `json:"scopes"`
	AMR       []string         `json:"amr"`
	AuthTime  *jwt.NumericDate `json:"auth_time"`
	IdP       string           `json:"idp"`
	SessionID string           `json:"sid"`
	KeyID     string           `json:"key_id"`
	Extra     map[string]any   `json:"ext"`
}

// Verifier checks assertions for one upstream. It is safe for concurrent
// use.
type Verifier struct {
	issuer, audience string
	keys             *keySet
	now              func() time.Time
}

// NewVerifier returns a Verifier of assertions issued by the gateway at
// issuer (its public URL, as configured in Moat) for the route named
// audience, with keys from jwksURL fetched by client (nil: a client with
// a 10-second timeout).
func NewVerifier(jwksURL, issuer, audience string, client *http.Client) *Verifier {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Verifier{
		issuer:   issuer,
		audience: audience,
		keys:     newKeySet(jwksURL, client),
		now:      time.Now,
	}
}

// Verify checks token and returns its claims. It accepts only EdDSA
// signatures with a key id ("kid") from the gateway's key set, the type
// TokenType, the verifier's issuer and audience exactly, and a token whose
// "exp", "nbf" and "iat" hold at the current time give or take Leeway.
//
// The key set is fetched on first use and then every 5 minutes; an
// unknown key id makes it fetch again, at most once a minute. An error
// wraps ErrInvalid when the token is not valid, ErrUnavailable when the
// key set could not be fetched (or ctx ended first).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > maxTokenSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, maxTokenSize)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrInvalid)
	}
	h := tok.Headers[0]
	if h.KeyID == "" {
		return nil, fmt.Errorf("%w: no key id", ErrInvalid)
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != TokenType {
		return nil, fmt.Errorf("%w: type %q, want %q", ErrInvalid, typ, TokenType)
	}
	key, err := v.keys.get(ctx, h.KeyID, v.now())
	if err != nil {
		return nil, err
	}
	var (
		std jwt.Claims
		ext wireClaims
	)
	if err := tok.Claims(ed25519.PublicKey(key), &std, &ext); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case std.Issuer != v.issuer:
		return nil, fmt.Errorf("%w: issuer %q, want %q", ErrInvalid, std.Issuer, v.issuer)
	case len(std.Audience) != 1 || std.Audience[0] != v.audience:
		return nil, fmt.Errorf("%w: audience %q, want %q", ErrInvalid, []string(std.Audience), v.audience)
	case std.Subject == "":
		return nil, fmt.Errorf("%w: no subject", ErrInvalid)
	case std.Expiry == nil || std.IssuedAt == nil:
		return nil, fmt.Errorf("%w: no exp or iat", ErrInvalid)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Time: v.now()}, Leeway); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c := &Claims{
		Issuer: std.Issuer, Subject: std.Subject, Audience: std.Audience[0],
		Method: ext.Method, Name: ext.Name,
		Roles: ext.Roles, Scopes: ext.Scopes, AMR: ext.AMR,
		IssuedAt: std.IssuedAt.Time(), Expiry: std.Expiry.Time(),
		RequestID: ext.RequestID, ID: std.ID,
		IdP: ext.IdP, SessionID: ext.SessionID, KeyID: ext.KeyID,
		Extra: ext.Extra,
	}
	if ext.AuthTime != nil {
		c.AuthTime = ext.AuthTime.Time()
	}
	return c, nil
}

// Middleware passes to next only requests with exactly one valid
// assertion, with its Claims in the request context (FromContext). It
// answers others 401, or 503 when the key set could not be fetched to
// check one. It fails closed.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals := r.Header.Values(Header)
		if len(vals) != 1 {
			http.Error(w, "missing identity assertion", http.StatusUnauthorized)
			return
		}
		c, err := v.Verify(r.Context(), vals[0])
		switch {
		case errors.Is(err, ErrUnavailable):
			http.Error(w, "identity assertion cannot be checked", http.StatusServiceUnavailable)
			return
		case err != nil:
			http.Error(w, "invalid identity assertion", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	})
}

type claimsKey struct{}

// FromContext returns the Claims Middleware put in ctx.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/moatgw/moat/assertion"
	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/certs/certstest"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/testclock"
)

// The token issuers the identity gateway trusts, and the audience their
// tokens must name.
const (
	tokenIssuerName = "https://tokens.example.test"
	downIssuerName  = "https://down.example.test"
	tokenAudience   = "moat-api"
)

// identityRoutes are the routes of the machine-identity tests, all in front
// of one upstream (%[1]s) that trusts only Moat's assertion; %[2]s is the
// file of the CA whose client certificates /svc accepts.
const identityRoutes = `  - name: api
    path: /api
    policy: authenticated
    accept: [jwt, apikey]
    upstreams: [%[1]s]
  - name: svc
    path: /svc
    policy: authenticated
    accept: [mtls]
    client_certs: {cas: [%[2]s], roles: [service]}
    upstreams: [%[1]s]
  - name: mixed
    path: /mixed
    policy: authenticated
    accept: [session, jwt]
    roles: [ops]
    upstreams: [%[1]s]
  - name: keyed
    path: /keyed
    policy: authenticated
    accept: [session, apikey]
    upstreams: [%[1]s]
  - name: public
    path: /public
    policy: public
    upstreams: [%[1]s]
`

// identityJWT is the jwt section: one issuer whose key set is served at
// %[1]s, one whose key set server at %[2]s is down.
const identityJWT = `jwt:
  max_token_bytes: 2KiB
  issuers:
    - issuer: ` + tokenIssuerName + `
      jwks_url: %[1]s
      audiences: [` + tokenAudience + `]
      roles_claim: roles
    - issuer: ` + downIssuerName + `
      jwks_url: %[2]s
      audiences: [` + tokenAudience + `]
`

// identityGateway is a running gateway with identityRoutes, a token issuer,
// a client CA and the asserting upstream, on a clock the test moves.
type identityGateway struct {
	srv      *Server
	clock    *testclock.Clock
	base     string // https://127.0.0.1:port
	pool     *x509.CertPool
	client   *http.Client // no client certificate
	events   *recorder
	up       *assertingUpstream
	issuer   *tokenIssuer
	ca       *certstest.CA
	jwksURL  string // the gateway's assertion keys
	publicID string // accounts.public_url: the assertions' issuer
}

// startIdentityGateway starts the gateway of the machine-identity tests,
// trusting a token issuer that publishes keys. Its clock starts at the real
// time.
func startIdentityGateway(t *testing.T, keys ...issuerKey) *identityGateway {
	t.Helper()
	g := &identityGateway{clock: testclock.New(time.Now()), events: &recorder{}}
	g.up = newAssertingUpstream(t)
	g.issuer = newTokenIssuer(t, keys...)
	g.ca = certstest.NewCA(t)

	// A key set URL where nothing listens: the issuer's server is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/jwks"
	ln.Close()

	dir := t.TempDir()
	extra := fmt.Sprintf(identityJWT, g.issuer.srv.URL+"/jwks", down)
	yml := testConfig(dir, extra, fmt.Sprintf(identityRoutes, g.up.srv.URL, g.ca.CertFile))
	cfg, err := config.Parse("identity.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	var logMu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g.srv, err = New(Options{Config: cfg, Logger: logger, Events: g.events, Version: "test", Now: g.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.srv.Shutdown(ctx)
		if t.Failed() {
			logMu.Lock()
			t.Logf("gateway log (tail):\n%s", tailLines(logs.String(), 80))
			logMu.Unlock()
		}
	})
	ca, err := os.ReadFile(g.srv.DevCA())
	if err != nil {
		t.Fatal(err)
	}
	g.pool = x509.NewCertPool()
	g.pool.AppendCertsFromPEM(ca)
	g.client = g.clientWith(nil)
	g.base = "https://" + g.srv.Addr("https").String()
	g.jwksURL = g.base + assertion.JWKSPath
	g.publicID = cfg.Accounts.PublicURL
	g.up.trust(g.jwksURL, g.publicID, g.clientWith(nil))
	return g
}

// clientWith returns a client with connections of its own that trusts the
// gateway and presents cert whatever CAs the gateway names, as an attacker's
// client would; nil presents none.
func (g *identityGateway) clientWith(cert *tls.Certificate) *http.Client {
	conf := &tls.Config{RootCAs: g.pool}
	if cert != nil {
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// answer is a gateway response, read whole.
type answer struct {
	status int
	header http.Header
	body   string
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s\n%.600s", a.status, a.header.Get("Content-Type"), a.body)
}

// fromMoat reports whether Moat itself answered (a problem document), not
// the upstream.
func (a answer) fromMoat() bool {
	return a.header.Get("Content-Type") == "application/problem+json"
}

// get requests path with the headers hdr (name, value pairs) through c.
func (g *identityGateway) get(t *testing.T, c *http.Client, path string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// reaches requests path and checks that the upstream answered it after
// verifying Moat's assertion; it returns what the upstream saw.
func (g *identityGateway) reaches(t *testing.T, c *http.Client, path string, hdr ...string) upstreamView {
	t.Helper()
	a := g.get(t, c, path, hdr...)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: %s\nwant 200 from the upstream", path, a)
	}
	var v upstreamView
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("GET %s: upstream answer %q: %v", path, a.body, err)
	}
	if v.Claims == nil && !strings.HasPrefix(path, "/public") {
		t.Fatalf("GET %s: the upstream passed a request without a verified assertion", path)
	}
	return v
}

// refused requests path and checks that Moat answered it with status and
// a problem document, and that the upstream never saw it.
func (g *identityGateway) refused(t *testing.T, c *http.Client, status int, path string, hdr ...string) answer {
	t.Helper()
	before := g.up.hits.Load()
	a := g.get(t, c, path, hdr...)
	if a.status != status || !a.fromMoat() {
		t.Errorf("GET %s: %s\nwant %d problem+json from Moat", path, a, status)
	}
	if n := g.up.hits.Load() - before; n != 0 {
		t.Errorf("GET %s: the upstream saw the refused request", path)
	}
	return a
}

// deniedRule returns the rule of the request.denied event recorded for the
// request a answers, or "".
func (g *identityGateway) deniedRule(a answer) string {
	id := a.header.Get("X-Request-Id")
	g.events.mu.Lock()
	defer g.events.mu.Unlock()
	for _, e := range g.events.events {
		if e.Kind == "request.denied" && e.RequestID == id {
			return e.Rule
		}
	}
	return ""
}

// bearerError reports whether a carries the RFC 6750 challenge with code.
func bearerError(a answer, code string) bool {
	for _, v := range a.header.Values("WWW-Authenticate") {
		if strings.HasPrefix(v, `Bearer error="`+code+`"`) {
			return true
		}
	}
	return false
}

// ---- the upstream ----

// upstreamView is what the asserting upstream saw of a request it served.
type upstreamView struct {
	Path       string            `json:"path"`
	User       string            `json:"user"`       // X-Moat-User
	Roles      string            `json:"roles"`      // X-Moat-Roles
	Assertions []string          `json:"assertions"` // every X-Moat-Assertion value
	Claims     *assertion.Claims `json:"claims"`     // as its verifier read them; nil on a public route
}

// assertingUpstream is a service behind Moat that trusts only the identity
// assertion: on each route's path it verifies it with the public package,
// for the route's name as audience, and answers 401 without a valid one.
// Under /public it verifies nothing and reports what it received.
type assertingUpstream struct {
	srv    *httptest.Server
	hits   atomic.Int64
	routes atomic.Pointer[map[string]http.Handler]
}

func newAssertingUpstream(t *testing.T) *assertingUpstream {
	t.Helper()
	u := &assertingUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

// trust makes the upstream verify assertions of the gateway at issuer,
// with keys from jwksURL.
func (u *assertingUpstream) trust(jwksURL, issuer string, client *http.Client) {
	m := map[string]http.Handler{}
	for _, route := range []string{"api", "svc", "mixed", "keyed"} {
		v := assertion.NewVerifier(jwksURL, issuer, route, client)
		m[route] = v.Middleware(http.HandlerFunc(u.echo))
	}
	u.routes.Store(&m)
}

func (u *assertingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.hits.Add(1)
	first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if first == "public" {
		u.echo(w, r)
		return
	}
	m := u.routes.Load()
	if m == nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	h, ok := (*m)[first]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.ServeHTTP(w, r)
}

func (u *assertingUpstream) echo(w http.ResponseWriter, r *http.Request) {
	c, _ := assertion.FromContext(r.Context())
	v := upstreamView{
		Path: r.URL.Path, User: r.Header.Get(headerUser), Roles: r.Header.Get(headerRoles),
		Assertions: r.Header.Values(assertion.Header), Claims: c,
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ---- the token issuer ----

// issuerKey is a signing key of the token issuer.
type issuerKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func ecKey(t *testing.T, kid string) issuerKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return issuerKey{kid: kid, alg: jose.ES256, priv: k}
}

func edKey(t *testing.T, kid string) issuerKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return issuerKey{kid: kid, alg: jose.EdDSA, priv: k}
}

func rsaKey(t *testing.T, kid string) issuerKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return issuerKey{kid: kid, alg: jose.RS256, priv: k}
}

// sign returns claims as a compact JWS signed by k, with the extra header
// members of opts.
func (k issuerKey) sign(t *testing.T, claims map[string]any, opts *jose.SignerOptions) string {
	t.Helper()
	if opts == nil {
		opts = &jose.SignerOptions{}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts.WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenIssuer serves the JWK Set of an issuer of bearer tokens over plain
// HTTP on loopback, which Moat's config allows.
type tokenIssuer struct {
	srv  *httptest.Server
	keys []issuerKey
}

func newTokenIssuer(t *testing.T, keys ...issuerKey) *tokenIssuer {
	t.Helper()
	is := &tokenIssuer{keys: keys}
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

// tokenClaims returns the claims of a valid token of the trusted issuer at
// now for sub, with extra set over them (a nil value removes a claim).
func tokenClaims(now time.Time, sub string, extra map[string]any) map[string]any {
	c := map[string]any{
		"iss":   tokenIssuerName,
		"sub":   sub,
		"aud":   tokenAudience,
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(5 * time.Minute).Unix(),
		"scope": "deploy read",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// rawToken builds a token from a header and claims given as JSON and a
// signature, none of them checked.
func rawToken(header string, claims map[string]any, sig []byte) string {
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig)
}

// tokenKid returns the kid of a compact JWS's header.
func tokenKid(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatalf("token header: %v", err)
	}
	return hdr.Kid
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// ---- JWT ----

func TestJWTThroughGateway(t *testing.T) {
	es, ed, rs := ecKey(t, "es-1"), edKey(t, "ed-1"), rsaKey(t, "rs-1")
	g := startIdentityGateway(t, es, ed, rs)
	now := g.clock.Now()

	t.Run("accepted", func(t *testing.T) {
		tests := []struct {
			name     string
			key      issuerKey
			claims   map[string]any
			wantUser string
		}{
			{"ES256 with a preferred_username", es,
				tokenClaims(now, "svc-42", map[string]any{"preferred_username": "deployer", "roles": []string{"ci", "reader"}}), "deployer"},
			{"EdDSA named by its subject", ed,
				tokenClaims(now, "svc-43", map[string]any{"roles": "ci"}), "svc-43"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				v := g.reaches(t, g.client, "/api/deploy", bearer(tt.key.sign(t, tt.claims, nil))...)
				if v.User != tt.wantUser {
					t.Errorf("upstream saw %s %q, want %q", headerUser, v.User, tt.wantUser)
				}
				wantRoles := tt.claims["roles"]
				if s, ok := wantRoles.(string); ok {
					wantRoles = []string{s}
				}
				if v.Roles != strings.Join(wantRoles.([]string), ",") {
					t.Errorf("upstream saw %s %q, want the token's roles %v", headerRoles, v.Roles, wantRoles)
				}
				c := v.Claims
				if c.Method != "jwt" || c.Subject != tt.claims["sub"] || c.Name != tt.wantUser || c.IdP != tokenIssuerName ||
					c.Audience != "api" || c.Issuer != g.publicID {
					t.Errorf("assertion: method %q sub %q name %q idp %q aud %q iss %q", c.Method, c.Subject, c.Name, c.IdP, c.Audience, c.Issuer)
				}
				if !slices.Equal(c.Scopes, []string{"deploy", "read"}) || !slices.Equal(c.Roles, wantRoles.([]string)) {
					t.Errorf("assertion: scopes %v roles %v, want [deploy read] %v", c.Scopes, c.Roles, wantRoles)
				}
			})
		}
	})

	t.Run("attacks", func(t *testing.T) {
		valid := tokenClaims(now, "svc-42", map[string]any{"roles": []string{"reader"}})
		pubDER, err := x509.MarshalPKIXPublicKey(rs.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
		hs256 := func() string {
			head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"rs-1","typ":"JWT"}`))
			payload, _ := json.Marshal(valid)
			signing := head + "." + base64.RawURLEncoding.EncodeToString(payload)
			mac := hmac.New(sha256.New, pubPEM)
			mac.Write([]byte(signing))
			return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		}()
		forged := func() string {
			tok := es.sign(t, valid, nil)
			parts := strings.Split(tok, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			i := bytes.Index(payload, []byte("svc-42"))
			payload[i+len("svc-4")] = '3' // another subject, the signature kept
			parts[1] = base64.RawURLEncoding.EncodeToString(payload)
			return strings.Join(parts, ".")
		}()
		crit := (&jose.SignerOptions{}).WithHeader("crit", []string{"urn:example:must-understand"}).
			WithHeader("urn:example:must-understand", true)

		tests := []struct {
			name   string
			path   string
			token  string
			status int
			code   string // RFC 6750 error code in WWW-Authenticate, "" for none checked
			rule   string // the security event's rule
		}{
			{"alg none", "/api", rawToken(`{"alg":"none","kid":"es-1","typ":"JWT"}`, valid, nil), 401, "invalid_token", "jwt.alg"},
			{"HS256 keyed with the RSA public key", "/api", hs256, 401, "invalid_token", "jwt.alg"},
			{"unknown kid", "/api", ecKey(t, "stranger").sign(t, valid, nil), 401, "invalid_token", "jwt.kid"},
			{"known kid, another key", "/api", issuerKey{kid: "es-1", alg: jose.ES256, priv: ecKey(t, "x").priv}.sign(t, valid, nil), 401, "invalid_token", "jwt.signature"},
			{"expired", "/api", es.sign(t, tokenClaims(now, "svc-42", map[string]any{
				"iat": now.Add(-time.Hour).Unix(), "nbf": now.Add(-time.Hour).Unix(), "exp": now.Add(-2 * time.Minute).Unix()}), nil), 401, "invalid_token", "jwt.expired"},
			{"wrong audience", "/api", es.sign(t, tokenClaims(now, "svc-42", map[string]any{"aud": "another-api"}), nil), 401, "invalid_token", "jwt.audience"},
			{"untrusted issuer", "/api", es.sign(t, tokenClaims(now, "svc-42", map[string]any{"iss": "https://evil.example.test"}), nil), 401, "invalid_token", "jwt.issuer"},
			{"forged payload", "/api", forged, 401, "invalid_token", "jwt.signature"},
			{"unknown crit header", "/api", es.sign(t, valid, crit), 401, "invalid_token", "jwt.crit"},
			{"oversize", "/api", es.sign(t, tokenClaims(now, "svc-42", map[string]any{"pad": strings.Repeat("a", 2100)}), nil), 400, "invalid_request", "jwt.too_large"},
			{"route without jwt", "/svc", es.sign(t, valid, nil), 401, "", "authn.method"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a := g.refused(t, g.client, tt.status, tt.path+"/x", bearer(tt.token)...)
				if tt.code != "" && !bearerError(a, tt.code) {
					t.Errorf("WWW-Authenticate %q, want Bearer error=%q", a.header.Values("WWW-Authenticate"), tt.code)
				}
				if got := g.deniedRule(a); got != tt.rule {
					t.Errorf("denied by rule %q, want %q", got, tt.rule)
				}
			})
		}
	})

	t.Run("issuer keys unreachable", func(t *testing.T) {
		tok := es.sign(t, tokenClaims(now, "svc-42", map[string]any{"iss": downIssuerName}), nil)
		a := g.refused(t, g.client, http.StatusServiceUnavailable, "/api/x", bearer(tok)...)
		if a.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if bearerError(a, "invalid_token") {
			t.Error("a token that could not be checked was called invalid")
		}
	})

	t.Run("valid token still accepted", func(t *testing.T) {
		// None of the attacks changed what the gateway accepts.
		g.reaches(t, g.client, "/api/x", bearer(es.sign(t, tokenClaims(now, "svc-42", nil), nil))...)
	})
}

// ---- API keys ----

// withChecksum completes body ("moat_" id "_" secret) with the checksum
// that the key format documents: the CRC-32 (IEEE) of body in base62, six
// digits, most significant first.
func withChecksum(body string) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	var sum [6]byte
	for i := len(sum) - 1; i >= 0; i-- {
		sum[i] = base62[v%62]
		v /= 62
	}
	return body + string(sum[:])
}

// randomSecret returns 43 base62 characters.
func randomSecret() string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 43)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = base62[b[i]%62]
	}
	return string(b)
}

func apiKey(k string) []string { return []string{"Authorization", "Bearer " + k} }

func TestAPIKeysThroughGateway(t *testing.T) {
	g := startIdentityGateway(t, ecKey(t, "es-1"))
	ctx := context.Background()
	keys := g.srv.apikeys
	key, rec, err := keys.Create(ctx, "ci-deploy", "service", []string{"deploy"}, 0)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("accepted", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			hdr  []string
		}{
			{"Authorization Bearer", apiKey(key)},
			{"X-API-Key", []string{"X-API-Key", key}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				v := g.reaches(t, g.client, "/api/deploy", tt.hdr...)
				c := v.Claims
				if v.User != "ci-deploy" || c.Name != "ci-deploy" || c.Subject != "service" || c.Method != "apikey" ||
					c.KeyID != rec.ID || !slices.Equal(c.Scopes, []string{"deploy"}) || c.Audience != "api" {
					t.Errorf("upstream saw user %q, assertion %+v", v.User, c)
				}
			})
		}
	})

	// A known id with a secret of the attacker's and a correct checksum.
	wrongSecret := withChecksum(key[:len("moat_")+8+1] + randomSecret())
	var id [5]byte
	_, _ = rand.Read(id[:])
	unknown := withChecksum("moat_" + strings.ToLower(base32.StdEncoding.EncodeToString(id[:])) + "_" + randomSecret())
	last := byte('0')
	if key[len(key)-1] == '0' {
		last = '1'
	}
	tampered := key[:len(key)-1] + string(last) // one checksum digit changed

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name  string
			path  string
			hdr   []string
			code  string // RFC 6750 error in WWW-Authenticate, "" for none checked
			rule  string
			extra func(t *testing.T, a answer)
		}{
			{name: "tampered checksum", path: "/api", hdr: apiKey(tampered), code: "invalid_token", rule: "apikey.checksum"},
			{name: "wrong secret", path: "/api", hdr: apiKey(wrongSecret), code: "invalid_token", rule: "apikey.secret"},
			{name: "unknown id", path: "/api", hdr: []string{"X-API-Key", unknown}, code: "invalid_token", rule: "apikey.unknown"},
			{name: "malformed", path: "/api", hdr: apiKey("moat_short"), code: "invalid_token", rule: "apikey.malformed"},
			{name: "two different keys", path: "/api", hdr: append(apiKey(key), "X-API-Key", unknown), rule: "authn.scheme"},
			{name: "route without apikey", path: "/mixed", hdr: apiKey(key), rule: "authn.method"},
			{name: "route without apikey, X-API-Key", path: "/mixed", hdr: []string{"X-API-Key", key}, rule: "authn.method"},
			{name: "mtls route", path: "/svc", hdr: apiKey(key), rule: "authn.method"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a := g.refused(t, g.client, http.StatusUnauthorized, tt.path+"/x", tt.hdr...)
				if tt.code != "" && !bearerError(a, tt.code) {
					t.Errorf("WWW-Authenticate %q, want Bearer error=%q", a.header.Values("WWW-Authenticate"), tt.code)
				}
				if strings.Contains(a.body, key[5:13]) || strings.Contains(a.body, "moat_") {
					t.Errorf("the refusal quotes the key: %s", a.body)
				}
				if got := g.deniedRule(a); got != tt.rule {
					t.Errorf("denied by rule %q, want %q", got, tt.rule)
				}
			})
		}
	})

	t.Run("explicit credentials first", func(t *testing.T) {
		u, _, err := g.srv.Accounts().Service.CreateUser(ctx, "olga", "", "", []string{"ops"})
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := g.srv.Accounts().Sessions.Create(ctx, u.ID, []string{"pwd"}, g.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		cookie := []string{"Cookie", session.CookieName + "=" + tok}
		if v := g.reaches(t, g.client, "/keyed/x", cookie...); v.User != "olga" || v.Claims.Method != "session" {
			t.Errorf("session alone: user %q method %q", v.User, v.Claims.Method)
		}
		for _, bad := range []string{tampered, wrongSecret, unknown} {
			a := g.refused(t, g.client, http.StatusUnauthorized, "/keyed/x", append(apiKey(bad), cookie...)...)
			if !strings.HasPrefix(g.deniedRule(a), "apikey.") {
				t.Errorf("a bad key beside a session: denied by rule %q, want the key's refusal", g.deniedRule(a))
			}
		}
		if v := g.reaches(t, g.client, "/keyed/x", append(apiKey(key), cookie...)...); v.User != "ci-deploy" || v.Claims.Method != "apikey" {
			t.Errorf("key and session: served as %q by %q, want the key's principal", v.User, v.Claims.Method)
		}
	})

	t.Run("owned by a user", func(t *testing.T) {
		u, _, err := g.srv.Accounts().Service.CreateUser(ctx, "ivan", "", "", []string{"ops"})
		if err != nil {
			t.Fatal(err)
		}
		k, _, err := keys.Create(ctx, "ivan-laptop", "ivan", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		v := g.reaches(t, g.client, "/keyed/x", apiKey(k)...)
		if v.Roles != "ops" || v.Claims.Subject != u.ID || v.Claims.Method != "apikey" {
			t.Errorf("a user's key: roles %q subject %q method %q, want the user's roles and id", v.Roles, v.Claims.Subject, v.Claims.Method)
		}
		if err := g.srv.Accounts().Service.SetStatus(ctx, "ivan", "disabled"); err != nil {
			t.Fatal(err)
		}
		a := g.refused(t, g.client, http.StatusUnauthorized, "/keyed/x", apiKey(k)...)
		if !bearerError(a, "invalid_token") || g.deniedRule(a) != "apikey.owner_inactive" {
			t.Errorf("the key of a disabled user: rule %q, WWW-Authenticate %q", g.deniedRule(a), a.header.Values("WWW-Authenticate"))
		}
	})

	// The rest moves the gateway's clock. The assertions it signs carry its
	// time, and the upstream checks them against the real clock with 30s of
	// leeway, so the clock moves only a few seconds in all.

	t.Run("revoked on this instance", func(t *testing.T) {
		k, r, err := keys.Create(ctx, "revoke-here", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		g.reaches(t, g.client, "/api/x", apiKey(k)...)
		if err := keys.Revoke(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if a := g.refused(t, g.client, http.StatusUnauthorized, "/api/x", apiKey(k)...); g.deniedRule(a) != "apikey.revoked" {
			t.Errorf("denied by rule %q, want apikey.revoked", g.deniedRule(a))
		}
	})

	t.Run("revoked by another instance", func(t *testing.T) {
		k, r, err := keys.Create(ctx, "revoke-there", "service", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		g.reaches(t, g.client, "/api/x", apiKey(k)...) // now in the gateway's cache
		pepper, err := g.srv.state.Store.Secrets().GetOrCreate(ctx, secretAPIKeyPepper, 32)
		if err != nil {
			t.Fatal(err)
		}
		other, err := apikey.New(apikey.Options{Keys: g.srv.state.Store.APIKeys(), Pepper: pepper, Now: g.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Revoke(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		g.clock.Advance(2*time.Second + time.Millisecond) // past the cache's 2s
		a := g.refused(t, g.client, http.StatusUnauthorized, "/api/x", apiKey(k)...)
		if got := g.deniedRule(a); got != "apikey.revoked" {
			t.Errorf("denied by rule %q, want apikey.revoked", got)
		}
	})

	t.Run("expired", func(t *testing.T) {
		k, _, err := keys.Create(ctx, "short-lived", "service", nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		g.reaches(t, g.client, "/api/x", apiKey(k)...)
		g.clock.Advance(2 * time.Second)
		a := g.refused(t, g.client, http.StatusUnauthorized, "/api/x", apiKey(k)...)
		if got := g.deniedRule(a); got != "apikey.expired" {
			t.Errorf("denied by rule %q, want apikey.expired", got)
		}
	})

	t.Run("rotated", func(t *testing.T) {
		old, r, err := keys.Create(ctx, "rotating", "service", []string{"deploy"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		g.reaches(t, g.client, "/api/x", apiKey(old)...)
		next, nr, err := keys.Rotate(ctx, r.ID, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if v := g.reaches(t, g.client, "/api/x", apiKey(next)...); v.Claims.KeyID != nr.ID || v.User != "rotating" {
			t.Errorf("new key: key id %q user %q, want %q rotating", v.Claims.KeyID, v.User, nr.ID)
		}
		g.reaches(t, g.client, "/api/x", apiKey(old)...) // within the grace period
		g.clock.Advance(2 * time.Second)
		if a := g.refused(t, g.client, http.StatusUnauthorized, "/api/x", apiKey(old)...); g.deniedRule(a) != "apikey.revoked" {
			t.Errorf("old key after the grace period: denied by rule %q, want apikey.revoked", g.deniedRule(a))
		}
		g.reaches(t, g.client, "/api/x", apiKey(next)...)
	})
}

// ---- mTLS ----

func TestClientCertificatesThroughGateway(t *testing.T) {
	g := startIdentityGateway(t, ecKey(t, "es-1"))
	good := g.ca.ClientCertificate(t, "billing-batch", time.Now().Add(time.Hour))

	t.Run("accepted", func(t *testing.T) {
		var asked [][]byte
		c := g.clientWith(nil)
		c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = cri.AcceptableCAs
			return &good, nil
		}
		v := g.reaches(t, c, "/svc/jobs")
		if !slices.ContainsFunc(asked, func(n []byte) bool { return bytes.Equal(n, g.ca.Cert.RawSubject) }) {
			t.Error("the gateway's certificate request does not name the route's CA")
		}
		cl := v.Claims
		if v.User != "billing-batch" || v.Roles != "service" || cl.Method != "mtls" || cl.Name != "billing-batch" ||
			!slices.Equal(cl.Roles, []string{"service"}) || cl.Audience != "svc" || !strings.Contains(cl.Subject, "CN=billing-batch") {
			t.Errorf("upstream saw user %q roles %q, assertion %+v", v.User, v.Roles, cl)
		}
		sum := sha256.Sum256(good.Leaf.Raw)
		if fp, _ := cl.Extra["fingerprint"].(string); fp != hex.EncodeToString(sum[:]) {
			t.Errorf("assertion fingerprint %q, want the certificate's", fp)
		}
	})

	other := certstest.NewCA(t) // same subject name as the trusted CA, another key
	serverOnly := g.ca.TLSCertificate(t, "billing.example.test")
	tests := []struct {
		name string
		cert *tls.Certificate
		path string
		rule string
	}{
		{"another CA", ptr(other.ClientCertificate(t, "billing-batch", time.Now().Add(time.Hour))), "/svc", "mtls.refused"},
		{"expired", ptr(g.ca.ClientCertificate(t, "billing-batch", time.Now().Add(-time.Minute))), "/svc", "mtls.refused"},
		{"not for client authentication", &serverOnly, "/svc", "mtls.refused"},
		{"none", nil, "/svc", "authn.required"},
		{"route without mtls", &good, "/api", "authn.required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := g.refused(t, g.clientWith(tt.cert), http.StatusUnauthorized, tt.path+"/jobs")
			if got := g.deniedRule(a); got != tt.rule {
				t.Errorf("denied by rule %q, want %q", got, tt.rule)
			}
			if strings.Contains(a.body, "billing") || strings.Contains(a.body, "x509") {
				t.Errorf("the refusal says why in detail: %s", a.body)
			}
		})
	}

	t.Run("public route without a certificate", func(t *testing.T) {
		v := g.reaches(t, g.clientWith(nil), "/public/page")
		if v.User != "" || len(v.Assertions) != 0 {
			t.Errorf("public route: upstream saw user %q assertions %d", v.User, len(v.Assertions))
		}
		v = g.reaches(t, g.clientWith(&good), "/public/page")
		if v.User != "" || len(v.Assertions) != 0 {
			t.Errorf("public route with a certificate: upstream saw user %q assertions %d", v.User, len(v.Assertions))
		}
	})
}

func ptr[T any](v T) *T { return &v }

// ---- the assertion ----

func TestAssertionThroughGateway(t *testing.T) {
	g := startIdentityGateway(t, ecKey(t, "es-1"))
	ctx := context.Background()
	key, _, err := g.srv.apikeys.Create(ctx, "reporter", "service", []string{"read"}, 0)
	if err != nil {
		t.Fatal(err)
	}

	// An assertion of the attacker's, in Moat's format, for an admin.
	_, attackerKey, _ := ed25519.GenerateKey(rand.Reader)
	forgedSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: attackerKey, KeyID: "attacker"}},
		(&jose.SignerOptions{}).WithType(assertion.TokenType))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{"iss": g.publicID, "aud": "api", "sub": "admin", "method": "session", "roles": []string{"admin"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	jws, err := forgedSigner.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := jws.CompactSerialize()

	first := g.reaches(t, g.client, "/api/report", append(apiKey(key), assertion.Header, forged)...)
	t.Run("client assertion stripped", func(t *testing.T) {
		if len(first.Assertions) != 1 || first.Assertions[0] == forged || first.Claims.Subject != "service" {
			t.Errorf("upstream saw %d assertions, subject %q; want only Moat's", len(first.Assertions), first.Claims.Subject)
		}
		v := g.reaches(t, g.client, "/public/page", assertion.Header, first.Assertions[0])
		if len(v.Assertions) != 0 || v.User != "" {
			t.Errorf("public route: a replayed assertion reached the upstream (%d, user %q)", len(v.Assertions), v.User)
		}
	})

	saved := first.Assertions[0]
	oldKid := tokenKid(t, saved)
	t.Run("signed by a published key", func(t *testing.T) {
		a := g.get(t, g.client, assertion.JWKSPath)
		if a.status != 200 || a.header.Get("Content-Type") != "application/jwk-set+json" || !strings.Contains(a.body, `"kid":"`+oldKid+`"`) {
			t.Fatalf("key set: %s\nwant it to hold %s", a, oldKid)
		}
		for _, s := range []string{`"d"`, "PRIVATE"} {
			if strings.Contains(a.body, s) {
				t.Errorf("the key set holds %s: %s", s, a.body)
			}
		}
		if _, err := assertion.NewVerifier(g.jwksURL, g.publicID, "svc", g.client).Verify(ctx, saved); !errors.Is(err, assertion.ErrInvalid) {
			t.Errorf("the assertion for route api verified for route svc: %v", err)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		// The test clock stands still; a real one has moved on since the
		// first key was made, and the newest key that has begun signs.
		g.clock.Advance(time.Second)
		if err := g.srv.assertions.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		v := g.reaches(t, g.client, "/api/report", apiKey(key)...)
		newKid := tokenKid(t, v.Assertions[0])
		if newKid == oldKid {
			t.Fatalf("after the rotation the assertion is still signed by %s", oldKid)
		}
		a := g.get(t, g.client, assertion.JWKSPath)
		if !strings.Contains(a.body, `"kid":"`+oldKid+`"`) || !strings.Contains(a.body, `"kid":"`+newKid+`"`) {
			t.Errorf("key set after rotation lacks the old or the new key:\n%s", a.body)
		}
		c, err := assertion.NewVerifier(g.jwksURL, g.publicID, "api", g.client).Verify(ctx, saved)
		if err != nil || c.Subject != "service" || c.Method != "apikey" {
			t.Errorf("an assertion signed before the rotation: %v %+v", err, c)
		}
	})
}

// ---- roles ----

func TestRolesThroughGateway(t *testing.T) {
	es := ecKey(t, "es-1")
	g := startIdentityGateway(t, es)
	now := g.clock.Now()
	reader := es.sign(t, tokenClaims(now, "svc-7", map[string]any{"preferred_username": "reader-bot", "roles": []string{"reader", "ci"}}), nil)
	ops := es.sign(t, tokenClaims(now, "svc-8", map[string]any{"preferred_username": "ops-bot", "roles": []string{"ops"}}), nil)

	t.Run("lacking the role", func(t *testing.T) {
		for _, hdr := range [][]string{bearer(reader), append(bearer(reader), headerRoles, "ops")} {
			a := g.refused(t, g.client, http.StatusForbidden, "/mixed/restart", hdr...)
			var p struct {
				Title  string `json:"title"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal([]byte(a.body), &p); err != nil || p.Status != 403 || p.Title != "Forbidden" {
				t.Errorf("403 body %q: %v", a.body, err)
			}
			for _, internal := range []string{"ops", "mixed", "reader", "role", "policy", "upstream", "127.0.0.1"} {
				if strings.Contains(strings.ToLower(a.body), internal) {
					t.Errorf("the 403 names %q: %s", internal, a.body)
				}
			}
		}
		if e := g.events.find("request.denied", "policy.roles"); e == nil || e.Principal != "reader-bot" || e.Route != "mixed" {
			t.Errorf("roles event: %+v", e)
		}
	})

	t.Run("with the role", func(t *testing.T) {
		v := g.reaches(t, g.client, "/mixed/restart", bearer(ops)...)
		if v.User != "ops-bot" || v.Roles != "ops" || !slices.Equal(v.Claims.Roles, []string{"ops"}) || v.Claims.Audience != "mixed" {
			t.Errorf("upstream saw user %q roles %q, assertion %+v", v.User, v.Roles, v.Claims)
		}
	})

	t.Run("bad token beside a good session", func(t *testing.T) {
		ctx := context.Background()
		u, _, err := g.srv.Accounts().Service.CreateUser(ctx, "olga", "", "", []string{"ops"})
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := g.srv.Accounts().Sessions.Create(ctx, u.ID, []string{"pwd"}, g.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		cookie := []string{"Cookie", session.CookieName + "=" + tok}
		g.reaches(t, g.client, "/mixed/restart", cookie...)
		expired := es.sign(t, tokenClaims(now, "svc-8", map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix(),
			"nbf": now.Add(-2 * time.Hour).Unix(), "roles": []string{"ops"}}), nil)
		a := g.refused(t, g.client, http.StatusUnauthorized, "/mixed/restart", append(bearer(expired), cookie...)...)
		if !bearerError(a, "invalid_token") {
			t.Errorf("WWW-Authenticate %q", a.header.Values("WWW-Authenticate"))
		}
	})
}

package jwtauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/moatgw/moat/internal/authn"
)

// Verify checks token, a JWT in JWS compact serialization, and returns
// the Principal it stands for. It is safe for concurrent use.
//
// A token is accepted only when all of these hold: it is at most
// MaxTokenBytes long; its "iss" is exactly a configured Issuer, whose keys
// alone are then used; its header has an alg that issuer accepts (never
// none nor HMAC), no "crit", "zip" or "b64" member and no nested token;
// a key of the issuer's JWK Set with the header's kid fits the alg (key
// type, curve, and the JWK's own alg when it has one); go-jose verifies the
// signature with that key; "exp" is present and not passed, "nbf" and
// "iat" (when present) are not in the future, each with the issuer's
// clock skew; "aud" contains one of the issuer's audiences; and the
// subject claim is a non-empty string.
//
// A refused token yields an *Error. When the issuer's keys have never
// been fetched, or the token's kid is unknown, Verify fetches the JWK Set,
// at most once per JWKSRefreshInterval per issuer, waiting for it (or for
// ctx). When that fetch fails and no key held matches, it fails closed
// with an *Error whose Reason is ReasonUnavailable and which wraps
// ErrUnavailable: the caller answers 503. Keys older than their max age
// are still used while a refetch runs in the background.
//
// Accepted tokens are cached, by their SHA-256, until their exp and while
// the key that verified them is still in the issuer's JWK Set. The
// returned Principal is the caller's own, but its slices and Claims may be
// shared with other callers given the same token: read them, never change
// them.
func (v *Verifier) Verify(ctx context.Context, token string) (*authn.Principal, error) {
	if token == "" {
		return nil, missingToken()
	}
	if len(token) > v.maxTokenBytes {
		return nil, newError(ReasonTooLarge)
	}
	now := v.now()
	sum := sha256.Sum256([]byte(token))
	if p := v.cache.get(sum, now); p != nil {
		cp := *p
		return &cp, nil
	}

	payload, claims, e := splitToken(token)
	if e != nil {
		return nil, e
	}
	iss, _ := claims["iss"].(string)
	is := v.issuers[iss]
	if is == nil {
		return nil, newError(ReasonIssuer)
	}
	jws, err := jose.ParseSignedCompact(token, is.algs)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, newError(ReasonAlg)
		}
		return nil, newError(ReasonMalformed)
	}
	if len(jws.Signatures) != 1 {
		return nil, newError(ReasonMalformed)
	}
	hdr := jws.Signatures[0].Header
	if e := checkHeader(hdr); e != nil {
		return nil, e
	}
	k, e := v.key(ctx, is, hdr.KeyID, string(hdr.Algorithm), now)
	if e != nil {
		return nil, e
	}
	verified, err := jws.Verify(k.pub)
	switch {
	case errors.Is(err, jose.ErrUnsupportedCriticalHeader):
		return nil, newError(ReasonCrit)
	case err != nil:
		return nil, newError(ReasonSignature)
	case !bytes.Equal(verified, payload):
		return nil, newError(ReasonMalformed)
	}

	p, exp, e := is.principal(claims, now)
	if e != nil {
		return nil, e
	}
	if now.Before(exp) {
		v.cache.put(sum, cacheEntry{p: p, exp: exp, is: is, key: k}, now)
	}
	cp := *p
	return &cp, nil
}

// splitToken checks that token is three canonical base64url segments
// (refusing a JWE's five) and decodes its payload, which must be a JSON
// object. Nothing it returns is trusted before the signature is verified.
func splitToken(token string) ([]byte, map[string]any, *Error) {
	switch strings.Count(token, ".") {
	case 2:
	case 4:
		return nil, nil, newError(ReasonEncrypted)
	default:
		return nil, nil, newError(ReasonMalformed)
	}
	h, rest, _ := strings.Cut(token, ".")
	p, sig, _ := strings.Cut(rest, ".")
	// One token has one spelling (and one SHA-256) only.
	if !canonicalBase64(h) || !canonicalBase64(sig) {
		return nil, nil, newError(ReasonMalformed)
	}
	payload, ok := decodeSegment(p)
	if !ok {
		return nil, nil, newError(ReasonMalformed)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, nil, newError(ReasonMalformed)
	}
	return payload, claims, nil
}

// checkHeader refuses the JOSE header members that no issuer's token may
// carry: "crit" (no critical extension is supported), "b64" (RFC 7797,
// which needs crit), "zip" (compression), "enc" (a JWE), and cty JWT (a
// nested token). go-jose parsed the header; its alg is already one the
// issuer accepts.
func checkHeader(h jose.Header) *Error {
	x := h.ExtraHeaders
	switch {
	case x == nil:
		return nil
	case x["enc"] != nil:
		return newError(ReasonEncrypted)
	case x["crit"] != nil, x["b64"] != nil:
		return newError(ReasonCrit)
	case x["zip"] != nil:
		return newError(ReasonCompressed)
	}
	if cty, _ := x[jose.HeaderContentType].(string); strings.EqualFold(cty, "JWT") {
		return newError(ReasonNested)
	}
	return nil
}

// canonicalBase64 reports whether s is canonical unpadded base64url: only
// the URL-safe alphabet (the standard decoders skip CR and LF), a length
// that can be decoded, and zero unused trailing bits.
func canonicalBase64(s string) bool {
	val := func(c byte) (byte, bool) {
		switch {
		case 'A' <= c && c <= 'Z':
			return c - 'A', true
		case 'a' <= c && c <= 'z':
			return c - 'a' + 26, true
		case '0' <= c && c <= '9':
			return c - '0' + 52, true
		case c == '-':
			return 62, true
		case c == '_':
			return 63, true
		}
		return 0, false
	}
	var last byte
	for i := 0; i < len(s); i++ {
		v, ok := val(s[i])
		if !ok {
			return false
		}
		last = v
	}
	switch len(s) % 4 {
	case 1:
		return false
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

// decodeSegment decodes a canonical base64url segment.
func decodeSegment(s string) ([]byte, bool) {
	if !canonicalBase64(s) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return b, err == nil
}

// key returns the key of is that verifies a token with kid and alg,
// fetching is's key set when none is held or the kid is unknown.
func (v *Verifier) key(ctx context.Context, is *issuer, kid, alg string, now time.Time) (*key, *Error) {
	if ks := is.keys.set.Load(); ks != nil {
		k, reason := ks.find(kid, alg)
		if k != nil {
			if !now.Before(ks.staleAt) {
				v.refresh(ctx, is, false, true)
			}
			return k, nil
		}
		if reason != ReasonKid {
			return nil, newError(reason)
		}
	}
	ks, err := v.refresh(ctx, is, true, true)
	if ks != nil {
		k, reason := ks.find(kid, alg)
		if k != nil {
			return k, nil
		}
		if reason != ReasonKid || err == nil {
			return nil, newError(reason)
		}
	}
	return nil, unavailable(err)
}

// principal checks the claims of a token whose signature is verified and
// builds its Principal; it also returns the token's expiry.
func (is *issuer) principal(claims map[string]any, now time.Time) (*authn.Principal, time.Time, *Error) {
	skew := is.cfg.ClockSkew
	exp, ok := numericDate(claims, "exp")
	if !ok || exp.IsZero() {
		return nil, exp, newError(ReasonClaims)
	}
	if !now.Before(exp.Add(skew)) {
		return nil, exp, newError(ReasonExpired)
	}
	nbf, ok := numericDate(claims, "nbf")
	if !ok {
		return nil, exp, newError(ReasonClaims)
	}
	if !nbf.IsZero() && now.Add(skew).Before(nbf) {
		return nil, exp, newError(ReasonNotYetValid)
	}
	iat, ok := numericDate(claims, "iat")
	if !ok {
		return nil, exp, newError(ReasonClaims)
	}
	if !iat.IsZero() && iat.After(now.Add(skew)) {
		return nil, exp, newError(ReasonIATFuture)
	}
	if !slices.ContainsFunc(stringList(claims["aud"]), func(a string) bool { return slices.Contains(is.audiences, a) }) {
		return nil, exp, newError(ReasonAudience)
	}
	sub, _ := lookup(claims, is.cfg.SubjectClaim, is.subPath)
	subject, _ := sub.(string)
	if subject == "" {
		return nil, exp, newError(ReasonClaims)
	}
	authTime, ok := numericDate(claims, "auth_time")
	if !ok {
		return nil, exp, newError(ReasonClaims)
	}

	p := &authn.Principal{
		Subject:     subject,
		Name:        subject,
		Method:      authn.MethodJWT,
		Roles:       is.roles(claims),
		Scopes:      is.scopes(claims),
		AuthMethods: stringList(claims["amr"]),
		AuthTime:    authTime,
		Issuer:      is.cfg.Issuer,
	}
	if n, _ := lookup(claims, is.cfg.NameClaim, is.namePath); n != nil {
		if s, _ := n.(string); s != "" {
			p.Name = s
		}
	}
	for i, path := range is.claimPaths {
		if val, ok := lookup(claims, is.cfg.Claims[i], path); ok {
			if p.Claims == nil {
				p.Claims = make(map[string]any, len(is.claimPaths))
			}
			p.Claims[is.cfg.Claims[i]] = val
		}
	}
	return p, exp, nil
}

// roles returns the Moat roles the token's roles claim grants.
func (is *issuer) roles(claims map[string]any) []string {
	if is.rolesPath == nil {
		return nil
	}
	val, _ := lookup(claims, is.cfg.RolesClaim, is.rolesPath)
	values := stringList(val)
	if is.cfg.RoleMap == nil {
		return dedupe(values)
	}
	var roles []string
	for _, s := range values {
		roles = append(roles, is.cfg.RoleMap[s]...)
	}
	return dedupe(roles)
}

// scopes returns the token's scopes: the scopes claim, or "scp" when it is
// absent, each a space-separated string or an array of strings.
func (is *issuer) scopes(claims map[string]any) []string {
	val, ok := lookup(claims, is.cfg.ScopesClaim, is.scopesPath)
	if !ok {
		val = claims["scp"]
	}
	if s, ok := val.(string); ok {
		return dedupe(strings.Fields(s))
	}
	return dedupe(stringList(val))
}

// lookup finds a claim: the top-level claim named name when there is one
// (claim names may hold dots, as URLs do), else the value at the dotted
// path through nested objects.
func lookup(claims map[string]any, name string, path []string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	if len(path) < 2 {
		return nil, false
	}
	var cur any = claims
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringList reads a claim that is a string or an array of strings,
// skipping array members that are not strings or are empty.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return nil
}

// dedupe removes repeated strings from s, keeping the first of each.
func dedupe(s []string) []string {
	if len(s) < 2 {
		return s
	}
	out := s[:0:0]
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// numericDate reads the NumericDate claim name (RFC 7519 section 2): the
// zero time and true when it is absent, false when it is not a
// non-negative number of seconds before year 10000.
func numericDate(claims map[string]any, name string) (time.Time, bool) {
	v, present := claims[name]
	if !present {
		return time.Time{}, true
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || f < 0 || f > 253402300799 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

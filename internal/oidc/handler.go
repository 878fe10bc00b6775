package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/request"
	"github.com/moatgw/moat/internal/session"
)

// Reasons of login.failed events, besides reasonEmailDomain and reasonGroup.
const (
	reasonState         = "state"          // no, an expired or a mismatched state cookie
	reasonNonce         = "nonce"          // the ID token is not for this sign-in
	reasonIssuer        = "issuer"         // the authorization response names another issuer (RFC 9207)
	reasonToken         = "token"          // the code or the ID token was refused
	reasonAudience      = "audience"       // the ID token is for another client
	reasonProviderError = "provider_error" // the provider answered with an error
	reasonProviderDown  = "provider_down"  // the provider did not answer
)

// Handler serves StartPrefix and CallbackPath; other paths are 404. Only
// GET is allowed. Every answer is marked no-store.
func (rp *RP) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		path := r.URL.Path
		var p *provider
		switch {
		case path == CallbackPath:
		case strings.HasPrefix(path, StartPrefix) && strings.HasSuffix(path, "/start"):
			p = rp.byName[path[len(StartPrefix):len(path)-len("/start")]]
			if p == nil {
				rp.o.Pages.Error(w, r, http.StatusNotFound, "No such sign-in provider", "This sign-in link names no provider Moat knows. Go back to the login page.")
				return
			}
		default:
			rp.o.Pages.Error(w, r, http.StatusNotFound, "Not found", "There is no page here.")
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			rp.o.Pages.Error(w, r, http.StatusMethodNotAllowed, "Method not allowed", "This address only answers GET.")
			return
		}
		if p != nil {
			rp.start(w, r, p)
			return
		}
		rp.callback(w, r)
	})
}

// start sends the browser to p's authorization endpoint, with the state
// cookie that the callback needs.
func (rp *RP) start(w http.ResponseWriter, r *http.Request, p *provider) {
	e, err := rp.endpoints(r.Context(), p)
	if err != nil {
		rp.down(w, r, p, "discovery", err)
		return
	}
	st := &loginState{
		Provider: p.cfg.Name,
		State:    randomString(),
		Nonce:    randomString(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: portal.SafeReturn(r.URL.Query().Get(portal.FieldReturnTo)),
		Expires:  rp.o.Now().Add(stateTTL),
	}
	sealed, err := rp.seal.seal(st)
	if err != nil {
		rp.internal(w, r, "sealing the sign-in state", err)
		return
	}
	setStateCookie(w, sealed)
	http.Redirect(w, r, e.oauth.AuthCodeURL(st.State, gooidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
}

// callback finishes a sign-in: see the package documentation for the
// checks, in the order they are made.
func (rp *RP) callback(w http.ResponseWriter, r *http.Request) {
	// The URL holds the code: keep it out of Referer headers.
	w.Header().Set("Referrer-Policy", "no-referrer")
	// The cookie is good for one callback, whatever its outcome.
	clearStateCookie(w)
	q := r.URL.Query()
	st, p, ok := rp.checkState(w, r, q.Get("state"))
	if !ok {
		return
	}
	ctx := r.Context()
	if code := q.Get("error"); code != "" {
		rp.providerError(w, r, p, code, q.Get("error_description"))
		return
	}
	e, err := rp.endpoints(ctx, p)
	if err != nil {
		rp.down(w, r, p, "discovery", err)
		return
	}
	if iss, has := q["iss"]; (has || e.issParam) && (len(iss) != 1 || iss[0] != p.cfg.Issuer) {
		rp.refuse(w, r, p, reasonIssuer, nil)
		return
	}
	code := q.Get("code")
	if code == "" {
		rp.refuse(w, r, p, reasonToken, map[string]string{"check": "no_code"})
		return
	}
	hctx := gooidc.ClientContext(ctx, rp.client)
	tok, err := e.oauth.Exchange(hctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			rp.refuse(w, r, p, reasonToken, map[string]string{"check": "exchange", "error": oauthCode(re.ErrorCode)})
			return
		}
		p.forget(e)
		rp.down(w, r, p, "token", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		rp.refuse(w, r, p, reasonToken, map[string]string{"check": "no_id_token"})
		return
	}
	idt, err := e.verifier.Verify(ctx, raw)
	if err != nil {
		reason, d := rp.verifyFailure(ctx, e, raw, err)
		rp.refuse(w, r, p, reason, d)
		return
	}
	var c claims
	if err := idt.Claims(&c); err != nil || idt.Subject == "" {
		rp.refuse(w, r, p, reasonToken, map[string]string{"check": "claims"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		rp.refuse(w, r, p, reasonNonce, nil)
		return
	}
	if !authorizedParty(idt.Audience, c, p.cfg.ClientID) {
		rp.refuse(w, r, p, reasonAudience, map[string]string{"check": "azp"})
		return
	}
	if p.missing(c) && e.userinfo && tok.AccessToken != "" {
		if !rp.userinfo(w, r, p, e, tok, idt.Subject, c) {
			return
		}
	}
	id, refusal := p.identity(idt.Issuer, idt.Subject, c)
	if refusal != "" {
		rp.record(r, event.Denied, map[string]string{"provider": p.cfg.Name, "reason": refusal, "subject": idt.Subject})
		rp.o.Pages.Error(w, r, http.StatusForbidden, "Sign-in refused",
			"Your account at "+p.cfg.DisplayName+" is not allowed to sign in here. Ask an administrator if you think it should be.")
		return
	}
	rp.login(w, r, p, id, st.ReturnTo)
}

// authorizedParty checks the azp claim (OpenID Connect Core 1.0,
// 3.1.3.7, items 4 and 5): with several audiences it must be present, and
// when present it must be this client.
func authorizedParty(aud []string, c claims, clientID string) bool {
	azp, has := c["azp"]
	if !has {
		return len(aud) <= 1
	}
	s, ok := azp.(string)
	return ok && s == clientID
}

// checkState reads and opens the state cookie and compares its state with
// the callback's. ok is false when it answered.
func (rp *RP) checkState(w http.ResponseWriter, r *http.Request, state string) (*loginState, *provider, bool) {
	value, several := stateFromRequest(r)
	check := ""
	var st *loginState
	switch {
	case several:
		check = "several_cookies"
	case value == "":
		check = "no_cookie"
	default:
		var err error
		if st, err = rp.seal.open(value, rp.o.Now()); errors.Is(err, errStateExpired) {
			check = "expired"
		} else if err != nil {
			check = "invalid"
		}
	}
	if check == "" && subtle.ConstantTimeCompare([]byte(state), []byte(st.State)) != 1 {
		check = "mismatch"
	}
	var p *provider
	if check == "" {
		if p = rp.byName[st.Provider]; p == nil {
			check = "unknown_provider" // removed from the configuration meanwhile
		}
	}
	if check != "" {
		rp.record(r, event.Failure, map[string]string{"reason": reasonState, "check": check})
		rp.o.Pages.Error(w, r, http.StatusBadRequest, "This sign-in cannot be finished",
			"It took too long, it was started in another tab or window, or this browser does not keep cookies. Start again from the login page.")
		return nil, nil, false
	}
	return st, p, true
}

// providerError answers an error response of the provider (RFC 6749,
// 4.1.2.1), after the state matched. The description is shown as text
// (the pager escapes it), clipped.
func (rp *RP) providerError(w http.ResponseWriter, r *http.Request, p *provider, code, description string) {
	code = oauthCode(code)
	rp.record(r, event.Failure, map[string]string{"provider": p.cfg.Name, "reason": reasonProviderError, "error": code})
	msg := p.cfg.DisplayName + " did not sign you in (" + code + ")."
	if d := clipRunes(strings.Map(printable, description), 200); d != "" {
		msg += " It said: " + d
	}
	status := http.StatusForbidden
	if code == "temporarily_unavailable" || code == "server_error" {
		w.Header().Set("Retry-After", strconv.Itoa(int(discoveryRetry.Seconds())))
		status = http.StatusServiceUnavailable
	}
	rp.o.Pages.Error(w, r, status, "Sign-in not completed", msg+" Start again from the login page.")
}

// verifyFailure names why the verifier refused an ID token.
func (rp *RP) verifyFailure(ctx context.Context, e *endpoints, raw string, err error) (string, map[string]string) {
	var expired *gooidc.TokenExpiredError
	if errors.As(err, &expired) {
		return reasonToken, map[string]string{"check": "expired"}
	}
	if _, aerr := e.anyAud.Verify(ctx, raw); aerr == nil {
		// Everything but the audience holds.
		return reasonAudience, map[string]string{"check": "aud"}
	}
	rp.log.Info("an ID token was refused", "err", err)
	return reasonToken, map[string]string{"check": "verify"}
}

// userinfo fills c from the userinfo endpoint, whose sub must be the ID
// token's (OpenID Connect Core 1.0, 5.3.2). ok is false when it answered.
func (rp *RP) userinfo(w http.ResponseWriter, r *http.Request, p *provider, e *endpoints, tok *oauth2.Token, sub string, c claims) bool {
	ui, err := e.provider.UserInfo(gooidc.ClientContext(r.Context(), rp.client), oauth2.StaticTokenSource(tok))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			p.forget(e)
			rp.down(w, r, p, "userinfo", err)
			return false
		}
		rp.log.Info("the userinfo endpoint refused", "provider", p.cfg.Name, "err", err)
		rp.refuse(w, r, p, reasonToken, map[string]string{"check": "userinfo"})
		return false
	}
	var uc claims
	if err := ui.Claims(&uc); err != nil || uc.str("sub") != sub {
		rp.refuse(w, r, p, reasonToken, map[string]string{"check": "userinfo_sub"})
		return false
	}
	p.fill(c, uc)
	return true
}

// login signs the user in at accounts, ends the session the browser had,
// sets the new one and sends the browser on.
func (rp *RP) login(w http.ResponseWriter, r *http.Request, p *provider, id accounts.ExternalIdentity, returnTo string) {
	ctx, ip := r.Context(), clientIP(r)
	res, err := rp.o.Accounts.ExternalLogin(ctx, id, ip)
	if errors.Is(err, accounts.ErrLoginFailed) {
		// A disabled user; accounts recorded the event.
		rp.o.Pages.Error(w, r, http.StatusForbidden, "Sign-in refused",
			"Your account at "+p.cfg.DisplayName+" is not allowed to sign in here. Ask an administrator if you think it should be.")
		return
	}
	if err != nil {
		rp.log.Error("signing in a user of an OpenID provider", "provider", p.cfg.Name, "request_id", requestID(r), "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(discoveryRetry.Seconds())))
		rp.o.Pages.Error(w, r, http.StatusServiceUnavailable, "Sign-in not completed",
			"Moat could not finish the sign-in. Try again in a moment.")
		return
	}
	// A session cookie the browser already had may have been planted:
	// end that session rather than leave it beside the new one.
	if old := session.TokenFromRequest(r); old != "" {
		if err := rp.o.Accounts.Logout(ctx, old, ip); err != nil {
			rp.log.Warn("ending the session a sign-in replaces", "request_id", requestID(r), "err", err)
		}
	}
	rp.o.Cookies.Set(w, res.Token, res.Session)
	returnTo = portal.SafeReturn(returnTo)
	to := returnTo
	switch res.Outcome {
	case accounts.NeedSecondFactor:
		to = portal.PathLoginTOTP + "?" + url.Values{portal.FieldReturnTo: {returnTo}}.Encode()
	case accounts.MustEnroll:
		to = portal.PathTOTP
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// down answers that p is not answering, and records it.
func (rp *RP) down(w http.ResponseWriter, r *http.Request, p *provider, step string, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away while waiting
	}
	rp.log.Warn("an OpenID provider is not answering", "provider", p.cfg.Name, "step", step, "err", err)
	rp.record(r, event.Failure, map[string]string{"provider": p.cfg.Name, "reason": reasonProviderDown, "check": step})
	w.Header().Set("Retry-After", strconv.Itoa(int(discoveryRetry.Seconds())))
	rp.o.Pages.Error(w, r, http.StatusServiceUnavailable, "Sign-in provider unavailable",
		"The sign-in provider "+p.cfg.DisplayName+" is not answering. Try again in a moment.")
}

// refuse answers 400 to a sign-in whose answer from p did not verify.
func (rp *RP) refuse(w http.ResponseWriter, r *http.Request, p *provider, reason string, details map[string]string) {
	d := map[string]string{"provider": p.cfg.Name, "reason": reason}
	for k, v := range details {
		d[k] = v
	}
	rp.record(r, event.Failure, d)
	rp.o.Pages.Error(w, r, http.StatusBadRequest, "Sign-in failed",
		"The answer from "+p.cfg.DisplayName+" could not be verified. Start again from the login page.")
}

func (rp *RP) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	rp.log.Error(what, "request_id", requestID(r), "err", err)
	rp.o.Pages.Error(w, r, http.StatusInternalServerError, "Something went wrong", "Moat could not start the sign-in. Try again in a moment.")
}

// record sends a login.failed event.
func (rp *RP) record(r *http.Request, outcome event.Outcome, details map[string]string) {
	e := event.Event{Time: rp.o.Now(), Kind: "login.failed", Outcome: outcome, Rule: "oidc", Details: details}
	if ip := clientIP(r); ip.IsValid() {
		e.ClientIP = ip.String()
	}
	if info := request.From(r.Context()); info != nil {
		e.RequestID, e.Route = info.ID, info.Route
	}
	rp.o.Events.Record(r.Context(), e)
}

// clientIP is the client's address as the chain established it, else the
// TCP peer's.
func clientIP(r *http.Request) netip.Addr {
	if info := request.From(r.Context()); info != nil && info.ClientIP.IsValid() {
		return info.ClientIP
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func requestID(r *http.Request) string {
	if info := request.From(r.Context()); info != nil {
		return info.ID
	}
	return ""
}

// randomString is 32 random bytes, base64url: a state or a nonce.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// oauthCode keeps an OAuth error code fit for events and pages: the
// registered codes are lower-case words and underscores.
func oauthCode(s string) string {
	if s == "" || len(s) > 64 || strings.IndexFunc(s, func(c rune) bool { return !(c >= 'a' && c <= 'z' || c == '_') }) >= 0 {
		return "unknown_error"
	}
	return s
}

// printable drops control characters from text shown to the user.
func printable(c rune) rune {
	if c < ' ' || c == 0x7f || (c >= 0x80 && c < 0xa0) {
		return -1
	}
	return c
}

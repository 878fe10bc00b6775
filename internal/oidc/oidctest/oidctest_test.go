package oidctest

import (
	"context"
	"net/url"
	"slices"
	"testing"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const rpCallback = "https://rp.test/cb"

func TestLoginIssuesACodeAndASignedIDToken(t *testing.T) {
	p := Start(t, rpCallback)
	ctx := gooidc.ClientContext(context.Background(), p.HTTPClient())
	prov, err := gooidc.NewProvider(ctx, p.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	cfg := oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: prov.Endpoint(),
		RedirectURL: rpCallback, Scopes: []string{gooidc.ScopeOpenID, "email", "profile"}}
	verifier := oauth2.GenerateVerifier()
	cb := p.Login(t, p.HTTPClient(), cfg.AuthCodeURL("st-1", gooidc.Nonce("n-1"), oauth2.S256ChallengeOption(verifier)))
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != rpCallback {
		t.Fatalf("redirected to %s, want the registered %s", got, rpCallback)
	}
	if u.Query().Get("state") != "st-1" || u.Query().Get("code") == "" {
		t.Fatalf("callback query %q: want state st-1 and a code", u.RawQuery)
	}
	tok, err := cfg.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := prov.Verifier(&gooidc.Config{ClientID: p.ClientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		Groups []string `json:"groups"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != p.User.Subject || idt.Nonce != "n-1" || !slices.Equal(claims.Groups, p.User.Groups) {
		t.Errorf("ID token sub %q nonce %q groups %v; want %q, n-1, %v", idt.Subject, idt.Nonce, claims.Groups, p.User.Subject, p.User.Groups)
	}
	ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if ui.Subject != p.User.Subject || ui.Email != p.User.Email || !ui.EmailVerified {
		t.Errorf("userinfo %+v; want sub %q and verified e-mail %q", ui, p.User.Subject, p.User.Email)
	}

	t.Run("a verifier that does not match the challenge is refused", func(t *testing.T) {
		cb := p.Login(t, p.HTTPClient(), cfg.AuthCodeURL("st-2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		u, _ := url.Parse(cb)
		if _, err := cfg.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil {
			t.Error("the provider accepted a code with the wrong PKCE verifier")
		}
	})
	t.Run("an unregistered redirect URI is refused", func(t *testing.T) {
		other := cfg
		other.RedirectURL = "https://elsewhere.test/cb"
		resp, err := p.HTTPClient().Get(other.AuthCodeURL("st-3"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Request.URL.Path == "/login/username" {
			t.Error("the provider showed the login form for an unregistered redirect URI")
		}
	})
}

func TestDeny(t *testing.T) {
	p := Start(t, rpCallback)
	auth := p.Issuer + "/auth?" + url.Values{"client_id": {p.ClientID}, "redirect_uri": {rpCallback},
		"response_type": {"code"}, "scope": {"openid"}, "state": {"st"}}.Encode()
	cb, err := url.Parse(p.Deny(t, p.HTTPClient(), auth, "the user said no"))
	if err != nil {
		t.Fatal(err)
	}
	q := cb.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "st" || q.Get("error_description") != "the user said no" {
		t.Errorf("callback query %q", cb.RawQuery)
	}
}

func TestDownAndStop(t *testing.T) {
	p := Start(t)
	discover := func() error {
		_, err := gooidc.NewProvider(gooidc.ClientContext(context.Background(), p.HTTPClient()), p.Issuer)
		return err
	}
	if err := discover(); err != nil {
		t.Fatalf("discovery: %v", err)
	}
	p.SetDown(true)
	if err := discover(); err == nil {
		t.Error("discovery worked while the provider was down")
	}
	p.SetDown(false)
	if err := discover(); err != nil {
		t.Errorf("discovery after coming back: %v", err)
	}
	p.Stop()
	if err := discover(); err == nil {
		t.Error("discovery worked after Stop")
	}
}

package server

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/portal"
)

// TestStepUpThroughGateway: a route whose rule wants a second factor used
// in the last 10 minutes sends a user who signed in earlier to confirm it
// again, then lets them in; an API call gets 403 instead of a page.
func TestStepUpThroughGateway(t *testing.T) {
	routes := func(up string) string {
		return fmt.Sprintf(`  - name: app
    path: /app
    policy: authenticated
    upstreams: [%[1]s]
  - name: settings
    path: /settings
    policy: authenticated
    upstreams: [%[1]s]
    allow:
      - name: fresh-second-factor
        mfa_max_age: 10m
`, up)
	}
	g := startLoginGatewayWith(t, "", "accounts: {sessions: {idle_timeout: 2h, absolute_timeout: 12h}}\n", routes)
	g.addUser(t, "dana", "user")
	b := g.newBrowser(t)
	b.mustLogin("dana")

	// Signed in with a password only: the rule wants a second factor, and
	// dana has none to confirm yet.
	if r := b.page("/settings"); r.status != http.StatusSeeOther || r.location() != portal.PathStepUp+"?return_to=%2Fsettings" {
		t.Fatalf("password-only session on a page wanting a second factor: %s", r)
	}
	if r := b.post(portal.PathStepUp, url.Values{portal.FieldReturnTo: {"/settings"}}); r.status != http.StatusBadRequest {
		t.Fatalf("step-up without a second factor: %s", r)
	}

	// Enroll an authenticator app, then let time pass.
	r := b.page(portal.PathTOTP)
	secret := totpSecret(t, r.body)
	if r = b.post(portal.PathTOTP, url.Values{portal.FieldCode: {mfa.Code(secret, g.clock.Now())}}); r.status != http.StatusOK {
		t.Fatalf("enrolling: %s", r)
	}
	g.clock.Advance(30 * time.Minute)
	if r := b.api("/settings"); r.status != http.StatusForbidden {
		t.Errorf("API call with a stale second factor: %s, want 403", r)
	}
	if r := b.page("/app"); r.status != http.StatusOK {
		t.Errorf("a route without the rule: %s", r)
	}
	if r := b.page("/settings"); r.status != http.StatusSeeOther || r.location() != portal.PathStepUp+"?return_to=%2Fsettings" {
		t.Fatalf("stale second factor: %s, want the step-up page", r)
	}
	if r := b.page(portal.PathStepUp + "?return_to=%2Fsettings"); r.status != http.StatusOK {
		t.Fatalf("step-up page: %s", r)
	}
	r = b.post(portal.PathStepUp, url.Values{portal.FieldReturnTo: {"/settings"}})
	if r.status != http.StatusSeeOther || r.location() != portal.PathLoginTOTP+"?return_to=%2Fsettings" {
		t.Fatalf("starting the step-up: %s", r)
	}
	if r := b.page("/app"); r.status != http.StatusSeeOther {
		t.Errorf("while confirming, the session is not a full login: %s", r)
	}
	g.clock.Advance(time.Minute) // a new TOTP step
	r = b.post(portal.PathLoginTOTP, url.Values{portal.FieldCode: {mfa.Code(secret, g.clock.Now())}, portal.FieldReturnTo: {"/settings"}})
	if r.status != http.StatusSeeOther || r.location() != "/settings" {
		t.Fatalf("confirming the code: %s", r)
	}
	if r := b.page("/settings"); r.status != http.StatusOK {
		t.Fatalf("after the step-up: %s", r)
	}
	if e := g.events.find("request.denied", "authz.step_up"); e == nil {
		t.Error("no request.denied event with rule authz.step_up")
	}
}

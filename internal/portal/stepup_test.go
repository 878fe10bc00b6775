package portal

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/mfa"
)

func TestHandlerStepUp(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()

	// Without a second factor, a step-up cannot happen: the page says so.
	wantRedirect(t, "login", b.login("alice", flowPassword, ""), "/")
	wantPage(t, "step-up form", b.get(PathStepUp+"?return_to=%2Fadmin%2Fsettings"), http.StatusOK, "Confirm with my second factor")
	wantPage(t, "step-up without a factor", b.post(PathStepUp, PathStepUp, url.Values{FieldReturnTo: {"/admin/settings"}}),
		http.StatusBadRequest, "has none yet")

	// Enroll an authenticator app.
	page := b.get(PathTOTP)
	secret := keyOf(t, page.body)
	done := b.do(http.MethodPost, PathTOTP, url.Values{
		FieldCode: {mfa.Code(secret, f.clock.Now())}, FieldName: {"phone"}, FieldCSRF: {csrfOf(t, page.body)},
	})
	wantPage(t, "enrollment", done, http.StatusOK, "Save your recovery codes")

	// Much later, a page wants a fresh second factor.
	f.clock.Advance(20 * time.Minute)
	before := b.sessionCookie()
	r := b.post(PathStepUp+"?return_to=%2Fadmin%2Fsettings", PathStepUp, url.Values{FieldReturnTo: {"/admin/settings"}})
	wantRedirect(t, "step-up", r, PathLoginTOTP+"?return_to=%2Fadmin%2Fsettings")
	if b.sessionCookie() == before {
		t.Fatal("the step-up kept the session id")
	}
	wantRedirect(t, "account while confirming", b.get(PathAccount), PathLoginTOTP+"?return_to=%2F.moat%2Faccount")
	sf := PathLoginTOTP + "?return_to=%2Fadmin%2Fsettings"
	wantRedirect(t, "code", b.post(sf, PathLoginTOTP, url.Values{FieldCode: {mfa.Code(secret, f.clock.Now())}, FieldReturnTo: {"/admin/settings"}}), "/admin/settings")
	p, err := f.svc.Authenticate(context.Background(), b.sessionCookie())
	if err != nil {
		t.Fatal(err)
	}
	if !p.AuthTime.Equal(f.clock.Now()) || p.Pending != "" {
		t.Errorf("after the step-up: auth time %v pending %q; want now (%v) and a full login", p.AuthTime, p.Pending, f.clock.Now())
	}

	anon := f.browser()
	wantRedirect(t, "anonymous step-up", anon.get(PathStepUp), PathLogin)
}

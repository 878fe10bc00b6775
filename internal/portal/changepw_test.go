package portal

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestHandlerChangePassword(t *testing.T) {
	f := newFlow(t)
	f.user("alice", "user")
	b := f.browser()
	wantRedirect(t, "login", b.login("alice", flowPassword, ""), "/")
	other := f.browser()
	wantRedirect(t, "second login", other.login("alice", flowPassword, ""), "/")

	wantPage(t, "form", b.get(PathPassword), http.StatusOK, `name="current_password"`)
	const fresh = "a brand new passphrase"
	wantPage(t, "wrong current password", b.post(PathPassword, PathPassword, url.Values{
		FieldCurrentPassword: {"not it at all"}, FieldNewPassword: {fresh}, FieldConfirmPassword: {fresh},
	}), http.StatusUnauthorized, "The current password is not correct")
	wantPage(t, "mismatch", b.post(PathPassword, PathPassword, url.Values{
		FieldCurrentPassword: {flowPassword}, FieldNewPassword: {fresh}, FieldConfirmPassword: {fresh + "!"},
	}), http.StatusBadRequest, msgMismatch)

	before := b.sessionCookie()
	f.clock.Advance(10 * time.Second) // past the back-off of the wrong password
	r := b.post(PathPassword, PathPassword, url.Values{
		FieldCurrentPassword: {flowPassword}, FieldNewPassword: {fresh}, FieldConfirmPassword: {fresh},
	})
	wantRedirect(t, "change", r, PathAccount+"?notice=password_changed")
	if b.sessionCookie() == before || b.sessionCookie() == "" {
		t.Error("the session id was not replaced")
	}
	wantPage(t, "account after the change", b.get(PathAccount+"?notice=password_changed"), http.StatusOK, "Your password is changed")
	wantRedirect(t, "the other session", other.get(PathAccount), PathLogin+"?return_to=%2F.moat%2Faccount")

	anon := f.browser()
	wantPage(t, "anonymous form", anon.get(PathPassword), http.StatusBadRequest, "open the link")
}

package accounts

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPasswordResetEndsTheOldPassword(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.user(t, "eve", "user")
	before := f.login(t, "eve", LoggedIn).Token

	first, err := f.svc.EnrollmentToken(ctx, "eve")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.svc.EnrollmentToken(ctx, "eve")
	if err != nil {
		t.Fatal(err)
	}
	f.wantEvent(t, "user.password_reset", "eve", "", nil)

	// Before the new password is set, the old one is already gone, and so
	// are the sessions it opened.
	if _, err := f.svc.PasswordLogin(ctx, "eve", goodPassword, client); err != ErrLoginFailed {
		t.Fatalf("old password right after the reset: %v, want ErrLoginFailed", err)
	}
	f.wantEvent(t, "login.failed", "eve", "password", map[string]string{"reason": "no_password"})
	wantNoSession(t, f, before)

	if _, err := f.svc.SetPasswordWithToken(ctx, first, "a replaced link is worthless"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("the first of two reset links: %v, want ErrInvalidToken", err)
	}
	const newPassword = "a brand new passphrase after the reset"
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, newPassword); err != nil {
		t.Fatalf("SetPasswordWithToken: %v", err)
	}
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, newPassword+"!"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("reset link used twice: %v, want ErrInvalidToken", err)
	}

	f.clock.Advance(2 * time.Second) // past the back-off of the failure above
	if _, err := f.svc.PasswordLogin(ctx, "eve", goodPassword, client); err != ErrLoginFailed {
		t.Fatalf("old password after the new one is set: %v, want ErrLoginFailed", err)
	}
	f.wantEvent(t, "login.failed", "eve", "password", map[string]string{"reason": "wrong_password"})
	f.clock.Advance(3 * time.Second)
	res, err := f.svc.PasswordLogin(ctx, "eve", newPassword, client)
	if err != nil || res.Outcome != LoggedIn {
		t.Fatalf("new password: %+v %v", res, err)
	}
}

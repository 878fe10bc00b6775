package accounts

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/session"
)

func TestChangePassword(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user(t, "alice")
	login := func() (string, *Principal) {
		t.Helper()
		res, err := f.svc.PasswordLogin(ctx, "alice", goodPassword, client)
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.svc.Authenticate(ctx, res.Token)
		if err != nil {
			t.Fatal(err)
		}
		return res.Token, p
	}
	other, _ := login()
	tok, p := login()

	if _, err := f.svc.ChangePassword(ctx, tok, p, "not the password", "a brand new passphrase", client); !errors.Is(err, ErrLoginFailed) {
		t.Fatalf("wrong current password: %v, want ErrLoginFailed", err)
	}
	if e := f.ev.last("login.failed"); e == nil || e.Rule != "password_change" {
		t.Errorf("wrong current password recorded %+v", e)
	}
	f.clock.Advance(2 * time.Second) // past the back-off the failure started
	var pe *password.PolicyError
	if _, err := f.svc.ChangePassword(ctx, tok, p, goodPassword, "password", client); !errors.As(err, &pe) {
		t.Fatalf("a breached password: %v, want a policy error", err)
	}
	newTok, err := f.svc.ChangePassword(ctx, tok, p, goodPassword, "a brand new passphrase", client)
	if err != nil {
		t.Fatal(err)
	}
	for name, old := range map[string]string{"this session": tok, "another session": other} {
		if _, err := f.svc.Authenticate(ctx, old); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("%s after the change: %v, want ErrNoSession", name, err)
		}
	}
	np, err := f.svc.Authenticate(ctx, newTok)
	if err != nil || np.Username != "alice" || !np.AuthTime.Equal(p.AuthTime) {
		t.Fatalf("new session %+v, %v; want alice with the same auth time", np, err)
	}
	if _, err := f.svc.PasswordLogin(ctx, "alice", goodPassword, client); !errors.Is(err, ErrLoginFailed) {
		t.Errorf("the old password still works: %v", err)
	}
	f.clock.Advance(4 * time.Second)
	if _, err := f.svc.PasswordLogin(ctx, "alice", "a brand new passphrase", client); err != nil {
		t.Errorf("the new password: %v", err)
	}
	if f.ev.last("password.changed") == nil {
		t.Error("no password.changed event")
	}
	pending := &Principal{UserID: p.UserID, Username: "alice", Pending: PendingMFA}
	if _, err := f.svc.ChangePassword(ctx, newTok, pending, "a brand new passphrase", "yet another passphrase", client); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("an unfinished sign-in changed the password: %v", err)
	}
}

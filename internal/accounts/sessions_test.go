package accounts

import (
	"context"
	"errors"
	"testing"

	"github.com/moatgw/moat/internal/session"
)

// liveSessions returns how many of username's listed sessions are live,
// failing the test if a listed session is someone else's.
func (f *fixture) liveSessions(t *testing.T, username string) int {
	t.Helper()
	u, err := f.st.Users().GetByUsername(context.Background(), username)
	if err != nil {
		t.Fatal(err)
	}
	list, err := f.svc.Sessions(context.Background(), username)
	if err != nil {
		t.Fatalf("Sessions(%s): %v", username, err)
	}
	n := 0
	for _, s := range list {
		if s.UserID != u.ID {
			t.Errorf("Sessions(%s) lists a session of user %s", username, s.UserID)
		}
		if s.RevokedAt.IsZero() {
			n++
		}
	}
	return n
}

func wantNoSession(t *testing.T, f *fixture, tokens ...string) {
	t.Helper()
	for i, tok := range tokens {
		if p, err := f.svc.Authenticate(context.Background(), tok); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("session %d still authenticates (%+v, %v); want session.ErrNoSession", i+1, p, err)
		}
	}
}

func TestEndEverySession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.user(t, "dan", "user")
	f.user(t, "eve", "user")
	eve := f.login(t, "eve", LoggedIn).Token

	tests := []struct {
		name string
		end  func(t *testing.T, tokens []string) (rule string)
	}{
		{"RevokeSessions", func(t *testing.T, _ []string) string {
			n, err := f.svc.RevokeSessions(ctx, "DAN")
			if err != nil {
				t.Fatalf("RevokeSessions: %v", err)
			}
			if n != 2 {
				t.Errorf("RevokeSessions ended %d sessions, want 2", n)
			}
			return "admin"
		}},
		{"LogoutEverywhere", func(t *testing.T, tokens []string) string {
			if err := f.svc.LogoutEverywhere(ctx, f.principal(t, tokens[1]), client); err != nil {
				t.Fatalf("LogoutEverywhere: %v", err)
			}
			return "logout_everywhere"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokens := []string{f.login(t, "dan", LoggedIn).Token, f.login(t, "dan", LoggedIn).Token}
			if n := f.liveSessions(t, "dan"); n != 2 {
				t.Fatalf("Sessions lists %d live sessions of dan, want 2", n)
			}
			rule := tt.end(t, tokens)
			wantNoSession(t, f, tokens...)
			if n := f.liveSessions(t, "dan"); n != 0 {
				t.Errorf("Sessions lists %d live sessions of dan after ending them all", n)
			}
			e := f.wantEvent(t, "session.revoked", "dan", rule, map[string]string{"sessions": "2"})
			if rule == "logout_everywhere" && e.ClientIP != client.String() {
				t.Errorf("session.revoked from %q, want %s", e.ClientIP, client)
			}
			if p, err := f.svc.Authenticate(ctx, eve); err != nil || p.Username != "eve" {
				t.Errorf("another user's session: %+v, %v; want it kept", p, err)
			}
			// The account itself is not locked.
			if err := f.svc.Logout(ctx, f.login(t, "dan", LoggedIn).Token, client); err != nil {
				t.Fatal(err)
			}
		})
	}

	if _, err := f.svc.RevokeSessions(ctx, "nobody"); err == nil {
		t.Error("RevokeSessions of an unknown user succeeded")
	}
	if _, err := f.svc.Sessions(ctx, "nobody"); err == nil {
		t.Error("Sessions of an unknown user succeeded")
	}
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/request"
	"github.com/moatgw/moat/internal/store"
)

// Who may call what: every endpoint as every kind of caller.
func TestEndpointPermissions(t *testing.T) {
	f := newFixture(t)
	ps := f.principals()
	everyone := []string{"viewer", "operator", "operator key", "admin no mfa", "admin recent mfa", "admin mfa too old",
		"admin key", "no admin role", "bearer token admin"}
	readers := []string{"viewer", "operator", "operator key", "admin no mfa", "admin recent mfa", "admin mfa too old", "admin key"}
	operators := []string{"operator", "operator key", "admin no mfa", "admin recent mfa", "admin mfa too old", "admin key"}
	admins := []string{"admin recent mfa"}
	key := f.tomKeyID
	tests := []struct {
		name, method, path string
		perm               Permission
		action             string
		allowed            []string // 200 for these, 403 for everyone else
	}{
		{"whoami", "GET", "/.moat/admin/api/whoami", "", "", everyone},
		{"list users", "GET", "/.moat/admin/api/users", UsersRead, "users_list", readers},
		{"list sessions", "GET", "/.moat/admin/api/users/tom/sessions", SessionsRead, "sessions_list", readers},
		{"revoke sessions", "POST", "/.moat/admin/api/users/tom/revoke-sessions", SessionsRevoke, "revoke_sessions", operators},
		{"disable", "POST", "/.moat/admin/api/users/tom/disable", UsersDisable, "disable", operators},
		{"enable", "POST", "/.moat/admin/api/users/tom/enable", UsersDisable, "enable", operators},
		{"reset mfa", "POST", "/.moat/admin/api/users/tom/reset-mfa", UsersManage, "reset_mfa", admins},
		{"reset password", "POST", "/.moat/admin/api/users/tom/reset-password", UsersManage, "reset_password", admins},
		{"list api keys", "GET", "/.moat/admin/api/apikeys", APIKeysRead, "apikeys_list", readers},
		{"revoke api key", "POST", "/.moat/admin/api/apikeys/" + key + "/revoke", APIKeysManage, "apikey_revoke", admins},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, who := range everyone {
				t.Run(who, func(t *testing.T) {
					p := ps[who]
					n := f.ev.len()
					w := f.do(p, tt.method, tt.path)
					want := http.StatusForbidden
					if slices.Contains(tt.allowed, who) {
						want = http.StatusOK
					}
					if w.Code != want {
						t.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
					}
					evs := f.ev.since(n)
					switch {
					case want == http.StatusForbidden:
						if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
							t.Errorf("Content-Type %q", ct)
						}
						if len(evs) != 1 || evs[0].Kind != "admin.denied" || evs[0].Outcome != event.Denied ||
							evs[0].Details["permission"] != string(tt.perm) || evs[0].Details["reason"] == "" ||
							evs[0].Principal != p.Subject {
							t.Errorf("events %+v, want one admin.denied for %s by %s", evs, tt.perm, p.Subject)
						}
					case tt.action != "":
						if len(evs) != 1 || evs[0].Kind != "admin."+tt.action || evs[0].Outcome != event.Success || evs[0].Principal != p.Subject {
							t.Errorf("events %+v, want one admin.%s success", evs, tt.action)
						}
						if ct := w.Header().Get("Content-Type"); ct != "application/json" {
							t.Errorf("Content-Type %q", ct)
						}
					}
				})
			}
		})
	}
}

// What the admin actions do to the accounts and keys, seen through the
// services themselves.
func TestAdminActions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.principals()["admin recent mfa"]
	tom := f.users["tom"]
	post := func(t *testing.T, path string) map[string]any {
		t.Helper()
		w := f.do(admin, "POST", "/.moat/admin/api/"+path)
		if w.Code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, w.Code, w.Body)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		return decode(t, w)
	}
	status := func(t *testing.T, name string) string {
		t.Helper()
		users, err := f.acc.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if u.Username == name {
				return u.Status
			}
		}
		t.Fatalf("no user %s", name)
		return ""
	}

	t.Run("users list roles, status and factors, no email", func(t *testing.T) {
		w := f.do(admin, "GET", "/.moat/admin/api/users")
		var got struct{ Users []User }
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Users) != len(f.users) {
			t.Fatalf("%d users, want %d", len(got.Users), len(f.users))
		}
		i := slices.IndexFunc(got.Users, func(u User) bool { return u.Name == "tom" })
		u := got.Users[i]
		if u.ID != tom.ID || !slices.Equal(u.Roles, []string{"user"}) || u.Status != "active" ||
			u.Factors[accounts.KindTOTP] != 1 || !u.MFA || u.DisplayName != "Tom" {
			t.Errorf("tom is %+v", u)
		}
		if strings.Contains(w.Body.String(), "@example.test") {
			t.Errorf("email addresses listed: %s", w.Body)
		}
	})
	t.Run("sessions", func(t *testing.T) {
		w := f.do(admin, "GET", "/.moat/admin/api/users/TOM/sessions")
		var got struct {
			User     string
			Sessions []Session
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.User != "tom" || len(got.Sessions) != 1 || len(got.Sessions[0].ID) != 16 ||
			!slices.Equal(got.Sessions[0].Methods, []string{"pwd", "otp"}) || got.Sessions[0].ExpiresAt.IsZero() {
			t.Errorf("sessions %s", w.Body)
		}
	})
	t.Run("revoke sessions", func(t *testing.T) {
		got := post(t, "users/tom/revoke-sessions")
		if got["revoked"] != float64(1) || got["user"] != "tom" {
			t.Errorf("answer %v", got)
		}
		if ss, err := f.acc.Sessions(ctx, "tom"); err != nil || len(ss) != 0 {
			t.Errorf("sessions left: %d, %v", len(ss), err)
		}
	})
	t.Run("disable and enable", func(t *testing.T) {
		if got := post(t, "users/tom/disable"); got["status"] != "disabled" {
			t.Errorf("answer %v", got)
		}
		if s := status(t, "tom"); s != accounts.StatusDisabled {
			t.Errorf("status %q after disable", s)
		}
		post(t, "users/tom/enable")
		if s := status(t, "tom"); s != accounts.StatusActive {
			t.Errorf("status %q after enable", s)
		}
	})
	t.Run("reset mfa", func(t *testing.T) {
		if got := post(t, "users/tom/reset-mfa"); got["mfa_reset"] != true {
			t.Errorf("answer %v", got)
		}
		factors, err := f.acc.Factors(ctx, tom.ID)
		if err != nil {
			t.Fatal(err)
		}
		if factors[accounts.KindTOTP] != 0 {
			t.Errorf("factors left: %v", factors)
		}
	})
	t.Run("reset password gives a working enrollment token", func(t *testing.T) {
		got := post(t, "users/tom/reset-password")
		tok, _ := got["enrollment_token"].(string)
		if tok == "" || got["password_reset"] != true {
			t.Fatalf("answer %v", got)
		}
		if _, err := f.acc.SetPasswordWithToken(ctx, tok, "a new and long pass phrase 42"); err != nil {
			t.Errorf("the token does not set a password: %v", err)
		}
	})
	t.Run("api keys listed without any secret", func(t *testing.T) {
		w := f.do(admin, "GET", "/.moat/admin/api/apikeys")
		var got struct{ APIKeys []APIKey }
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.APIKeys) != 1 {
			t.Fatalf("keys %s", w.Body)
		}
		k := got.APIKeys[0]
		if k.ID != f.tomKeyID || k.Owner != "tom" || k.Name != "tom-ci" || k.State != "active" || !slices.Equal(k.Scopes, []string{"deploy"}) {
			t.Errorf("key %+v", k)
		}
		secret := strings.TrimPrefix(f.tomKey, "moat_"+k.Prefix+"_")
		if strings.Contains(w.Body.String(), secret[:20]) || strings.Contains(w.Body.String(), "hash") {
			t.Errorf("a secret is listed: %s", w.Body)
		}
	})
	t.Run("revoke api key", func(t *testing.T) {
		if _, err := f.keys.Verify(ctx, f.tomKey); err != nil {
			t.Fatalf("the key does not work before: %v", err)
		}
		got := post(t, "apikeys/"+f.tomKeyID+"/revoke")
		if got["revoked"] != true || got["id"] != f.tomKeyID {
			t.Errorf("answer %v", got)
		}
		if _, err := f.keys.Verify(ctx, f.tomKey); !errors.Is(err, apikey.ErrInvalid) || apikey.Reason(err) != "revoked" {
			t.Errorf("after revoking, Verify = %v", err)
		}
	})
	notFound := []struct{ name, method, path string }{
		{"sessions of no such user", "GET", "users/nobody/sessions"},
		{"disable no such user", "POST", "users/nobody/disable"},
		{"a name that cannot be a user", "POST", "users/%20%2e/disable"},
		{"revoke no such key", "POST", "apikeys/aaaaaaaaaaaaaaaaaaaaaaaaaa/revoke"},
		{"revoke a key id that cannot be one", "POST", "apikeys/a.b/revoke"},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			n := f.ev.len()
			w := f.do(admin, tt.method, "/.moat/admin/api/"+tt.path)
			if w.Code != http.StatusNotFound {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if evs := f.ev.since(n); len(evs) != 1 || evs[0].Outcome != event.Failure {
				t.Errorf("events %+v, want one failure", evs)
			}
		})
	}
}

// A caller may change only users whose permissions they hold themselves,
// and cannot disable their own account.
func TestTargetRules(t *testing.T) {
	f := newFixture(t)
	ps := f.principals()
	tests := []struct {
		name, who, path string
		want            int
		reason          string
	}{
		{"operator cannot disable an admin", "operator", "users/adam/disable", http.StatusForbidden, ReasonTarget},
		{"operator key cannot revoke an admin's sessions", "operator key", "users/ada/revoke-sessions", http.StatusForbidden, ReasonTarget},
		{"operator cannot re-enable an admin", "operator", "users/adam/enable", http.StatusForbidden, ReasonTarget},
		{"operator disables a viewer", "operator", "users/vera/disable", http.StatusOK, ""},
		{"operator cannot disable themselves", "operator", "users/otto/disable", http.StatusConflict, ReasonSelf},
		{"admin cannot disable themselves", "admin no mfa", "users/ada/disable", http.StatusConflict, ReasonSelf},
		{"admin disables another admin", "admin no mfa", "users/adam/disable", http.StatusOK, ""},
		{"admin revokes their own sessions", "admin no mfa", "users/ada/revoke-sessions", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := f.ev.len()
			w := f.do(ps[tt.who], "POST", "/.moat/admin/api/"+tt.path)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if tt.reason == "" {
				return
			}
			evs := f.ev.since(n)
			if len(evs) != 1 || evs[0].Kind != "admin.denied" || evs[0].Details["reason"] != tt.reason {
				t.Errorf("events %+v, want admin.denied for %s", evs, tt.reason)
			}
		})
	}
}

// The answer to a missing or old second factor says what to do.
func TestMFARefusal(t *testing.T) {
	f := newFixture(t)
	ps := f.principals()
	tests := []struct {
		who, reason string
		wantDetail  []string
		dontWant    string
	}{
		{"admin no mfa", ReasonMFAMissing, []string{"users:manage", "15 minutes", "/.moat/step-up"}, "API key"},
		{"admin mfa too old", ReasonMFAStale, []string{"users:manage", "15 minutes", "/.moat/step-up"}, "API key"},
		{"admin key", ReasonMFAMissing, []string{"users:manage", "API key", "sign in"}, "/.moat/step-up"},
	}
	for _, tt := range tests {
		t.Run(tt.who, func(t *testing.T) {
			n := f.ev.len()
			w := f.do(ps[tt.who], "POST", "/.moat/admin/api/users/tom/reset-mfa")
			if w.Code != http.StatusForbidden {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			p := decode(t, w)
			detail, _ := p["detail"].(string)
			if p["title"] != "Recent second factor required" || p["request_id"] != "req-1" {
				t.Errorf("problem %v", p)
			}
			for _, s := range tt.wantDetail {
				if !strings.Contains(detail, s) {
					t.Errorf("detail %q lacks %q", detail, s)
				}
			}
			if strings.Contains(detail, tt.dontWant) {
				t.Errorf("detail %q mentions %q", detail, tt.dontWant)
			}
			evs := f.ev.since(n)
			if len(evs) != 1 || evs[0].Details["reason"] != tt.reason || evs[0].Details["target"] != "tom" ||
				evs[0].Details["action"] != "reset_mfa" || evs[0].Rule != "admin."+tt.reason {
				t.Errorf("events %+v", evs)
			}
		})
	}
	t.Run("a shorter maximum age", func(t *testing.T) {
		h, err := New(Options{Accounts: f.acc, APIKeys: f.keys, Now: f.clock.Now, MFAMaxAge: 2 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, newRequest(ps["admin recent mfa"], "POST", "/.moat/admin/api/users/tom/reset-mfa", nil))
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "2 minutes") {
			t.Errorf("%d %s", w.Code, w.Body)
		}
	})
}

// An admin action's event says who did what to whom, from where.
func TestEvents(t *testing.T) {
	f := newFixture(t)
	ps := f.principals()
	n := f.ev.len()
	if w := f.do(ps["operator key"], "POST", "/.moat/admin/api/users/tom/revoke-sessions"); w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	evs := f.ev.since(n)
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	e := evs[0]
	want := event.Event{Kind: "admin.revoke_sessions", Outcome: event.Success, Principal: f.users["otto"].ID,
		ClientIP: "192.0.2.7", Route: "moat-admin", RequestID: "req-1", Rule: "sessions:revoke"}
	if e.Kind != want.Kind || e.Outcome != want.Outcome || e.Principal != want.Principal || e.ClientIP != want.ClientIP ||
		e.Route != want.Route || e.RequestID != want.RequestID || e.Rule != want.Rule || e.Time.IsZero() {
		t.Errorf("event %+v, want %+v", e, want)
	}
	for k, v := range map[string]string{"target": "tom", "method": "apikey", "key_id": "key-otto", "sessions": "1"} {
		if e.Details[k] != v {
			t.Errorf("details[%s] = %q, want %q (%v)", k, e.Details[k], v, e.Details)
		}
	}
	// The accounts service reports the change to the user as well.
	found := false
	f.ev.mu.Lock()
	for _, ev := range f.ev.es[n:] {
		found = found || ev.Kind == "session.revoked" && ev.Principal == "tom"
	}
	if !found {
		t.Error("no session.revoked event")
	}
	f.ev.mu.Unlock()

	t.Run("no secret in any event", func(t *testing.T) {
		n := f.ev.len()
		w := f.do(ps["admin recent mfa"], "POST", "/.moat/admin/api/users/tom/reset-password")
		tok, _ := decode(t, w)["enrollment_token"].(string)
		if tok == "" {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		f.ev.mu.Lock()
		defer f.ev.mu.Unlock()
		for _, ev := range f.ev.es[n:] {
			for _, v := range ev.Details {
				if strings.Contains(v, tok[strings.IndexByte(tok, '.')+1:]) {
					t.Errorf("event %s carries the enrollment token", ev.Kind)
				}
			}
		}
	})
}

// Cross-site request forgery: over real HTTP, a state change made with a
// session cookie must be same-origin; one made with an API key need not.
func TestCrossOrigin(t *testing.T) {
	f := newFixture(t)
	ps := f.principals()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The gateway authenticates; here the test names the principal.
		p := ps[r.Header.Get("X-Test-Principal")]
		r = r.WithContext(request.With(r.Context(), &request.Info{ID: "req-x", Principal: p}))
		f.h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	tests := []struct {
		name, who, method string
		headers           map[string]string
		want              int
	}{
		{"session, cross-site fetch", "operator", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"session, same-site but other origin", "operator", "POST", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.test"}, http.StatusForbidden},
		{"session, old browser from another origin", "operator", "POST", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"session, cross-site even for an admin with mfa", "admin recent mfa", "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"api key, cross-site headers", "operator key", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusOK},
		{"session, same-origin", "operator", "POST", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}, http.StatusOK},
		{"session, from the public origin", "operator", "POST", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": publicURL}, http.StatusOK},
		{"session, not a browser", "operator", "POST", nil, http.StatusOK},
		{"session, cross-site read", "operator", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/.moat/admin/api/users/tom/revoke-sessions"
			if tt.method == "GET" {
				path = "/.moat/admin/api/users/tom/sessions"
			}
			req, err := http.NewRequest(tt.method, srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Test-Principal", tt.who)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			n := f.ev.len()
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want != http.StatusForbidden {
				return
			}
			var p map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p["title"] != "Cross-origin request refused" {
				t.Errorf("problem %v", p)
			}
			if evs := f.ev.since(n); len(evs) != 1 || evs[0].Details["reason"] != ReasonCrossOrigin {
				t.Errorf("events %+v", evs)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	admin := f.principals()["admin recent mfa"]
	tests := []struct {
		name, method, path string
		p                  *authn.Principal
		want               int
		allow              string
	}{
		{"no principal", "GET", "/.moat/admin/api/users", nil, http.StatusUnauthorized, ""},
		{"no principal on an unknown path", "GET", "/.moat/admin/api/nothing", nil, http.StatusUnauthorized, ""},
		{"unknown endpoint", "GET", "/.moat/admin/api/groups", admin, http.StatusNotFound, ""},
		{"unknown user action", "POST", "/.moat/admin/api/users/tom/delete", admin, http.StatusNotFound, ""},
		{"empty user name", "GET", "/.moat/admin/api/users//sessions", admin, http.StatusNotFound, ""},
		{"trailing slash", "GET", "/.moat/admin/api/users/", admin, http.StatusNotFound, ""},
		{"too deep", "GET", "/.moat/admin/api/users/tom/sessions/x", admin, http.StatusNotFound, ""},
		{"outside the api", "GET", "/.moat/admin/", admin, http.StatusNotFound, ""},
		{"not under the prefix", "GET", "/api/users", admin, http.StatusNotFound, ""},
		{"GET of a change", "GET", "/.moat/admin/api/users/tom/disable", admin, http.StatusMethodNotAllowed, "POST"},
		{"POST to a list", "POST", "/.moat/admin/api/users", admin, http.StatusMethodNotAllowed, "GET"},
		{"DELETE a key", "DELETE", "/.moat/admin/api/apikeys/abc/revoke", admin, http.StatusMethodNotAllowed, "POST"},
		{"HEAD of whoami", "HEAD", "/.moat/admin/api/whoami", admin, http.StatusMethodNotAllowed, "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(tt.p, tt.method, tt.path)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if got := w.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if tt.method != "HEAD" && w.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
			}
		})
	}
	t.Run("no request info at all", func(t *testing.T) {
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, httptest.NewRequest("GET", "/.moat/admin/api/whoami", nil))
		if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%d %v", w.Code, w.Header())
		}
	})
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t)
	op := f.principals()["operator"]
	tests := []struct {
		name         string
		body         string
		hideLength   bool
		want         int
		wantDisabled bool
	}{
		{"no body", "", false, http.StatusOK, true},
		{"a small JSON body is ignored", "{}", false, http.StatusOK, true},
		{"exactly the limit", strings.Repeat(" ", MaxBody), false, http.StatusOK, true},
		{"over the limit", strings.Repeat(" ", MaxBody+1), false, http.StatusRequestEntityTooLarge, false},
		{"over the limit, length not announced", strings.Repeat(" ", 10*MaxBody), true, http.StatusRequestEntityTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := f.acc.SetStatus(context.Background(), "tom", accounts.StatusActive); err != nil {
				t.Fatal(err)
			}
			r := newRequest(op, "POST", "/.moat/admin/api/users/tom/disable", strings.NewReader(tt.body))
			if tt.hideLength {
				r.ContentLength = -1
			}
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			users, err := f.acc.Users(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(users, func(u *store.User) bool { return u.Username == "tom" })
			if disabled := users[i].Status == accounts.StatusDisabled; disabled != tt.wantDisabled {
				t.Errorf("disabled %v, want %v", disabled, tt.wantDisabled)
			}
		})
	}
}

func TestWhoAmI(t *testing.T) {
	f := newFixture(t)
	ps := f.principals()
	tests := []struct {
		who       string
		wantPerms []Permission
		wantMFA   bool
		wantKeyID string
	}{
		{"viewer", []Permission{UsersRead, SessionsRead, APIKeysRead}, true, ""},
		{"admin recent mfa", Permissions([]string{RoleAdmin}), true, ""},
		{"admin mfa too old", Permissions([]string{RoleAdmin}), false, ""},
		{"operator key", []Permission{UsersRead, SessionsRead, APIKeysRead, SessionsRevoke, UsersDisable}, false, "key-otto"},
		{"no admin role", []Permission{}, true, ""},
		{"admin no mfa", Permissions([]string{RoleAdmin}), false, ""},
		{"bearer token admin", []Permission{}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.who, func(t *testing.T) {
			p := ps[tt.who]
			w := f.do(p, "GET", "/.moat/admin/api/whoami")
			if w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			var got WhoAmI
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Name != p.Name || got.Subject != p.Subject || got.Method != p.Method || !slices.Equal(got.Roles, p.Roles) ||
				!slices.Equal(got.Permissions, tt.wantPerms) || got.MFARecent != tt.wantMFA || got.KeyID != tt.wantKeyID {
				t.Errorf("whoami %s", w.Body)
			}
			if tt.wantMFA && !got.MFAUntil.Equal(p.AuthTime.Add(DefaultMFAMaxAge)) {
				t.Errorf("mfa_until %v, want %v", got.MFAUntil, p.AuthTime.Add(DefaultMFAMaxAge))
			}
			if !strings.Contains(w.Body.String(), `"permissions":[`) {
				t.Errorf("permissions must be a list: %s", w.Body)
			}
		})
	}
}

func TestNew(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name    string
		o       Options
		wantErr bool
	}{
		{"complete", Options{Accounts: f.acc, APIKeys: f.keys, PublicURL: "https://moat.example.test:8443/base"}, false},
		{"no public url", Options{Accounts: f.acc, APIKeys: f.keys}, false},
		{"no accounts", Options{APIKeys: f.keys}, true},
		{"no api keys", Options{Accounts: f.acc}, true},
		{"negative mfa age", Options{Accounts: f.acc, APIKeys: f.keys, MFAMaxAge: -time.Minute}, true},
		{"public url without scheme", Options{Accounts: f.acc, APIKeys: f.keys, PublicURL: "moat.example.test"}, true},
		{"public url of another scheme", Options{Accounts: f.acc, APIKeys: f.keys, PublicURL: "ftp://moat.example.test"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if (err != nil) != tt.wantErr {
				t.Errorf("New: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func decode(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("decoding %q: %v", w.Body, err)
	}
	return m
}

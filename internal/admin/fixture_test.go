package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/request"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/store/storetest"
	"github.com/moatgw/moat/internal/testclock"
)

const publicURL = "https://moat.example.test"

// events keeps every recorded event.
type events struct {
	mu sync.Mutex
	es []event.Event
}

func (e *events) Record(_ context.Context, ev event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.es = append(e.es, ev)
}

// since returns the events recorded after the first n, whose kind starts
// with "admin.".
func (e *events) since(n int) []event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []event.Event
	for _, ev := range e.es[n:] {
		if strings.HasPrefix(ev.Kind, "admin.") {
			out = append(out, ev)
		}
	}
	return out
}

func (e *events) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.es)
}

// fixture is a Handler over a real accounts service and API key service
// on SQLite, with these users:
//
//	vera  viewer     otto  operator     ada   admin     adam  admin
//	nora  (no admin role)               tom   user: the usual target,
//	                                          with a session, an
//	                                          authenticator app and a key
type fixture struct {
	h        *Handler
	acc      *accounts.Service
	keys     *apikey.Service
	st       *store.Store
	sessions *session.Manager
	clock    *testclock.Clock
	ev       *events
	users    map[string]*store.User
	tomKey   string         // tom's API key
	tomKeyID string         // its store id
	tomSess  *store.Session // tom's session
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	clock := testclock.New(time.Now().UTC().Truncate(time.Second))
	sessions, err := session.New(st.Sessions(), session.Options{Now: clock.Now, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sessions.Close() })
	hasher, err := password.NewHasher(password.DefaultParams(), 64<<20, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	acc, err := accounts.New(ctx, accounts.Options{
		Store: st, Hasher: hasher, Policy: password.DefaultPolicy(), Sessions: sessions,
		Events: ev, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	pepper, err := st.Secrets().GetOrCreate(ctx, "apikey.pepper", 32)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := apikey.New(apikey.Options{Keys: st.APIKeys(), Pepper: pepper, Now: clock.Now, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Accounts: acc, APIKeys: keys, Events: ev, Now: clock.Now, PublicURL: publicURL + "/",
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{h: h, acc: acc, keys: keys, st: st, sessions: sessions, clock: clock, ev: ev, users: map[string]*store.User{}}
	for name, roles := range map[string][]string{
		"vera": {RoleViewer}, "otto": {RoleOperator}, "ada": {RoleAdmin}, "adam": {RoleAdmin},
		"nora": {"user"}, "tom": {"user"},
	} {
		u, _, err := acc.CreateUser(ctx, name, name+"@example.test", strings.ToUpper(name[:1])+name[1:], roles)
		if err != nil {
			t.Fatal(err)
		}
		f.users[name] = u
	}
	tom := f.users["tom"]
	if err := st.Credentials().Create(ctx, &store.Credential{UserID: tom.ID, Kind: accounts.KindTOTP, Name: "phone",
		Secret: []byte("12345678901234567890"), CreatedAt: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, f.tomSess, err = sessions.Create(ctx, tom.ID, []string{accounts.MethodPassword, accounts.MethodTOTP}, clock.Now()); err != nil {
		t.Fatal(err)
	}
	key, rec, err := keys.Create(ctx, "tom-ci", "tom", []string{"deploy"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.tomKey, f.tomKeyID = key, rec.ID
	return f
}

// tWriter sends the handler's log to the test's output.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// principals returns, by a name for each, the callers the tests use, as
// the gateway would make them now.
func (f *fixture) principals() map[string]*authn.Principal {
	now := f.clock.Now()
	pwd := []string{authn.AMRPassword}
	mfa := []string{authn.AMRPassword, authn.AMRTOTP}
	sess := func(user string, amr []string, authAgo time.Duration) *authn.Principal {
		u := f.users[user]
		return &authn.Principal{Subject: u.ID, Name: u.Username, Method: authn.MethodSession, Roles: u.Roles,
			AuthMethods: amr, AuthTime: now.Add(-authAgo), Issuer: authn.LocalIssuer, SessionID: "s-" + user}
	}
	key := func(user string) *authn.Principal {
		u := f.users[user]
		return &authn.Principal{Subject: u.ID, Name: user + "-key", Method: authn.MethodAPIKey, Roles: u.Roles,
			Issuer: authn.LocalIssuer, KeyID: "key-" + user}
	}
	return map[string]*authn.Principal{
		"viewer":            sess("vera", mfa, time.Minute),
		"operator":          sess("otto", pwd, time.Hour),
		"operator key":      key("otto"),
		"admin no mfa":      sess("ada", pwd, time.Minute),
		"admin recent mfa":  sess("ada", mfa, 5*time.Minute),
		"admin mfa too old": sess("ada", mfa, 16*time.Minute),
		"admin key":         key("ada"),
		"no admin role":     sess("nora", mfa, time.Minute),
		"bearer token admin": {Subject: "ext-1", Name: "ext", Method: authn.MethodJWT, Roles: []string{RoleAdmin},
			AuthMethods: []string{authn.AMRMFA}, AuthTime: now, Issuer: "https://idp.example.test"},
	}
}

var clientIP = netip.MustParseAddr("192.0.2.7")

// newRequest makes a request as the gateway hands it over, p as its principal
// (nil: none).
func newRequest(p *authn.Principal, method, path string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, "http://moat.internal"+path, body)
	return r.WithContext(request.With(r.Context(), &request.Info{ID: "req-1", ClientIP: clientIP, Route: "moat-admin", Principal: p}))
}

// do serves one request as p, with optional headers ("Name: value").
func (f *fixture) do(p *authn.Principal, method, path string, headers ...string) *httptest.ResponseRecorder {
	r := newRequest(p, method, path, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

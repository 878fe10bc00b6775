package accounts

import (
	"context"
	"errors"
	"github.com/moatgw/moat/internal/testclock"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/store/storetest"
)

type events struct {
	mu sync.Mutex
	es []event.Event
}

func (e *events) Record(_ context.Context, ev event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.es = append(e.es, ev)
}

func (e *events) last(kind string) *event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.es) - 1; i >= 0; i-- {
		if e.es[i].Kind == kind {
			ev := e.es[i]
			return &ev
		}
	}
	return nil
}

type fixture struct {
	svc   *Service
	ev    *events
	clock *testclock.Clock
	st    *store.Store
}

var client = netip.MustParseAddr("192.0.2.10")

// newFixture builds a Service over a real SQLite store with an encrypting
// key ring and a settable clock; opts change its Options before it is built.
func newFixture(t *testing.T, opts ...func(*Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	c := testclock.New(time.Now().Truncate(time.Second))
	sessions, err := session.New(st.Sessions(), session.Options{Now: c.Now, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sessions.Close() })
	hasher, err := password.NewHasher(password.DefaultParams(), 64<<20, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	o := Options{
		Store: st, Hasher: hasher, Policy: password.DefaultPolicy(), Sessions: sessions,
		Events: ev, Now: c.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	svc, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, ev: ev, clock: c, st: st}
}

const goodPassword = "correct horse battery staple"

func (f *fixture) user(t *testing.T, name string, roles ...string) {
	t.Helper()
	ctx := context.Background()
	_, tok, err := f.svc.CreateUser(ctx, name, name+"@example.test", "", roles)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, goodPassword); err != nil {
		t.Fatal(err)
	}
}

func TestEnrollmentToken(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, tok, err := f.svc.CreateUser(ctx, "Alice", "alice@example.test", "Alice", []string{"user"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.CreateUser(ctx, "alice", "", "", nil); err == nil {
		t.Error("a second user alice was created")
	}
	var pe *password.PolicyError
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, "short"); !errors.As(err, &pe) {
		t.Errorf("weak password: %v", err)
	}
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, "alice-is-my-name-1"); !errors.As(err, &pe) {
		t.Errorf("password with the user name: %v", err)
	}
	if _, err := f.svc.SetPasswordWithToken(ctx, tok[:len(tok)-1]+"x", goodPassword); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("forged token: %v", err)
	}
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, goodPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetPasswordWithToken(ctx, tok, goodPassword+"!"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token used twice: %v", err)
	}
	// Expired links are refused.
	tok2, err := f.svc.EnrollmentToken(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(73 * time.Hour)
	if _, err := f.svc.SetPasswordWithToken(ctx, tok2, goodPassword); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("expired token: %v", err)
	}
}

func TestPasswordLoginSameAnswer(t *testing.T) {
	f := newFixture(t)
	f.user(t, "bob", "user")
	ctx := context.Background()
	if err := f.svc.SetStatus(ctx, "bob", StatusActive); err != nil {
		t.Fatal(err)
	}
	f.user(t, "carol", "user")
	if err := f.svc.SetStatus(ctx, "carol", StatusDisabled); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, user, pw, reason string }{
		{"unknown user", "nobody", goodPassword, "unknown_user"},
		{"wrong password", "bob", "not the password at all", "wrong_password"},
		{"disabled", "carol", goodPassword, "disabled"},
		{"invalid user name", "../../etc", goodPassword, "unknown_user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.svc.PasswordLogin(ctx, c.user, c.pw, client)
			if err != ErrLoginFailed {
				t.Fatalf("err = %v, want exactly ErrLoginFailed", err)
			}
			if e := f.ev.last("login.failed"); e == nil || e.Details["reason"] != c.reason {
				t.Errorf("event %+v, want reason %s", e, c.reason)
			}
		})
	}
	// The failure above put bob's account in back-off for a second.
	if _, err := f.svc.PasswordLogin(ctx, "bob", goodPassword, client); err != ErrLoginFailed {
		t.Fatalf("during back-off: %v", err)
	}
	f.clock.Advance(2 * time.Second)
	res, err := f.svc.PasswordLogin(ctx, "BOB", goodPassword, client)
	if err != nil || res.Outcome != LoggedIn || res.Token == "" {
		t.Fatalf("login: %+v %v", res, err)
	}
	p, err := f.svc.Authenticate(ctx, res.Token)
	if err != nil || p.Username != "bob" || p.Pending != "" || strings.Join(p.Methods, ",") != "pwd" {
		t.Fatalf("Authenticate: %+v %v", p, err)
	}
}

func TestLockout(t *testing.T) {
	f := newFixture(t)
	f.user(t, "dave", "user")
	ctx := context.Background()
	for i := range 5 {
		if _, err := f.svc.PasswordLogin(ctx, "dave", "wrong password number x", client); err != ErrLoginFailed {
			t.Fatal(err)
		}
		f.clock.Advance(time.Duration(1<<i) * time.Second)
	}
	if f.ev.last("account.locked") == nil {
		t.Fatal("no account.locked event after 5 failures")
	}
	// Locked: even the right password gets the same generic failure.
	if _, err := f.svc.PasswordLogin(ctx, "dave", goodPassword, client); err != ErrLoginFailed {
		t.Fatalf("locked account: %v", err)
	}
	if e := f.ev.last("login.failed"); e.Details["reason"] != "account_locked" {
		t.Errorf("reason %q", e.Details["reason"])
	}
	f.clock.Advance(16 * time.Minute)
	if res, err := f.svc.PasswordLogin(ctx, "dave", goodPassword, client); err != nil || res.Outcome != LoggedIn {
		t.Fatalf("after the lock: %+v %v", res, err)
	}
}

func TestAdminMustEnrollThenTOTP(t *testing.T) {
	f := newFixture(t)
	f.user(t, "root", "admin")
	ctx := context.Background()
	res, err := f.svc.PasswordLogin(ctx, "root", goodPassword, client)
	if err != nil || res.Outcome != MustEnroll {
		t.Fatalf("admin without MFA: %+v %v", res, err)
	}
	p, err := f.svc.Authenticate(ctx, res.Token)
	if err != nil || p.Pending != PendingEnrollMFA {
		t.Fatalf("pending principal: %+v %v", p, err)
	}
	en, err := f.svc.BeginTOTP(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(en.QRSVG, "<svg") || !strings.Contains(en.URI, "otpauth://totp/") {
		t.Fatalf("enrollment %+v", en)
	}
	secret := pendingSecret(t, f, p.UserID)
	if _, _, err := f.svc.ConfirmTOTP(ctx, res.Token, p, "phone", "000000", client); !errors.Is(err, ErrCodeRejected) && mfa.Code(secret, f.clock.Now()) != "000000" {
		t.Errorf("wrong confirmation code: %v", err)
	}
	tok, codes, err := f.svc.ConfirmTOTP(ctx, res.Token, p, "phone", mfa.Code(secret, f.clock.Now()), client)
	if err != nil || len(codes) != RecoveryCodeCount {
		t.Fatalf("confirm: %d codes, %v", len(codes), err)
	}
	if _, err := f.svc.Authenticate(ctx, res.Token); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("the pre-enrollment session still works: %v", err)
	}
	if p, err := f.svc.Authenticate(ctx, tok); err != nil || p.Pending != "" || strings.Join(p.Methods, ",") != "pwd,otp" {
		t.Fatalf("after enrollment: %+v %v", p, err)
	}

	// The next login needs the second factor; each code works once.
	f.clock.Advance(time.Minute)
	res, err = f.svc.PasswordLogin(ctx, "root", goodPassword, client)
	if err != nil || res.Outcome != NeedSecondFactor {
		t.Fatalf("second login: %+v %v", res, err)
	}
	if p, _ := f.svc.Authenticate(ctx, res.Token); p == nil || p.Pending != PendingMFA {
		t.Fatalf("pending second factor: %+v", p)
	}
	code := mfa.Code(secret, f.clock.Now())
	done, err := f.svc.VerifyTOTP(ctx, res.Token, code, client)
	if err != nil || done.Outcome != LoggedIn {
		t.Fatalf("TOTP: %+v %v", done, err)
	}
	res2, _ := f.svc.PasswordLogin(ctx, "root", goodPassword, client)
	if _, err := f.svc.VerifyTOTP(ctx, res2.Token, code, client); !errors.Is(err, ErrCodeRejected) {
		t.Errorf("a TOTP code accepted twice: %v", err)
	}
	// A recovery code works once (after the back-off of the failure above).
	f.clock.Advance(2 * time.Second)
	if r, err := f.svc.VerifyRecoveryCode(ctx, res2.Token, strings.ToUpper(codes[0]), client); err != nil || r.Outcome != LoggedIn {
		t.Fatalf("recovery code: %+v %v", r, err)
	}
	res3, _ := f.svc.PasswordLogin(ctx, "root", goodPassword, client)
	if _, err := f.svc.VerifyRecoveryCode(ctx, res3.Token, codes[0], client); !errors.Is(err, ErrCodeRejected) {
		t.Errorf("a recovery code accepted twice: %v", err)
	}
	if e := f.ev.last("mfa.enrolled"); e == nil || e.Principal != "root" {
		t.Errorf("mfa.enrolled event: %+v", e)
	}
	// A second factor cannot be skipped with a full-session token.
	if _, err := f.svc.VerifyTOTP(ctx, done.Token, mfa.Code(secret, f.clock.Now().Add(30*time.Second)), client); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("second factor on a finished login: %v", err)
	}
}

func TestDisableRevokesSessions(t *testing.T) {
	f := newFixture(t)
	f.user(t, "erin", "user")
	ctx := context.Background()
	res, err := f.svc.PasswordLogin(ctx, "erin", goodPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SetStatus(ctx, "erin", StatusDisabled); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, res.Token); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("disabled user's session: %v", err)
	}
}

func TestResetMFA(t *testing.T) {
	f := newFixture(t)
	f.user(t, "fay", "admin")
	ctx := context.Background()
	res, _ := f.svc.PasswordLogin(ctx, "fay", goodPassword, client)
	p, _ := f.svc.Authenticate(ctx, res.Token)
	if _, err := f.svc.BeginTOTP(ctx, p); err != nil {
		t.Fatal(err)
	}
	secret := pendingSecret(t, f, p.UserID)
	if _, _, err := f.svc.ConfirmTOTP(ctx, res.Token, p, "", mfa.Code(secret, f.clock.Now()), client); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ResetMFA(ctx, "fay"); err != nil {
		t.Fatal(err)
	}
	factors, _ := f.svc.Factors(ctx, p.UserID)
	if factors[KindTOTP] != 0 || factors[KindRecovery] != 0 || factors[KindPassword] != 1 {
		t.Fatalf("after reset: %v", factors)
	}
	if r, _ := f.svc.PasswordLogin(ctx, "fay", goodPassword, client); r.Outcome != MustEnroll {
		t.Errorf("after reset an admin must enroll again, got %v", r.Outcome)
	}
}

func pendingSecret(t *testing.T, f *fixture, userID string) []byte {
	t.Helper()
	creds, err := f.st.Credentials().ListByUser(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range creds {
		if c.Kind == KindTOTPPending {
			return c.Secret
		}
	}
	t.Fatal("no pending TOTP secret")
	return nil
}

// TestSimultaneousGuesses: guesses sent at once at one account are counted
// before any is checked, so the back-off holds all but the first; a
// Check-then-Fail counter would have let every one of them be tried.
func TestSimultaneousGuesses(t *testing.T) {
	f := newFixture(t)
	f.user(t, "carol", "user")
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := f.svc.PasswordLogin(ctx, "carol", "one guess of many", client); err != ErrLoginFailed {
				t.Errorf("guess: %v, want ErrLoginFailed", err)
			}
		})
	}
	wg.Wait()
	checked, held := 0, 0
	f.ev.mu.Lock()
	for _, e := range f.ev.es {
		if e.Kind != "login.failed" {
			continue
		}
		switch e.Details["reason"] {
		case "wrong_password":
			checked++
		case "account_backoff":
			held++
		}
	}
	f.ev.mu.Unlock()
	if checked != 1 || held != 7 {
		t.Fatalf("%d guesses checked and %d held back, want 1 and 7", checked, held)
	}
}

package accounts

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/passkey/passkeytest"
	"github.com/moatgw/moat/internal/ratelimit"
	"github.com/moatgw/moat/internal/session"
)

const (
	testRPID   = "localhost"
	testOrigin = "https://localhost:8443"
)

// withPasskeys turns passkeys on, over the fixture's own store and clock.
func withPasskeys(t *testing.T) func(*Options) {
	return func(o *Options) {
		t.Helper()
		pk, err := passkey.New(passkey.Options{
			RPID:        testRPID,
			RPOrigins:   []string{testOrigin},
			Credentials: o.Store.Credentials(),
			Users:       o.Store.Users(),
			Now:         o.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		o.Passkeys = pk
	}
}

// withAddressLockout counts failures per client address with p.
func withAddressLockout(p ratelimit.FailurePolicy) func(*Options) {
	return func(o *Options) { o.AddressPolicy = p }
}

// login logs name in with the right password and fails the test unless
// the outcome is want.
func (f *fixture) login(t *testing.T, name string, want Outcome) Result {
	t.Helper()
	res, err := f.svc.PasswordLogin(context.Background(), name, goodPassword, client)
	if err != nil || res.Outcome != want {
		t.Fatalf("PasswordLogin(%s) = outcome %v, %v; want outcome %v", name, res.Outcome, err, want)
	}
	return res
}

// principal returns who token authenticates and fails the test if nobody.
func (f *fixture) principal(t *testing.T, token string) *Principal {
	t.Helper()
	p, err := f.svc.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return p
}

// addPasskey registers a new passkey named name for the user of the
// session token, as a browser would. It returns the authenticator holding
// it, the passkey's id, and what FinishPasskeyRegistration returned.
func (f *fixture) addPasskey(t *testing.T, token, name string) (a *passkeytest.Authenticator, id, newToken string, codes []string) {
	t.Helper()
	ctx := context.Background()
	p := f.principal(t, token)
	opts, ceremony, err := f.svc.BeginPasskeyRegistration(ctx, p)
	if err != nil {
		t.Fatalf("BeginPasskeyRegistration: %v", err)
	}
	a = passkeytest.New(t, testRPID, testOrigin)
	newToken, codes, err = f.svc.FinishPasskeyRegistration(ctx, token, p, ceremony, name, a.Create(opts), client)
	if err != nil {
		t.Fatalf("FinishPasskeyRegistration: %v", err)
	}
	list, err := f.svc.Passkeys(ctx, p.UserID)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(k passkey.Passkey) bool { return k.Name == name })
	if i < 0 {
		t.Fatalf("passkey %q is not listed after its registration: %+v", name, list)
	}
	return a, list[i].ID, newToken, codes
}

// addTOTP enrolls an authenticator app for the user of the session token
// and returns the session's new token.
func (f *fixture) addTOTP(t *testing.T, token string) string {
	t.Helper()
	ctx := context.Background()
	p := f.principal(t, token)
	if _, err := f.svc.BeginTOTP(ctx, p); err != nil {
		t.Fatal(err)
	}
	secret := pendingSecret(t, f, p.UserID)
	tok, _, err := f.svc.ConfirmTOTP(ctx, token, p, "phone", mfa.Code(secret, f.clock.Now()), client)
	if err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	return tok
}

// wantEvent fails the test unless the last event of kind has the given
// principal and rule and carries details.
func (f *fixture) wantEvent(t *testing.T, kind, principal, rule string, details map[string]string) *event.Event {
	t.Helper()
	e := f.ev.last(kind)
	if e == nil {
		t.Fatalf("no %s event", kind)
	}
	if e.Principal != principal || e.Rule != rule {
		t.Errorf("%s event for %q by rule %q, want %q and %q", kind, e.Principal, e.Rule, principal, rule)
	}
	for k, v := range details {
		if e.Details[k] != v {
			t.Errorf("%s event detail %s = %q, want %q (all: %v)", kind, k, e.Details[k], v, e.Details)
		}
	}
	return e
}

func (e *events) count(kind string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.es {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func (e *events) size() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.es)
}

// wantMethods fails the test unless p is a finished login by methods.
func wantMethods(t *testing.T, p *Principal, want ...string) {
	t.Helper()
	if p.Pending != "" || !slices.Equal(p.Methods, want) {
		t.Errorf("session methods %v, pending %q; want %v, not pending", p.Methods, p.Pending, want)
	}
}

func TestPasskeyRegistration(t *testing.T) {
	f := newFixture(t, withPasskeys(t))
	ctx := context.Background()

	t.Run("logged-in user", func(t *testing.T) {
		f.user(t, "ann", "user")
		res := f.login(t, "ann", LoggedIn)

		_, _, tok, codes := f.addPasskey(t, res.Token, "Laptop")
		if tok != "" {
			t.Error("a full login was replaced by a new session on adding a passkey")
		}
		if len(codes) != RecoveryCodeCount {
			t.Errorf("first second factor brought %d recovery codes, want %d", len(codes), RecoveryCodeCount)
		}
		f.wantEvent(t, "mfa.enrolled", "ann", MethodWebAuthn, map[string]string{"name": "Laptop"})

		_, _, tok, again := f.addPasskey(t, res.Token, "Phone")
		if tok != "" || again != nil {
			t.Errorf("second passkey: new token %q, %d recovery codes; want none of either", tok, len(again))
		}
		f.wantEvent(t, "mfa.enrolled", "ann", MethodWebAuthn, map[string]string{"name": "Phone"})
		if n := f.ev.count("mfa.enrolled"); n != 2 {
			t.Errorf("%d mfa.enrolled events, want 2", n)
		}
		p := f.principal(t, res.Token)
		wantMethods(t, p, MethodPassword)
		factors, err := f.svc.Factors(ctx, p.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if factors[KindWebAuthn] != 2 || factors[KindRecovery] != RecoveryCodeCount {
			t.Errorf("factors %v, want 2 passkeys and %d recovery codes", factors, RecoveryCodeCount)
		}

		// The recovery codes shown are the ones that work.
		pending := f.login(t, "ann", NeedSecondFactor)
		done, err := f.svc.VerifyRecoveryCode(ctx, pending.Token, codes[3], client)
		if err != nil || done.Outcome != LoggedIn {
			t.Fatalf("recovery code from the passkey registration: %+v %v", done, err)
		}
	})

	t.Run("admin who must enroll", func(t *testing.T) {
		f.user(t, "root", "admin")
		res := f.login(t, "root", MustEnroll)
		if p := f.principal(t, res.Token); p.Pending != PendingEnrollMFA {
			t.Fatalf("pending %q, want %q", p.Pending, PendingEnrollMFA)
		}
		_, _, tok, codes := f.addPasskey(t, res.Token, "Key")
		if tok == "" || tok == res.Token {
			t.Fatalf("new token %q: want a new session after the enrollment", tok)
		}
		if len(codes) != RecoveryCodeCount {
			t.Errorf("%d recovery codes, want %d", len(codes), RecoveryCodeCount)
		}
		if _, err := f.svc.Authenticate(ctx, res.Token); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("the pre-enrollment session still works: %v", err)
		}
		wantMethods(t, f.principal(t, tok), MethodPassword, MethodWebAuthn)
		f.wantEvent(t, "mfa.enrolled", "root", MethodWebAuthn, map[string]string{"name": "Key"})
	})

	t.Run("refused response", func(t *testing.T) {
		f.user(t, "amy", "admin")
		res := f.login(t, "amy", MustEnroll)
		p := f.principal(t, res.Token)
		opts, ceremony, err := f.svc.BeginPasskeyRegistration(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		a := passkeytest.New(t, testRPID, testOrigin)
		tok, codes, err := f.svc.FinishPasskeyRegistration(ctx, res.Token, p, ceremony, "Key", a.Create(opts, passkeytest.WithOrigin("https://evil.example")), client)
		if !errors.Is(err, passkey.ErrRefused) || tok != "" || codes != nil {
			t.Fatalf("FinishPasskeyRegistration = %q, %d codes, %v; want a refusal", tok, len(codes), err)
		}
		f.wantEvent(t, "mfa.enroll_failed", "amy", MethodWebAuthn, map[string]string{"reason": "verification_failed"})
		if list, _ := f.svc.Passkeys(ctx, p.UserID); len(list) != 0 {
			t.Errorf("a refused registration stored %d passkeys", len(list))
		}
		if p := f.principal(t, res.Token); p.Pending != PendingEnrollMFA {
			t.Errorf("after a refused registration the session is pending %q, want still %q", p.Pending, PendingEnrollMFA)
		}
	})

	t.Run("not while a second factor is pending", func(t *testing.T) {
		res := f.login(t, "ann", NeedSecondFactor)
		if _, _, err := f.svc.BeginPasskeyRegistration(ctx, f.principal(t, res.Token)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("BeginPasskeyRegistration after the password only: %v, want session.ErrNoSession", err)
		}
	})
}

func TestPasswordlessLogin(t *testing.T) {
	f := newFixture(t, withPasskeys(t), withAddressLockout(ratelimit.FailurePolicy{
		Name: "login-address", MaxFailures: 3, Window: 15 * time.Minute, LockFor: 15 * time.Minute,
	}))
	ctx := context.Background()
	f.user(t, "ann", "user")
	a, _, _, _ := f.addPasskey(t, f.login(t, "ann", LoggedIn).Token, "Laptop")
	ann, err := f.st.Users().GetByUsername(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}

	begin := func(t *testing.T, ip netip.Addr) (opts []byte, ceremony string) {
		t.Helper()
		opts, ceremony, err := f.svc.BeginPasskeyLogin(ctx, ip)
		if err != nil {
			t.Fatalf("BeginPasskeyLogin: %v", err)
		}
		return opts, ceremony
	}
	sessions := func(t *testing.T) int {
		t.Helper()
		l, err := f.svc.Sessions(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		return len(l)
	}

	t.Run("full login", func(t *testing.T) {
		opts, ceremony := begin(t, client)
		res, err := f.svc.FinishPasskeyLogin(ctx, ceremony, a.Get(opts), client)
		if err != nil || res.Outcome != LoggedIn || res.Token == "" || res.User == nil || res.User.Username != "ann" {
			t.Fatalf("FinishPasskeyLogin = %+v, %v; want a login of ann", res, err)
		}
		wantMethods(t, f.principal(t, res.Token), MethodWebAuthn)
		e := f.wantEvent(t, "login.succeeded", "ann", "", map[string]string{"methods": MethodWebAuthn})
		if e.ClientIP != client.String() {
			t.Errorf("login.succeeded from %q, want %s", e.ClientIP, client)
		}
	})

	// Each refusal comes from an address of its own, so that the counts
	// do not add up across cases.
	refusals := []struct {
		name string
		// answer begins a ceremony from ip and makes the response to send.
		answer func(t *testing.T, ip netip.Addr) (ceremony string, response []byte)
		reason string
	}{
		{
			// Passwordless options require user verification, so the
			// WebAuthn check itself refuses the answer.
			name: "user not verified",
			answer: func(t *testing.T, ip netip.Addr) (string, []byte) {
				opts, c := begin(t, ip)
				return c, a.Get(opts, passkeytest.WithFlags(passkeytest.FlagUP))
			},
			reason: "verification_failed",
		},
		{
			name: "replayed response",
			answer: func(t *testing.T, ip netip.Addr) (string, []byte) {
				opts, c := begin(t, ip)
				resp := a.Get(opts)
				if _, err := f.svc.FinishPasskeyLogin(ctx, c, resp, ip); err != nil {
					t.Fatalf("first use of the response: %v", err)
				}
				return c, resp
			},
			reason: "ceremony_unknown",
		},
		{
			name: "old response to a new ceremony",
			answer: func(t *testing.T, ip netip.Addr) (string, []byte) {
				opts, c := begin(t, ip)
				resp := a.Get(opts)
				if _, err := f.svc.FinishPasskeyLogin(ctx, c, resp, ip); err != nil {
					t.Fatalf("first use of the response: %v", err)
				}
				_, c = begin(t, ip)
				return c, resp
			},
			reason: "verification_failed",
		},
		{
			name: "unknown passkey naming a user",
			answer: func(t *testing.T, ip netip.Addr) (string, []byte) {
				opts, c := begin(t, ip)
				stranger := passkeytest.New(t, testRPID, testOrigin)
				return c, stranger.Get(opts, passkeytest.WithUserHandle([]byte(ann.ID)))
			},
			reason: "unknown_passkey",
		},
		{
			name: "unknown passkey naming nobody",
			answer: func(t *testing.T, ip netip.Addr) (string, []byte) {
				opts, c := begin(t, ip)
				return c, passkeytest.New(t, testRPID, testOrigin).Get(opts)
			},
			reason: "unknown_passkey",
		},
		{
			name: "another site",
			answer: func(t *testing.T, ip netip.Addr) (string, []byte) {
				opts, c := begin(t, ip)
				return c, a.Get(opts, passkeytest.WithOrigin("https://evil.example"))
			},
			reason: "verification_failed",
		},
	}
	for i, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
			ceremony, resp := tc.answer(t, ip)
			before, failures := sessions(t), f.ev.count("login.failed")
			res, err := f.svc.FinishPasskeyLogin(ctx, ceremony, resp, ip)
			if err != ErrLoginFailed || res.Token != "" {
				t.Fatalf("FinishPasskeyLogin = %+v, %v; want exactly ErrLoginFailed", res, err)
			}
			if after := sessions(t); after != before {
				t.Errorf("a refused login left %d sessions, want %d", after, before)
			}
			if n := f.ev.count("login.failed"); n != failures+1 {
				t.Errorf("%d login.failed events recorded, want 1", n-failures)
			}
			e := f.wantEvent(t, "login.failed", "", MethodWebAuthn, map[string]string{"reason": tc.reason})
			if e.ClientIP != ip.String() || e.Outcome != event.Failure {
				t.Errorf("login.failed from %q, outcome %v; want %s, failure", e.ClientIP, e.Outcome, ip)
			}
		})
	}

	t.Run("refusals lock the address", func(t *testing.T) {
		ip := netip.MustParseAddr("2001:db8:1:2::10")
		stranger := passkeytest.New(t, testRPID, testOrigin)
		fail := func(t *testing.T) {
			t.Helper()
			opts, c := begin(t, ip)
			if _, err := f.svc.FinishPasskeyLogin(ctx, c, stranger.Get(opts), ip); err != ErrLoginFailed {
				t.Fatalf("unknown passkey: %v, want ErrLoginFailed", err)
			}
		}

		// A good login does not clear the address's count: a sprayer
		// could otherwise clear it with an account of its own.
		fail(t)
		fail(t)
		opts, c := begin(t, ip)
		if _, err := f.svc.FinishPasskeyLogin(ctx, c, a.Get(opts), ip); err != nil {
			t.Fatalf("good login after two failures: %v", err)
		}
		earlyOpts, early := begin(t, ip) // begun before the lock
		fail(t)

		locked := f.ev.last("address.locked")
		if locked == nil || locked.Rule != "lockout.address" || locked.ClientIP != ip.String() {
			t.Errorf("address.locked event %+v after %d failures, want one for %s", locked, 3, ip)
		}
		if e := f.ev.last("account.locked"); e != nil {
			t.Errorf("an address lock recorded as account.locked: %+v", e)
		}

		for _, other := range []netip.Addr{ip, netip.MustParseAddr("2001:db8:1:2::99")} {
			if _, _, err := f.svc.BeginPasskeyLogin(ctx, other); err != ErrLoginFailed {
				t.Errorf("BeginPasskeyLogin from locked %s: %v, want ErrLoginFailed", other, err)
			}
			e := f.wantEvent(t, "login.failed", "", "lockout.address", map[string]string{"reason": "address_locked"})
			if e.Outcome != event.Denied {
				t.Errorf("refusal of a locked address has outcome %v, want denied", e.Outcome)
			}
		}
		if res, err := f.svc.FinishPasskeyLogin(ctx, early, a.Get(earlyOpts), ip); err != ErrLoginFailed || res.Token != "" {
			t.Errorf("good answer from a locked address: %+v %v, want ErrLoginFailed", res, err)
		}
		begin(t, netip.MustParseAddr("2001:db8:1:3::10")) // the next /64 is another client
		begin(t, client)

		f.clock.Advance(15*time.Minute + time.Second)
		opts, c = begin(t, ip)
		if _, err := f.svc.FinishPasskeyLogin(ctx, c, a.Get(opts), ip); err != nil {
			t.Errorf("login after the lock expired: %v", err)
		}
	})
}

func TestPasskeySecondFactor(t *testing.T) {
	f := newFixture(t, withPasskeys(t))
	ctx := context.Background()
	f.user(t, "bea", "user")
	f.user(t, "cal", "user")
	bea, _, _, _ := f.addPasskey(t, f.login(t, "bea", LoggedIn).Token, "bea's")
	cal, _, _, _ := f.addPasskey(t, f.login(t, "cal", LoggedIn).Token, "cal's")

	res := f.login(t, "bea", NeedSecondFactor)
	if p := f.principal(t, res.Token); p.Pending != PendingMFA {
		t.Fatalf("after the password: pending %q, want %q", p.Pending, PendingMFA)
	}
	beginVerify := func(t *testing.T, token string) ([]byte, string) {
		t.Helper()
		opts, c, err := f.svc.BeginPasskeyVerify(ctx, token)
		if err != nil {
			t.Fatalf("BeginPasskeyVerify: %v", err)
		}
		return opts, c
	}
	stillPending := func(t *testing.T, token string) {
		t.Helper()
		if p := f.principal(t, token); p.Pending != PendingMFA {
			t.Errorf("pending %q after a refused second factor, want %q", p.Pending, PendingMFA)
		}
	}

	t.Run("another user's passkey", func(t *testing.T) {
		opts, c := beginVerify(t, res.Token)
		_, err := f.svc.FinishPasskeyVerify(ctx, res.Token, c, cal.Get(opts, passkeytest.WithUserHandle(nil)), client)
		if !errors.Is(err, ErrCodeRejected) {
			t.Fatalf("FinishPasskeyVerify with cal's passkey: %v, want ErrCodeRejected", err)
		}
		f.wantEvent(t, "login.failed", "bea", MethodWebAuthn, map[string]string{"reason": "wrong_code"})
		stillPending(t, res.Token)
	})

	t.Run("a ceremony begun for another user's login", func(t *testing.T) {
		f.clock.Advance(2 * time.Second) // past bea's back-off
		calRes := f.login(t, "cal", NeedSecondFactor)
		opts, c := beginVerify(t, calRes.Token)
		_, err := f.svc.FinishPasskeyVerify(ctx, res.Token, c, cal.Get(opts), client)
		if !errors.Is(err, ErrCodeRejected) {
			t.Fatalf("cal's ceremony finished with bea's session: %v, want ErrCodeRejected", err)
		}
		stillPending(t, res.Token)
		stillPending(t, calRes.Token)
	})

	var full string
	t.Run("own passkey finishes the login", func(t *testing.T) {
		f.clock.Advance(3 * time.Second) // past bea's back-off
		opts, c := beginVerify(t, res.Token)
		done, err := f.svc.FinishPasskeyVerify(ctx, res.Token, c, bea.Get(opts), client)
		if err != nil || done.Outcome != LoggedIn || done.Token == "" || done.Token == res.Token {
			t.Fatalf("FinishPasskeyVerify = %+v, %v; want a login with a new session", done, err)
		}
		full = done.Token
		wantMethods(t, f.principal(t, full), MethodPassword, MethodWebAuthn)
		if _, err := f.svc.Authenticate(ctx, res.Token); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("the password-only session still works: %v", err)
		}
		f.wantEvent(t, "login.succeeded", "bea", "", map[string]string{"methods": "pwd,webauthn"})
	})

	t.Run("not on a full session", func(t *testing.T) {
		if full == "" {
			t.Skip("no full session")
		}
		if _, _, err := f.svc.BeginPasskeyVerify(ctx, full); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("BeginPasskeyVerify on a full session: %v, want session.ErrNoSession", err)
		}
		pending := f.login(t, "bea", NeedSecondFactor)
		opts, c := beginVerify(t, pending.Token)
		if _, err := f.svc.FinishPasskeyVerify(ctx, full, c, bea.Get(opts), client); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("FinishPasskeyVerify on a full session: %v, want session.ErrNoSession", err)
		}
		wantMethods(t, f.principal(t, full), MethodPassword, MethodWebAuthn)
	})

	t.Run("not on a session that must enroll", func(t *testing.T) {
		f.user(t, "root", "admin")
		enroll := f.login(t, "root", MustEnroll)
		if _, _, err := f.svc.BeginPasskeyVerify(ctx, enroll.Token); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("BeginPasskeyVerify on an enrollment session: %v, want session.ErrNoSession", err)
		}
	})
}

func TestRemoveSecondFactors(t *testing.T) {
	f := newFixture(t, withPasskeys(t))
	ctx := context.Background()

	factors := func(t *testing.T, token string) map[string]int {
		t.Helper()
		m, err := f.svc.Factors(ctx, f.principal(t, token).UserID)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("admin keeps one", func(t *testing.T) {
		f.user(t, "root", "admin")
		_, key, tok, _ := f.addPasskey(t, f.login(t, "root", MustEnroll).Token, "Key")

		if err := f.svc.RemovePasskey(ctx, f.principal(t, tok), key, client); !errors.Is(err, ErrLastFactor) {
			t.Fatalf("removing an admin's only passkey: %v, want ErrLastFactor", err)
		}
		if n := factors(t, tok)[KindWebAuthn]; n != 1 {
			t.Fatalf("%d passkeys after a refused removal, want 1", n)
		}
		if e := f.ev.last("mfa.removed"); e != nil {
			t.Errorf("a refused removal recorded %+v", e)
		}

		tok = f.addTOTP(t, tok)
		if err := f.svc.RemovePasskey(ctx, f.principal(t, tok), key, client); err != nil {
			t.Fatalf("removing a passkey beside an authenticator app: %v", err)
		}
		f.wantEvent(t, "mfa.removed", "root", MethodWebAuthn, map[string]string{"id": key})
		if n := factors(t, tok)[KindWebAuthn]; n != 0 {
			t.Errorf("%d passkeys after removing the only one, want 0", n)
		}

		if err := f.svc.RemoveTOTP(ctx, f.principal(t, tok), client); !errors.Is(err, ErrLastFactor) {
			t.Fatalf("removing an admin's only authenticator app: %v, want ErrLastFactor", err)
		}
		if n := factors(t, tok)[KindTOTP]; n != 1 {
			t.Fatalf("%d authenticator apps after a refused removal, want 1", n)
		}

		_, second, _, _ := f.addPasskey(t, tok, "Second key")
		if err := f.svc.RemoveTOTP(ctx, f.principal(t, tok), client); err != nil {
			t.Fatalf("removing the app beside a passkey: %v", err)
		}
		f.wantEvent(t, "mfa.removed", "root", MethodTOTP, nil)
		if got := factors(t, tok); got[KindTOTP] != 0 || got[KindWebAuthn] != 1 {
			t.Errorf("factors %v, want the passkey only", got)
		}

		_, third, _, _ := f.addPasskey(t, tok, "Third key")
		if err := f.svc.RemovePasskey(ctx, f.principal(t, tok), second, client); err != nil {
			t.Fatalf("removing one of two passkeys: %v", err)
		}
		if err := f.svc.RemovePasskey(ctx, f.principal(t, tok), third, client); !errors.Is(err, ErrLastFactor) {
			t.Fatalf("removing the last of two passkeys: %v, want ErrLastFactor", err)
		}
	})

	t.Run("user without an MFA role", func(t *testing.T) {
		f.user(t, "ann", "user")
		tok := f.login(t, "ann", LoggedIn).Token
		_, key, _, _ := f.addPasskey(t, tok, "Key")
		if err := f.svc.RemovePasskey(ctx, f.principal(t, tok), key, client); err != nil {
			t.Fatalf("removing the only passkey: %v", err)
		}
		f.wantEvent(t, "mfa.removed", "ann", MethodWebAuthn, map[string]string{"id": key})

		tok = f.addTOTP(t, tok)
		if err := f.svc.RemoveTOTP(ctx, f.principal(t, tok), client); err != nil {
			t.Fatalf("removing the only authenticator app: %v", err)
		}
		f.wantEvent(t, "mfa.removed", "ann", MethodTOTP, nil)
		if got := factors(t, tok); got[KindTOTP] != 0 || got[KindWebAuthn] != 0 {
			t.Errorf("factors %v, want no second factor", got)
		}
		f.login(t, "ann", LoggedIn)
	})

	t.Run("another user's passkey", func(t *testing.T) {
		f.user(t, "bob", "user")
		bobTok := f.login(t, "bob", LoggedIn).Token
		_, bobs, _, _ := f.addPasskey(t, bobTok, "bob's")
		err := f.svc.RemovePasskey(ctx, f.principal(t, f.login(t, "ann", LoggedIn).Token), bobs, client)
		if !errors.Is(err, passkey.ErrNotFound) {
			t.Errorf("removing another user's passkey: %v, want passkey.ErrNotFound", err)
		}
		if n := factors(t, bobTok)[KindWebAuthn]; n != 1 {
			t.Errorf("bob has %d passkeys, want his one", n)
		}
	})
}

func TestPasskeysOff(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.user(t, "ann", "user")
	tok := f.login(t, "ann", LoggedIn).Token
	p := f.principal(t, tok)

	if f.svc.PasskeysEnabled() {
		t.Error("PasskeysEnabled without a passkey service")
	}
	if list, err := f.svc.Passkeys(ctx, p.UserID); list != nil || err != nil {
		t.Errorf("Passkeys = %v, %v; want none", list, err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"BeginPasskeyLogin", func() error { _, _, err := f.svc.BeginPasskeyLogin(ctx, client); return err }},
		{"FinishPasskeyLogin", func() error { _, err := f.svc.FinishPasskeyLogin(ctx, "c", []byte("{}"), client); return err }},
		{"BeginPasskeyVerify", func() error { _, _, err := f.svc.BeginPasskeyVerify(ctx, tok); return err }},
		{"FinishPasskeyVerify", func() error { _, err := f.svc.FinishPasskeyVerify(ctx, tok, "c", []byte("{}"), client); return err }},
		{"BeginPasskeyRegistration", func() error { _, _, err := f.svc.BeginPasskeyRegistration(ctx, p); return err }},
		{"FinishPasskeyRegistration", func() error {
			_, _, err := f.svc.FinishPasskeyRegistration(ctx, tok, p, "c", "Key", []byte("{}"), client)
			return err
		}},
		{"RenamePasskey", func() error { return f.svc.RenamePasskey(ctx, p, "pk_x", "Key") }},
		{"RemovePasskey", func() error { return f.svc.RemovePasskey(ctx, p, "pk_x", client) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			events := f.ev.size()
			if err := c.call(); !errors.Is(err, ErrPasskeysOff) {
				t.Errorf("%s: %v, want ErrPasskeysOff", c.name, err)
			}
			if n := f.ev.size(); n != events {
				t.Errorf("%s recorded %d events", c.name, n-events)
			}
		})
	}
	wantMethods(t, f.principal(t, tok), MethodPassword)
}

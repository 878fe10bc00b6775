package passkey

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/passkey/passkeytest"
	"github.com/moatgw/moat/internal/store"
)

func TestNewChecksOptions(t *testing.T) {
	good := func() Options {
		return Options{
			RPID:        testRPID,
			RPOrigins:   []string{testOrigin},
			Credentials: newMemCredentials(),
			Users:       fakeUsers{},
		}
	}
	tests := []struct {
		name   string
		change func(*Options)
		want   string // "" for success
	}{
		{"valid", func(*Options) {}, ""},
		{"no RP ID", func(o *Options) { o.RPID = "" }, "no relying party id"},
		{"no origins", func(o *Options) { o.RPOrigins = nil }, "no relying party origins"},
		{"no credential store", func(o *Options) { o.Credentials = nil }, "no credential store"},
		{"no user store", func(o *Options) { o.Users = nil }, "no user store"},
		{"negative limit", func(o *Options) { o.MaxCeremonies = -1 }, "negative limit"},
		{"RP ID with a scheme", func(o *Options) { o.RPID = "https://localhost" }, "configuring passkeys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.change(&o)
			_, err := New(o)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: error %v; want one saying %q", err, tt.want)
			}
		})
	}
}

type fakeUsers map[string]*store.User

func (f fakeUsers) Get(_ context.Context, id string) (*store.User, error) {
	if u, ok := f[id]; ok {
		return u, nil
	}
	return nil, store.ErrNotFound
}

func TestRegisterThenSecondFactorLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := newAuthenticator(t)

	opts, id, err := e.svc.BeginRegistration(ctx, e.alice)
	if err != nil {
		t.Fatal(err)
	}
	co := decodeOptions[creationOptions](t, opts)
	pk := co.PublicKey
	if pk.RP.ID != testRPID || pk.RP.Name != "Moat test" {
		t.Errorf("rp = %+v, want id %s, name Moat test", pk.RP, testRPID)
	}
	if pk.User.ID != b64.EncodeToString([]byte(e.alice.ID)) || pk.User.Name != "alice" || pk.User.DisplayName != "Alice Liddell" {
		t.Errorf("user = %+v, want the base64url of alice's id, alice, Alice Liddell", pk.User)
	}
	sel := pk.AuthenticatorSelection
	if sel.ResidentKey != "required" || !sel.RequireResidentKey || sel.UserVerification != "preferred" {
		t.Errorf("authenticatorSelection = %+v, want resident key required, user verification preferred", sel)
	}
	if pk.Attestation != "none" {
		t.Errorf("attestation = %q, want none", pk.Attestation)
	}
	if pk.Timeout != int((5 * time.Minute).Milliseconds()) {
		t.Errorf("timeout = %d ms, want five minutes", pk.Timeout)
	}
	if len(pk.ExcludeCredentials) != 0 {
		t.Errorf("excludeCredentials = %v for a user without passkeys", pk.ExcludeCredentials)
	}

	c, err := e.svc.FinishRegistration(ctx, id, e.alice, "  Laptop  ", a.Create(opts))
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	if c.Kind != Kind || c.UserID != e.alice.ID || c.Name != "Laptop" || !strings.HasPrefix(c.ID, "pk_") {
		t.Errorf("stored credential = kind %q user %q name %q id %q", c.Kind, c.UserID, c.Name, c.ID)
	}
	if !c.CreatedAt.Equal(e.clock.Now()) {
		t.Errorf("created at %v, want %v", c.CreatedAt, e.clock.Now())
	}
	wc := e.stored(t, e.alice, c.ID)
	if !bytes.Equal(wc.ID, a.CredentialID()) || len(wc.PublicKey) == 0 || !wc.Flags.UserVerified {
		t.Errorf("stored record: id %x public key %d bytes uv %v", wc.ID, len(wc.PublicKey), wc.Flags.UserVerified)
	}

	// The record is sealed at rest: the raw column holds neither the
	// public key nor the JSON field names.
	var raw []byte
	if err := e.st.DB().QueryRowContext(ctx, `SELECT secret FROM credentials WHERE id = $1`, c.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("publicKey")) || bytes.Contains(raw, wc.PublicKey) {
		t.Error("the credential record is stored in the clear")
	}

	tests := []struct {
		name   string
		flags  byte
		wantUV bool
	}{
		{"user verified", passkeytest.FlagUP | passkeytest.FlagUV, true},
		{"user present only", passkeytest.FlagUP, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(time.Minute)
			opts, id := e.beginLogin(t, e.alice)
			ro := decodeOptions[requestOptions](t, opts).PublicKey
			if len(ro.AllowCredentials) != 1 || ro.AllowCredentials[0].ID != b64.EncodeToString(a.CredentialID()) {
				t.Errorf("allowCredentials = %v, want alice's passkey", ro.AllowCredentials)
			}
			if ro.UserVerification != "preferred" || ro.RPID != testRPID {
				t.Errorf("userVerification %q rpId %q, want preferred and %s", ro.UserVerification, ro.RPID, testRPID)
			}
			uid, cid, uv, err := e.svc.FinishLogin(ctx, id, a.Get(opts, passkeytest.WithFlags(tt.flags)))
			if err != nil {
				t.Fatalf("FinishLogin: %v", err)
			}
			if uid != e.alice.ID || cid != c.ID || uv != tt.wantUV {
				t.Errorf("FinishLogin = %s, %s, uv %v; want %s, %s, uv %v", uid, cid, uv, e.alice.ID, c.ID, tt.wantUV)
			}
			if got := e.stored(t, e.alice, c.ID).Authenticator.SignCount; got != a.SignCount() {
				t.Errorf("stored sign count %d, want %d", got, a.SignCount())
			}
			list, err := e.svc.List(ctx, e.alice.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || !list[0].LastUsedAt.Equal(e.clock.Now()) {
				t.Errorf("List = %+v, want one passkey last used %v", list, e.clock.Now())
			}
		})
	}
}

func TestDiscoverableLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob := newAuthenticator(t), newAuthenticator(t)
	ca := e.register(t, e.alice, alice, "alice's phone")
	cb := e.register(t, e.bob, bob, "bob's key")

	for _, tc := range []struct {
		name     string
		a        *passkeytest.Authenticator
		wantUser *store.User
		wantCred string
	}{
		{"alice", alice, e.alice, ca.ID},
		{"bob", bob, e.bob, cb.ID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, id := e.beginLogin(t, nil)
			ro := decodeOptions[requestOptions](t, opts).PublicKey
			if len(ro.AllowCredentials) != 0 || ro.UserVerification != "required" {
				t.Errorf("allowCredentials %v userVerification %q; want none and required", ro.AllowCredentials, ro.UserVerification)
			}
			uid, cid, uv, err := e.svc.FinishLogin(ctx, id, tc.a.Get(opts))
			if err != nil {
				t.Fatalf("FinishLogin: %v", err)
			}
			if uid != tc.wantUser.ID || cid != tc.wantCred || !uv {
				t.Errorf("FinishLogin = %s, %s, uv %v; want %s, %s, uv true", uid, cid, uv, tc.wantUser.ID, tc.wantCred)
			}
		})
	}

	refusals := []struct {
		name   string
		a      *passkeytest.Authenticator
		tweaks []passkeytest.Tweak
		want   error
	}{
		{"user not verified", alice, []passkeytest.Tweak{passkeytest.WithFlags(passkeytest.FlagUP)}, ErrVerification},
		{"no user handle", alice, []passkeytest.Tweak{passkeytest.WithUserHandle(nil)}, ErrUnknownPasskey},
		{"unknown user handle", alice, []passkeytest.Tweak{passkeytest.WithUserHandle([]byte("no-such-user"))}, ErrUnknownPasskey},
		{"over-long user handle", alice, []passkeytest.Tweak{passkeytest.WithUserHandle(bytes.Repeat([]byte("a"), 65))}, ErrUnknownPasskey},
		{"another user's handle", alice, []passkeytest.Tweak{passkeytest.WithUserHandle([]byte(e.bob.ID))}, ErrUnknownPasskey},
		{"unregistered passkey", newAuthenticator(t), []passkeytest.Tweak{passkeytest.WithUserHandle([]byte(e.alice.ID))}, ErrUnknownPasskey},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			opts, id := e.beginLogin(t, nil)
			uid, _, _, err := e.svc.FinishLogin(ctx, id, tc.a.Get(opts, tc.tweaks...))
			wantRefused(t, err, tc.want)
			if uid != "" {
				t.Errorf("refused login named user %q", uid)
			}
		})
	}
}

func TestSecondFactorCeremonyIsBoundToItsUser(t *testing.T) {
	e := newEnv(t)
	alice, bob := newAuthenticator(t), newAuthenticator(t)
	e.register(t, e.alice, alice, "")
	e.register(t, e.bob, bob, "")

	// A ceremony begun for alice (after her password) cannot be finished
	// with bob's passkey, even one that claims no user handle.
	opts, id := e.beginLogin(t, e.alice)
	_, _, _, err := e.svc.FinishLogin(context.Background(), id, bob.Get(opts, passkeytest.WithUserHandle(nil)))
	wantRefused(t, err, ErrUnknownPasskey)

	_, _, err = e.svc.BeginLogin(context.Background(), mustUser(t, e.st, "carol", ""))
	wantRefused(t, err, ErrNoPasskeys)
}

func TestInactiveUserRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := newAuthenticator(t)
	e.register(t, e.alice, a, "")
	e.alice.Status = "disabled"
	if err := e.st.Users().Update(ctx, e.alice); err != nil {
		t.Fatal(err)
	}
	opts, id := e.beginLogin(t, nil)
	_, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts))
	wantRefused(t, err, ErrUserInactive)
}

func TestSignCountGoingBackwardsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := newAuthenticator(t)
	c := e.register(t, e.alice, a, "")

	steps := []struct {
		name      string
		count     uint32
		want      error // nil: accepted
		wantStore uint32
	}{
		{"first use", 10, nil, 10},
		{"same count again", 10, ErrCloneWarning, 10},
		{"lower count", 9, ErrCloneWarning, 10},
		{"zero after nonzero", 0, ErrCloneWarning, 10},
		{"higher count", 11, nil, 11},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			opts, id := e.beginLogin(t, e.alice)
			_, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts, passkeytest.WithSignCount(s.count)))
			if s.want == nil && err != nil {
				t.Fatalf("FinishLogin: %v", err)
			}
			if s.want != nil {
				wantRefused(t, err, s.want)
			}
			if got := e.stored(t, e.alice, c.ID).Authenticator.SignCount; got != s.wantStore {
				t.Errorf("stored sign count %d, want %d", got, s.wantStore)
			}
		})
	}

	t.Run("count carried from registration", func(t *testing.T) {
		r := newAuthenticator(t)
		c := e.register(t, e.bob, r, "used before", passkeytest.WithSignCount(50))
		if c.Counter != 50 {
			t.Errorf("registered with counter %d, want 50", c.Counter)
		}
		opts, id := e.beginLogin(t, nil)
		_, _, _, err := e.svc.FinishLogin(ctx, id, r.Get(opts, passkeytest.WithSignCount(49)))
		wantRefused(t, err, ErrCloneWarning)
		if err := e.svc.Remove(ctx, e.bob.ID, c.ID); err != nil {
			t.Fatal(err)
		}
	})

	// Synced passkeys keep no counter: zero every time is fine. This one
	// is backed up only after registration.
	t.Run("counter always zero", func(t *testing.T) {
		z := newAuthenticator(t)
		e.register(t, e.bob, z, "synced", passkeytest.WithFlags(passkeytest.FlagUP|passkeytest.FlagUV|passkeytest.FlagBE))
		if l, _ := e.svc.List(ctx, e.bob.ID); len(l) != 1 || !l[0].BackupEligible || l[0].BackedUp {
			t.Fatalf("List = %+v, want one passkey eligible for backup, not backed up", l)
		}
		backedUp := passkeytest.WithFlags(passkeytest.FlagUP | passkeytest.FlagUV | passkeytest.FlagBE | passkeytest.FlagBS)
		for range 3 {
			e.clock.Advance(time.Minute)
			opts, id := e.beginLogin(t, nil)
			if _, _, _, err := e.svc.FinishLogin(ctx, id, z.Get(opts, backedUp, passkeytest.WithSignCount(0))); err != nil {
				t.Fatalf("FinishLogin with a zero counter: %v", err)
			}
			if l, _ := e.svc.List(ctx, e.bob.ID); len(l) != 1 || !l[0].LastUsedAt.Equal(e.clock.Now()) {
				t.Fatalf("List = %+v, want a passkey last used %v", l, e.clock.Now())
			}
		}
		list, err := e.svc.List(ctx, e.bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || !list[0].BackupEligible || !list[0].BackedUp {
			t.Errorf("List = %+v, want one backed-up passkey", list)
		}
	})
}

func TestReplayedCeremonyRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := newAuthenticator(t)
	e.register(t, e.alice, a, "")

	opts, id := e.beginLogin(t, nil)
	resp := a.Get(opts)
	if _, _, _, err := e.svc.FinishLogin(ctx, id, resp); err != nil {
		t.Fatalf("first FinishLogin: %v", err)
	}

	t.Run("same ceremony again", func(t *testing.T) {
		_, _, _, err := e.svc.FinishLogin(ctx, id, resp)
		wantRefused(t, err, ErrNoCeremony)
	})
	t.Run("old response for a new ceremony", func(t *testing.T) {
		_, id2 := e.beginLogin(t, nil)
		_, _, _, err := e.svc.FinishLogin(ctx, id2, resp)
		wantRefused(t, err, ErrVerification)
	})
	t.Run("a failed attempt uses the ceremony up", func(t *testing.T) {
		opts, id := e.beginLogin(t, nil)
		_, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts, passkeytest.WithOrigin("https://evil.example")))
		wantRefused(t, err, ErrVerification)
		_, _, _, err = e.svc.FinishLogin(ctx, id, a.Get(opts))
		wantRefused(t, err, ErrNoCeremony)
	})
	t.Run("registration ceremony id", func(t *testing.T) {
		_, rid, err := e.svc.BeginRegistration(ctx, e.alice)
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = e.svc.FinishLogin(ctx, rid, resp)
		wantRefused(t, err, ErrCeremonyMismatch)
	})
	t.Run("made-up ceremony ids", func(t *testing.T) {
		for _, bad := range []string{"", "x", strings.Repeat("A", 22), strings.Repeat("A", 5000)} {
			_, _, _, err := e.svc.FinishLogin(ctx, bad, resp)
			wantRefused(t, err, ErrNoCeremony)
		}
	})
}

func TestExpiredCeremonyRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := newAuthenticator(t)
	e.register(t, e.alice, a, "")

	tests := []struct {
		name  string
		after time.Duration
		want  error
	}{
		{"just in time", 5*time.Minute - time.Second, nil},
		{"at five minutes", 5 * time.Minute, ErrCeremonyExpired},
		{"an hour later", time.Hour, ErrCeremonyExpired},
	}
	for _, tt := range tests {
		t.Run("login "+tt.name, func(t *testing.T) {
			opts, id := e.beginLogin(t, e.alice)
			e.clock.Advance(tt.after)
			_, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("FinishLogin: %v", err)
				}
				return
			}
			wantRefused(t, err, tt.want)
		})
		t.Run("registration "+tt.name, func(t *testing.T) {
			opts, id, err := e.svc.BeginRegistration(ctx, e.bob)
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(tt.after)
			_, err = e.svc.FinishRegistration(ctx, id, e.bob, "", newAuthenticator(t).Create(opts))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("FinishRegistration: %v", err)
				}
				return
			}
			wantRefused(t, err, tt.want)
		})
	}
}

func TestConcurrentLoginsKeepTheHighestSignCount(t *testing.T) {
	creds := newMemCredentials()
	e := newEnv(t, func(o *Options) { o.Credentials = creds })
	ctx := context.Background()
	a := newAuthenticator(t)
	c := e.register(t, e.alice, a, "")

	const n = 16
	ids, resps := make([]string, n), make([][]byte, n)
	for i := range n {
		var opts []byte
		opts, ids[i] = e.beginLogin(t, nil)
		resps[i] = a.Get(opts, passkeytest.WithSignCount(uint32(i+1)))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		highest uint32
	)
	creds.beforeList = barrier(n) // every login reads the count before any writes it
	for i := n - 1; i >= 0; i-- { // highest count first, to tempt a lower one to overwrite it
		wg.Go(func() {
			_, _, _, err := e.svc.FinishLogin(ctx, ids[i], resps[i])
			if err != nil && !errors.Is(err, ErrCloneWarning) {
				t.Errorf("login %d: %v", i+1, err)
			}
			if err == nil {
				mu.Lock()
				highest = max(highest, uint32(i+1))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := e.stored(t, e.alice, c.ID).Authenticator.SignCount; got != highest {
		t.Errorf("stored sign count %d, want the highest accepted, %d", got, highest)
	}
}

// A cloned authenticator answers two ceremonies, begun on two instances
// sharing one store, with the same sign count at the same moment: both
// instances read the old count, but only one login gets in.
func TestClonedAuthenticatorRacingOnTwoInstances(t *testing.T) {
	creds := newMemCredentials()
	e := newEnv(t, func(o *Options) { o.Credentials = creds })
	ctx := context.Background()
	a := newAuthenticator(t)
	e.register(t, e.alice, a, "")
	other, err := New(Options{
		RPID: testRPID, RPOrigins: []string{testOrigin},
		Credentials: creds, Users: e.st.Users(), Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}

	for round := range 3 {
		count := uint32(10 * (round + 1))
		opts1, id1 := e.beginLogin(t, nil)
		opts2, id2, err := other.BeginLogin(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		r1, r2 := a.Get(opts1, passkeytest.WithSignCount(count)), a.Get(opts2, passkeytest.WithSignCount(count))
		creds.beforeList = barrier(2) // both read the count before either writes it
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Go(func() { _, _, _, errs[0] = e.svc.FinishLogin(ctx, id1, r1) })
		wg.Go(func() { _, _, _, errs[1] = other.FinishLogin(ctx, id2, r2) })
		wg.Wait()
		ok, cloned := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrCloneWarning):
				cloned++
			default:
				t.Errorf("round %d: %v", round, err)
			}
		}
		if ok != 1 || cloned != 1 {
			t.Errorf("round %d: %d logins accepted and %d refused as cloned, want 1 and 1", round, ok, cloned)
		}
	}
}

func TestRenameWithTheRealStore(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, e.alice, newAuthenticator(t), "old")
	svc, err := New(Options{
		RPID: testRPID, RPOrigins: []string{testOrigin},
		Credentials: e.st.Credentials(), Users: e.st.Users(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Rename(context.Background(), e.alice.ID, c.ID, "new"); err != nil {
		t.Fatalf("Rename over the store: %v", err)
	}
	list, err := svc.List(context.Background(), e.alice.ID)
	if err != nil || len(list) != 1 || list[0].Name != "new" {
		t.Fatalf("after Rename: %+v %v", list, err)
	}
}

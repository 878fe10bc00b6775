package passkeytest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/moatgw/moat/internal/passkey/passkeytest"
)

const (
	rpID   = "localhost"
	origin = "https://localhost:8443"
)

// user is a relying party's user as the WebAuthn library sees it.
type user struct {
	id    []byte
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return "alice" }
func (u *user) WebAuthnDisplayName() string                { return "Alice" }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func relyingParty(t *testing.T) *webauthn.WebAuthn {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "test", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	return wa
}

// unwrap returns the options object inside {"publicKey": ...}.
func unwrap(t *testing.T, wrapped []byte) []byte {
	t.Helper()
	var v struct {
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if err := json.Unmarshal(wrapped, &v); err != nil || len(v.PublicKey) == 0 {
		t.Fatalf("options %s: no publicKey (%v)", wrapped, err)
	}
	return v.PublicKey
}

// register runs a registration through the WebAuthn library with the
// options in the given shape and returns the credential it verified.
func register(t *testing.T, wa *webauthn.WebAuthn, u *user, a *passkeytest.Authenticator, bare bool, tweaks ...passkeytest.Tweak) (*webauthn.Credential, error) {
	t.Helper()
	creation, sess, err := wa.BeginRegistration(u)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := json.Marshal(creation)
	if err != nil {
		t.Fatal(err)
	}
	if bare {
		opts = unwrap(t, opts)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(a.Create(opts, tweaks...))
	if err != nil {
		return nil, err
	}
	return wa.CreateCredential(u, *sess, parsed)
}

// login runs a discoverable login through the WebAuthn library.
func login(t *testing.T, wa *webauthn.WebAuthn, u *user, a *passkeytest.Authenticator, bare bool, tweaks ...passkeytest.Tweak) (*webauthn.Credential, error) {
	t.Helper()
	assertion, sess, err := wa.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := json.Marshal(assertion)
	if err != nil {
		t.Fatal(err)
	}
	if bare {
		opts = unwrap(t, opts)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(a.Get(opts, tweaks...))
	if err != nil {
		return nil, err
	}
	_, cred, err := wa.ValidatePasskeyLogin(func(_, handle []byte) (webauthn.User, error) {
		if !bytes.Equal(handle, u.id) {
			t.Errorf("user handle %q, want %q", handle, u.id)
		}
		return u, nil
	}, *sess, parsed)
	return cred, err
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		bare bool
	}{
		{"wrapped options", false},
		{"bare options", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wa := relyingParty(t)
			a := passkeytest.New(t, rpID, origin)
			u := &user{id: []byte("user-1")}
			cred, err := register(t, wa, u, a, tc.bare)
			if err != nil {
				t.Fatalf("registration refused: %v", err)
			}
			if !bytes.Equal(cred.ID, a.CredentialID()) || !cred.Flags.UserPresent || !cred.Flags.UserVerified || cred.Flags.BackupEligible {
				t.Fatalf("registered credential id %x flags %+v; want id %x, user present and verified", cred.ID, cred.Flags, a.CredentialID())
			}
			u.creds = append(u.creds, *cred)
			for want := uint32(1); want <= 3; want++ {
				got, err := login(t, wa, u, a, tc.bare)
				if err != nil {
					t.Fatalf("login %d refused: %v", want, err)
				}
				if got.Authenticator.SignCount != want || a.SignCount() != want {
					t.Errorf("login %d: sign count verified %d, authenticator at %d", want, got.Authenticator.SignCount, a.SignCount())
				}
				u.creds[0].Authenticator.SignCount = got.Authenticator.SignCount
			}
		})
	}
}

func TestCreateKeepsTheSignCount(t *testing.T) {
	wa := relyingParty(t)
	a := passkeytest.New(t, rpID, origin)
	u := &user{id: []byte("user-2")}
	cred, err := register(t, wa, u, a, false, passkeytest.WithSignCount(50), passkeytest.WithFlags(passkeytest.FlagUP|passkeytest.FlagUV|passkeytest.FlagBE))
	if err != nil {
		t.Fatal(err)
	}
	if cred.Authenticator.SignCount != 50 || !cred.Flags.BackupEligible || a.SignCount() != 50 {
		t.Fatalf("registered with sign count %d, backup eligible %v; authenticator at %d", cred.Authenticator.SignCount, cred.Flags.BackupEligible, a.SignCount())
	}
	u.creds = append(u.creds, *cred)
	got, err := login(t, wa, u, a, false, passkeytest.WithFlags(passkeytest.FlagUP|passkeytest.FlagUV|passkeytest.FlagBE))
	if err != nil {
		t.Fatal(err)
	}
	if got.Authenticator.SignCount != 51 {
		t.Errorf("first login sign count %d, want 51", got.Authenticator.SignCount)
	}
}

// Each tweak makes an answer the WebAuthn library refuses.
func TestTweaksAreRefused(t *testing.T) {
	wa := relyingParty(t)
	a := passkeytest.New(t, rpID, origin)
	u := &user{id: []byte("user-3")}
	cred, err := register(t, wa, u, a, false)
	if err != nil {
		t.Fatal(err)
	}
	u.creds = append(u.creds, *cred)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("registration", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			tweak passkeytest.Tweak
		}{
			{"origin", passkeytest.WithOrigin("https://evil.example")},
			{"RP ID", passkeytest.WithRPID("evil.example")},
			{"type", passkeytest.WithType("webauthn.get")},
			{"challenge", passkeytest.WithChallenge("AAAA")},
			{"user not present", passkeytest.WithFlags(passkeytest.FlagUV)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := register(t, wa, &user{id: []byte("user-4")}, passkeytest.New(t, rpID, origin), false, tc.tweak); err == nil {
					t.Error("registration accepted")
				}
			})
		}
	})
	t.Run("login", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			tweak passkeytest.Tweak
		}{
			{"origin", passkeytest.WithOrigin("https://evil.example")},
			{"RP ID", passkeytest.WithRPID("evil.example")},
			{"type", passkeytest.WithType("webauthn.create")},
			{"challenge", passkeytest.WithChallenge("AAAA")},
			{"user not present", passkeytest.WithFlags(passkeytest.FlagUV)},
			{"signer", passkeytest.WithSigner(other)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := login(t, wa, u, a, false, tc.tweak); err == nil {
					t.Error("login accepted")
				}
			})
		}
	})
	t.Run("no user handle", func(t *testing.T) {
		opts, _, err := wa.BeginDiscoverableLogin()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(opts)
		var resp struct {
			Response map[string]any `json:"response"`
		}
		if err := json.Unmarshal(a.Get(raw, passkeytest.WithUserHandle(nil)), &resp); err != nil {
			t.Fatal(err)
		}
		if _, ok := resp.Response["userHandle"]; ok {
			t.Errorf("response %v sends a user handle", resp.Response)
		}
	})
}

// fatalRecorder is a testing.TB whose Fatal ends only the goroutine that
// called it, and records the message.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failsWith runs f on a goroutine with a recorder and returns the message
// it failed with, or "" if it returned.
func failsWith(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func TestBadOptionsFail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		call    func(a *passkeytest.Authenticator)
		wantMsg string
	}{
		{"create: not JSON", func(a *passkeytest.Authenticator) { a.Create([]byte("nope")) }, "decoding WebAuthn options"},
		{"create: no challenge", func(a *passkeytest.Authenticator) { a.Create([]byte(`{"publicKey":{"user":{"id":"dXNlcg"}}}`)) }, "no challenge"},
		{"create: no user id", func(a *passkeytest.Authenticator) { a.Create([]byte(`{"challenge":"AAAA"}`)) }, "user.id"},
		{"get: not JSON", func(a *passkeytest.Authenticator) { a.Get(nil) }, "decoding WebAuthn options"},
		{"get: no challenge", func(a *passkeytest.Authenticator) { a.Get([]byte(`{"publicKey":{"rpId":"localhost"}}`)) }, "no challenge"},
		{"get: no signer", func(a *passkeytest.Authenticator) { a.Get([]byte(`{"challenge":"AAAA"}`), passkeytest.WithSigner(nil)) }, "no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := failsWith(t, func(tb testing.TB) { tc.call(passkeytest.New(tb, rpID, origin)) })
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("failed with %q; want a failure saying %q", msg, tc.wantMsg)
			}
		})
	}
}

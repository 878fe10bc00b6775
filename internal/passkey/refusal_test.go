package passkey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/moatgw/moat/internal/passkey/passkeytest"
)

// libraryDetail is the WebAuthn library's account of a failed check.
func libraryDetail(err error) string {
	if pe, ok := errors.AsType[*protocol.Error](err); ok {
		return pe.Type + ": " + pe.Details + " " + pe.DevInfo
	}
	return ""
}

func TestLoginRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := newAuthenticator(t)
	c := e.register(t, e.alice, a, "")
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		secondStep bool // a second-factor ceremony rather than a passwordless one
		tweaks     []passkeytest.Tweak
		detail     string // in the library's account of the failure
	}{
		{"wrong origin", false, []passkeytest.Tweak{passkeytest.WithOrigin("https://evil.example")}, "origin"},
		{"origin on another port", true, []passkeytest.Tweak{passkeytest.WithOrigin("https://localhost:9443")}, "origin"},
		{"plain http origin", true, []passkeytest.Tweak{passkeytest.WithOrigin("http://localhost:8443")}, "origin"},
		{"wrong RP ID hash", false, []passkeytest.Tweak{passkeytest.WithRPID("evil.example")}, "RP Hash mismatch"},
		{"RP ID hash of another host", true, []passkeytest.Tweak{passkeytest.WithRPID("127.0.0.1")}, "RP Hash mismatch"},
		{"bad signature", false, []passkeytest.Tweak{passkeytest.WithSigner(other)}, "invalid_signature"},
		{"bad signature, second factor", true, []passkeytest.Tweak{passkeytest.WithSigner(other)}, "invalid_signature"},
		{"wrong challenge", false, []passkeytest.Tweak{passkeytest.WithChallenge(b64.EncodeToString(make([]byte, 32)))}, "challenge"},
		{"registration client data", true, []passkeytest.Tweak{passkeytest.WithType("webauthn.create")}, "ceremony type"},
		{"user not present", true, []passkeytest.Tweak{passkeytest.WithFlags(passkeytest.FlagUV)}, "presence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.stored(t, e.alice, c.ID).Authenticator.SignCount
			var opts []byte
			var id string
			if tt.secondStep {
				opts, id = e.beginLogin(t, e.alice)
			} else {
				opts, id = e.beginLogin(t, nil)
			}
			uid, cid, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts, tt.tweaks...))
			wantRefused(t, err, ErrVerification)
			if uid != "" || cid != "" {
				t.Errorf("refused login returned user %q passkey %q", uid, cid)
			}
			if d := libraryDetail(err); !strings.Contains(d, tt.detail) {
				t.Errorf("refused for %q; want a failure about %q", d, tt.detail)
			}
			if Reason(err) != "verification_failed" {
				t.Errorf("Reason = %q", Reason(err))
			}
			if after := e.stored(t, e.alice, c.ID).Authenticator.SignCount; after != before {
				t.Errorf("a refused login moved the stored sign count from %d to %d", before, after)
			}
		})
	}

	t.Run("malformed responses", func(t *testing.T) {
		for _, body := range [][]byte{
			nil,
			[]byte(`{}`),
			[]byte(`not json`),
			[]byte(`{"id":"!!","rawId":"!!","type":"public-key","response":{}}`),
		} {
			_, id := e.beginLogin(t, nil)
			_, _, _, err := e.svc.FinishLogin(ctx, id, body)
			wantRefused(t, err, ErrBadResponse)
		}
	})

	t.Run("over-long response", func(t *testing.T) {
		// A good answer padded with white space, still valid JSON.
		opts, id := e.beginLogin(t, nil)
		resp := a.Get(opts)
		resp = append(resp, bytes.Repeat([]byte(" "), MaxResponseBytes+1-len(resp))...)
		_, _, _, err := e.svc.FinishLogin(ctx, id, resp)
		wantRefused(t, err, ErrBadResponse)
	})

	t.Run("a good login still works", func(t *testing.T) {
		opts, id := e.beginLogin(t, nil)
		if uid, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts)); err != nil || uid != e.alice.ID {
			t.Fatalf("FinishLogin = %q, %v; want alice", uid, err)
		}
	})
}

func TestRegistrationRefusals(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPerUser = 2 })
	ctx := context.Background()

	tests := []struct {
		name   string
		finish func(t *testing.T, opts []byte, id string) error
		want   error
		detail string
	}{
		{"another user's ceremony", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.bob, "", newAuthenticator(t).Create(opts))
			return err
		}, ErrCeremonyMismatch, ""},
		{"wrong origin", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "", newAuthenticator(t).Create(opts, passkeytest.WithOrigin("https://evil.example")))
			return err
		}, ErrVerification, "origin"},
		{"wrong RP ID hash", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "", newAuthenticator(t).Create(opts, passkeytest.WithRPID("evil.example")))
			return err
		}, ErrVerification, "RP Hash mismatch"},
		{"wrong challenge", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "", newAuthenticator(t).Create(opts, passkeytest.WithChallenge(b64.EncodeToString(make([]byte, 32)))))
			return err
		}, ErrVerification, "challenge"},
		{"login client data", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "", newAuthenticator(t).Create(opts, passkeytest.WithType("webauthn.get")))
			return err
		}, ErrVerification, "ceremony type"},
		{"user not present", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "", newAuthenticator(t).Create(opts, passkeytest.WithFlags(passkeytest.FlagUV)))
			return err
		}, ErrVerification, ""},
		{"malformed response", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "", []byte(`{"id":"AAAA"}`))
			return err
		}, ErrBadResponse, ""},
		{"over-long response", func(t *testing.T, opts []byte, id string) error {
			resp := newAuthenticator(t).Create(opts)
			resp = append(resp, bytes.Repeat([]byte("\n"), MaxResponseBytes+1-len(resp))...)
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "", resp)
			return err
		}, ErrBadResponse, ""},
		{"bad name", func(t *testing.T, opts []byte, id string) error {
			_, err := e.svc.FinishRegistration(ctx, id, e.alice, "tab\there", newAuthenticator(t).Create(opts))
			return err
		}, ErrBadName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, id, err := e.svc.BeginRegistration(ctx, e.alice)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.finish(t, opts, id)
			wantRefused(t, err, tt.want)
			if d := libraryDetail(err); !strings.Contains(d, tt.detail) {
				t.Errorf("refused for %q; want a failure about %q", d, tt.detail)
			}
			if list, _ := e.svc.List(ctx, e.alice.ID); len(list) != 0 {
				t.Errorf("a refused registration stored %d passkeys", len(list))
			}
		})
	}

	t.Run("login ceremony id", func(t *testing.T) {
		a := newAuthenticator(t)
		e.register(t, e.bob, a, "")
		_, id := e.beginLogin(t, nil)
		regOpts, _, err := e.svc.BeginRegistration(ctx, e.bob)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.FinishRegistration(ctx, id, e.bob, "", newAuthenticator(t).Create(regOpts))
		wantRefused(t, err, ErrCeremonyMismatch)
	})

	t.Run("too many passkeys", func(t *testing.T) {
		e.register(t, e.alice, newAuthenticator(t), "one")
		opts, id, err := e.svc.BeginRegistration(ctx, e.alice)
		if err != nil {
			t.Fatal(err)
		}
		e.register(t, e.alice, newAuthenticator(t), "two") // in parallel with the ceremony above
		_, err = e.svc.FinishRegistration(ctx, id, e.alice, "three", newAuthenticator(t).Create(opts))
		wantRefused(t, err, ErrTooManyPasskeys)
		_, _, err = e.svc.BeginRegistration(ctx, e.alice)
		wantRefused(t, err, ErrTooManyPasskeys)
	})
}

func TestStoreFailuresFailClosed(t *testing.T) {
	creds := newMemCredentials()
	e := newEnv(t, func(o *Options) { o.Credentials = creds })
	ctx := context.Background()
	a := newAuthenticator(t)
	e.register(t, e.alice, a, "")
	broken := errors.New("database is down")

	t.Run("sign count cannot be stored", func(t *testing.T) {
		opts, id := e.beginLogin(t, nil)
		creds.failWrite = broken
		defer func() { creds.failWrite = nil }()
		uid, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts))
		if uid != "" || !errors.Is(err, broken) || errors.Is(err, ErrRefused) || Reason(err) != "error" {
			t.Fatalf("FinishLogin = %q, %v; want no user and the store's error, not a refusal", uid, err)
		}
	})
	t.Run("passkeys cannot be listed", func(t *testing.T) {
		opts, id := e.beginLogin(t, nil)
		creds.failList = broken
		defer func() { creds.failList = nil }()
		uid, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts))
		if uid != "" || !errors.Is(err, broken) || errors.Is(err, ErrRefused) {
			t.Fatalf("FinishLogin = %q, %v; want no user and the store's error", uid, err)
		}
	})
	t.Run("registration cannot be stored", func(t *testing.T) {
		opts, id, err := e.svc.BeginRegistration(ctx, e.bob)
		if err != nil {
			t.Fatal(err)
		}
		creds.failWrite = broken
		defer func() { creds.failWrite = nil }()
		c, err := e.svc.FinishRegistration(ctx, id, e.bob, "", newAuthenticator(t).Create(opts))
		if c != nil || !errors.Is(err, broken) {
			t.Fatalf("FinishRegistration = %v, %v; want the store's error", c, err)
		}
	})
}

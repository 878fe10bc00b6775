package passkey

import (
	"context"
	"errors"
	"testing"
)

// FuzzFinishLogin feeds arbitrary bytes as the browser's answer to a fresh
// login ceremony: nothing may be accepted, nothing may panic, and every
// answer is a refusal, never an internal error.
func FuzzFinishLogin(f *testing.F) {
	e := newEnv(f)
	a := newAuthenticator(f)
	e.register(f, e.alice, a, "")
	opts, _ := e.beginLogin(f, nil)
	f.Add(a.Get(opts)) // valid, for a ceremony that will not be the one it is sent to
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"","signature":"","userHandle":"YQ"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, resp []byte) {
		_, id := e.beginLogin(t, nil)
		uid, _, _, err := e.svc.FinishLogin(context.Background(), id, resp)
		if err == nil || uid != "" {
			t.Fatalf("accepted %q as user %q", resp, uid)
		}
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("answer %q: %v, not a refusal", resp, err)
		}
	})
}

// FuzzFinishRegistration does the same for registration answers.
func FuzzFinishRegistration(f *testing.F) {
	e := newEnv(f)
	opts, _, err := e.svc.BeginRegistration(context.Background(), e.alice)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(newAuthenticator(f).Create(opts))
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}`))
	f.Fuzz(func(t *testing.T, resp []byte) {
		_, id, err := e.svc.BeginRegistration(context.Background(), e.alice)
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.svc.FinishRegistration(context.Background(), id, e.alice, "", resp)
		if err == nil || c != nil {
			t.Fatalf("registered %q", resp)
		}
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("answer %q: %v, not a refusal", resp, err)
		}
	})
}

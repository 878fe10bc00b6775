package assertion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	moatassertion "github.com/moatgw/moat/assertion"
	"github.com/moatgw/moat/internal/store"
	"github.com/moatgw/moat/internal/testclock"
)

func TestHandler(t *testing.T) {
	st := openStore(t)
	in := newInstance(t, st, testclock.New(time.Now()))
	tok := sign(t, in.s, alice(time.Now()), "orders", "")

	resp, err := in.jwks.Client().Get(in.jwks.URL + JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys, want 1: %s", len(set.Keys), body)
	}
	k := set.Keys[0]
	stored, err := st.SigningKeys().List(context.Background(), KeyUse)
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored keys %v, %v", stored, err)
	}
	want := map[string]string{
		"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
		"kid": kid(t, tok), "x": base64.RawURLEncoding.EncodeToString(stored[0].Public),
	}
	for name, v := range want {
		if k[name] != v {
			t.Errorf("%s = %q, want %q", name, k[name], v)
		}
	}
	if _, ok := k["d"]; ok || len(k) != len(want) {
		t.Errorf("key has other members: %v", k)
	}
	if k["kid"] != thumbprint(stored[0].Public) {
		t.Errorf("kid %q is not the key's RFC 7638 thumbprint", k["kid"])
	}

	t.Run("methods", func(t *testing.T) {
		for method, status := range map[string]int{"HEAD": 200, "POST": 405, "PUT": 405, "DELETE": 405} {
			req, _ := http.NewRequest(method, in.jwks.URL+JWKSPath, nil)
			resp, err := in.jwks.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != status {
				t.Errorf("%s: status %d, want %d", method, resp.StatusCode, status)
			}
		}
	})
}

func TestKeysSealedInStore(t *testing.T) {
	st := openStore(t)
	in := newInstance(t, st, testclock.New(time.Now()))
	tok := sign(t, in.s, alice(time.Now()), "orders", "")
	keys, err := st.SigningKeys().List(context.Background(), KeyUse)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	k := keys[0]
	if k.Alg != "EdDSA" || len(k.Private) != ed25519.PrivateKeySize || len(k.Public) != ed25519.PublicKeySize || k.ID != kid(t, tok) {
		t.Errorf("stored key %s %s, %d private bytes, %d public", k.ID, k.Alg, len(k.Private), len(k.Public))
	}
	// The same store without the key ring cannot read the private key.
	st.SetCipher(nil)
	if _, err := st.SigningKeys().List(context.Background(), KeyUse); !errors.Is(err, store.ErrNoCipher) {
		t.Errorf("listing without a cipher: %v, want ErrNoCipher", err)
	}
}

// TestRotate: a rotation takes effect at once; assertions of the previous
// key stay valid until they expire, and that key leaves the key set only
// after every one of them has.
func TestRotate(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now().Truncate(time.Second)
	c := testclock.New(now)
	in := newInstance(t, st, c)
	warm := in.verifier("orders") // an upstream that fetched the key set before the rotation

	old := sign(t, in.s, alice(now), "orders", "")
	if _, err := warm.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	k1 := kid(t, old)
	c.Advance(time.Second)
	rotatedAt := c.Now()
	if err := in.s.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := sign(t, in.s, alice(now), "orders", "")
	k2 := kid(t, fresh)
	if k2 == k1 {
		t.Fatal("still signing with the previous key after a rotation")
	}
	for name, tok := range map[string]string{"old": old, "new": fresh} {
		if _, err := warm.Verify(ctx, tok); err != nil {
			t.Errorf("%s assertion, upstream that knew the old key set: %v", name, err)
		}
		if _, err := in.verify("orders", tok); err != nil {
			t.Errorf("%s assertion, new upstream: %v", name, err)
		}
	}

	// The old assertion is accepted until its exp plus the verifier's
	// leeway; its key must be published at least that long.
	exp := time.Unix(int64(part(t, old, 1)["exp"].(float64)), 0)
	steps := []struct {
		at        time.Time
		published []string
	}{
		{exp.Add(moatassertion.Leeway), []string{k1, k2}},
		{now.Add(MaxLifetime + moatassertion.Leeway), []string{k1, k2}},
		{rotatedAt.Add(retention - time.Second), []string{k1, k2}},
		{rotatedAt.Add(retention), []string{k2}},
		{now.Add(24 * time.Hour), []string{k2}},
	}
	for _, s := range steps {
		c.Set(s.at)
		if got := jwkIDs(t, in.s.JWKS()); !slices.Equal(got, s.published) {
			t.Errorf("%v after the rotation: key set %v, want %v", s.at.Sub(now), got, s.published)
		}
	}
	// Once gone it does not come back, and upstreams refuse its assertions.
	if err := in.s.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(jwkIDs(t, in.s.JWKS()), k1) {
		t.Error("a reload published the retired key again")
	}
	if _, err := in.verify("orders", old); err == nil {
		t.Error("an assertion of a retired key was accepted")
	}
}

// TestScheduledRotation: Run's schedule publishes the next key before it
// signs, switches to it at its time, and keeps the previous one published
// for retention.
func TestScheduledRotation(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	start := time.Now().Truncate(time.Second)
	c := testclock.New(start)
	in := newInstance(t, st, c)
	k1 := kid(t, sign(t, in.s, alice(start), "orders", ""))

	c.Set(start.Add(DefaultRotation - prepublish - time.Minute))
	if err := in.s.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := jwkIDs(t, in.s.JWKS()); !slices.Equal(got, []string{k1}) {
		t.Fatalf("before the rotation is due: key set %v", got)
	}

	c.Set(start.Add(DefaultRotation - prepublish))
	if err := in.s.tick(ctx); err != nil {
		t.Fatal(err)
	}
	ids := jwkIDs(t, in.s.JWKS())
	if len(ids) != 2 || ids[0] != k1 {
		t.Fatalf("once due: key set %v, want the current key and the next", ids)
	}
	k2 := ids[1]
	if got := kid(t, sign(t, in.s, alice(start), "orders", "")); got != k1 {
		t.Errorf("the next key signs before its time: kid %q", got)
	}
	if err := in.s.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(jwkIDs(t, in.s.JWKS())); n != 2 {
		t.Errorf("a second tick made another key: %d published", n)
	}

	c.Set(start.Add(DefaultRotation))
	if got := kid(t, sign(t, in.s, alice(start), "orders", "")); got != k2 {
		t.Errorf("at its time the next key does not sign: kid %q, want %q", got, k2)
	}
	c.Set(start.Add(DefaultRotation + retention - time.Second))
	if got := jwkIDs(t, in.s.JWKS()); !slices.Equal(got, []string{k1, k2}) {
		t.Errorf("before retention ends: key set %v", got)
	}
	c.Set(start.Add(DefaultRotation + retention))
	if got := jwkIDs(t, in.s.JWKS()); !slices.Equal(got, []string{k2}) {
		t.Errorf("after retention: key set %v, want only %v", got, k2)
	}
	keys, err := st.SigningKeys().List(ctx, KeyUse)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("%d keys in the store, want 2", len(keys))
	}
}

// TestInstances: two instances on one store publish the same keys, accept
// each other's assertions, and follow each other's rotations.
func TestInstances(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now().Truncate(time.Second)
	c := testclock.New(now)
	a := newInstance(t, st, c)
	b := newInstance(t, st, c)

	if string(a.s.JWKS()) != string(b.s.JWKS()) {
		t.Fatalf("the instances publish different keys:\n%s\n%s", a.s.JWKS(), b.s.JWKS())
	}
	fromA := sign(t, a.s, alice(now), "orders", "")
	if _, err := b.verify("orders", fromA); err != nil {
		t.Fatalf("A's assertion against B's key set: %v", err)
	}
	if kid(t, sign(t, b.s, alice(now), "orders", "")) != kid(t, fromA) {
		t.Fatal("the instances sign with different keys")
	}

	c.Advance(time.Second)
	if err := a.s.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	rotated := kid(t, sign(t, a.s, alice(now), "orders", ""))
	if err := b.s.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kid(t, sign(t, b.s, alice(now), "orders", "")); got != rotated {
		t.Errorf("after reloading, B signs with %q, want A's new key %q", got, rotated)
	}
	if string(a.s.JWKS()) != string(b.s.JWKS()) {
		t.Errorf("after the rotation the instances publish different keys")
	}
	if _, err := a.verify("orders", sign(t, b.s, alice(now), "orders", "")); err != nil {
		t.Errorf("B's assertion against A's key set: %v", err)
	}
}

// TestRacingInstances: instances that start on an empty store, or rotate,
// at the same moment each make a key, and all sign with the newest after
// a reload.
func TestRacingInstances(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	c := testclock.New(time.Now().Truncate(time.Second))
	ins := make([]*Signer, 4)
	var wg sync.WaitGroup
	for i := range ins {
		wg.Go(func() {
			s, err := New(ctx, Options{Keys: st.SigningKeys(), Issuer: testIssuer, Now: c.Now})
			if err != nil {
				t.Error(err)
				return
			}
			ins[i] = s
			if err := s.Rotate(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	kids := map[string]bool{}
	for _, s := range ins {
		if err := s.tick(ctx); err != nil {
			t.Fatal(err)
		}
		kids[kid(t, sign(t, s, alice(c.Now()), "orders", ""))] = true
	}
	if len(kids) != 1 {
		t.Errorf("after a reload the instances sign with %d keys, want 1", len(kids))
	}
	if string(ins[0].JWKS()) != string(ins[3].JWKS()) {
		t.Error("the instances publish different keys")
	}
}

func TestUnusableStoredKeys(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now().Truncate(time.Second)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	bad := []*store.SigningKey{
		{ID: "ecdsa", Alg: "ES256", Private: []byte("p"), Public: []byte("q")},
		{ID: "short", Alg: "EdDSA", Private: priv[:20], Public: priv[32:]},
		{ID: "mismatch", Alg: "EdDSA", Private: priv, Public: other[32:]},
		{ID: "halves", Alg: "EdDSA", Private: append(slices.Clone(priv[:32]), other[32:]...)},
	}
	for _, k := range bad {
		k.Use, k.CreatedAt = KeyUse, now.Add(-time.Minute)
		if err := st.SigningKeys().Create(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	c := testclock.New(now)
	in := newInstance(t, st, c)
	tok := sign(t, in.s, alice(now), "orders", "")
	if got := jwkIDs(t, in.s.JWKS()); len(got) != 1 || got[0] != kid(t, tok) || slices.Contains([]string{"ecdsa", "short", "mismatch", "halves"}, got[0]) {
		t.Errorf("key set %v: want only the key New made", got)
	}
	if _, err := in.verify("orders", tok); err != nil {
		t.Fatal(err)
	}

	// A usable key stored under any id (a seed, as another tool may store
	// it) is used with that id.
	_, seeded, _ := ed25519.GenerateKey(rand.Reader)
	k := &store.SigningKey{ID: "ops-2031", Use: KeyUse, Alg: "EdDSA", Private: seeded.Seed(), CreatedAt: now.Add(time.Second)}
	if err := st.SigningKeys().Create(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := in.s.tick(ctx); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	tok = sign(t, in.s, alice(now), "orders", "")
	if kid(t, tok) != "ops-2031" {
		t.Errorf("kid %q, want the newest stored key", kid(t, tok))
	}
	if _, err := in.verify("orders", tok); err != nil {
		t.Fatal(err)
	}
}

func TestRunStops(t *testing.T) {
	in := newInstance(t, openStore(t), testclock.New(time.Now()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		in.s.Run(ctx)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}

// TestSharedNames: the gateway and the public verifier agree on the header
// and the token type.
func TestSharedNames(t *testing.T) {
	if Header != moatassertion.Header || TokenType != moatassertion.TokenType {
		t.Errorf("gateway %q %q, verifier %q %q", Header, TokenType, moatassertion.Header, moatassertion.TokenType)
	}
}

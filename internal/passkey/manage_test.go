package passkey

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/passkey/passkeytest"
	"github.com/moatgw/moat/internal/store"
)

func TestSeveralPasskeysRenameRemove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	laptop, phone, key := newAuthenticator(t), newAuthenticator(t), newAuthenticator(t)
	cl := e.register(t, e.alice, laptop, "Laptop")
	e.clock.Advance(time.Second)
	cp := e.register(t, e.alice, phone, "Phone 📱")
	e.clock.Advance(time.Second)
	ck := e.register(t, e.alice, key, "")
	bobs := e.register(t, e.bob, newAuthenticator(t), "bob's")

	names := func() []string {
		t.Helper()
		list, err := e.svc.List(ctx, e.alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range list {
			out = append(out, p.Name)
		}
		return out
	}
	if got, want := names(), []string{"Laptop", "Phone 📱", "Passkey"}; !slices.Equal(got, want) {
		t.Fatalf("passkeys %q, want %q oldest first", got, want)
	}

	list, err := e.svc.List(ctx, e.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := list[0]
	if p.ID != cl.ID || p.AAGUID != "00000000-0000-0000-0000-000000000000" ||
		!slices.Equal(p.Transports, []string{"internal", "hybrid"}) || p.BackupEligible || !p.LastUsedAt.IsZero() {
		t.Errorf("List()[0] = %+v", p)
	}
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "publicKey") || strings.Contains(string(js), "lastUsedAt") {
		t.Errorf("passkey JSON %s carries key material or an empty last use", js)
	}

	t.Run("every passkey logs in", func(t *testing.T) {
		for _, a := range []*passkeytest.Authenticator{laptop, phone, key} {
			opts, id := e.beginLogin(t, e.alice)
			if got := len(decodeOptions[requestOptions](t, opts).PublicKey.AllowCredentials); got != 3 {
				t.Errorf("allowCredentials lists %d passkeys, want 3", got)
			}
			if _, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts)); err != nil {
				t.Fatalf("FinishLogin: %v", err)
			}
		}
	})

	t.Run("rename", func(t *testing.T) {
		tests := []struct {
			name, give string
			want       error
			wantName   string
		}{
			{"plain", "Work laptop", nil, "Work laptop"},
			{"trimmed", "  Desk  ", nil, "Desk"},
			{"empty", "", nil, "Passkey"},
			{"64 characters", strings.Repeat("é", 64), nil, strings.Repeat("é", 64)},
			{"65 characters", strings.Repeat("é", 65), ErrBadName, ""},
			{"control character", "a\x00b", ErrBadName, ""},
			{"new line", "a\nb", ErrBadName, ""},
			{"bidi override", "evil\u202egnp.exe", ErrBadName, ""},
			{"invalid UTF-8", "a\xffb", ErrBadName, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := e.svc.Rename(ctx, e.alice.ID, cl.ID, tt.give)
				if tt.want != nil {
					wantRefused(t, err, tt.want)
					return
				}
				if err != nil {
					t.Fatalf("Rename: %v", err)
				}
				if got := names()[0]; got != tt.wantName {
					t.Errorf("renamed to %q, want %q", got, tt.wantName)
				}
			})
		}
		// Renaming keeps the credential record: it still logs in.
		opts, id := e.beginLogin(t, e.alice)
		if _, _, _, err := e.svc.FinishLogin(ctx, id, laptop.Get(opts)); err != nil {
			t.Fatalf("FinishLogin after rename: %v", err)
		}
	})

	t.Run("another user's passkey", func(t *testing.T) {
		wantRefused(t, e.svc.Rename(ctx, e.alice.ID, bobs.ID, "mine"), ErrNotFound)
		wantRefused(t, e.svc.Remove(ctx, e.alice.ID, bobs.ID), ErrNotFound)
		wantRefused(t, e.svc.Remove(ctx, e.alice.ID, "pk_nosuch"), ErrNotFound)
		if l, _ := e.svc.List(ctx, e.bob.ID); len(l) != 1 || l[0].Name != "bob's" {
			t.Errorf("bob's passkeys = %+v, want his one, unchanged", l)
		}
	})

	t.Run("remove", func(t *testing.T) {
		if err := e.svc.Remove(ctx, e.alice.ID, cp.ID); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if got := len(names()); got != 2 {
			t.Errorf("%d passkeys after removing one of 3", got)
		}
		wantRefused(t, e.svc.Remove(ctx, e.alice.ID, cp.ID), ErrNotFound)

		for _, u := range []bool{true, false} {
			var opts []byte
			var id string
			if u {
				opts, id = e.beginLogin(t, e.alice)
			} else {
				opts, id = e.beginLogin(t, nil)
			}
			_, _, _, err := e.svc.FinishLogin(ctx, id, phone.Get(opts))
			wantRefused(t, err, ErrUnknownPasskey)
		}
		opts, id := e.beginLogin(t, nil)
		if uid, cid, _, err := e.svc.FinishLogin(ctx, id, key.Get(opts)); err != nil || uid != e.alice.ID || cid != ck.ID {
			t.Fatalf("FinishLogin with a kept passkey = %s, %s, %v", uid, cid, err)
		}
	})
}

func TestExcludeListAndDuplicates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	one, two := newAuthenticator(t), newAuthenticator(t)
	e.register(t, e.alice, one, "one")
	e.register(t, e.alice, two, "two")

	opts, id, err := e.svc.BeginRegistration(ctx, e.alice)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range decodeOptions[creationOptions](t, opts).PublicKey.ExcludeCredentials {
		if d.Type != "public-key" {
			t.Errorf("excluded credential of type %q", d.Type)
		}
		got = append(got, d.ID)
	}
	want := []string{b64.EncodeToString(one.CredentialID()), b64.EncodeToString(two.CredentialID())}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("excludeCredentials = %q, want %q", got, want)
	}

	// An authenticator that ignores the exclude list and answers with a
	// credential id already registered is refused, for the same user ...
	_, err = e.svc.FinishRegistration(ctx, id, e.alice, "again", one.Create(opts))
	wantRefused(t, err, ErrAlreadyExists)

	// ... and for another.
	bobOpts, bobID, err := e.svc.BeginRegistration(ctx, e.bob)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(decodeOptions[creationOptions](t, bobOpts).PublicKey.ExcludeCredentials); n != 0 {
		t.Errorf("bob's options exclude %d credentials, want none", n)
	}
	_, err = e.svc.FinishRegistration(ctx, bobID, e.bob, "stolen id", one.Create(bobOpts))
	wantRefused(t, err, ErrAlreadyExists)

	if l, _ := e.svc.List(ctx, e.alice.ID); len(l) != 2 {
		t.Errorf("alice has %d passkeys, want 2", len(l))
	}
	if l, _ := e.svc.List(ctx, e.bob.ID); len(l) != 0 {
		t.Errorf("bob has %d passkeys, want none", len(l))
	}
}

func TestOtherFactorsAreNotPasskeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pwd := &store.Credential{UserID: e.alice.ID, Kind: "password", Name: "password", Hash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA"}
	totp := &store.Credential{UserID: e.alice.ID, Kind: "totp", Name: "phone app", Secret: []byte("JBSWY3DPEHPK3PXP")}
	for _, c := range []*store.Credential{pwd, totp} {
		if err := e.creds.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	_, _, err := e.svc.BeginLogin(ctx, e.alice)
	wantRefused(t, err, ErrNoPasskeys)

	a := newAuthenticator(t)
	e.register(t, e.alice, a, "key")
	list, err := e.svc.List(ctx, e.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "key" {
		t.Errorf("List = %+v, want the passkey only", list)
	}
	for _, c := range []*store.Credential{pwd, totp} {
		wantRefused(t, e.svc.Rename(ctx, e.alice.ID, c.ID, "x"), ErrNotFound)
		wantRefused(t, e.svc.Remove(ctx, e.alice.ID, c.ID), ErrNotFound)
	}
	all, err := e.creds.ListByUser(ctx, e.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Name != "password" || all[1].Name != "phone app" {
		t.Errorf("alice's credentials after refused changes: %d", len(all))
	}
	opts, id := e.beginLogin(t, e.alice)
	if n := len(decodeOptions[requestOptions](t, opts).PublicKey.AllowCredentials); n != 1 {
		t.Errorf("allowCredentials lists %d credentials, want the one passkey", n)
	}
	if _, _, _, err := e.svc.FinishLogin(ctx, id, a.Get(opts)); err != nil {
		t.Fatal(err)
	}
}

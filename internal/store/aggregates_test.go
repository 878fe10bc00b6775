package store

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

// t0 is a time at the store's precision (microseconds, UTC), so values
// read back compare equal with reflect.DeepEqual.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

func mustUser(t testing.TB, s *Store, username, email string) *User {
	t.Helper()
	u := &User{Username: username, Email: email, DisplayName: "User " + username, Roles: []string{"viewer"}, CreatedAt: t0}
	if err := s.Users().Create(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func testUsers(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	us := s.Users()

	alice := &User{Username: "alice", Email: "alice@example.com", DisplayName: "Alice", Roles: []string{"admin", "viewer"}, CreatedAt: t0}
	if err := us.Create(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if alice.ID == "" || alice.Status != "active" {
		t.Fatalf("Create did not fill in ID and Status: %+v", alice)
	}
	bob := &User{Username: "bob"} // no email, no roles, no creation time
	if err := us.Create(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if bob.CreatedAt.IsZero() {
		t.Fatal("Create did not set CreatedAt")
	}

	got, err := us.Get(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, alice) {
		t.Fatalf("Get = %+v, want %+v", got, alice)
	}
	got, err = us.GetByUsername(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, bob) {
		t.Fatalf("GetByUsername = %+v, want %+v", got, bob)
	}

	all, err := us.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Username != "alice" || all[1].Username != "bob" {
		t.Fatalf("List = %+v, want alice then bob", all)
	}

	err = us.Create(ctx, &User{Username: "alice"})
	wantErr(t, "Create with a taken username", err, ErrConflict)
	err = us.Create(ctx, &User{ID: alice.ID, Username: "carol"})
	wantErr(t, "Create with a taken id", err, ErrConflict)
	if err := us.Create(ctx, &User{}); err == nil {
		t.Fatal("Create with no username succeeded")
	}

	alice.Email = "alice@example.org"
	alice.Roles = nil
	alice.Status = "locked"
	alice.LastLoginAt = t0.Add(time.Hour)
	if err := us.Update(ctx, alice); err != nil {
		t.Fatal(err)
	}
	got, err = us.Get(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, alice) {
		t.Fatalf("after Update, Get = %+v, want %+v", got, alice)
	}
	bob.Username = "alice"
	wantErr(t, "Update to a taken username", us.Update(ctx, bob), ErrConflict)
	wantErr(t, "Update of a missing user", us.Update(ctx, &User{ID: "nobody", Username: "x", Status: "active"}), ErrNotFound)

	if err := us.Delete(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	_, err = us.Get(ctx, alice.ID)
	wantErr(t, "Get after Delete", err, ErrNotFound)
	_, err = us.GetByUsername(ctx, "alice")
	wantErr(t, "GetByUsername after Delete", err, ErrNotFound)
	wantErr(t, "Delete again", us.Delete(ctx, alice.ID), ErrNotFound)
}

func testCredentials(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	u := mustUser(t, s, "alice", "")
	cs := s.Credentials()

	pw := &Credential{UserID: u.ID, Kind: "password", Hash: "$argon2id$v=19$...", CreatedAt: t0}
	totp := &Credential{UserID: u.ID, Kind: "totp", Name: "phone", Secret: []byte("JBSWY3DPEHPK3PXP"), CreatedAt: t0.Add(time.Second)}
	for _, c := range []*Credential{pw, totp} {
		if err := cs.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "Create for a missing user", cs.Create(ctx, &Credential{UserID: "nobody", Kind: "password"}), ErrNotFound)
	wantErr(t, "Create with a taken id", cs.Create(ctx, &Credential{ID: pw.ID, UserID: u.ID, Kind: "password"}), ErrConflict)

	got, err := cs.ListByUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []*Credential{pw, totp}) {
		t.Fatalf("ListByUser = %+v, want %+v", got, []*Credential{pw, totp})
	}

	if err := cs.Touch(ctx, totp.ID, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Touch of a missing credential", cs.Touch(ctx, "nope", t0), ErrNotFound)
	got, _ = cs.ListByUser(ctx, u.ID)
	if !got[1].LastUsedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after Touch, LastUsedAt = %v", got[1].LastUsedAt)
	}

	// The counter only moves forward: a TOTP step is accepted once.
	if err := cs.AdvanceCounter(ctx, totp.ID, 100, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "AdvanceCounter to the same value", cs.AdvanceCounter(ctx, totp.ID, 100, t0), ErrConflict)
	wantErr(t, "AdvanceCounter backwards", cs.AdvanceCounter(ctx, totp.ID, 99, t0), ErrConflict)
	wantErr(t, "AdvanceCounter of a missing credential", cs.AdvanceCounter(ctx, "nope", 1, t0), ErrNotFound)
	if err := cs.UpdateSecret(ctx, totp.ID, []byte("NEWSECRET")); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "UpdateSecret of a missing credential", cs.UpdateSecret(ctx, "nope", []byte("x")), ErrNotFound)
	if err := cs.Rename(ctx, totp.ID, "work phone"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Rename of a missing credential", cs.Rename(ctx, "nope", "x"), ErrNotFound)
	got, _ = cs.ListByUser(ctx, u.ID)
	if got[1].Counter != 100 || !got[1].LastUsedAt.Equal(t0.Add(2*time.Hour)) || string(got[1].Secret) != "NEWSECRET" || got[1].Name != "work phone" {
		t.Fatalf("after AdvanceCounter and UpdateSecret: %+v", got[1])
	}
	exp := &Credential{UserID: u.ID, Kind: "enroll", Hash: "h", ExpiresAt: t0.Add(24 * time.Hour), CreatedAt: t0.Add(3 * time.Second)}
	if err := cs.Create(ctx, exp); err != nil {
		t.Fatal(err)
	}
	got, _ = cs.ListByUser(ctx, u.ID)
	if len(got) != 3 || !got[2].ExpiresAt.Equal(exp.ExpiresAt) {
		t.Fatalf("expiry not kept: %+v", got)
	}
	if err := cs.Delete(ctx, exp.ID); err != nil {
		t.Fatal(err)
	}

	if err := cs.Delete(ctx, pw.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Delete again", cs.Delete(ctx, pw.ID), ErrNotFound)
	got, _ = cs.ListByUser(ctx, u.ID)
	if len(got) != 1 || got[0].ID != totp.ID {
		t.Fatalf("after Delete, ListByUser = %+v", got)
	}
	if got, _ := cs.ListByUser(ctx, "nobody"); len(got) != 0 {
		t.Fatalf("ListByUser of a missing user = %+v", got)
	}
}

func testIdentities(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	u := mustUser(t, s, "alice", "")
	is := s.Identities()

	id := &Identity{UserID: u.ID, Issuer: "https://idp.example", Subject: "1234", RefreshToken: []byte("rt-1"), CreatedAt: t0}
	if err := is.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	got, err := is.Get(ctx, id.Issuer, id.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, id) {
		t.Fatalf("Get = %+v, want %+v", got, id)
	}
	wantErr(t, "Create of a linked subject", is.Create(ctx, &Identity{UserID: u.ID, Issuer: id.Issuer, Subject: id.Subject}), ErrConflict)
	wantErr(t, "Create for a missing user", is.Create(ctx, &Identity{UserID: "nobody", Issuer: "x", Subject: "y"}), ErrNotFound)
	_, err = is.Get(ctx, id.Issuer, "other")
	wantErr(t, "Get of an unknown subject", err, ErrNotFound)

	if err := is.UpdateRefreshToken(ctx, id.ID, []byte("rt-2")); err != nil {
		t.Fatal(err)
	}
	got, _ = is.Get(ctx, id.Issuer, id.Subject)
	if string(got.RefreshToken) != "rt-2" {
		t.Fatalf("after UpdateRefreshToken, token = %q", got.RefreshToken)
	}
	if err := is.UpdateRefreshToken(ctx, id.ID, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = is.Get(ctx, id.Issuer, id.Subject)
	if got.RefreshToken != nil {
		t.Fatalf("after clearing, token = %q", got.RefreshToken)
	}
	wantErr(t, "UpdateRefreshToken of a missing identity", is.UpdateRefreshToken(ctx, "nope", []byte("x")), ErrNotFound)
}

func testSessions(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	alice := mustUser(t, s, "alice", "")
	bob := mustUser(t, s, "bob", "")
	ss := s.Sessions()

	s1 := &Session{IDHash: []byte{1, 2, 3}, UserID: alice.ID, Methods: []string{"pwd", "otp"}, AuthTime: t0, CreatedAt: t0, LastSeen: t0, ExpiresAt: t0.Add(time.Hour)}
	s2 := &Session{IDHash: []byte{4, 5, 6}, UserID: alice.ID, Methods: []string{"oidc"}, AuthTime: t0, CreatedAt: t0.Add(time.Second), ExpiresAt: t0.Add(2 * time.Hour)}
	s3 := &Session{IDHash: []byte{7}, UserID: bob.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	for _, x := range []*Session{s1, s2, s3} {
		if err := ss.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if !s3.AuthTime.Equal(s3.CreatedAt) {
		t.Fatalf("zero AuthTime not set to CreatedAt: %v", s3.AuthTime)
	}
	wantErr(t, "Create with a taken id hash", ss.Create(ctx, &Session{IDHash: []byte{1, 2, 3}, UserID: bob.ID, ExpiresAt: t0}), ErrConflict)
	wantErr(t, "Create for a missing user", ss.Create(ctx, &Session{IDHash: []byte{9}, UserID: "nobody", ExpiresAt: t0}), ErrNotFound)
	if err := ss.Create(ctx, &Session{IDHash: []byte{10}, UserID: bob.ID}); err == nil {
		t.Fatal("Create with no expiry succeeded")
	}

	got, err := ss.Get(ctx, s1.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s1) {
		t.Fatalf("Get = %+v, want %+v", got, s1)
	}
	_, err = ss.Get(ctx, []byte("missing"))
	wantErr(t, "Get of a missing session", err, ErrNotFound)

	if err := ss.Touch(ctx, s1.IDHash, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Touch of a missing session", ss.Touch(ctx, []byte("missing"), t0), ErrNotFound)
	got, _ = ss.Get(ctx, s1.IDHash)
	if !got.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after Touch, LastSeen = %v", got.LastSeen)
	}

	if err := ss.Revoke(ctx, s1.IDHash, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ss.Revoke(ctx, s1.IDHash, t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Revoke of a missing session", ss.Revoke(ctx, []byte("missing"), t0), ErrNotFound)
	got, _ = ss.Get(ctx, s1.IDHash)
	if !got.RevokedAt.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("after two revocations, RevokedAt = %v, want the first", got.RevokedAt)
	}

	n, err := ss.RevokeUser(ctx, alice.ID, t0.Add(4*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("RevokeUser = %d, %v; want 1 (one session was already revoked)", n, err)
	}
	if n, err := ss.RevokeUser(ctx, "nobody", t0); err != nil || n != 0 {
		t.Fatalf("RevokeUser of a missing user = %d, %v", n, err)
	}

	list, err := ss.ListByUser(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !bytes.Equal(list[0].IDHash, s1.IDHash) || !bytes.Equal(list[1].IDHash, s2.IDHash) {
		t.Fatalf("ListByUser = %+v", list)
	}
	for _, x := range list {
		if x.RevokedAt.IsZero() {
			t.Fatalf("session %x not revoked after RevokeUser", x.IDHash)
		}
	}

	// s3 expires at t0+1m, s1 at t0+1h, s2 at t0+2h.
	n, err = ss.DeleteExpired(ctx, t0.Add(90*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpired = %d, %v; want 2", n, err)
	}
	if _, err := ss.Get(ctx, s2.IDHash); err != nil {
		t.Fatalf("unexpired session deleted: %v", err)
	}
	_, err = ss.Get(ctx, s3.IDHash)
	wantErr(t, "Get of an expired session", err, ErrNotFound)
}

func testAPIKeys(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	ks := s.APIKeys()

	k1 := &APIKey{Name: "ci", Owner: "service", Prefix: "moat_ab12", Hash: []byte("hmac-1"), Scopes: []string{"read", "write"}, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
	k2 := &APIKey{Name: "backup", Owner: "service", Prefix: "moat_cd34", Hash: []byte("hmac-2"), CreatedAt: t0.Add(time.Second)}
	for _, k := range []*APIKey{k1, k2} {
		if err := ks.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "Create with a taken prefix", ks.Create(ctx, &APIKey{Owner: "service", Prefix: "moat_ab12", Hash: []byte("x")}), ErrConflict)

	got, err := ks.GetByPrefix(ctx, "moat_ab12")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, k1) {
		t.Fatalf("GetByPrefix = %+v, want %+v", got, k1)
	}
	_, err = ks.GetByPrefix(ctx, "moat_zzzz")
	wantErr(t, "GetByPrefix of a missing key", err, ErrNotFound)

	list, err := ks.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list, []*APIKey{k1, k2}) {
		t.Fatalf("List = %+v", list)
	}

	if err := ks.Touch(ctx, k1.ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ks.Revoke(ctx, k1.ID, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ks.Revoke(ctx, k1.ID, t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Revoke of a missing key", ks.Revoke(ctx, "nope", t0), ErrNotFound)
	wantErr(t, "Touch of a missing key", ks.Touch(ctx, "nope", t0), ErrNotFound)
	got, _ = ks.GetByPrefix(ctx, "moat_ab12")
	if !got.LastUsedAt.Equal(t0.Add(time.Minute)) || !got.RevokedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("after Touch and Revoke: %+v", got)
	}
	// An earlier revocation brings a later one forward.
	if err := ks.Revoke(ctx, k1.ID, t0.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ = ks.GetByPrefix(ctx, "moat_ab12"); !got.RevokedAt.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("an earlier revocation left RevokedAt at %v, want %v", got.RevokedAt, t0.Add(90*time.Second))
	}
}

func testSigningKeys(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	ks := s.SigningKeys()

	a := &SigningKey{Use: "assertion", Alg: "EdDSA", Private: []byte("private-a"), Public: []byte("public-a"), CreatedAt: t0, NotAfter: t0.Add(90 * 24 * time.Hour)}
	b2 := &SigningKey{Use: "audit", Alg: "ES256", Private: []byte("private-b"), Public: []byte("public-b"), CreatedAt: t0.Add(time.Second)}
	for _, k := range []*SigningKey{a, b2} {
		if err := ks.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "Create with a taken id", ks.Create(ctx, &SigningKey{ID: a.ID, Use: "audit", Alg: "EdDSA"}), ErrConflict)

	for _, tc := range []struct {
		use  string
		want []*SigningKey
	}{
		{"assertion", []*SigningKey{a}},
		{"audit", []*SigningKey{b2}},
		{"", []*SigningKey{a, b2}},
		{"other", nil},
	} {
		got, err := ks.List(ctx, tc.use)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%q) = %+v, want %+v", tc.use, got, tc.want)
		}
	}
}

func testSecrets(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	ss := s.Secrets()

	sec := &Secret{Name: "webhook", Value: []byte("s3cr3t"), UpdatedAt: t0}
	if err := ss.Put(ctx, sec); err != nil {
		t.Fatal(err)
	}
	got, err := ss.Get(ctx, "webhook")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sec) {
		t.Fatalf("Get = %+v, want %+v", got, sec)
	}
	sec2 := &Secret{Name: "webhook", Value: []byte("n3w"), UpdatedAt: t0.Add(time.Hour)}
	if err := ss.Put(ctx, sec2); err != nil {
		t.Fatal(err)
	}
	got, _ = ss.Get(ctx, "webhook")
	if !reflect.DeepEqual(got, sec2) {
		t.Fatalf("after a second Put, Get = %+v, want %+v", got, sec2)
	}
	_, err = ss.Get(ctx, "missing")
	wantErr(t, "Get of a missing secret", err, ErrNotFound)
	if err := ss.Put(ctx, &Secret{Value: []byte("x")}); err == nil {
		t.Fatal("Put with no name succeeded")
	}

	// GetOrCreate: callers racing to create a secret all get the same one.
	const racers = 8
	vals := make([][]byte, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { vals[i], errs[i] = ss.GetOrCreate(ctx, "portal.key", 32) })
	}
	wg.Wait()
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("GetOrCreate %d: %v", i, errs[i])
		}
		if len(vals[i]) != 32 || !bytes.Equal(vals[i], vals[0]) {
			t.Fatalf("GetOrCreate %d = %x, want the same 32 bytes as the first (%x)", i, vals[i], vals[0])
		}
	}
	if again, err := ss.GetOrCreate(ctx, "webhook", 32); err != nil || string(again) != "n3w" {
		t.Fatalf("GetOrCreate of an existing secret = %q, %v; want it unchanged", again, err)
	}
}

func testAudit(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	as := s.Audit()

	_, err := as.Last(ctx)
	wantErr(t, "Last of an empty log", err, ErrNotFound)

	var recs []*AuditRecord
	for i := range 5 {
		r := &AuditRecord{Time: t0.Add(time.Duration(i) * time.Second), Kind: "login", Data: []byte(`{"i":1}`), Hash: []byte{byte(i)}}
		if i > 0 {
			r.PrevHash = []byte{byte(i - 1)}
		}
		if err := as.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.Seq != int64(i+1) {
			t.Fatalf("Append %d: Seq = %d, want %d", i, r.Seq, i+1)
		}
		recs = append(recs, r)
	}
	last, err := as.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(last, recs[4]) {
		t.Fatalf("Last = %+v, want %+v", last, recs[4])
	}
	for _, tc := range []struct {
		name         string
		after        int64
		limit        int
		wantFirst, n int
	}{
		{"all", 0, 100, 1, 5},
		{"limited", 0, 2, 1, 2},
		{"after", 3, 100, 4, 2},
		{"past the end", 5, 100, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := as.List(ctx, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.n {
				t.Fatalf("List(%d, %d) returned %d records, want %d", tc.after, tc.limit, len(got), tc.n)
			}
			for i, r := range got {
				if !reflect.DeepEqual(r, recs[tc.wantFirst-1+i]) {
					t.Fatalf("record %d = %+v, want %+v", i, r, recs[tc.wantFirst-1+i])
				}
			}
		})
	}
	if _, err := as.List(ctx, 0, 0); err == nil {
		t.Fatal("List with limit 0 succeeded")
	}
}

func testBackups(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	bs := s.Backups()

	b1 := &BackupRecord{CreatedAt: t0, File: "moat-1.age", Size: 1234, SHA256: "ab"}
	b2 := &BackupRecord{CreatedAt: t0.Add(time.Hour), File: "moat-2.age", Size: 99}
	for _, x := range []*BackupRecord{b1, b2} {
		if err := bs.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "Create with a taken id", bs.Create(ctx, &BackupRecord{ID: b1.ID, File: "x"}), ErrConflict)
	b1.VerifiedAt, b1.VerifyOK = t0.Add(time.Minute), true
	b2.VerifiedAt, b2.Error = t0.Add(2*time.Hour), "checksum mismatch"
	for _, x := range []*BackupRecord{b1, b2} {
		if err := bs.Update(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "Update of a missing record", bs.Update(ctx, &BackupRecord{ID: "nope"}), ErrNotFound)
	got, err := bs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []*BackupRecord{b2, b1}) {
		t.Fatalf("List = %+v, want newest first %+v", got, []*BackupRecord{b2, b1})
	}
}

func testDataKeys(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	ds := s.DataKeys()

	k1 := &DataKey{ID: "dk1", Wrapped: []byte("wrapped-1"), KEKID: "kek-a", CreatedAt: t0, State: "active"}
	k2 := &DataKey{ID: "dk2", Wrapped: []byte("wrapped-2"), KEKID: "kek-a", CreatedAt: t0.Add(time.Second), State: "retiring"}
	for _, k := range []*DataKey{k1, k2} {
		if err := ds.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "Create with a taken id", ds.Create(ctx, &DataKey{ID: "dk1", Wrapped: []byte("x"), State: "active"}), ErrConflict)
	k2.Wrapped, k2.KEKID, k2.State = []byte("rewrapped-2"), "kek-b", "retired"
	if err := ds.Update(ctx, k2); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Update of a missing key", ds.Update(ctx, &DataKey{ID: "nope", Wrapped: []byte("x"), State: "active"}), ErrNotFound)
	got, err := ds.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []*DataKey{k1, k2}) {
		t.Fatalf("List = %+v, want %+v", got, []*DataKey{k1, k2})
	}
}

func testCascadeDelete(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := newStore(t, b)
	alice := mustUser(t, s, "alice", "alice@example.com")
	bob := mustUser(t, s, "bob", "")
	for _, u := range []*User{alice, bob} {
		if err := s.Credentials().Create(ctx, &Credential{UserID: u.ID, Kind: "totp", Secret: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Identities().Create(ctx, &Identity{UserID: u.ID, Issuer: "idp", Subject: u.Username}); err != nil {
			t.Fatal(err)
		}
		if err := s.Sessions().Create(ctx, &Session{IDHash: []byte(u.ID), UserID: u.ID, ExpiresAt: t0}); err != nil {
			t.Fatal(err)
		}
		if err := s.APIKeys().Create(ctx, &APIKey{Owner: u.ID, Prefix: "p_" + u.Username, Hash: []byte("h")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Users().Delete(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}

	if c, err := s.Credentials().ListByUser(ctx, alice.ID); err != nil || len(c) != 0 {
		t.Errorf("credentials left after deleting the user: %v, %v", c, err)
	}
	_, err := s.Identities().Get(ctx, "idp", "alice")
	wantErr(t, "identity after deleting the user", err, ErrNotFound)
	_, err = s.Sessions().Get(ctx, []byte(alice.ID))
	wantErr(t, "session after deleting the user", err, ErrNotFound)
	_, err = s.APIKeys().GetByPrefix(ctx, "p_alice")
	wantErr(t, "api key after deleting the user", err, ErrNotFound)

	// Bob keeps everything.
	if c, _ := s.Credentials().ListByUser(ctx, bob.ID); len(c) != 1 {
		t.Errorf("bob's credentials: %d, want 1", len(c))
	}
	if _, err := s.Identities().Get(ctx, "idp", "bob"); err != nil {
		t.Errorf("bob's identity: %v", err)
	}
	if _, err := s.Sessions().Get(ctx, []byte(bob.ID)); err != nil {
		t.Errorf("bob's session: %v", err)
	}
	if _, err := s.APIKeys().GetByPrefix(ctx, "p_bob"); err != nil {
		t.Errorf("bob's api key: %v", err)
	}
}

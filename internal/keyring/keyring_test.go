package keyring

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/store"
)

func TestOpenEmptyStoreCreatesOneActiveKey(t *testing.T) {
	keys := newMemKeys()
	master := newMaster(t)
	r := openRing(t, keys, master)

	stored, _ := keys.List(context.Background())
	if len(stored) != 1 {
		t.Fatalf("%d data keys stored, want 1", len(stored))
	}
	k := stored[0]
	if k.State != StateActive || k.ID != r.ActiveKeyID() || k.KEKID != MasterKeyID(master) {
		t.Errorf("stored key = %s %s kek %s; want %s active kek %s", k.ID, k.State, k.KEKID, r.ActiveKeyID(), MasterKeyID(master))
	}
	if !strings.HasPrefix(k.ID, "dk_") || len(k.ID) != 13 || !validKeyID(k.ID) {
		t.Errorf("key id %q, want dk_ and 10 characters", k.ID)
	}
	if k.CreatedAt.IsZero() {
		t.Error("no creation time stored")
	}
	if secret := r.set.Load().active.secret; bytes.Contains(k.Wrapped, secret) {
		t.Error("the stored key holds the data key in the clear")
	}

	aad := store.FieldAAD("users", "email", "u_1")
	ct := seal(t, r, "alice@example.com", aad)

	again := openRing(t, keys, master)
	if n := len(keys.states()); n != 1 {
		t.Fatalf("after a second Open, %d data keys stored, want 1", n)
	}
	if again.ActiveKeyID() != r.ActiveKeyID() {
		t.Errorf("second Open: active key %s, want %s", again.ActiveKeyID(), r.ActiveKeyID())
	}
	mustOpen(t, again, ct, aad, "alice@example.com")
}

func TestOpenWrongMasterKey(t *testing.T) {
	tests := []struct {
		name string
		// break changes the stored key or returns another master key.
		brk func(t *testing.T, keys *memKeys, id string, master []byte) []byte
	}{
		{"another master key", func(t *testing.T, keys *memKeys, id string, master []byte) []byte {
			return newMaster(t)
		}},
		{"wrapped key altered", func(t *testing.T, keys *memKeys, id string, master []byte) []byte {
			keys.edit(t, id, func(k *store.DataKey) { k.Wrapped[len(k.Wrapped)-1] ^= 1 })
			return master
		}},
		{"wrapped key truncated", func(t *testing.T, keys *memKeys, id string, master []byte) []byte {
			keys.edit(t, id, func(k *store.DataKey) { k.Wrapped = k.Wrapped[:10] })
			return master
		}},
		{"wrapped key moved to another id", func(t *testing.T, keys *memKeys, id string, master []byte) []byte {
			keys.edit(t, id, func(k *store.DataKey) { k.ID = "dk_other00000" })
			return master
		}},
		{"kek id altered", func(t *testing.T, keys *memKeys, id string, master []byte) []byte {
			keys.edit(t, id, func(k *store.DataKey) { k.KEKID = "0000000000000000" })
			return master
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := newMemKeys()
			master := newMaster(t)
			r := openRing(t, keys, master)
			use := tt.brk(t, keys, r.ActiveKeyID(), master)
			_, err := Open(context.Background(), keys, use, testLogger(t))
			if !errors.Is(err, ErrWrongMasterKey) {
				t.Fatalf("Open error = %v, want ErrWrongMasterKey", err)
			}
			if !strings.Contains(err.Error(), "keys.master_key") {
				t.Errorf("error %q does not point at keys.master_key", err)
			}
			if n := len(keys.states()); n != 1 {
				t.Errorf("%d data keys stored after a failed Open, want 1", n)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	master := newMaster(t)
	tests := []struct {
		name   string
		master []byte
		record *store.DataKey
	}{
		{"short master key", master[:16], nil},
		{"long master key", append(bytes.Clone(master), 0), nil},
		{"no master key", nil, nil},
		{"unknown state", master, &store.DataKey{ID: "dk_aaaaaaaaaa", State: "paused"}},
		{"invalid key id", master, &store.DataKey{ID: "dk aaaaaaaaaa", State: StateActive}},
		{"empty key id", master, &store.DataKey{ID: "", State: StateActive}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := newMemKeys()
			if tt.record != nil {
				keys.keys = append(keys.keys, tt.record)
			}
			r, err := Open(context.Background(), keys, tt.master, testLogger(t))
			if err == nil {
				t.Fatalf("Open succeeded with %d keys", len(r.Keys()))
			}
			if tt.record == nil && len(keys.keys) != 0 {
				t.Error("a data key was created although Open failed")
			}
		})
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	master := newMaster(t)
	r := openRing(t, keys, master)
	first := r.ActiveKeyID()
	aad := store.FieldAAD("signing_keys", "private", "sk_1")
	old := seal(t, r, "old private key", aad)
	if r.RotationInProgress() {
		t.Fatal("RotationInProgress before any rotation")
	}

	second, err := r.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || r.ActiveKeyID() != second {
		t.Fatalf("Rotate = %s, active %s; want a new active key (was %s)", second, r.ActiveKeyID(), first)
	}
	if want := map[string]string{first: StateRetiring, second: StateActive}; !equalStates(keys.states(), want) {
		t.Errorf("stored states %v, want %v", keys.states(), want)
	}
	if !r.RotationInProgress() {
		t.Error("RotationInProgress = false during a rotation")
	}
	mustOpen(t, r, old, aad, "old private key")
	fresh := seal(t, r, "new private key", aad)
	if id, _ := r.KeyID(fresh); id != second {
		t.Errorf("a new value is sealed with %s, want %s", id, second)
	}

	if err := r.FinishRotation(ctx); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{first: StateRetired, second: StateActive}; !equalStates(keys.states(), want) {
		t.Errorf("after FinishRotation, stored states %v, want %v", keys.states(), want)
	}
	if r.RotationInProgress() {
		t.Error("RotationInProgress after FinishRotation")
	}
	mustOpen(t, r, old, aad, "old private key")

	// A restarted Moat reads both, and a second rotation leaves the
	// retired key retired.
	r2 := openRing(t, keys, master)
	mustOpen(t, r2, old, aad, "old private key")
	mustOpen(t, r2, fresh, aad, "new private key")
	third, err := r2.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{first: StateRetired, second: StateRetiring, third: StateActive}; !equalStates(keys.states(), want) {
		t.Errorf("after a second rotation, stored states %v, want %v", keys.states(), want)
	}
	infos := r2.Keys()
	if len(infos) != 3 || infos[0].ID != first || infos[2].ID != third || infos[2].State != StateActive {
		t.Errorf("Keys() = %+v, want %s, %s, %s oldest first", infos, first, second, third)
	}
	for _, info := range infos {
		if info.KEKID != MasterKeyID(master) || info.CreatedAt.IsZero() {
			t.Errorf("Keys(): %+v lacks its kek id or creation time", info)
		}
	}
}

func equalStates(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for id, s := range want {
		if got[id] != s {
			return false
		}
	}
	return true
}

func TestRotateInterrupted(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	master := newMaster(t)
	r := openRing(t, keys, master)
	first := r.ActiveKeyID()
	aad := store.FieldAAD("users", "email", "u_1")
	old := seal(t, r, "alice@example.com", aad)

	keys.failUpdatesAfterNow(0)
	second, err := r.Rotate(ctx)
	if !errors.Is(err, errStoreDown) {
		t.Fatalf("Rotate error = %v, want the store's error", err)
	}
	if r.ActiveKeyID() != second {
		t.Errorf("active key %s, want the new key %s, which is stored", r.ActiveKeyID(), second)
	}
	if want := map[string]string{first: StateActive, second: StateActive}; !equalStates(keys.states(), want) {
		t.Fatalf("stored states %v, want %v", keys.states(), want)
	}

	// Open settles the two active keys the way Rotate would have.
	keys.healUpdates()
	r2 := openRing(t, keys, master)
	if r2.ActiveKeyID() != second {
		t.Errorf("after the interrupted rotation, active key %s, want %s", r2.ActiveKeyID(), second)
	}
	if want := map[string]string{first: StateRetiring, second: StateActive}; !equalStates(keys.states(), want) {
		t.Errorf("stored states %v, want %v", keys.states(), want)
	}
	mustOpen(t, r2, old, aad, "alice@example.com")
}

func TestOpenWithoutActiveKey(t *testing.T) {
	keys := newMemKeys()
	master := newMaster(t)
	r := openRing(t, keys, master)
	first := r.ActiveKeyID()
	second, err := r.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	keys.edit(t, second, func(k *store.DataKey) { k.State = StateRetired })
	keys.edit(t, first, func(k *store.DataKey) { k.CreatedAt = k.CreatedAt.Add(-time.Hour) })

	r2 := openRing(t, keys, master)
	if r2.ActiveKeyID() != second {
		t.Errorf("active key %s, want the newest key %s", r2.ActiveKeyID(), second)
	}
	if got := keys.states()[second]; got != StateActive {
		t.Errorf("newest key stored as %s, want active", got)
	}
}

func TestOpenConcurrentFirstKeys(t *testing.T) {
	// Two instances starting on an empty database may each store a first
	// key. Every later Open settles on the same one.
	keys := newMemKeys()
	master := newMaster(t)
	a := openRing(t, keys, master)
	b := newMemKeys()
	other := openRing(t, b, master)
	keys.keys = append(keys.keys, b.keys[0])

	r1 := openRing(t, keys, master)
	r2 := openRing(t, keys, master)
	if r1.ActiveKeyID() != r2.ActiveKeyID() {
		t.Fatalf("two Opens chose %s and %s as active", r1.ActiveKeyID(), r2.ActiveKeyID())
	}
	states := keys.states()
	if states[a.ActiveKeyID()] == states[other.ActiveKeyID()] {
		t.Errorf("stored states %v, want one active and one retiring", states)
	}
}

func TestReloadSeesRotationElsewhere(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	master := newMaster(t)
	server := openRing(t, keys, master)
	cli := openRing(t, keys, master)

	newID, err := cli.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aad := store.FieldAAD("secrets", "value", "webhook")
	ct := seal(t, cli, "whsec_1", aad)
	if _, err := server.Open(ct, aad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("before Reload, Open error = %v, want ErrUnknownKey", err)
	}
	if err := server.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, server, ct, aad, "whsec_1")
	if server.ActiveKeyID() != newID || !server.RotationInProgress() {
		t.Errorf("after Reload, active %s (want %s), rotating %v", server.ActiveKeyID(), newID, server.RotationInProgress())
	}
}

func TestRewrapKEK(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	oldMaster, nextMaster := newMaster(t), newMaster(t)
	r := openRing(t, keys, oldMaster)
	aad := store.FieldAAD("credentials", "secret", "cr_1")
	v1 := seal(t, r, "first", aad)
	if _, err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	v2 := seal(t, r, "second", aad)

	if err := r.RewrapKEK(ctx, nextMaster); err != nil {
		t.Fatal(err)
	}
	for id, kekID := range keys.kekIDs() {
		if kekID != MasterKeyID(nextMaster) {
			t.Errorf("data key %s stored under kek %s, want %s", id, kekID, MasterKeyID(nextMaster))
		}
	}
	if r.KEKID() != MasterKeyID(nextMaster) {
		t.Errorf("KEKID() = %s, want the new master key's", r.KEKID())
	}
	mustOpen(t, r, v1, aad, "first")

	reopened := openRing(t, keys, nextMaster)
	mustOpen(t, reopened, v1, aad, "first")
	mustOpen(t, reopened, v2, aad, "second")
	if _, err := Open(ctx, keys, oldMaster, testLogger(t)); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Open with the old master key: error %v, want ErrWrongMasterKey", err)
	}

	// New data keys are wrapped under the new master key.
	id, err := r.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys.kekIDs()[id]; got != MasterKeyID(nextMaster) {
		t.Errorf("a data key made after RewrapKEK is wrapped under %s, want the new master key", got)
	}
}

func TestRewrapKEKInterrupted(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	oldMaster, nextMaster := newMaster(t), newMaster(t)
	r := openRing(t, keys, oldMaster)
	aad := store.FieldAAD("identities", "refresh_token", "id_1")
	var sealed [][]byte
	for i := range 3 {
		if i > 0 {
			if _, err := r.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sealed = append(sealed, seal(t, r, "token", aad))
	}

	keys.failUpdatesAfterNow(1)
	if err := r.RewrapKEK(ctx, nextMaster); !errors.Is(err, errStoreDown) {
		t.Fatalf("RewrapKEK error = %v, want the store's error", err)
	}
	count := map[string]int{}
	for _, kekID := range keys.kekIDs() {
		count[kekID]++
	}
	if count[MasterKeyID(oldMaster)] != 2 || count[MasterKeyID(nextMaster)] != 1 {
		t.Fatalf("after an interrupted RewrapKEK, keys per kek %v, want 2 old and 1 new", count)
	}
	keys.healUpdates()

	for name, m := range map[string][]byte{"old": oldMaster, "new": nextMaster} {
		if _, err := Open(ctx, keys, m, testLogger(t)); !errors.Is(err, ErrWrongMasterKey) {
			t.Errorf("Open with only the %s master key: error %v, want ErrWrongMasterKey", name, err)
		}
	}
	// Either order of the two master keys opens the ring.
	if _, err := OpenWithPrevious(ctx, keys, oldMaster, nextMaster, testLogger(t)); err != nil {
		t.Errorf("OpenWithPrevious(old, new): %v", err)
	}
	resumed, err := OpenWithPrevious(ctx, keys, nextMaster, oldMaster, testLogger(t))
	if err != nil {
		t.Fatalf("OpenWithPrevious(new, old): %v", err)
	}
	for _, ct := range sealed {
		mustOpen(t, resumed, ct, aad, "token")
	}
	if err := resumed.RewrapKEK(ctx, nextMaster); err != nil {
		t.Fatalf("resumed RewrapKEK: %v", err)
	}
	final := openRing(t, keys, nextMaster)
	for _, ct := range sealed {
		mustOpen(t, final, ct, aad, "token")
	}
}

func TestReloadAfterRewrapElsewhere(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	oldMaster, nextMaster := newMaster(t), newMaster(t)
	server := openRing(t, keys, oldMaster)
	aad := store.FieldAAD("users", "email", "u_1")
	ct := seal(t, server, "alice@example.com", aad)

	cli := openRing(t, keys, oldMaster)
	if err := cli.RewrapKEK(ctx, nextMaster); err != nil {
		t.Fatal(err)
	}
	// A running server keeps the keys it has unwrapped.
	if err := server.Reload(ctx); err != nil {
		t.Fatalf("Reload after RewrapKEK: %v", err)
	}
	mustOpen(t, server, ct, aad, "alice@example.com")

	// A key it has never seen, wrapped under a master key it lacks, fails
	// the reload, and the ring keeps working with what it had.
	if _, err := cli.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := server.Reload(ctx); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("Reload error = %v, want ErrWrongMasterKey", err)
	}
	mustOpen(t, server, ct, aad, "alice@example.com")
	mustOpen(t, server, seal(t, server, "still sealing", aad), aad, "still sealing")
}

package keyring

import (
	"context"
	"fmt"
)

// Rotate makes a new data key, stores it and makes it the active key; the
// key that was active becomes retiring. Values sealed so far still open;
// new values are sealed with the new key. The caller then re-encrypts the
// stored values and calls FinishRotation. It returns the new key's id.
//
// Rotate reads the store first, so it also sees keys made by other
// instances. If it fails after the new key was stored, the ring already
// uses the new key, and the next Open, Rotate or FinishRotation marks the
// previous one retiring: running Rotate again is not needed.
func (r *Ring) Rotate(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.load(ctx, true); err != nil {
		return "", fmt.Errorf("rotating data key: %w", err)
	}
	nk, err := r.create(ctx, StateActive)
	if err != nil {
		return "", fmt.Errorf("rotating data key: %w", err)
	}
	cur := r.set.Load()
	keys := make([]*dataKey, 0, len(cur.sorted)+1)
	var failed error
	for _, k := range cur.sorted {
		if k.state == StateActive {
			k = k.with(StateRetiring)
			if failed == nil {
				if err := r.keys.Update(ctx, k.record()); err != nil {
					failed = fmt.Errorf("rotating data key: marking %s retiring: %w", k.id, err)
				}
			}
		}
		keys = append(keys, k)
	}
	// The new key is stored as active: swap it in even when marking the
	// old one failed, as the next load would settle on the same.
	r.set.Store(newKeySet(append(keys, nk), r.kek.id))
	if failed != nil {
		return nk.id, failed
	}
	r.logger.Info("rotated data key", "key_id", nk.id, "previous", cur.active.id)
	return nk.id, nil
}

// FinishRotation marks every retiring data key retired. Call it once no
// stored value is sealed with a retiring key any more. Retired keys are
// kept and still open values, such as those in older backups. It is
// idempotent: after a failure, call it again.
func (r *Ring) FinishRotation(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.load(ctx, true); err != nil {
		return fmt.Errorf("finishing rotation: %w", err)
	}
	cur := r.set.Load()
	keys := make([]*dataKey, 0, len(cur.sorted))
	var retired []string
	var failed error
	for _, k := range cur.sorted {
		if k.state == StateRetiring && failed == nil {
			nk := k.with(StateRetired)
			if err := r.keys.Update(ctx, nk.record()); err != nil {
				failed = fmt.Errorf("finishing rotation: marking %s retired: %w", k.id, err)
			} else {
				k = nk
				retired = append(retired, k.id)
			}
		}
		keys = append(keys, k)
	}
	r.set.Store(newKeySet(keys, r.kek.id))
	if failed != nil {
		return failed
	}
	if len(retired) > 0 {
		r.logger.Info("rotation finished", "retired", retired)
	}
	return nil
}

// RewrapKEK wraps every data key again under the key-encryption key
// derived from newMaster, and from then on wraps new data keys under it.
// The data keys themselves do not change, so no stored value needs
// re-encrypting. Each key is written as soon as it is re-wrapped; if
// RewrapKEK stops half way, OpenWithPrevious with both master keys opens
// the ring and RewrapKEK resumes the work. Once it succeeds, the
// configuration must point at newMaster.
func (r *Ring) RewrapKEK(ctx context.Context, newMaster []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	nk, err := newKEK(newMaster)
	if err != nil {
		return fmt.Errorf("re-wrapping data keys: new %w", err)
	}
	if _, err := r.load(ctx, true); err != nil {
		return fmt.Errorf("re-wrapping data keys: %w", err)
	}
	// Known from now on, so that a Reload after a partial failure can read
	// the keys already re-wrapped.
	r.keks[nk.id] = nk
	cur := r.set.Load()
	keys := make([]*dataKey, 0, len(cur.sorted))
	done := 0
	var failed error
	for _, k := range cur.sorted {
		if k.kekID != nk.id && failed == nil {
			c := *k
			c.wrapped = nk.wrap(k.id, k.secret)
			c.kekID = nk.id
			if err := r.keys.Update(ctx, c.record()); err != nil {
				failed = fmt.Errorf("re-wrapping data keys: %s: %w (%d re-wrapped; run again with both master keys to resume)", k.id, err, done)
			} else {
				k = &c
				done++
			}
		}
		keys = append(keys, k)
	}
	if failed == nil {
		r.kek = nk
	}
	r.set.Store(newKeySet(keys, r.kek.id))
	if failed != nil {
		return failed
	}
	r.logger.Info("re-wrapped data keys under a new master key", "kek_id", nk.id, "rewrapped", done)
	return nil
}

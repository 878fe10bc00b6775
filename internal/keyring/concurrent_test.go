package keyring

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moatgw/moat/internal/store"
)

// TestConcurrentSealOpenDuringRotate is meant for -race: readers seal and
// open while the ring is rotated under them.
func TestConcurrentSealOpenDuringRotate(t *testing.T) {
	ctx := context.Background()
	r := openRing(t, newMemKeys(), newMaster(t))
	earlyAAD := store.FieldAAD("secrets", "value", "webhook")
	early := seal(t, r, "sealed before the rotations", earlyAAD)
	var ops, running atomic.Int64
	// waitOps lets the readers make progress between two changes.
	waitOps := func() {
		for start := ops.Load(); ops.Load() < start+100 && running.Load() > 0; {
			runtime.Gosched()
		}
	}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for g := range 4 {
		running.Add(1)
		wg.Go(func() {
			defer running.Add(-1)
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				aad := store.FieldAAD("users", "email", fmt.Sprintf("u_%d_%d", g, i))
				want := fmt.Sprintf("user%d-%d@example.com", g, i)
				ct, err := r.Seal([]byte(want), aad)
				if err != nil {
					errs <- err
					return
				}
				_ = r.ActiveKeyID()
				_ = r.Keys()
				if got, err := r.Open(early, earlyAAD); err != nil || string(got) != "sealed before the rotations" {
					errs <- fmt.Errorf("opening a value sealed before the rotations: %q, %v", got, err)
					return
				}
				got, err := r.Open(ct, aad)
				if err != nil {
					errs <- fmt.Errorf("opening a value sealed during a rotation: %w", err)
					return
				}
				if string(got) != want {
					errs <- fmt.Errorf("Open = %q, want %q", got, want)
					return
				}
				ops.Add(1)
			}
		})
	}
	for range 5 {
		waitOps()
		if _, err := r.Rotate(ctx); err != nil {
			t.Error(err)
		}
		if err := r.Reload(ctx); err != nil {
			t.Error(err)
		}
		waitOps()
		if err := r.FinishRotation(ctx); err != nil {
			t.Error(err)
		}
	}
	waitOps()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(r.Keys()); n != 6 {
		t.Errorf("%d keys after 5 rotations, want 6", n)
	}
}

package passkey

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestCeremonyMapIsBounded(t *testing.T) {
	const max = 3
	e := newEnv(t, func(o *Options) { o.MaxCeremonies = max })
	ctx := context.Background()
	a := newAuthenticator(t)
	e.register(t, e.alice, a, "")
	mem := e.svc.ceremonies.(*memoryCeremonies)

	fill := func(t *testing.T) (opts [][]byte, ids []string) {
		t.Helper()
		for mem.Len() < max {
			o, id := e.beginLogin(t, nil)
			opts, ids = append(opts, o), append(ids, id)
		}
		return opts, ids
	}
	full := func(t *testing.T) {
		t.Helper()
		if _, _, err := e.svc.BeginLogin(ctx, nil); !errors.Is(err, ErrTooManyCeremonies) || errors.Is(err, ErrRefused) {
			t.Errorf("BeginLogin with the map full: %v, want ErrTooManyCeremonies", err)
		}
		if _, _, err := e.svc.BeginRegistration(ctx, e.bob); !errors.Is(err, ErrTooManyCeremonies) {
			t.Errorf("BeginRegistration with the map full: %v, want ErrTooManyCeremonies", err)
		}
		if n := mem.Len(); n != max {
			t.Errorf("map holds %d ceremonies, want at most %d", n, max)
		}
	}

	opts, ids := fill(t)
	full(t)

	t.Run("a finished ceremony frees its place", func(t *testing.T) {
		if _, _, _, err := e.svc.FinishLogin(ctx, ids[0], a.Get(opts[0])); err != nil {
			t.Fatal(err)
		}
		e.beginLogin(t, nil)
		full(t)
	})
	t.Run("a failed ceremony frees its place", func(t *testing.T) {
		_, _, _, err := e.svc.FinishLogin(ctx, ids[1], []byte("junk"))
		wantRefused(t, err, ErrBadResponse)
		e.beginLogin(t, nil)
		full(t)
	})
	t.Run("expired ceremonies are swept", func(t *testing.T) {
		e.clock.Advance(5 * time.Minute)
		e.beginLogin(t, nil)
		if n := mem.Len(); n != 1 {
			t.Errorf("map holds %d ceremonies after expiry and one new, want 1", n)
		}
		fill(t)
		full(t)
	})
	t.Run("live ceremonies are not swept", func(t *testing.T) {
		e.clock.Advance(5*time.Minute - time.Second)
		full(t)
	})
}

func TestMemoryCeremonies(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := newMemoryCeremonies(2, c.Now)
	exp := c.Now().Add(time.Minute)

	if err := m.Put(ctx, "a", []byte("A"), exp); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, "a", []byte("other"), exp); err == nil {
		t.Error("Put reused an id in use")
	}
	if err := m.Put(ctx, "b", []byte("B"), exp); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, "c", []byte("C"), exp); !errors.Is(err, ErrTooManyCeremonies) {
		t.Errorf("Put into a full map: %v", err)
	}
	got, err := m.Take(ctx, "a")
	if err != nil || string(got) != "A" {
		t.Errorf("Take = %q, %v; want A", got, err)
	}
	if _, err := m.Take(ctx, "a"); !errors.Is(err, ErrNoCeremony) {
		t.Errorf("second Take: %v, want ErrNoCeremony", err)
	}

	// Many takers race for one ceremony: exactly one gets it.
	if err := m.Put(ctx, "race", []byte("R"), exp); err != nil {
		t.Fatal(err)
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		won int
	)
	for range 16 {
		wg.Go(func() {
			if _, err := m.Take(ctx, "race"); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d takers got the ceremony, want 1", won)
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("disk full"), "error"},
		{refuse(ErrCloneWarning, nil), "clone_warning"},
		{refuse(ErrVerification, errors.New("bad signature")), "verification_failed"},
		{ErrTooManyCeremonies, "too_many_ceremonies"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Reason(tt.err); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

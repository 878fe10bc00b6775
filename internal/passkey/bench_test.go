package passkey

import (
	"context"
	"testing"

	"github.com/moatgw/moat/internal/store"
)

// BenchmarkFinishLogin measures verifying a passwordless login and storing
// the new sign count: with the credential store in memory (the CPU cost of
// the ceremony: JSON, CBOR, an ECDSA P-256 verification) and in SQLite with
// the key ring (a sealed read and write per login). Beginning the ceremony
// and signing the answer are outside the timer.
func BenchmarkFinishLogin(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []envOption
	}{
		{"memory", []envOption{func(o *Options) { o.Credentials = newMemCredentials(); o.Users = usersOf(o.Users) }}},
		{"sqlite", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, bc.opts...)
			ctx := context.Background()
			a := newAuthenticator(b)
			e.register(b, e.alice, a, "")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				opts, id := e.beginLogin(b, nil)
				resp := a.Get(opts)
				b.StartTimer()
				if _, _, _, err := e.svc.FinishLogin(ctx, id, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// usersOf copies the users of a store into memory, so that the memory
// benchmark reads no database.
func usersOf(u UserStore) UserStore {
	return &cachedUsers{next: u, m: make(map[string]*store.User)}
}

type cachedUsers struct {
	next UserStore
	m    map[string]*store.User
}

func (c *cachedUsers) Get(ctx context.Context, id string) (*store.User, error) {
	if u, ok := c.m[id]; ok {
		return u, nil
	}
	u, err := c.next.Get(ctx, id)
	if err == nil {
		c.m[id] = u
	}
	return u, err
}

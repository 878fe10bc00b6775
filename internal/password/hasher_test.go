package password

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// oneHash is a budget that admits exactly one hash with DefaultParams.
var oneHash = DefaultParams().memoryBytes()

func newHasher(t testing.TB, p Params, budget int64, maxWait time.Duration) *Hasher {
	t.Helper()
	h, err := NewHasher(p, budget, maxWait)
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	return h
}

var phcPattern = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashVerify(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, DefaultParams(), 4*oneHash, time.Second)
	const pw = "correct horse battery staple"

	s1, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !phcPattern.MatchString(s1) {
		t.Errorf("hash %q is not in PHC format", s1)
	}
	s2, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 {
		t.Error("two hashes of the same password are equal: the salt is not random")
	}

	tests := []struct {
		name   string
		phc    string
		pw     string
		wantOK bool
	}{
		{"right password", s1, pw, true},
		{"second hash", s2, pw, true},
		{"wrong password", s1, "correct horse battery stapler", false},
		{"case differs", s1, "Correct horse battery staple", false},
		{"empty password", s1, "", false},
		{"over the byte limit", s1, pw + strings.Repeat(" ", MaxPasswordBytes), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := h.Verify(ctx, tt.phc, tt.pw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if ok != tt.wantOK || rehash {
				t.Errorf("Verify = %v, %v; want %v, false", ok, rehash, tt.wantOK)
			}
		})
	}
}

func TestHashTooLong(t *testing.T) {
	h := newHasher(t, DefaultParams(), oneHash, 0)
	_, err := h.Hash(context.Background(), strings.Repeat("a", MaxPasswordBytes+1))
	if !errors.Is(err, ErrPasswordTooLong) {
		t.Fatalf("Hash error = %v, want ErrPasswordTooLong", err)
	}
}

func TestVerifyNeedsRehash(t *testing.T) {
	ctx := context.Background()
	old := newHasher(t, DefaultParams(), 4*oneHash, time.Second)
	stronger := DefaultParams()
	stronger.Time = 3
	cur := newHasher(t, stronger, 4*oneHash, time.Second)

	const pw = "tuesday-lighthouse-otter"
	stored, err := old.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		h          *Hasher
		pw         string
		ok, rehash bool
	}{
		{"same params", old, pw, true, false},
		{"params raised", cur, pw, true, true},
		{"params raised, wrong password", cur, "wrong-lighthouse-otter", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := tt.h.Verify(ctx, stored, tt.pw)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || rehash != tt.rehash {
				t.Errorf("Verify = %v, %v; want %v, %v", ok, rehash, tt.ok, tt.rehash)
			}
		})
	}

	// The rehashed password verifies without asking for another rehash.
	fresh, err := cur.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, err := cur.Verify(ctx, fresh, pw); !ok || rehash || err != nil {
		t.Errorf("Verify after rehash = %v, %v, %v; want true, false, nil", ok, rehash, err)
	}
}

func TestNormalisation(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, DefaultParams(), 4*oneHash, time.Second)
	tests := []struct {
		name, stored, typed string
	}{
		{"ligature", "\ufb01nancial-report-plan", "financial-report-plan"},
		{"full-width digits", "pin \uff11\uff12\uff13\uff14 lighthouse", "pin 1234 lighthouse"},
		{"combining accent", "cafe\u0301 au lait tuesday", "caf\u00e9 au lait tuesday"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored, err := h.Hash(ctx, tt.stored)
			if err != nil {
				t.Fatal(err)
			}
			if ok, _, err := h.Verify(ctx, stored, tt.typed); !ok || err != nil {
				t.Errorf("Verify(normalised form) = %v, %v; want true", ok, err)
			}
		})
	}
}

func TestVerifyInvalidHash(t *testing.T) {
	h := newHasher(t, DefaultParams(), oneHash, 0)
	var calls atomic.Int32
	h.derive = countingDerive(&calls, nil)
	ok, rehash, err := h.Verify(context.Background(), "$argon2id$v=19$m=19456,t=2,p=1$bad", "password")
	if !errors.Is(err, ErrInvalidHash) || ok || rehash {
		t.Fatalf("Verify = %v, %v, %v; want false, false, ErrInvalidHash", ok, rehash, err)
	}
	if calls.Load() != 0 {
		t.Error("Verify computed a hash for an invalid stored hash")
	}
}

func TestVerifyOverBudget(t *testing.T) {
	h := newHasher(t, DefaultParams(), oneHash, time.Second)
	var calls atomic.Int32
	h.derive = countingDerive(&calls, nil)
	big := DefaultParams()
	big.Memory *= 2
	stored := encodePHC(big, salt16, key32)
	ok, _, err := h.Verify(context.Background(), stored, "password")
	if err == nil || ok || errors.Is(err, ErrBusy) {
		t.Fatalf("Verify = %v, %v; want a budget error", ok, err)
	}
	if calls.Load() != 0 {
		t.Error("Verify computed a hash over the budget")
	}
}

func TestNewHasherRejects(t *testing.T) {
	weak := DefaultParams()
	weak.Memory = 4096
	tests := []struct {
		name    string
		p       Params
		budget  int64
		maxWait time.Duration
	}{
		{"weak params", weak, 1 << 30, 0},
		{"zero params", Params{}, 1 << 30, 0},
		{"budget under one hash", DefaultParams(), oneHash - 1, 0},
		{"negative wait", DefaultParams(), oneHash, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHasher(tt.p, tt.budget, tt.maxWait); err == nil {
				t.Fatal("NewHasher succeeded, want an error")
			}
		})
	}
}

// countingDerive counts calls and returns a zero key without the Argon2
// work; when gate is not nil, each call waits for gate to be closed.
func countingDerive(calls *atomic.Int32, gate chan struct{}) deriveFunc {
	return func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		calls.Add(1)
		if gate != nil {
			<-gate
		}
		return make([]byte, keyLen)
	}
}

func TestErrBusy(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, DefaultParams(), oneHash, 20*time.Millisecond)
	stored, err := h.Hash(ctx, "lighthouse-otter-tuesday")
	if err != nil {
		t.Fatal(err)
	}

	// Hold the whole budget, as a running hash would.
	if !h.sem.TryAcquire(oneHash) {
		t.Fatal("budget not free")
	}
	if _, err := h.Hash(ctx, "lighthouse-otter-tuesday"); !errors.Is(err, ErrBusy) {
		t.Errorf("Hash error = %v, want ErrBusy", err)
	}
	if _, _, err := h.Verify(ctx, stored, "lighthouse-otter-tuesday"); !errors.Is(err, ErrBusy) {
		t.Errorf("Verify error = %v, want ErrBusy", err)
	}
	if err := h.VerifyUnknownUser(ctx, "lighthouse-otter-tuesday"); !errors.Is(err, ErrBusy) {
		t.Errorf("VerifyUnknownUser error = %v, want ErrBusy", err)
	}

	// A caller whose context ends first gets the context's error.
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if _, err := h.Hash(short, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Hash with a short deadline error = %v, want DeadlineExceeded", err)
	}

	h.sem.Release(oneHash)
	if ok, _, err := h.Verify(ctx, stored, "lighthouse-otter-tuesday"); !ok || err != nil {
		t.Errorf("Verify after release = %v, %v; want true, nil", ok, err)
	}
}

func TestWaitForBudget(t *testing.T) {
	// A hash that has to wait starts when the budget frees up.
	h := newHasher(t, DefaultParams(), oneHash, time.Minute)
	if !h.sem.TryAcquire(oneHash) {
		t.Fatal("budget not free")
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(context.Background(), "lighthouse-otter-tuesday")
		done <- err
	}()
	h.sem.Release(oneHash)
	if err := <-done; err != nil {
		t.Fatalf("Hash after waiting: %v", err)
	}
}

func TestBudgetAdmitsExactly(t *testing.T) {
	// With room for two hashes and no waiting, two run and a third is refused.
	h := newHasher(t, DefaultParams(), 2*oneHash+oneHash/2, 0)
	var calls atomic.Int32
	gate := make(chan struct{})
	h.derive = countingDerive(&calls, gate)

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			_, err := h.Hash(context.Background(), "lighthouse-otter-tuesday")
			errs <- err
		})
	}
	for calls.Load() < 2 {
		select {
		case err := <-errs:
			t.Fatalf("one of the first two Hash calls returned early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if _, err := h.Hash(context.Background(), "lighthouse-otter-tuesday"); !errors.Is(err, ErrBusy) {
		t.Errorf("third Hash error = %v, want ErrBusy", err)
	}
	if err := h.VerifyUnknownUser(context.Background(), "x"); !errors.Is(err, ErrBusy) {
		t.Errorf("VerifyUnknownUser error = %v, want ErrBusy", err)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("admitted Hash: %v", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d computations ran, want 2", n)
	}
}

func TestCanceledContext(t *testing.T) {
	h := newHasher(t, DefaultParams(), oneHash, time.Second)
	var calls atomic.Int32
	h.derive = countingDerive(&calls, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(ctx, "lighthouse-otter-tuesday"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash error = %v, want Canceled", err)
	}
	if err := h.VerifyUnknownUser(ctx, "lighthouse-otter-tuesday"); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyUnknownUser error = %v, want Canceled", err)
	}
	if calls.Load() != 0 {
		t.Error("a hash was computed for a canceled request")
	}
}

// call records the arguments of one key derivation.
type call struct {
	password             string
	saltLen              int
	time, memory, keyLen uint32
	threads              uint8
}

func recordingDerive(mu *sync.Mutex, calls *[]call) deriveFunc {
	return func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		mu.Lock()
		*calls = append(*calls, call{string(password), len(salt), time, memory, keyLen, threads})
		mu.Unlock()
		return make([]byte, keyLen)
	}
}

func TestVerifyUnknownUserDoesTheSameWork(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, DefaultParams(), oneHash, time.Second)
	stored, err := h.Hash(ctx, "the real password here")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []call
	h.derive = recordingDerive(&mu, &calls)

	if ok, _, err := h.Verify(ctx, stored, "a wrong guess ﬁ"); ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	if err := h.VerifyUnknownUser(ctx, "a wrong guess ﬁ"); err != nil {
		t.Fatalf("VerifyUnknownUser: %v", err)
	}
	if len(calls) != 2 {
		t.Fatalf("%d key derivations, want one for each call", len(calls))
	}
	known, unknown := calls[0], calls[1]
	if known != unknown {
		t.Errorf("unknown user derivation %+v differs from known user %+v", unknown, known)
	}
	p := DefaultParams()
	want := call{"a wrong guess fi", int(p.SaltLen), p.Time, p.Memory, p.KeyLen, p.Threads}
	if unknown != want {
		t.Errorf("unknown user derivation %+v, want the full cost %+v", unknown, want)
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, DefaultParams(), 2*oneHash, time.Minute)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			pw := strings.Repeat(string(rune('a'+i)), 3) + "-lighthouse-otter"
			s, err := h.Hash(ctx, pw)
			if err != nil {
				t.Error(err)
				return
			}
			if ok, _, err := h.Verify(ctx, s, pw); !ok || err != nil {
				t.Errorf("Verify = %v, %v", ok, err)
			}
		})
	}
	wg.Wait()
}

func BenchmarkHash(b *testing.B) {
	b.ReportAllocs()
	h := newHasher(b, DefaultParams(), oneHash, time.Minute)
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	b.ReportAllocs()
	h := newHasher(b, DefaultParams(), oneHash, time.Minute)
	ctx := context.Background()
	stored, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := h.Verify(ctx, stored, "correct horse battery stapler"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUnknownUser is to be read beside BenchmarkVerify: the two
// should take the same time per operation.
func BenchmarkVerifyUnknownUser(b *testing.B) {
	b.ReportAllocs()
	h := newHasher(b, DefaultParams(), oneHash, time.Minute)
	ctx := context.Background()
	for b.Loop() {
		if err := h.VerifyUnknownUser(ctx, "correct horse battery stapler"); err != nil {
			b.Fatal(err)
		}
	}
}

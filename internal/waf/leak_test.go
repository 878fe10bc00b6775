package waf

import (
	"net/http"
	"runtime"
	"testing"
)

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestReloadDoesNotLeak builds and closes a WAF many times, as reloads
// do, and checks that the heap does not keep them: it first measures what
// one live WAF holds, so that the bound fails for a leak of even a small
// part of each instance.
func TestReloadDoesNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the rule set 17 times")
	}
	use := func(w *WAF) {
		for _, r := range []*http.Request{req("GET", sqliQuery, "", ""), req("POST", "/f", "application/json", `{"a":[1,2,{"b":"c"}]}`)} {
			if _, err := w.Check(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	build := func() *WAF {
		// Not newWAF: its cleanup would keep every instance alive.
		w, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		use(w)
		return w
	}
	for range 2 { // warm the process-wide caches
		_ = build().Close()
	}
	base := heapInUse()
	goroutines := runtime.NumGoroutine()

	const held = 3
	live := make([]*WAF, held)
	for i := range live {
		live[i] = build()
	}
	perWAF := (heapInUse() - base) / held
	for _, w := range live {
		_ = w.Close()
	}
	live = nil
	if perWAF < 1<<20 {
		t.Fatalf("a live WAF holds %d bytes: too little for the measurement to mean anything", perWAF)
	}

	const cycles = 12
	for range cycles {
		if err := build().Close(); err != nil {
			t.Fatal(err)
		}
	}
	growth := heapInUse() - base
	t.Logf("one WAF holds %d KiB; after %d reloads the heap grew %d KiB", perWAF>>10, cycles, growth>>10)
	// Leaking a whole WAF per reload would grow the heap by about
	// cycles*perWAF; leaking a sixth of one per reload by 2*perWAF.
	if growth > 2*perWAF {
		t.Errorf("heap grew %d KiB over %d reloads, a live WAF holds %d KiB", growth>>10, cycles, perWAF>>10)
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		t.Errorf("goroutines grew from %d to %d", goroutines, n)
	}
}

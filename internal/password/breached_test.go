package password

import (
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestBreachedList(t *testing.T) {
	w, err := breachedList()
	if err != nil {
		t.Fatal(err)
	}
	if n := w.count(); n < 100_000 {
		t.Errorf("list has %d entries, want at least 100,000", n)
	}
	prev := ""
	for i := range w.count() {
		e := w.at(i)
		if utf8.RuneCountInString(e) < lowestMinLength {
			t.Fatalf("entry %d has fewer than %d characters", i, lowestMinLength)
		}
		if c := strings.ToLower(norm.NFKC.String(e)); c != e {
			t.Fatalf("entry %d is not in canonical form", i)
		}
		if strings.TrimSpace(e) != e {
			t.Fatalf("entry %d has surrounding white space", i)
		}
		if i > 0 && e <= prev {
			t.Fatalf("entry %d is out of order", i)
		}
		prev = e
	}
	// Among the most common passwords of 8 characters or more.
	for _, e := range []string{"password", "12345678", "qwertyuiop", "1qaz2wsx", "iloveyou", "password1234"} {
		if !w.contains(e) {
			t.Errorf("list lacks %q", e)
		}
	}
	if w.contains("correct horse battery staple 7 lighthouse") || w.contains("") {
		t.Error("list contains what it should not")
	}
	// The packed form should stay small: entries plus 4 bytes each.
	if size := w.size(); size > 2<<20 {
		t.Errorf("list holds %d bytes, want at most 2 MiB", size)
	}
}

func TestWordList(t *testing.T) {
	tests := []struct {
		name string
		blob string
		ok   bool
	}{
		{"empty", "", true},
		{"sorted", "alpha\nbeta\ngamma\n", true},
		{"unsorted", "beta\nalpha\n", false},
		{"duplicate", "alpha\nalpha\n", false},
		{"no final newline", "alpha\nbeta", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := newWordList(tt.blob)
			if (err == nil) != tt.ok {
				t.Fatalf("newWordList = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			for _, e := range strings.Fields(tt.blob) {
				if !w.contains(e) {
					t.Errorf("contains(%q) = false", e)
				}
			}
			for _, e := range []string{"", "a", "alph", "alphaa", "delta", "zeta"} {
				if w.contains(e) {
					t.Errorf("contains(%q) = true", e)
				}
			}
		})
	}
}

// TestBreachedListMemory measures the heap the loaded list keeps, and
// reports it with -v.
func TestBreachedListMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, err := loadWordList(dataFS, breachedPath)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d entries, %d bytes packed, %d bytes of heap kept", w.count(), w.size(), kept)
	if kept > 4<<20 {
		t.Errorf("loading the list keeps %d bytes of heap, want at most 4 MiB", kept)
	}
	runtime.KeepAlive(w)
}

func BenchmarkBreachedLookup(b *testing.B) {
	w, err := breachedList()
	if err != nil {
		b.Fatal(err)
	}
	probes := []string{"password1234", "correct horse battery staple", "qwertyuiop123", "tq8#vz!lm2pr"}
	i := 0
	for b.Loop() {
		w.contains(probes[i%len(probes)])
		i++
	}
}

func BenchmarkBreachedLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := loadWordList(dataFS, breachedPath); err != nil {
			b.Fatal(err)
		}
	}
}

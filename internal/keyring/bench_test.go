package keyring

import (
	"bytes"
	"testing"

	"github.com/moatgw/moat/internal/store"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"32B", 32},
	{"1KiB", 1024},
}

func BenchmarkSeal(b *testing.B) {
	r := openRing(b, newMemKeys(), newMaster(b))
	aad := store.FieldAAD("credentials", "secret", "cr_0123456789")
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			p := bytes.Repeat([]byte{'x'}, bs.size)
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Seal(p, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	r := openRing(b, newMemKeys(), newMaster(b))
	aad := store.FieldAAD("credentials", "secret", "cr_0123456789")
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			ct, err := r.Seal(bytes.Repeat([]byte{'x'}, bs.size), aad)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Open(ct, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

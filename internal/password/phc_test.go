package password

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var (
	salt16 = bytes.Repeat([]byte{0x5a}, 16)
	key32  = bytes.Repeat([]byte{0xa5}, 32)
)

func TestEncodePHC(t *testing.T) {
	got := encodePHC(DefaultParams(), salt16, key32)
	want := "$argon2id$v=19$m=19456,t=2,p=1$" +
		"WlpaWlpaWlpaWlpaWlpaWg$" +
		"paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU"
	if got != want {
		t.Fatalf("encodePHC = %q, want %q", got, want)
	}
}

func TestParsePHCRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		salt []byte
		key  []byte
	}{
		{"default", DefaultParams(), salt16, key32},
		{"legacy minimum", Params{Memory: 8, Time: 1, Threads: 1}, make([]byte, 8), make([]byte, 16)},
		{"upper limits", Params{Memory: maxMemory, Time: maxTime, Threads: maxThreads}, make([]byte, 64), make([]byte, 64)},
		{"odd lengths", Params{Memory: 65536, Time: 3, Threads: 4}, make([]byte, 17), make([]byte, 33)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := encodePHC(tt.p, tt.salt, tt.key)
			h, err := parsePHC(s)
			if err != nil {
				t.Fatalf("parsePHC(%q): %v", s, err)
			}
			want := tt.p
			want.SaltLen, want.KeyLen = uint32(len(tt.salt)), uint32(len(tt.key))
			if h.params != want {
				t.Errorf("params = %+v, want %+v", h.params, want)
			}
			if !bytes.Equal(h.salt, tt.salt) || !bytes.Equal(h.key, tt.key) {
				t.Errorf("salt or key differ after round trip")
			}
			if again := encodePHC(h.params, h.salt, h.key); again != s {
				t.Errorf("re-encoded %q, want %q", again, s)
			}
		})
	}
}

func TestParsePHCRejects(t *testing.T) {
	salt := "WlpaWlpaWlpaWlpaWlpaWg"
	key := "paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU"
	tail := "$" + salt + "$" + key
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"argon2i", "$argon2i$v=19$m=19456,t=2,p=1" + tail},
		{"argon2d", "$argon2d$v=19$m=19456,t=2,p=1" + tail},
		{"bcrypt", "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"},
		{"version 16", "$argon2id$v=16$m=19456,t=2,p=1" + tail},
		{"no version", "$argon2id$m=19456,t=2,p=1" + tail},
		{"upper case", "$ARGON2ID$v=19$m=19456,t=2,p=1" + tail},
		{"params out of order", "$argon2id$v=19$t=2,m=19456,p=1" + tail},
		{"extra param", "$argon2id$v=19$m=19456,t=2,p=1,keyid=abc" + tail},
		{"trailing comma", "$argon2id$v=19$m=19456,t=2,p=1," + tail},
		{"missing param", "$argon2id$v=19$m=19456,t=2" + tail},
		{"empty memory", "$argon2id$v=19$m=,t=2,p=1" + tail},
		{"space", "$argon2id$v=19$m=19456, t=2,p=1" + tail},
		{"leading zero", "$argon2id$v=19$m=019456,t=2,p=1" + tail},
		{"plus sign", "$argon2id$v=19$m=+19456,t=2,p=1" + tail},
		{"negative", "$argon2id$v=19$m=-19456,t=2,p=1" + tail},
		{"hex", "$argon2id$v=19$m=0x4c00,t=2,p=1" + tail},
		{"memory over 1 GiB", "$argon2id$v=19$m=1048577,t=2,p=1" + tail},
		{"memory overflows uint32", "$argon2id$v=19$m=4294967297,t=2,p=1" + tail},
		{"memory 11 digits", "$argon2id$v=19$m=10000000000,t=2,p=1" + tail},
		{"memory under 8 per lane", "$argon2id$v=19$m=127,t=2,p=16" + tail},
		{"time zero", "$argon2id$v=19$m=19456,t=0,p=1" + tail},
		{"time over 10", "$argon2id$v=19$m=19456,t=11,p=1" + tail},
		{"threads zero", "$argon2id$v=19$m=19456,t=2,p=0" + tail},
		{"threads over 16", "$argon2id$v=19$m=19456,t=2,p=17" + tail},
		{"threads over uint8", "$argon2id$v=19$m=19456,t=2,p=256" + tail},
		{"no salt", "$argon2id$v=19$m=19456,t=2,p=1"},
		{"no key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt},
		{"empty key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$"},
		{"extra field", "$argon2id$v=19$m=19456,t=2,p=1" + tail + "$x"},
		{"salt under 8 bytes", "$argon2id$v=19$m=19456,t=2,p=1$WlpaWlpaWg$" + key},
		{"salt over 64 bytes", "$argon2id$v=19$m=19456,t=2,p=1$" + strings.Repeat("A", 88) + "$" + key},
		{"key under 16 bytes", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$paWlpaWlpaWl"},
		{"key over 64 bytes", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + strings.Repeat("A", 88)},
		{"padded salt", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key},
		{"url alphabet", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + strings.ReplaceAll(key, "a", "-")},
		{"non-canonical trailing bits", "$argon2id$v=19$m=19456,t=2,p=1$WlpaWlpaWlpaWlpaWlpaWh$" + key},
		{"newline in salt", "$argon2id$v=19$m=19456,t=2,p=1$WlpaWlpaWlpa\nWlpaWlpaWg$" + key},
		{"too long", "$argon2id$v=19$m=19456,t=2,p=1" + tail + strings.Repeat("A", maxPHCLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePHC(tt.in)
			if !errors.Is(err, ErrInvalidHash) {
				t.Fatalf("parsePHC(%q) error = %v, want ErrInvalidHash", tt.in, err)
			}
			if strings.Contains(err.Error(), salt) || strings.Contains(err.Error(), key) {
				t.Errorf("error %q repeats the hash", err)
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Params)
		ok     bool
	}{
		{"default", func(*Params) {}, true},
		{"stronger", func(p *Params) { p.Memory, p.Time, p.Threads, p.SaltLen, p.KeyLen = 65536, 3, 4, 32, 64 }, true},
		{"less memory", func(p *Params) { p.Memory = 19455 }, false},
		{"memory over 1 GiB", func(p *Params) { p.Memory = maxMemory + 1 }, false},
		{"one pass", func(p *Params) { p.Time = 1 }, false},
		{"too many passes", func(p *Params) { p.Time = maxTime + 1 }, false},
		{"no threads", func(p *Params) { p.Threads = 0 }, false},
		{"too many threads", func(p *Params) { p.Threads = maxThreads + 1 }, false},
		{"short salt", func(p *Params) { p.SaltLen = 15 }, false},
		{"long salt", func(p *Params) { p.SaltLen = maxSaltLen + 1 }, false},
		{"short key", func(p *Params) { p.KeyLen = 31 }, false},
		{"long key", func(p *Params) { p.KeyLen = maxKeyLen + 1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			tt.mutate(&p)
			err := p.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok %v", p, err, tt.ok)
			}
		})
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add(encodePHC(DefaultParams(), salt16, key32))
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=1048576,t=10,p=16$WlpaWlpaWlpaWlpaWlpaWg$paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU")
	f.Add("$argon2id$v=19$m=4294967295,t=4294967295,p=255$$")
	f.Add("$argon2i$v=19$m=19456,t=2,p=1$WlpaWlpaWlpaWlpaWlpaWg$paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidHash) {
				t.Fatalf("error %v is not ErrInvalidHash", err)
			}
			return
		}
		p := h.params
		if p.Memory > maxMemory || p.Memory < 8*uint32(p.Threads) || p.Time < 1 || p.Time > maxTime ||
			p.Threads < 1 || p.Threads > maxThreads ||
			len(h.salt) < minSaltLen || len(h.salt) > maxSaltLen || len(h.key) < minKeyLen || len(h.key) > maxKeyLen {
			t.Fatalf("accepted out-of-range hash %q: %+v", s, p)
		}
		if again := encodePHC(p, h.salt, h.key); again != s {
			t.Fatalf("accepted non-canonical %q (canonical %q)", s, again)
		}
	})
}

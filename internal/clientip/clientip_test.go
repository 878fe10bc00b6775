package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted, err := Parse([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		want    string
		trusted bool
	}{
		{"untrusted peer ignores header", "203.0.113.9:5000", []string{"1.2.3.4"}, "203.0.113.9", false},
		{"untrusted peer without header", "203.0.113.9:5000", nil, "203.0.113.9", false},
		{"trusted peer, client from header", "10.1.2.3:5000", []string{"198.51.100.7"}, "198.51.100.7", true},
		{"trusted peer, no header", "10.1.2.3:5000", nil, "10.1.2.3", true},
		{"spoofed left entries are skipped", "10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7", true},
		{"trusted hops are walked", "10.1.2.3:5000", []string{"198.51.100.7, 10.9.9.9, 192.0.2.1"}, "198.51.100.7", true},
		{"several header lines", "10.1.2.3:5000", []string{"6.6.6.6", "198.51.100.7, 10.0.0.1"}, "198.51.100.7", true},
		{"garbage stops the walk", "10.1.2.3:5000", []string{"6.6.6.6, not-an-ip, 10.0.0.2"}, "10.0.0.2", true},
		{"all trusted ends at the leftmost", "10.1.2.3:5000", []string{"10.0.0.5, 10.0.0.6"}, "10.0.0.5", true},
		{"ipv4-mapped peer", "[::ffff:10.1.2.3]:5000", []string{"198.51.100.7"}, "198.51.100.7", true},
		{"ipv6 trusted", "[2001:db8::1]:443", []string{"2001:db9::5"}, "2001:db9::5", true},
		{"ipv6 entry with spaces", "[2001:db8::1]:443", []string{" 2001:db9::5 "}, "2001:db9::5", true},
		{"unparsable remote", "nonsense", []string{"1.2.3.4"}, "invalid IP", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, tr := trusted.ClientIP(r)
			if got.String() != tt.want || tr != tt.trusted {
				t.Errorf("ClientIP = %v, %v; want %s, %v", got, tr, tt.want, tt.trusted)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "example.com", "", "1.2.3.4/"} {
		if _, err := Parse([]string{bad}); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	var none *Trusted
	if none.Contains(netip.MustParseAddr("127.0.0.1")) || !none.Empty() {
		t.Error("a nil Trusted must trust no one")
	}
}

// FuzzClientIP checks that whatever X-Forwarded-For holds, an untrusted peer
// is always its own client address, and a trusted peer's answer is either
// the peer or an address that appears in the header.
func FuzzClientIP(f *testing.F) {
	trusted, err := Parse([]string{"10.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("10.0.0.1:1", "1.2.3.4, 10.0.0.2")
	f.Add("203.0.113.1:1", "1.2.3.4")
	f.Add("10.0.0.1:1", ",,, ::1 ,")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}}}
		got, tr := trusted.ClientIP(r)
		peer := PeerAddr(r)
		if !trusted.Contains(peer) {
			if tr || got != peer {
				t.Fatalf("untrusted peer %v: got %v, %v", peer, got, tr)
			}
			return
		}
		if got != peer {
			found := false
			for _, part := range splitComma(xff) {
				if a, err := netip.ParseAddr(part); err == nil && a.Unmap() == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("client %v appears neither as peer nor in %q", got, xff)
			}
		}
	})
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			part := s[start:i]
			for len(part) > 0 && (part[0] == ' ' || part[0] == '\t') {
				part = part[1:]
			}
			for len(part) > 0 && (part[len(part)-1] == ' ' || part[len(part)-1] == '\t') {
				part = part[:len(part)-1]
			}
			out = append(out, part)
			start = i + 1
		}
	}
	return out
}

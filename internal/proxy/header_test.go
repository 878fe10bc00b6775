package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/moatgw/moat/internal/request"
)

func TestForwardedHeaders(t *testing.T) {
	up := echoUpstream(t)
	p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL)})
	spoofed := map[string]string{
		"X-Forwarded-For":   "6.6.6.6",
		"X-Forwarded-Proto": "gopher",
		"X-Forwarded-Host":  "evil.example",
		"Forwarded":         "for=6.6.6.6;host=evil.example",
		"X-Real-IP":         "6.6.6.6",
		"True-Client-IP":    "6.6.6.6",
		"X-Original-URL":    "/admin",
		"X_Forwarded_For":   "6.6.6.6",
		"X-Request-Id":      "client-chosen",
	}
	tests := []struct {
		name       string
		info       infoFunc
		xff        string
		proto      string
		host       string
		forwarded  []string
		realIP     string
		passSpoofs bool // True-Client-IP and X-Original-URL reach the upstream
	}{
		{
			name:      "untrusted client",
			info:      untrusted,
			xff:       "127.0.0.1",
			proto:     "https",
			host:      "app.example",
			forwarded: []string{"for=127.0.0.1;proto=https;host=app.example"},
			realIP:    "",
		},
		{
			name:       "trusted proxy",
			info:       trustedFrom("6.6.6.6"),
			xff:        "6.6.6.6, 127.0.0.1",
			proto:      "gopher",
			host:       "evil.example",
			forwarded:  []string{"for=6.6.6.6;host=evil.example", "for=127.0.0.1;proto=https;host=app.example"},
			realIP:     "6.6.6.6", // the trusted proxy's, passed on
			passSpoofs: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := front(t, p, tt.info)
			req, _ := http.NewRequest(http.MethodGet, f.URL+"/", nil)
			req.Host = "app.example"
			for k, v := range spoofed {
				req.Header[k] = []string{v}
			}
			s := decodeSeen(t, do(t, req))
			h := s.Header
			check := func(name, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			check("X-Forwarded-For", strings.Join(h.Values("X-Forwarded-For"), ", "), tt.xff)
			check("X-Forwarded-Proto", h.Get("X-Forwarded-Proto"), tt.proto)
			check("X-Forwarded-Host", h.Get("X-Forwarded-Host"), tt.host)
			check("Forwarded", strings.Join(h.Values("Forwarded"), " | "), strings.Join(tt.forwarded, " | "))
			check("X-Real-Ip", h.Get("X-Real-Ip"), tt.realIP)
			check("X-Request-Id", h.Get("X-Request-Id")[:4], "req-")
			check("X_forwarded_for", h.Get("X_forwarded_for"), "")
			if got := h.Get("True-Client-Ip") != "" && h.Get("X-Original-Url") != ""; got != tt.passSpoofs {
				t.Errorf("True-Client-IP and X-Original-URL passed: %v, want %v", got, tt.passSpoofs)
			}
			// The upstream is asked by its own name.
			check("Host", s.Host, strings.TrimPrefix(up.URL, "http://"))
		})
	}
}

func TestForwardedElement(t *testing.T) {
	tests := []struct {
		name   string
		node   string
		scheme string
		host   string
		want   string
	}{
		{"ipv4", "192.0.2.1", "https", "example.com", "for=192.0.2.1;proto=https;host=example.com"},
		{"ipv6 quoted", "2001:db8::1", "http", "example.com", `for="[2001:db8::1]";proto=http;host=example.com`},
		{"host with port quoted", "192.0.2.1", "https", "example.com:8443", `for=192.0.2.1;proto=https;host="example.com:8443"`},
		{"ipv6 host", "192.0.2.1", "https", "[::1]:8443", `for=192.0.2.1;proto=https;host="[::1]:8443"`},
		{"quote escaped", "192.0.2.1", "https", `a"b\c d`, `for=192.0.2.1;proto=https;host="a\"b\\c d"`},
		{"control character left out", "192.0.2.1", "https", "a\x01b", "for=192.0.2.1;proto=https"},
		{"no address", "", "", "", "for=unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var node netip.Addr
			if tt.node != "" {
				node = netip.MustParseAddr(tt.node)
			}
			if got := forwardedElement(node, tt.scheme, tt.host); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// foldName spells a header name the way frameworks that treat '_' as '-'
// see it, independently of canonicalName.
func foldName(k string) string { return strings.ReplaceAll(strings.ToLower(k), "_", "-") }

func TestReservedHeadersStripped(t *testing.T) {
	up := echoUpstream(t)
	p, _ := newProxy(t, Options{
		Upstreams:       urls(t, up.URL),
		ReservedHeaders: []string{"x-internal-token"},
		Decorate: func(r *http.Request, h http.Header) {
			h.Set("X-Moat-Principal", "alice")
		},
	})
	f := front(t, p, trustedFrom("203.0.113.9")) // trust does not matter here
	req, _ := http.NewRequest(http.MethodGet, f.URL+"/", nil)
	for _, k := range []string{"X-Moat-User", "x-moat-roles", "X_Moat_User", "X-MOAT-Scopes",
		"X-Internal-Token", "X_Internal_Token", "X-Moat-Principal"} {
		req.Header[k] = []string{"forged"}
	}
	req.Header.Set("X-Ordinary", "kept")
	s := decodeSeen(t, do(t, req))
	for k, vv := range s.Header {
		n := foldName(k)
		if strings.HasPrefix(n, "x-moat-") && (n != "x-moat-principal" || vv[0] != "alice" || len(vv) != 1) {
			t.Errorf("%s: %q reached the upstream", k, vv)
		}
		if n == "x-internal-token" {
			t.Errorf("reserved %s: %q reached the upstream", k, vv)
		}
	}
	if s.Header.Get("X-Moat-Principal") != "alice" {
		t.Errorf("X-Moat-Principal %q: want the decorator's value", s.Header.Get("X-Moat-Principal"))
	}
	if s.Header.Get("X-Ordinary") != "kept" {
		t.Error("an ordinary header was lost")
	}
}

func TestHopByHopStripped(t *testing.T) {
	up := echoUpstream(t)
	p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL)})
	f := front(t, p, nil)
	req, _ := http.NewRequest(http.MethodGet, f.URL+"/", nil)
	req.Header.Set("Connection", "keep-alive, X-Named-Hop, x_other_hop")
	req.Header.Set("X-Named-Hop", "1")
	req.Header.Set("X-Other-Hop", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Proxy", "http://evil.example") // httpoxy
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("TE", "trailers, deflate")
	req.Header.Set("Trailer", "X-Late")
	req.Header.Set("X-Ordinary", "kept")
	s := decodeSeen(t, do(t, req))
	for _, k := range []string{"X-Named-Hop", "X-Other-Hop", "Keep-Alive", "Proxy-Authorization",
		"Proxy-Connection", "Proxy", "Upgrade", "Trailer"} {
		if v := s.Header.Get(k); v != "" {
			t.Errorf("%s: %q reached the upstream", k, v)
		}
	}
	if c := s.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "hop") || strings.Contains(c, "Upgrade") {
		t.Errorf("Connection %q reached the upstream", c)
	}
	if te := s.Header.Get("Te"); te != "trailers" {
		t.Errorf("TE %q, want only trailers", te)
	}
	if s.Header.Get("X-Ordinary") != "kept" {
		t.Error("an ordinary header was lost")
	}
}

func TestCanonicalName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"X-Moat-User", "X-Moat-User"},
		{"x-moat-user", "X-Moat-User"},
		{"X_Moat_User", "X-Moat-User"},
		{"X_moat_user", "X-Moat-User"},
		{"X-MOAT-USER", "X-Moat-User"},
		{"x", "X"},
		{"", ""},
		{"ünï", "ünï"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := canonicalName(tt.in); got != tt.want {
				t.Errorf("canonicalName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { canonicalName("X-Forwarded-For") }); n != 0 {
		t.Errorf("canonicalName allocates %v times for a canonical name", n)
	}
}

// FuzzOutboundHeader sends arbitrary header names and values through the
// request sanitiser: it must not panic, no reserved header may survive in
// any spelling, and an untrusted client's forwarding headers must be Moat's.
func FuzzOutboundHeader(f *testing.F) {
	f.Add("X-Moat-User", "admin", "app.example", false)
	f.Add("x_moat_roles", "admin", "app.example:8443", true)
	f.Add("Connection", "X-Forwarded-For, X-Request-Id", "h", false)
	f.Add("X-Forwarded-For", "1.2.3.4, 5.6.7.8", "[::1]:443", true)
	f.Add("Forwarded", `for="[::1]";host="x\"y"`, "a\"b", false)
	f.Add("X-SECRET", "v", "", false)
	p, err := New(Options{Upstreams: urls(f, "http://127.0.0.1:1"), ReservedHeaders: []string{"X-Secret"}})
	must(f, err)
	f.Fuzz(func(t *testing.T, name, value, host string, trusted bool) {
		in := http.Header{
			name:           {value},
			"Connection":   {value},
			"X-Moat-User":  {value},
			"X_Moat_Roles": {value},
			"Forwarded":    {value},
		}
		info := &request.Info{
			ID: "id", ClientIP: netip.MustParseAddr("2001:db8::7"), Peer: netip.MustParseAddr("192.0.2.1"),
			Trusted: trusted, Scheme: "https",
		}
		out := p.outboundHeader(in, info, host, "", new([numSlots]string))
		for k := range out {
			n := foldName(k)
			if strings.HasPrefix(n, "x-moat-") || n == "x-secret" {
				t.Fatalf("%q survived", k)
			}
		}
		if !trusted {
			if got := out["X-Forwarded-For"]; len(got) != 1 || got[0] != "2001:db8::7" {
				t.Fatalf("X-Forwarded-For %q, want the client address", got)
			}
			if got := out["Forwarded"]; len(got) != 1 || !strings.HasPrefix(got[0], `for="[2001:db8::7]";proto=https`) {
				t.Fatalf("Forwarded %q, want Moat's element only", got)
			}
		}
		for _, v := range out["Forwarded"][len(out["Forwarded"])-1:] {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("Forwarded %q holds a control character", v)
			}
		}
		if len(out["X-Request-Id"]) != 1 || out["X-Request-Id"][0] != "id" {
			t.Fatalf("X-Request-Id %q, want Moat's", out["X-Request-Id"])
		}
	})
}

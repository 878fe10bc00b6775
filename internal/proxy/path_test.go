package proxy

import (
	"net/http"
	"testing"
)

func TestUpstreamPath(t *testing.T) {
	tests := []struct {
		name     string
		upstream string
		strip    string
		request  string // request URI
		want     string // request URI the upstream sees
	}{
		{"no strip", "http://u", "", "/api/users?x=1", "/api/users?x=1"},
		{"strip", "http://u", "/api", "/api/users", "/users"},
		{"strip to root", "http://u", "/api", "/api", "/"},
		{"strip keeps trailing slash", "http://u", "/api", "/api/", "/"},
		{"strip segment boundary only", "http://u", "/api", "/apix/users", "/apix/users"},
		{"strip nested", "http://u", "/a/b", "/a/b/c/d", "/c/d"},
		{"query untouched", "http://u", "/api", "/api/s?q=a%20b&q=%2F", "/s?q=a%20b&q=%2F"},
		{"escaped slash kept after strip", "http://u", "/api", "/api/a%2Fb", "/a%2Fb"},
		{"escaped prefix", "http://u", "/api", "/%61pi/a%2Fb", "/a%2Fb"},
		{"escaped slash at boundary", "http://u", "/api", "/api%2Fb", "/b"},
		{"base path", "http://u/v1", "", "/users", "/v1/users"},
		{"base path with slash", "http://u/v1/", "/api", "/api/users", "/v1/users"},
		{"base path and raw", "http://u/v1", "/api", "/api/a%2Fb", "/v1/a%2Fb"},
		{"escaped base", "http://u/a%2Fb", "", "/c", "/a%2Fb/c"},
		{"space", "http://u", "/api", "/api/a%20b", "/a%20b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, err := newUpstream(mustURL(t, tt.upstream), nil)
			must(t, err)
			req, err := http.NewRequest(http.MethodGet, "http://moat"+tt.request, nil)
			must(t, err)
			p := &Proxy{strip: tt.strip}
			out := p.outbound(new(outRequest), req, up, http.Header{})
			if got := out.URL.RequestURI(); got != tt.want {
				t.Errorf("upstream sees %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStripPrefixEndToEnd checks the path the upstream really receives.
func TestStripPrefixEndToEnd(t *testing.T) {
	up := echoUpstream(t)
	p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL+"/base"), StripPrefix: "/api/"})
	f := front(t, p, nil)
	s := decodeSeen(t, get(t, f.URL+"/api/files/a%2Fb.txt?download=1&x=%26"))
	if want := "/base/files/a%2Fb.txt?download=1&x=%26"; s.URI != want {
		t.Errorf("upstream saw %q, want %q", s.URI, want)
	}
}

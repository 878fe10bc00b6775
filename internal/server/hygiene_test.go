package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzHygiene feeds arbitrary paths, hosts and queries to the checks that
// run before routing: whatever they accept must be canonical.
func FuzzHygiene(f *testing.F) {
	f.Add("/a/b", "example.com:8443", "x=1")
	f.Add("/admin;x", "a.test:,evil", "a b")
	f.Add("/x/%2e%2e/admin", "[::1]:80", "")
	f.Add("//admin", "", "q=%00")
	f.Fuzz(func(t *testing.T, rawPath, host, query string) {
		u := &url.URL{Path: rawPath, RawQuery: query}
		if p, err := url.PathUnescape(rawPath); err == nil {
			u.Path, u.RawPath = p, rawPath
		}
		r := &http.Request{URL: u, Host: host}
		rule, _ := hygiene(r)
		if rule != "" {
			return
		}
		p := r.URL.Path
		for _, bad := range []string{"//", "/../", "/./", ";", "\\", "\x00"} {
			if strings.Contains(p, bad) {
				t.Fatalf("accepted path %q containing %q", p, bad)
			}
		}
		if strings.HasSuffix(p, "/..") || strings.HasSuffix(p, "/.") || !strings.HasPrefix(p, "/") {
			t.Fatalf("accepted path %q", p)
		}
		if strings.ContainsAny(host, ",; /\\@") {
			t.Fatalf("accepted host %q", host)
		}
		if strings.ContainsAny(query, " \r\n\t\x00") {
			t.Fatalf("accepted query %q", query)
		}
	})
}

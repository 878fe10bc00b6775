package route

import "testing"

func TestMatch(t *testing.T) {
	tab, err := New([]Spec[string]{
		{Path: "/", Value: "root"},
		{Path: "/api", Value: "api"},
		{Path: "/api/admin/", Value: "api-admin"},
		{Hosts: []string{"app.example.com"}, Path: "/", Value: "app"},
		{Hosts: []string{"app.example.com"}, Path: "/static", Value: "app-static"},
		{Hosts: []string{"*.example.com"}, Path: "/", Value: "wild"},
		{Hosts: []string{"*.example.com"}, Path: "/x", Value: "wild-x"},
		{Hosts: []string{"Only.Example.ORG"}, Path: "/only", Value: "only"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, path, want string
	}{
		{"root any host", "other.test", "/", "root"},
		{"prefix exact", "other.test", "/api", "api"},
		{"prefix below", "other.test", "/api/items", "api"},
		{"prefix is not a substring match", "other.test", "/apix", "root"},
		{"longest prefix wins", "other.test", "/api/admin/users", "api-admin"},
		{"trailing slash prefix matches bare", "other.test", "/api/admin", "api-admin"},
		{"exact host", "app.example.com", "/anything", "app"},
		{"exact host with port", "app.example.com:8443", "/static/a.css", "app-static"},
		{"exact host case-insensitive", "APP.Example.com", "/", "app"},
		{"exact host trailing dot", "app.example.com.", "/", "app"},
		{"exact host beats wildcard", "app.example.com", "/x", "app"},
		{"wildcard one label", "b.example.com", "/x/y", "wild-x"},
		{"wildcard not two labels", "a.b.example.com", "/x", "root"},
		{"wildcard not apex", "example.com", "/x", "root"},
		{"host falls back to any-host routes", "only.example.org", "/api", "api"},
		{"configured host lower-cased", "only.example.org", "/only/1", "only"},
		{"ipv6 literal", "[::1]:8443", "/api", "api"},
		{"empty host", "", "/api/1", "api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tab.Match(tt.host, tt.path)
			if !ok || got != tt.want {
				t.Errorf("Match(%q, %q) = %q, %v; want %q", tt.host, tt.path, got, ok, tt.want)
			}
		})
	}
}

func TestNoMatch(t *testing.T) {
	tab, err := New([]Spec[int]{
		{Hosts: []string{"api.example.com"}, Path: "/v1", Value: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ host, path string }{
		{"api.example.com", "/"},
		{"api.example.com", "/v10"},
		{"evil.example.com", "/v1"},
		{"api.example.com.evil.test", "/v1"},
	} {
		if v, ok := tab.Match(c.host, c.path); ok {
			t.Errorf("Match(%q, %q) = %d, want no match", c.host, c.path, v)
		}
	}
	if tab.HostKnown("evil.example.com") {
		t.Error("HostKnown(evil.example.com) = true")
	}
	if !tab.HostKnown("API.example.com:443") {
		t.Error("HostKnown(API.example.com:443) = false")
	}
}

func TestDuplicate(t *testing.T) {
	_, err := New([]Spec[int]{
		{Hosts: []string{"a.test"}, Path: "/x/", Value: 1},
		{Hosts: []string{"b.test", "A.test"}, Path: "/x", Value: 2},
	})
	if err == nil {
		t.Fatal("want an error for two routes on the same host and path")
	}
}

func FuzzMatch(f *testing.F) {
	tab, err := New([]Spec[string]{
		{Path: "/api", Value: "api"},
		{Hosts: []string{"a.example.com"}, Path: "/", Value: "a"},
		{Hosts: []string{"*.example.com"}, Path: "/w", Value: "w"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("a.example.com:443", "/api/x")
	f.Add("[::1", "/")
	f.Add("B.EXAMPLE.COM.", "/w/")
	f.Fuzz(func(t *testing.T, host, path string) {
		v, ok := tab.Match(host, path)
		if !ok {
			return
		}
		// Whatever matched must really cover the path.
		switch v {
		case "api":
			if path != "/api" && (len(path) < 5 || path[:5] != "/api/") {
				t.Fatalf("api route matched path %q", path)
			}
		case "w":
			if path != "/w" && (len(path) < 3 || path[:3] != "/w/") {
				t.Fatalf("w route matched path %q", path)
			}
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	specs := []Spec[int]{{Path: "/", Value: 0}}
	for i := range 50 {
		specs = append(specs, Spec[int]{Hosts: []string{"h" + string(rune('a'+i%26)) + ".example.com"}, Path: "/p" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: i})
	}
	tab, err := New(specs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tab.Match("hc.example.com:8443", "/pca/items/42")
	}
}

func TestMatchLoose(t *testing.T) {
	deny, err := New([]Spec[string]{
		{Path: "/admin", Value: "admin"},
		{Hosts: []string{"api.example.com"}, Path: "/internal/", Value: "internal"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path, want string
	}{
		{"x.test", "/admin", "admin"},
		{"x.test", "/ADMIN/users", "admin"},
		{"x.test", "/Admin", "admin"},
		{"x.test", "/admin.json", "admin"},
		{"x.test", "/admin;jsessionid=1", "admin"},
		{"x.test", "/admin ", "admin"},
		{"x.test", "/admin\t", "admin"},
		{"api.example.com", "/admin", "admin"}, // host-less deny covers every host
		{"api.example.com", "/Internal/x", "internal"},
		{"x.test", "/administrators", ""},
		{"x.test", "/adm", ""},
		{"x.test", "/internal/x", ""}, // that deny route names another host
	}
	for _, tt := range tests {
		got, ok := deny.MatchLoose(tt.host, tt.path)
		if (tt.want == "") == ok || got != tt.want {
			t.Errorf("MatchLoose(%q, %q) = %q, %v; want %q", tt.host, tt.path, got, ok, tt.want)
		}
	}
}

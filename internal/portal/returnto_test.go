package portal

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafeReturn(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// Accepted.
		{"root", "/", "/"},
		{"path", "/app/orders", "/app/orders"},
		{"trailing slash", "/docs/", "/docs/"},
		{"query kept", "/search?q=moat&page=2", "/search?q=moat&page=2"},
		{"query with slashes", "/go?next=//evil.example", "/go?next=//evil.example"},
		{"encoded space", "/a%20b", "/a%20b"},
		{"encoded unicode", "/caf%C3%A9", "/caf%C3%A9"},
		{"encoded slash inside", "/files/a%2Fb", "/files/a%2Fb"},
		{"encoded slash alone", "/%2F", "/"},
		{"encoded trailing slash", "/a%2F%2F", "/"},
		{"fragment dropped", "/page#section", "/page"},
		{"portal page", "/.moat/account", "/.moat/account"},
		{"dot in name", "/a/.well-known/x", "/a/.well-known/x"},
		{"longest", "/" + strings.Repeat("a", 2047), "/" + strings.Repeat("a", 2047)},

		// Refused: other hosts.
		{"empty", "", "/"},
		{"protocol-relative", "//evil.example", "/"},
		{"protocol-relative with path", "//evil.example/login", "/"},
		{"triple slash", "///evil.example", "/"},
		{"backslash", "/\\evil.example", "/"},
		{"double backslash", "\\\\evil.example", "/"},
		{"backslash later", "/a\\b", "/"},
		{"absolute https", "https://evil.example/", "/"},
		{"absolute http", "http://evil.example", "/"},
		{"scheme without slashes", "https:evil.example", "/"},
		{"javascript", "javascript:alert(1)", "/"},
		{"javascript after slash", "/javascript:alert(1)", "/javascript:alert(1)"},
		{"data", "data:text/html,<script>alert(1)</script>", "/"},
		{"relative", "app", "/"},
		{"dot relative", "./app", "/"},
		{"user info", "//user@evil.example", "/"},
		{"tab before", "\t//evil.example", "/"},
		{"space before", " /app", "/"},
		{"tab inside", "/\t/evil.example", "/"},
		{"newline inside", "/\n/evil.example", "/"},
		{"carriage return inside", "/\r/evil.example", "/"},
		{"nul", "/app\x00", "/"},
		{"del", "/app\x7f", "/"},
		{"non-ascii", "/café", "/"},
		{"fullwidth solidus", "/／evil.example", "/"},
		{"encoded double slash", "/%2F%2Fevil.example", "/"},
		{"encoded double slash lower", "/%2f%2fevil.example", "/"},
		{"half encoded double slash", "/%2Fevil.example", "/"},
		{"encoded backslash", "/%5Cevil.example", "/"},
		{"encoded backslash later", "/a/%5c/b", "/"},
		{"double encoded slash", "/%252F%252Fevil.example", "/%252F%252Fevil.example"},
		{"encoded tab", "/%09/evil.example", "/"},
		{"encoded crlf", "/a%0d%0aSet-Cookie:%20x=1", "/"},
		{"encoded crlf in query", "/a?x=%0D%0ALocation:%20//evil.example", "/"},
		{"encoded nul", "/a%00", "/"},
		{"malformed escape", "/a%zz", "/"},
		{"truncated escape", "/a%2", "/"},
		{"malformed escape in query", "/a?x=%g0", "/"},
		{"dot segment", "/a/./b", "/"},
		{"dot dot segment", "/a/../b", "/"},
		{"leading dot dot", "/../evil", "/"},
		{"encoded dot dot", "/%2e%2e/%2e%2e//evil.example", "/"},
		{"empty segment", "/a//b", "/"},
		{"trailing dot", "/a/.", "/"},
		{"too long", "/" + strings.Repeat("a", 2048), "/"},

		// Refused: logging out.
		{"logout", "/.moat/logout", "/"},
		{"logout with query", "/.moat/logout?x=1", "/"},
		{"logout everywhere", "/.moat/logout/everywhere", "/"},
		{"logout in capitals", "/.moat/LOGOUT", "/"},
		{"logout encoded", "/.moat/logou%74", "/"},
		{"logout trailing slash", "/.moat/logout/", "/"},
		{"logout lookalike", "/.moat/logouts", "/.moat/logouts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SafeReturn(tt.in); got != tt.want {
				t.Errorf("SafeReturn(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzSafeReturn checks that whatever SafeReturn returns is a path on this
// site that browsers cannot read as another host.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{
		"/", "/app?x=1", "//evil.example", "/\\evil", "/%2F%2Fevil", "https:evil", "/a/../b",
		"/.moat/logout", "/\t/x", "/a%0d%0a", "/a#b", "/%2e%2e//x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := SafeReturn(raw)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") {
			t.Fatalf("SafeReturn(%q) = %q", raw, got)
		}
		if strings.ContainsAny(got, "\\\t\r\n\x00#") || len(got) > maxReturnBytes {
			t.Fatalf("SafeReturn(%q) = %q has a forbidden byte or is too long", raw, got)
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("SafeReturn(%q) = %q parses as %+v, %v", raw, got, u, err)
		}
		if strings.HasPrefix(u.Path, "//") {
			t.Fatalf("SafeReturn(%q) = %q decodes to %q", raw, got, u.Path)
		}
		// Resolved the way a browser resolves a Location header, it
		// stays on the site.
		base, _ := url.Parse("https://moat.example/.moat/login")
		if r := base.ResolveReference(u); r.Host != "moat.example" || r.Scheme != "https" {
			t.Fatalf("SafeReturn(%q) = %q leads to %s", raw, got, r)
		}
		if again := SafeReturn(got); again != got {
			t.Fatalf("SafeReturn is not idempotent: %q then %q", got, again)
		}
		if got != "/" && got != raw && !strings.HasPrefix(raw, got+"#") {
			t.Fatalf("SafeReturn(%q) = %q changed more than the fragment", raw, got)
		}
	})
}

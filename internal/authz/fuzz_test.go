package authz

import (
	"net/http"
	"testing"
)

// FuzzDecide builds a policy, a principal and a request from the fuzzer's
// bytes, with a path, a method and a header value taken as they come, and
// checks that Decide does not panic, that a policy without allow rules
// allows nothing, that a request a deny rule matches is never allowed, and
// that Decide and Explain agree with the documented semantics.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{}, "/", "GET", "acme")
	f.Add([]byte{2, 1, 0, 0, 1, 5, 0, 0, 0, 0, 0, 0, 2}, "/admin/x", "post", "")
	f.Add([]byte{0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2}, "/ADMIN.json", "DELETE", "other")
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"), "/api/items/1", "GE\u017fT", "acme")
	f.Fuzz(func(t *testing.T, data []byte, path, method, tenant string) {
		src := &bytesSource{b: data}
		p := genPolicy(src)
		c, err := Compile(p)
		if err != nil {
			t.Fatalf("Compile(%+v): %v", p, err)
		}
		r := genRequest(src)
		if src.n(2) == 0 {
			r.Path = path
		}
		if src.n(2) == 0 {
			r.Method = method
		}
		if src.n(2) == 0 {
			r.Header = http.Header{"X-Tenant": {tenant}}
		}
		d := c.Decide(r)
		if len(p.Allow) == 0 && d.Allowed() {
			t.Fatalf("a policy without allow rules allowed: %+v", d)
		}
		for i, rl := range p.Deny {
			if m, _ := refMatch(rl, true, r); m && d.Allowed() {
				t.Fatalf("deny[%d] %+v matches, yet Decide = %+v", i, rl, d)
			}
			only, err := Compile(Policy{Deny: []Rule{rl}, Allow: []Rule{{}}})
			if err != nil {
				t.Fatal(err)
			}
			if only.Decide(r).Outcome == Denied && d.Allowed() {
				t.Fatalf("deny[%d] %+v alone denies, yet Decide = %+v", i, rl, d)
			}
		}
		if want := refDecide(p, r); d != want {
			t.Fatalf("policy %+v\nrequest %+v principal %+v\nDecide = %+v, want %+v", p, r, r.Principal, d, want)
		}
		if e := c.Explain(r); e.Decision != d {
			t.Fatalf("Explain = %+v, Decide = %+v", e.Decision, d)
		}
	})
}

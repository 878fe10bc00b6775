package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, and it
// must return either a valid configuration or Problems, never both.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(""))
	f.Add([]byte("routes: &r [*r]\n"))
	f.Add([]byte("listen: &l {<<: *l}\n"))
	f.Add([]byte("routes:\n  - &b {name: a, policy: public, upstreams: [http://x]}\n  - <<: [*b, *b]\n    name: c\n"))
	f.Add([]byte("a: 1\n---\nb: 2\n"))
	f.Add([]byte("tls: {dev: {hosts: [A.example]}}\nlimits: {max_connections: 0x10, read_timeout: 1h2m}\nroutes: [{name: x, policy: deny}]\n"))
	f.Add([]byte("? [a, b]\n: c\n"))
	f.Add([]byte("routes:\n  - name: a\n    name: b\n    max_request_body: 10MiB\n    mask_errors: ~\n"))
	if page, err := os.ReadFile("../../docs/configuration.md"); err == nil {
		if blocks, _ := yamlBlocks(string(page)); len(blocks) > 0 {
			f.Add([]byte(blocks[0]))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("got a config along with an error")
			}
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Problems", err, err)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(ps) {
				t.Fatalf("%d problems printed on %d lines", len(ps), n)
			}
			for _, p := range ps {
				if p.Msg == "" {
					t.Fatalf("problem without a message: %+v", p)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("no config and no error")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a loaded config does not validate again: %v", err)
		}
		if len(c.Routes) == 0 {
			t.Fatal("a config without routes loaded")
		}
		for _, r := range c.Routes {
			if r.Policy != PolicyPublic && r.Policy != PolicyAuthenticated && r.Policy != PolicyDeny {
				t.Fatalf("route %q loaded with policy %q", r.Name, r.Policy)
			}
		}
	})
}

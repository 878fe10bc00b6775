package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPolicyCommands runs moat policy test and lint, and config check on
// expressions, with the real binary.
func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfg, fmt.Sprintf(`data_dir: %[1]s/data
keys: {master_key: file:%[2]s}
tls: {dev: {}}
routes:
  - name: api
    path: /api
    policy: authenticated
    upstreams: [http://127.0.0.1:1]
    deny:
      - name: no-internal
        paths: [/api/internal]
    allow:
      - name: readers
        methods: [GET]
        roles: [reader]
      - name: writers
        methods: [POST]
        roles: [editor]
        mfa_max_age: 15m
  - name: admin-panel
    path: /admin-panel
    policy: authenticated
    upstreams: [http://127.0.0.1:1]
`, dir, masterKeyFile(dir)))
	if code, _, errOut := run(t, "user", "add", "erin", "--role", "editor", "--config", cfg); code != 0 {
		t.Fatalf("user add: %d %s", code, errOut)
	}
	tests := []struct {
		name string
		args []string
		code int
		out  string // regexp
	}{
		{"reader allowed", []string{"policy", "test", "--config", cfg, "--claims", `{"sub":"r","roles":["reader"]}`, "https://x/api/items"},
			0, `(?s)decision: allowed.*rule: allow\[0\] readers`},
		{"deny rule wins", []string{"policy", "test", "--config", cfg, "--claims", `{"sub":"r","roles":["reader"]}`, "https://x/api/internal/x"},
			1, `(?s)decision: denied.*rule: deny\[0\] no-internal`},
		{"editor without a second factor", []string{"policy", "test", "--config", cfg, "--as", "erin", "--method", "POST", "https://x/api/items"},
			1, `(?s)decision: need step-up.*mfa: needs a second factor`},
		{"editor with a recent second factor", []string{"policy", "test", "--config", cfg, "--as", "erin", "--mfa", "--auth-age", "5m", "--method", "POST", "https://x/api/items"},
			0, `(?s)decision: allowed.*allow\[1\] writers`},
		{"anonymous", []string{"policy", "test", "--config", cfg, "https://x/api/items"}, 1, `need login`},
		{"no route", []string{"policy", "test", "--config", cfg, "https://x/elsewhere"}, 1, `no route matches`},
		{"lint", []string{"policy", "lint", "--config", cfg}, 1, `route admin-panel: .*every signed-in user`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code || !regexp.MustCompile(tc.out).MatchString(out) {
				t.Fatalf("exit %d, want %d; stdout matching %q:\n%s\nstderr:\n%s", code, tc.code, tc.out, out, errOut)
			}
		})
	}

	// config check names the route and the rule of a broken expression.
	bad := filepath.Join(dir, "bad.yaml")
	data, _ := os.ReadFile(cfg)
	writeFile(t, bad, strings.Replace(string(data), "        mfa_max_age: 15m\n", "        expr: 'principal.rolez.size() > 0'\n", 1))
	code, out, errOut := run(t, "config", "check", bad)
	if code != 2 || !strings.Contains(errOut, "routes[0].allow[1].expr") || !strings.Contains(errOut, "undefined field 'rolez'") {
		t.Fatalf("config check of a broken expression: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

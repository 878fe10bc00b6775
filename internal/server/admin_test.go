package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestAdminAPIThroughGateway checks the administration API as the gateway
// serves it: callers identified by the gateway (here with API keys their
// users own), Moat's own roles deciding, anonymous callers turned away.
func TestAdminAPIThroughGateway(t *testing.T) {
	up := echoUpstream(t)
	g := startGateway(t, testConfig(t.TempDir(), "", standardRoutes(up.URL)))
	ctx := context.Background()
	key := func(name string, roles ...string) string {
		t.Helper()
		if _, _, err := g.srv.accounts.Service.CreateUser(ctx, name, "", "", roles); err != nil {
			t.Fatal(err)
		}
		k, _, err := g.srv.apikeys.Create(ctx, name+"-key", name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	viewer, operator, appAdmin := key("vera", "moat:viewer"), key("otto", "moat:operator"), key("alan", "admin")
	tests := []struct {
		name, method, path, key string
		want                    int
		body                    string
	}{
		{"anonymous", "GET", "/.moat/admin/api/users", "", http.StatusUnauthorized, "Unauthorized"},
		{"viewer lists users", "GET", "/.moat/admin/api/users", viewer, http.StatusOK, `"otto"`},
		{"viewer cannot end sessions", "POST", "/.moat/admin/api/users/otto/revoke-sessions", viewer, http.StatusForbidden, ""},
		{"operator ends sessions", "POST", "/.moat/admin/api/users/vera/revoke-sessions", operator, http.StatusOK, ""},
		{"operator cannot reset second factors", "POST", "/.moat/admin/api/users/vera/reset-mfa", operator, http.StatusForbidden, ""},
		{"an application's admin role is not Moat's", "GET", "/.moat/admin/api/users", appAdmin, http.StatusForbidden, ""},
		{"unknown path", "GET", "/.moat/admin/api/nothing", viewer, http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.key != "" {
				hdr["X-API-Key"] = tc.key
			}
			resp, body := g.do(t, tc.method, tc.path, hdr)
			if resp.StatusCode != tc.want || !strings.Contains(body, tc.body) {
				t.Fatalf("%s %s: %d, want %d with %q\n%s", tc.method, tc.path, resp.StatusCode, tc.want, tc.body, body)
			}
		})
	}
}

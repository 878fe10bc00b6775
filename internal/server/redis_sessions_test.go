package server

import (
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/session"
)

// TestSessionsSharedThroughRedis: two gateways keeping sessions in one
// Redis accept each other's sessions, and a revocation through one is
// refused by the other at once (pub/sub), not after its cache expires.
func TestSessionsSharedThroughRedis(t *testing.T) {
	url := os.Getenv("MOAT_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MOAT_TEST_REDIS_URL is not set in CI")
		}
		t.Skip("MOAT_TEST_REDIS_URL is not set")
	}
	up := echoUpstream(t)
	extra := fmt.Sprintf("accounts: {sessions: {redis_url: %q}}", url)
	routes := fmt.Sprintf("  - {name: app, path: /, policy: authenticated, upstreams: [%q]}\n", up.URL)
	g1 := startGateway(t, testConfig(t.TempDir(), extra, routes))
	g2 := startGateway(t, testConfig(t.TempDir(), extra, routes))
	ctx := t.Context()
	// The session's user must exist for both: the stores are separate here
	// (each gateway its own SQLite), as they are not in a real cluster,
	// so make the same user id in both.
	u, _, err := g1.srv.accounts.Service.CreateUser(ctx, "sam", "", "", []string{"user"})
	if err != nil {
		t.Fatal(err)
	}
	u2 := *u
	if err := g2.srv.state.Store.Users().Create(ctx, &u2); err != nil {
		t.Fatal(err)
	}
	tok, _, err := g1.srv.accounts.Sessions.Create(ctx, u.ID, []string{"pwd"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cookie := map[string]string{"Cookie": session.CookieName + "=" + tok}
	for i, g := range []*testGateway{g1, g2} {
		if resp, body := g.do(t, "GET", "/x", cookie); resp.StatusCode != http.StatusOK {
			t.Fatalf("gateway %d with the shared session: %d\n%s", i+1, resp.StatusCode, body)
		}
	}
	if _, err := g1.srv.accounts.Sessions.RevokeUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second) // well under the 2 s cache
	for {
		resp, _ := g2.do(t, "GET", "/x", cookie)
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other gateway still accepts the revoked session: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

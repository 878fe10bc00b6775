package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/audit"
)

// TestSecurityEventsReachTheAuditLog: a request Moat turns away is a
// record of the hash-chained audit log once the gateway has stopped, and
// the log verifies.
func TestSecurityEventsReachTheAuditLog(t *testing.T) {
	up := echoUpstream(t)
	routes := fmt.Sprintf("  - {name: admin, path: /admin, policy: deny}\n  - {name: app, path: /, policy: public, upstreams: [%q]}\n", up.URL)
	g := startGateway(t, testConfig(t.TempDir(), "", routes))
	if resp, _ := g.do(t, "GET", "/admin/x", nil); resp.StatusCode != 403 {
		t.Fatalf("deny route: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.srv.audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := g.srv.state.Store.Audit().List(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Kind == "request.denied" && strings.Contains(string(r.Data), `"rule.name":"policy.deny"`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no request.denied record among %d", len(recs))
	}
	resp, err := http.Get("http://" + g.srv.Addr("admin").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"moat_audit_queue_depth ", "moat_audit_overflows_total 0", "moat_audit_records_stored_total "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(string(b), "moat_audit"))
		}
	}
	if strings.Contains(string(b), "moat_audit_records_stored_total 0\n") {
		t.Error("no stored record counted")
	}
	signer, err := audit.LoadSigner(ctx, g.srv.state.Store.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(ctx, g.srv.state.Store.Audit(), signer.Public())
	if err != nil || !rep.OK() {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
}

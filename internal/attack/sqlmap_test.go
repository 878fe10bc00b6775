package attack

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sqlmapResult is what one sqlmap run reported.
type sqlmapResult struct {
	out string // console output
	log string // the session log: the injection points found, empty when none
}

// injectable reports whether sqlmap found an injection point in id.
func (r sqlmapResult) injectable() bool {
	return strings.Contains(r.log, "Parameter: id (GET)") || strings.Contains(r.out, "Parameter: id (GET)")
}

// Option sets for runSQLMap: sqlmap's default depth, and its deepest with
// every boolean, error and UNION payload it has, including the risky ones.
var (
	quick    = []string{"--level", "1", "--risk", "1"}
	thorough = []string{"--level", "5", "--risk", "3"}
)

// runSQLMap runs sqlmap against target (a URL with id=1), limited to the
// id parameter, the boolean-blind, error-based and UNION techniques and
// SQLite payloads, never asking a question, with opts added.
func runSQLMap(t *testing.T, sqlmap, target string, opts ...string) sqlmapResult {
	t.Helper()
	dir := t.TempDir()
	outDir := filepath.Join(dir, "out")
	args := []string{
		"-u", target, "-p", "id",
		"--batch", "--disable-coloring",
		"--technique", "BEU", "--dbms", "sqlite",
		"--flush-session", "--output-dir", outDir,
		"--timeout", "5", "--retries", "0",
		"--user-agent", browserUA,
	}
	args = append(args, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sqlmap, args...)
	// sqlmap keeps its history and caches under HOME: give it its own.
	cmd.Env = append(os.Environ(), "HOME="+dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("sqlmap %s: %v", strings.Join(opts, " "), time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("sqlmap did not finish in time:\n%s", out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running sqlmap: %v", err)
	}
	res := sqlmapResult{out: string(out)}
	logs, _ := filepath.Glob(filepath.Join(outDir, "*", "log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		res.log += string(b)
	}
	if !strings.Contains(res.out, "testing for SQL injection on GET parameter 'id'") {
		t.Fatalf("sqlmap never tested the id parameter (exit %v):\n%s", err, res.out)
	}
	return res
}

// TestSQLMap runs sqlmap against the injectable /items?id= of vulnapp.
// Directly it finds the injection. Each attack is then made through Moat
// twice: with the WAF in detect mode, the control, sqlmap still finds the
// injection (so the attack works through the gateway); with the WAF
// blocking, sqlmap finds nothing and Moat records the blocked requests.
func TestSQLMap(t *testing.T) {
	if raceDetector {
		t.Skip("runs without -race, in .ci/run's attack step")
	}
	sqlmap := requireTool(t, "sqlmap")
	app := startVulnapp(t)

	t.Run("direct", func(t *testing.T) {
		res := runSQLMap(t, sqlmap, app+"/items?id=1", quick...)
		if !res.injectable() {
			t.Fatalf("sqlmap found no injection in vulnapp's id:\n%s", res.out)
		}
		for _, want := range []string{"Type: boolean-based blind", "Type: UNION query", "back-end DBMS: SQLite"} {
			if !strings.Contains(res.log, want) {
				t.Errorf("sqlmap's session log lacks %q:\n%s", want, res.log)
			}
		}
		if !strings.Contains(res.out, "GET parameter 'id' is vulnerable") {
			t.Errorf("sqlmap did not say the parameter is vulnerable:\n%s", res.out)
		}
	})

	attacks := []struct {
		name string
		opts []string
	}{
		{name: "default depth", opts: quick},
		{name: "level 5 risk 3", opts: thorough},
		{name: "tamper scripts", opts: append([]string{"--tamper", "space2comment,randomcase,between"}, thorough...)},
	}
	for _, tt := range attacks {
		t.Run(tt.name+" through moat detecting", func(t *testing.T) {
			g := startMoat(t, app, "detect")
			res := runSQLMap(t, sqlmap, g.base+"/items?id=1", tt.opts...)
			if !res.injectable() {
				t.Errorf("sqlmap found no injection through a detect-mode WAF:\n%s", res.out)
			}
			evs := g.waitEvents(t, "waf.detected", func(evs []secEvent) bool { return len(evs) > 0 })
			would := 0
			for _, e := range evs {
				if e.Details["would_block"] == "true" {
					would++
				}
			}
			t.Logf("%d waf.detected events, %d of them would have been blocked", len(evs), would)
			if would == 0 {
				t.Error("a detect-mode WAF recorded no request that block mode would have refused")
			}
			if n := len(g.events("waf.blocked")); n != 0 {
				t.Errorf("a detect-mode WAF recorded %d waf.blocked events", n)
			}
		})
		t.Run(tt.name+" through moat blocking", func(t *testing.T) {
			g := startMoat(t, app, "block")
			// The item itself is served: it is the attack that is refused.
			if code, body, _ := get(t, g.client, g.base+"/items?id=2"); code != http.StatusOK || !strings.Contains(body, "<li>gadget</li>") {
				t.Fatalf("GET /items?id=2 through Moat: %d %.300q", code, body)
			}
			res := runSQLMap(t, sqlmap, g.base+"/items?id=1", tt.opts...)
			if res.injectable() {
				t.Errorf("sqlmap found an injection through Moat:\n%s", res.log)
			}
			if strings.Contains(res.out, "is vulnerable") {
				t.Errorf("sqlmap reports a vulnerable parameter through Moat:\n%s", res.out)
			}
			if !strings.Contains(res.out, "all tested parameters do not appear to be injectable") {
				t.Errorf("sqlmap did not conclude that nothing is injectable:\n%s", res.out)
			}
			evs := g.waitEvents(t, "waf.blocked", func(evs []secEvent) bool { return len(evs) >= 10 })
			sqli := 0
			for _, e := range evs {
				if e.Outcome != "denied" || e.Route != "app" || e.RequestID == "" || e.Rule == "" {
					t.Errorf("malformed waf.blocked event: %+v", e)
				}
				if e.hasCategory("attack-sqli") {
					sqli++
				}
			}
			t.Logf("%d waf.blocked events, %d of them for SQL injection", len(evs), sqli)
			if len(evs) < 10 || sqli == 0 {
				t.Errorf("Moat recorded %d waf.blocked events, %d for SQL injection; want at least 10, some of them SQL injection", len(evs), sqli)
			}
		})
	}

	// Two things a user of the tool meets before any payload: sqlmap's own
	// User-Agent is a known scanner's, and the database's error messages
	// (what error-based injection reads) do not cross Moat.
	t.Run("sqlmap user agent through moat", func(t *testing.T) {
		g := startMoat(t, app, "block")
		req, err := http.NewRequest(http.MethodGet, g.base+"/items?id=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")
		resp, err := g.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a request with sqlmap's User-Agent: %d, want 403", resp.StatusCode)
		}
		evs := g.waitEvents(t, "waf.blocked", func(evs []secEvent) bool { return len(evs) > 0 })
		if len(evs) != 1 || !evs[0].hasCategory("attack-reputation-scanner") {
			t.Errorf("want one waf.blocked event for a scanner, got %+v", evs)
		}
	})
	t.Run("database error through moat", func(t *testing.T) {
		g := startMoat(t, app, "block")
		const leak = "SQL logic error"
		code, body, _ := get(t, &http.Client{Timeout: 10 * time.Second}, app+"/items?id=1'")
		if code != http.StatusInternalServerError || !strings.Contains(body, leak) {
			t.Fatalf("direct: %d %q, want 500 with the database's message", code, body)
		}
		code, body, _ = get(t, g.client, g.base+"/items?id=1'")
		if code < 400 || strings.Contains(body, leak) {
			t.Errorf("through Moat: %d %q, want an error without the database's message", code, body)
		}
	})
}

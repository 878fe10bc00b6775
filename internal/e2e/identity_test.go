package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/assertion"
)

// keyPattern is a whole Moat API key on a line of its own.
var keyPattern = regexp.MustCompile(`^moat_[a-z2-7]{8}_[0-9A-Za-z]{49}\n$`)

// keyConfig has one route, /api, that accepts API keys only.
func keyConfig(dataDir, httpsAddr, adminAddr, upstream string) string {
	return fmt.Sprintf(`data_dir: %[1]s
keys: {master_key: file:%[2]s}
listen:
  https: %[3]s
  admin: %[4]s
tls:
  dev: {}
routes:
  - name: api
    path: /api
    policy: authenticated
    accept: [apikey]
    upstreams: [%[5]s]
`, dataDir, masterKeyFile(dataDir), httpsAddr, adminAddr, upstream)
}

// withKey requests url with key as a bearer token and returns the status
// and the headers the upstream saw (nil when it did not answer).
func withKey(t *testing.T, c *http.Client, url, key string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	var v struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("upstream answer %q: %v", b, err)
	}
	return resp.StatusCode, v.Headers
}

// refusedSoon checks that the gateway refuses key within 3 seconds: a
// change made by another process reaches it after its key cache (2 s).
func refusedSoon(t *testing.T, c *http.Client, url, key, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, _ := withKey(t, c, url, key)
		if code == http.StatusUnauthorized {
			return
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("%s: status %d, want 401 within 3s", what, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listedKey is a row of moat apikey list --json.
type listedKey struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Owner  string   `json:"owner"`
	Scopes []string `json:"scopes"`
	State  string   `json:"state"`
}

func listKeys(t *testing.T, cfgPath string) map[string]listedKey {
	t.Helper()
	var rows []listedKey
	out := mustRun(t, "", "apikey", "list", "--config", cfgPath, "--json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("apikey list --json: %v\n%s", err, out)
	}
	m := map[string]listedKey{}
	for _, r := range rows {
		m[r.ID] = r
	}
	return m
}

// TestAPIKeyLifecycle manages an API key with moat apikey while moat serve
// runs on the same SQLite store, and uses it through the gateway.
func TestAPIKeyLifecycle(t *testing.T) {
	up := headerEcho(t)
	dir := t.TempDir()
	addr, admin := freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfgPath, keyConfig(dir, addr, admin, up.URL))

	code, key, stderr := run(t, "apikey", "create", "--config", cfgPath, "--name", "ci", "--owner", "service", "--scopes", "deploy", "--expires", "1h")
	if code != 0 || !keyPattern.MatchString(key) {
		t.Fatalf("apikey create: exit %d\nstdout: %q\nstderr: %s", code, key, stderr)
	}
	key = strings.TrimSpace(key)
	m := regexp.MustCompile(`created API key (\S+) \(ci\) for service`).FindStringSubmatch(stderr)
	if m == nil || !strings.Contains(stderr, "shown once") || strings.Contains(stderr, key) {
		t.Fatalf("apikey create: stderr %q, want the notice with the key's id and not the key", stderr)
	}
	id := m[1]

	out := mustRun(t, "", "apikey", "list", "--config", cfgPath)
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `\s+ci\s+service\s+deploy\s+active\s`).MatchString(out) {
		t.Errorf("apikey list does not show %s active:\n%s", id, out)
	}
	if strings.Contains(out, key[13:]) {
		t.Errorf("apikey list shows the key's secret:\n%s", out)
	}

	p := startServe(t, cfgPath, dir, addr)
	base := "https://" + addr
	url := base + "/api/deploy"

	t.Run("key accepted", func(t *testing.T) {
		code, saw := withKey(t, p.client, url, key)
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200", code)
		}
		if got := saw.Get("X-Moat-User"); got != "ci" {
			t.Errorf("upstream saw X-Moat-User %q, want the key's name ci", got)
		}
		// The upstream can check who it serves with the public package,
		// against the key set the binary publishes.
		_, port, _ := net.SplitHostPort(addr)
		v := assertion.NewVerifier(base+assertion.JWKSPath, "https://localhost:"+port, "api", p.client)
		c, err := v.Verify(context.Background(), saw.Get(assertion.Header))
		if err != nil {
			t.Fatalf("assertion: %v", err)
		}
		if c.Method != "apikey" || c.Name != "ci" || c.Subject != "service" || c.KeyID != id || !slices.Equal(c.Scopes, []string{"deploy"}) {
			t.Errorf("assertion %+v", c)
		}
	})

	t.Run("no key", func(t *testing.T) {
		if code, _ := withKey(t, p.client, url, ""); code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", code)
		}
	})

	var next, nextID string
	t.Run("rotate", func(t *testing.T) {
		code, stdout, stderr := run(t, "apikey", "rotate", id, "--config", cfgPath, "--grace", "0s")
		if code != 0 || !keyPattern.MatchString(stdout) {
			t.Fatalf("apikey rotate: exit %d\nstdout: %q\nstderr: %s", code, stdout, stderr)
		}
		next = strings.TrimSpace(stdout)
		if next == key {
			t.Fatal("rotate printed the old key")
		}
		m := regexp.MustCompile(`new API key (\S+) replaces ` + regexp.QuoteMeta(id)).FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("apikey rotate: stderr %q", stderr)
		}
		nextID = m[1]
		refusedSoon(t, p.client, url, key, "the rotated key")
		if code, saw := withKey(t, p.client, url, next); code != http.StatusOK || saw.Get("X-Moat-User") != "ci" {
			t.Errorf("the new key: status %d, user %q", code, saw.Get("X-Moat-User"))
		}
		keys := listKeys(t, cfgPath)
		if keys[id].State != "revoked" || keys[nextID].State != "active" || !slices.Equal(keys[nextID].Scopes, []string{"deploy"}) {
			t.Errorf("after rotation: old %+v, new %+v", keys[id], keys[nextID])
		}
	})

	t.Run("revoke", func(t *testing.T) {
		if next == "" {
			t.Skip("no rotated key")
		}
		out := mustRun(t, "", "apikey", "revoke", nextID, "--config", cfgPath)
		if !strings.Contains(out, nextID) || !strings.Contains(out, "revoked") {
			t.Errorf("apikey revoke: %q", out)
		}
		refusedSoon(t, p.client, url, next, "the revoked key")
		if keys := listKeys(t, cfgPath); keys[nextID].State != "revoked" {
			t.Errorf("after revoke: %+v", keys[nextID])
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name   string
			args   []string
			code   int
			stderr string // regexp
		}{
			{"create without owner", []string{"create", "--config", cfgPath, "--name", "ci"}, 2, `(?s)--owner.*hint: moat apikey create`},
			{"create with a bad lifetime", []string{"create", "--config", cfgPath, "--name", "ci", "--owner", "service", "--expires", "soon"}, 2, `--expires "soon"`},
			{"create for an unknown user", []string{"create", "--config", cfgPath, "--name", "ci", "--owner", "nobody"}, 1, `(?s)no user "nobody".*hint:`},
			{"revoke without id", []string{"revoke", "--config", cfgPath}, 2, `(?s)apikey revoke.*hint: moat apikey revoke ID`},
			{"rotate without id", []string{"rotate", "--config", cfgPath}, 2, `(?s)apikey rotate.*hint: moat apikey rotate ID`},
			{"rotate with a bad grace", []string{"rotate", id, "--config", cfgPath, "--grace", "soon"}, 2, `--grace "soon"`},
			{"revoke an unknown id", []string{"revoke", "nosuchkey", "--config", cfgPath}, 1, `(?s)no such key.*hint: moat apikey list`},
			{"rotate a revoked key", []string{"rotate", id, "--config", cfgPath}, 1, `revoked`},
			{"list without config", []string{"list"}, 2, `(?s)--config FILE is required.*hint:`},
			{"unknown command", []string{"frobnicate"}, 2, `(?s)unknown command "frobnicate".*Usage: moat apikey`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, stdout, stderr := run(t, append([]string{"apikey"}, tt.args...)...)
				if code != tt.code || !regexp.MustCompile(tt.stderr).MatchString(stderr) {
					t.Errorf("exit %d (want %d)\nstderr: %s\nwant it to match %q", code, tt.code, stderr, tt.stderr)
				}
				if strings.Contains(stdout, "moat_") {
					t.Errorf("a failed command printed a key: %q", stdout)
				}
			})
		}
		if keys := listKeys(t, cfgPath); len(keys) != 2 {
			t.Errorf("failed commands changed the keys: %+v", keys)
		}
	})
}

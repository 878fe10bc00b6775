// Package e2e tests the real moat binary: it is built once, then started as
// a process with config files, signals and real sockets.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

var moatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moat-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	moatBin = filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-o", moatBin, "github.com/moatgw/moat/cmd/moat")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building moat:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs moat with args and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(moatBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "keys: {master_key: env:MOAT_E2E_MASTER_KEY}\ntls:\n  dev: {}\nroutes:\n  - name: all\n    path: /\n    policy: deny\n")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "keys: {master_key: env:MOAT_E2E_MASTER_KEY}\ntls:\n  dev: {}\nroutes:\n  - name: all\n    path: /\n    polcy: public\n    upstreams: [http://127.0.0.1:1]\n")

	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string // regexp
		stderr   string // regexp
		noStdout bool
	}{
		{name: "no args", args: nil, code: 2, stderr: `Usage:`},
		{name: "help", args: []string{"--help"}, code: 0, stdout: `(?s)Commands:.*serve.*demo.*config.*version`},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "version", args: []string{"version"}, code: 0, stdout: `(?m)^moat .+\ncommit .+\ngo1\.`},
		{name: "serve help", args: []string{"serve", "--help"}, code: 0, stdout: `--config`},
		{name: "demo help", args: []string{"demo", "--help"}, code: 0, stdout: `--data-dir`},
		{name: "config check help", args: []string{"config", "check", "--help"}, code: 0, stdout: `moat config check FILE`},
		{name: "version help", args: []string{"version", "--help"}, code: 0, stdout: `Usage: moat version`},
		{name: "serve without config", args: []string{"serve"}, code: 2, stderr: `--config FILE is required`},
		{name: "serve bad flag", args: []string{"serve", "--nope"}, code: 2, stderr: `flag provided but not defined`},
		{name: "check ok", args: []string{"config", "check", good}, code: 0, stdout: `^ok\n$`},
		{name: "check unknown key with line and column", args: []string{"config", "check", bad}, code: 2,
			stderr: regexp.QuoteMeta(bad) + `:7:5: .*polcy.*`, noStdout: true},
		{name: "check missing policy", args: []string{"config", "check", bad}, code: 2, stderr: `policy`},
		{name: "check missing file", args: []string{"config", "check", filepath.Join(dir, "nope.yaml")}, code: 2, stderr: `nope.yaml`},
		{name: "serve bad config", args: []string{"serve", "--config", bad}, code: 2, stderr: `:7:5: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if tt.stdout != "" && !regexp.MustCompile(tt.stdout).MatchString(stdout) {
				t.Errorf("stdout does not match %q:\n%s", tt.stdout, stdout)
			}
			if tt.stderr != "" && !regexp.MustCompile(tt.stderr).MatchString(stderr) {
				t.Errorf("stderr does not match %q:\n%s", tt.stderr, stderr)
			}
			if tt.noStdout && stdout != "" {
				t.Errorf("unexpected stdout: %s", stdout)
			}
		})
	}
}

// process is a running moat serve.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
	mu      sync.Mutex
	stderr  bytes.Buffer
	client  *http.Client
}

func (p *process) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type syncWriter struct{ p *process }

func (w syncWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.stderr.Write(b)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startServe(t *testing.T, cfgPath, dataDir, httpsAddr string) *process {
	t.Helper()
	return startServeWaiting(t, cfgPath, dataDir, func(p *process) bool {
		return strings.Contains(p.logs(), "moat started")
	})
}

// startServeWaiting starts moat serve and waits until ready reports true.
func startServeWaiting(t *testing.T, cfgPath, dataDir string, ready func(*process) bool) *process {
	t.Helper()
	p := &process{cmd: exec.Command(moatBin, "serve", "--config", cfgPath)}
	p.cmd.Stderr = syncWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("moat log:\n%s", p.logs())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !ready(p) {
		select {
		case <-p.done:
			t.Fatalf("moat exited:\n%s", p.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat did not start:\n%s", p.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pem, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	p.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	return p
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serveConfig(dataDir, httpsAddr, adminAddr, upstream, policy string) string {
	return fmt.Sprintf(`data_dir: %s
keys: {master_key: file:%s}
listen:
  https: %s
  admin: %s
tls:
  dev: {}
routes:
  - name: app
    path: /
    policy: %s
    upstreams: [%s]
`, dataDir, masterKeyFile(dataDir), httpsAddr, adminAddr, policy, upstream)
}

func TestServeReloadAndGracefulStop(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "hello from upstream")
	}))
	defer up.Close()
	dir := t.TempDir()
	addr, admin := freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfgPath, serveConfig(dir, addr, admin, up.URL, "public"))
	p := startServe(t, cfgPath, dir, addr)
	base := "https://" + addr

	if code, body := get(t, p.client, base+"/"); code != 200 || body != "hello from upstream" {
		t.Fatalf("first request: %d %q", code, body)
	}

	// A broken config on SIGHUP is refused, and the old one keeps serving.
	writeFile(t, cfgPath, "routes: [oops\n")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "reload refused")
	if code, _ := get(t, p.client, base+"/"); code != 200 {
		t.Fatalf("after a refused reload: %d", code)
	}

	// A good config on SIGHUP takes effect.
	writeFile(t, cfgPath, serveConfig(dir, addr, admin, up.URL, "deny"))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "configuration reloaded")
	if code, _ := get(t, p.client, base+"/"); code != http.StatusForbidden {
		t.Fatalf("after reload to deny: %d", code)
	}
	writeFile(t, cfgPath, serveConfig(dir, addr, admin, up.URL, "public"))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(p.logs(), "configuration reloaded") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	// SIGTERM while a request is in flight: it finishes, then moat exits 0.
	res := make(chan string, 1)
	go func() {
		resp, err := p.client.Get(base + "/slow")
		if err != nil {
			res <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	time.Sleep(300 * time.Millisecond)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, p, "stopping")
	// New connections are refused while draining.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		// The listener may close a moment after the log line; allow that.
		time.Sleep(200 * time.Millisecond)
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Error("new connections accepted while draining")
		}
	}
	close(release)
	if got := <-res; got != "200 hello from upstream" {
		t.Errorf("in-flight request: %s", got)
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			t.Errorf("moat exited with %v", p.waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Error("moat did not exit after SIGTERM")
	}

	// The 403 of the deny route is in the audit log, which verifies; a
	// record edited behind Moat's back is named.
	if code, out, stderr := run(t, "audit", "tail", "--config", cfgPath, "--kind", "request.denied"); code != 0 || !strings.Contains(out, "rule.name=policy.deny") {
		t.Errorf("audit tail: %d\n%s\n%s", code, out, stderr)
	}
	if code, out, stderr := run(t, "audit", "verify", "--config", cfgPath); code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: %d\n%s\n%s", code, out, stderr)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET data = CAST(replace(CAST(data AS TEXT), 'policy.deny', 'policy.open') AS BLOB) WHERE kind = 'request.denied'`); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := run(t, "audit", "verify", "--config", cfgPath); code != 1 || !strings.Contains(out, "FAILED: edited") {
		t.Errorf("audit verify after an edit: %d\n%s", code, out)
	}
}

func waitLog(t *testing.T, p *process, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	httpsAddr, httpAddr, adminAddr := freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(moatBin, "demo", "--data-dir", dir, "--https", httpsAddr, "--http", httpAddr, "--admin", adminAddr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out strings.Builder
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited:\n%s\n%s", out.String(), stderr.String())
			}
			out.WriteString(l + "\n")
			done = strings.Contains(l, "Stop with Ctrl-C")
		case <-ctx.Done():
			t.Fatalf("demo did not start:\n%s\n%s", out.String(), stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	for _, want := range []string{"Try:", "Clients must trust that CA", "X-Forwarded-For: 6.6.6.6", "policy: deny"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "moat.yaml")); err != nil {
		t.Errorf("generated config: %v", err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "https://" + httpsAddr
	checks := []struct {
		path string
		code int
		has  string
		not  string
	}{
		{"/", 200, "Moat demo", ""},
		{"/api/items", 200, "items", ""},
		{"/api/items?debug=1", 400, "is not a documented parameter", ""},
		{"/api/nothing-here", 404, "", ""},
		{"/search?q=%3Cscript%3Ealert(1)%3C/script%3E", 403, "request_id", ""},
		{"/admin/", 403, "", "Demo admin area"},
		{"/boom", 500, "request_id", "goroutine"},
	}
	for _, ck := range checks {
		req, _ := http.NewRequest("GET", base+ck.path, nil)
		req.Header.Set("Accept", "application/json")
		if ck.path == "/" {
			req.Header.Set("Accept", "text/html")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != ck.code || !strings.Contains(string(b), ck.has) || (ck.not != "" && strings.Contains(string(b), ck.not)) {
			t.Errorf("%s: %d, body %.300q", ck.path, resp.StatusCode, b)
		}
	}
	resp, err := c.Get("http://" + httpAddr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("plain HTTP: %d, want 308", resp.StatusCode)
	}
	resp, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "moat_requests_total") {
		t.Error("admin metrics lack moat_requests_total")
	}
}

// TestLogLevelKeepsSecurityRecords checks that log.level filters only Moat's
// own messages: the access log and security events are written whatever it says.
func TestLogLevelKeepsSecurityRecords(t *testing.T) {
	dir := t.TempDir()
	addr, admin := freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfgPath, serveConfig(dir, addr, admin, "http://127.0.0.1:1", "deny")+"log: {level: error}\n")
	p := startServeWaiting(t, cfgPath, dir, func(p *process) bool {
		// At level error the "moat started" line is not written; wait for the port.
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if code, _ := get(t, p.client, "https://"+addr+"/secret"); code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !(strings.Contains(p.logs(), `"msg":"request"`) && strings.Contains(p.logs(), `"kind":"request.denied"`)) {
		if time.Now().After(deadline) {
			t.Fatalf("access line or security event missing at log.level error:\n%s", p.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(p.logs(), "moat started") {
		t.Error("an info message was written at log.level error")
	}
}

// masterKeyFile writes a fresh master key into dir (once) and returns its path.
func masterKeyFile(dir string) string {
	path := filepath.Join(dir, "master.key")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b[:])+"\n"), 0o600); err != nil {
		panic(err)
	}
	return path
}

// TestStateCommands walks the durable-state commands on a fresh SQLite
// store: migrations, least privilege, key rotation, backup and restore.
func TestStateCommands(t *testing.T) {
	dir := t.TempDir()
	code, key, stderr := run(t, "keys", "generate")
	if code != 0 || len(strings.TrimSpace(key)) != 44 {
		t.Fatalf("keys generate: %d %q %s", code, key, stderr)
	}
	writeFile(t, filepath.Join(dir, "master.key"), key)
	writeFile(t, filepath.Join(dir, "pass"), "a long backup passphrase\n")
	cfgPath := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`data_dir: %[1]s/data
keys: {master_key: file:%[1]s/master.key}
backup: {passphrase: file:%[1]s/pass, dir: %[1]s/backups}
tls: {dev: {}}
routes: [{name: all, path: /, policy: deny}]
`, dir))
	backupFile := filepath.Join(dir, "b.age")
	steps := []struct {
		args   []string
		code   int
		stdout string // regexp
	}{
		{[]string{"db", "migrate", "--config", cfgPath, "--dry-run"}, 0, `would apply 1 `},
		{[]string{"db", "status", "--config", cfgPath}, 0, `(?s)backend sqlite.*pending`},
		{[]string{"db", "migrate", "--config", cfgPath}, 0, `applied 1 `},
		{[]string{"db", "migrate", "--config", cfgPath}, 0, `nothing to apply`},
		{[]string{"db", "status", "--config", cfgPath}, 0, `applied`},
		{[]string{"db", "check", "--config", cfgPath}, 0, `ok: no privilege beyond`},
		{[]string{"keys", "list", "--config", cfgPath}, 0, `(?s)ID.*dk_\w+\s+active`},
		{[]string{"keys", "rotate", "--config", cfgPath}, 0, `(?s)new data key dk_\w+ is active.*rotation complete`},
		{[]string{"keys", "list", "--config", cfgPath}, 0, `(?s)retired.*active`},
		{[]string{"backup", "create", "--config", cfgPath, "--out", backupFile}, 0, `(?s)wrote .*verified`},
		{[]string{"backup", "verify", "--config", cfgPath, backupFile}, 0, `verified`},
		{[]string{"backup", "restore", "--config", cfgPath, backupFile}, 2, ``},
		{[]string{"backup", "restore", "--config", cfgPath, "--yes-overwrite", backupFile}, 0, `(?s)restored .*master key opens`},
	}
	for _, s := range steps {
		code, stdout, stderr := run(t, s.args...)
		if code != s.code || !regexp.MustCompile(s.stdout).MatchString(stdout) {
			t.Fatalf("moat %s: exit %d (want %d)\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.code, stdout, stderr)
		}
	}

	// A damaged backup fails verification with a clear message.
	b, err := os.ReadFile(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	bad := filepath.Join(dir, "bad.age")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "backup", "verify", "--config", cfgPath, bad); code != 1 || !strings.Contains(stderr, "failed verification") {
		t.Errorf("damaged backup: exit %d, stderr %s", code, stderr)
	}

	// A wrong master key is refused.
	code, other, _ := run(t, "keys", "generate")
	if code != 0 {
		t.Fatal("keys generate")
	}
	writeFile(t, filepath.Join(dir, "master.key"), other)
	if code, _, stderr := run(t, "keys", "list", "--config", cfgPath); code != 1 || !strings.Contains(stderr, "master key does not match") {
		t.Errorf("wrong master key: exit %d, stderr %s", code, stderr)
	}
}

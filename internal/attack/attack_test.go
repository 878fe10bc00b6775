// Package attack aims real attack tools and classic attack payloads at a
// deliberately vulnerable application (testdata/vulnapp), first directly, to
// show that the application is vulnerable, then through the real moat binary
// with the WAF in front of it, to show that Moat stops the attack and
// records it as security events.
//
// The tools are external programs (sqlmap); a test whose tool is missing is
// skipped, unless the environment variable CI is "true", where it fails.
package attack

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Paths of the binaries TestMain builds.
var (
	moatBin    string
	vulnappBin string
)

func TestMain(m *testing.M) {
	if raceDetector {
		// The tests skip themselves; nothing to build.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "moat-attack-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	moatBin = filepath.Join(dir, "moat")
	vulnappBin = filepath.Join(dir, "vulnapp")
	builds := []*exec.Cmd{
		exec.Command("go", "build", "-o", moatBin, "github.com/moatgw/moat/cmd/moat"),
		exec.Command("go", "build", "-o", vulnappBin, "./testdata/vulnapp"),
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Run()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", strings.Join(builds[i].Args, " "), err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool returns the path of an attack tool. When it is missing the
// test is skipped, or fails when CI is "true": CI must run every attack.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (Debian package %s): CI runs every attack test", name, name)
	}
	t.Skipf("%s is not installed (Debian package %s); skipping", name, name)
	return ""
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startProcess starts cmd with its output going to out, and kills it when
// the test ends.
func startProcess(t *testing.T, cmd *exec.Cmd, name string, out *lockedBuffer) <-chan struct{} {
	t.Helper()
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return done
}

// startVulnapp starts the vulnerable application on a free loopback port
// and returns its base URL (http://127.0.0.1:PORT).
func startVulnapp(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(vulnappBin, "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	startProcess(t, cmd, "vulnapp", nil)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		base, found := strings.CutPrefix(line, "vulnapp listening on ")
		if !ok || !found {
			t.Fatalf("vulnapp did not start: %q %s", line, stderr.String())
		}
		return base
	case <-time.After(15 * time.Second):
		t.Fatalf("vulnapp did not start: %s", stderr.String())
	}
	return ""
}

// gateway is a running moat serve with one public route to an upstream.
type gateway struct {
	base   string       // https://127.0.0.1:PORT
	client *http.Client // trusts Moat's development CA
	out    *lockedBuffer
}

// startMoat starts the real moat binary with a development CA and one
// route, app at /, to upstream, with a paranoia level 1 WAF in wafMode.
func startMoat(t *testing.T, upstream, wafMode string) *gateway {
	t.Helper()
	dir := t.TempDir()
	addr, admin := freePort(t), freePort(t)
	key := filepath.Join(dir, "master.key")
	var b [32]byte
	_, _ = rand.Read(b[:])
	writeFile(t, key, base64.StdEncoding.EncodeToString(b[:])+"\n")
	cfgPath := filepath.Join(dir, "moat.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`data_dir: %q
keys: {master_key: %q}
listen:
  https: %s
  admin: %s
tls:
  dev: {}
routes:
  - name: app
    path: /
    policy: public
    upstreams: [%q]
    waf: {mode: %s, paranoia_level: 1}
`, filepath.Join(dir, "data"), "file:"+key, addr, admin, upstream, wafMode))

	g := &gateway{base: "https://" + addr, out: &lockedBuffer{}}
	done := startProcess(t, exec.Command(moatBin, "serve", "--config", cfgPath), "moat", g.out)
	t.Cleanup(func() {
		if t.Failed() {
			out := g.out.String()
			if len(out) > 64<<10 {
				out = "...\n" + out[len(out)-64<<10:]
			}
			t.Logf("moat output:\n%s", out)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(g.out.String(), "moat started") {
		select {
		case <-done:
			t.Fatalf("moat exited:\n%s", g.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat did not start:\n%s", g.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pem, err := os.ReadFile(filepath.Join(dir, "data", "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the development CA file")
	}
	g.client = &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		Timeout:   10 * time.Second,
	}
	return g
}

// secEvent is a security event as Moat writes it: one JSON line.
type secEvent struct {
	Msg       string            `json:"msg"`
	Kind      string            `json:"kind"`
	Outcome   string            `json:"outcome"`
	Route     string            `json:"route"`
	RequestID string            `json:"request_id"`
	Rule      string            `json:"rule"`
	Details   map[string]string `json:"details"`
}

// events returns the security events of the given kind in Moat's output.
func (g *gateway) events(kind string) []secEvent {
	var evs []secEvent
	for line := range strings.Lines(g.out.String()) {
		var e secEvent
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg != "security event" || e.Kind != kind {
			continue
		}
		evs = append(evs, e)
	}
	return evs
}

// waitEvents waits until ok accepts the events of kind, then returns them;
// an event is written before its response, but reaches the output
// through a pipe.
func (g *gateway) waitEvents(t *testing.T, kind string, ok func([]secEvent) bool) []secEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := g.events(kind)
		if ok(evs) || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasCategory reports whether e names category among its rule tags.
func (e secEvent) hasCategory(category string) bool {
	for c := range strings.SplitSeq(e.Details["categories"], ",") {
		if c == category {
			return true
		}
	}
	return false
}

// get sends a GET with a browser's User-Agent and returns the status, the
// body and Moat's request id (empty when the answer did not pass Moat).
func get(t *testing.T, c *http.Client, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", browserUA)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("X-Request-Id")
}

// browserUA is an ordinary browser's User-Agent. The attacks use it so
// that what the WAF catches is the payload, not the tool's name.
const browserUA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

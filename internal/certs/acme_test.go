package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/miekg/dns"

	"github.com/moatgw/moat/internal/certs/certstest"
	"github.com/moatgw/moat/internal/config"
)

// pebbleVersion is the Pebble release the ACME test is run against.
const pebbleVersion = "v2.10.3"

// TestACMEWithPebble obtains real certificates from a Pebble ACME server
// whose validation authority checks the challenges against this test's own
// listeners, as a public CA would check Moat's.
func TestACMEWithPebble(t *testing.T) {
	bin := findPebble(t)
	ca := certstest.NewCA(t) // for Pebble's own HTTPS
	dnsAddr := startDNS(t)

	tests := []struct {
		challenge string
		domain    string
	}{
		{ChallengeHTTP01, "http01.moat.test"},
		{ChallengeTLSALPN01, "tlsalpn.moat.test"},
	}
	for _, tc := range tests {
		t.Run(tc.challenge, func(t *testing.T) {
			httpLn, tlsLn := listenLoopback(t), listenLoopback(t)
			p := startPebble(t, bin, ca, dnsAddr, portOf(t, httpLn), portOf(t, tlsLn))

			logger, logs := testLogger(t)
			dataDir := t.TempDir()
			cfg := config.TLS{ACME: &config.ACME{
				Domains:    []string{tc.domain},
				Email:      "ops@moat.test",
				CA:         p.directory,
				CARoot:     ca.CertFile,
				Challenges: []string{tc.challenge},
				AcceptTOS:  true,
			}}
			m, err := New(t.Context(), cfg, dataDir, logger)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()

			// Moat's two listeners, counting what the validation authority
			// asks of them.
			var httpAnswered, httpPassed, alpnHellos atomic.Int32
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
					httpPassed.Add(1)
				}
				w.Header().Set("X-Next", "yes")
				http.NotFound(w, r)
			})
			plain := m.HTTPHandler(next)
			serveOn(t, httpLn, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") && r.Header.Get("X-Test") == "" {
					httpAnswered.Add(1)
				}
				plain.ServeHTTP(w, r)
			})}, false)
			tlsCfg := m.TLSConfig()
			getCert := tlsCfg.GetCertificate
			tlsCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if slices.Equal(hello.SupportedProtos, []string{ACMETLSALPNProtocol}) {
					alpnHellos.Add(1)
				}
				return getCert(hello)
			}
			serveOn(t, tlsLn, &http.Server{Handler: http.NotFoundHandler(), TLSConfig: tlsCfg}, true)

			ln := Listeners{HTTP: httpLn.Addr().String(), HTTPS: tlsLn.Addr().String()}
			if err := m.Start(t.Context(), ln); err != nil {
				t.Fatal(err)
			}

			roots := p.roots(t)
			st := waitForCertificate(t, tlsLn.Addr().String(), tc.domain, roots)
			leaf := st.PeerCertificates[0]
			if !slices.Equal(leaf.DNSNames, []string{tc.domain}) {
				t.Errorf("certificate names %q, want %q", leaf.DNSNames, tc.domain)
			}
			if len(st.VerifiedChains) == 0 {
				t.Error("no verified chain to Pebble's root")
			}
			if logs.count("acme certificate obtained") == 0 {
				t.Error(`"acme certificate obtained" not logged`)
			}

			// The challenge was answered by the listener meant for it.
			answeredHTTP := httpAnswered.Load() - httpPassed.Load()
			switch tc.challenge {
			case ChallengeHTTP01:
				if answeredHTTP == 0 || alpnHellos.Load() != 0 {
					t.Errorf("HTTP-01 answers %d (passed on %d), TLS-ALPN hellos %d; want HTTP-01 answers only",
						httpAnswered.Load(), httpPassed.Load(), alpnHellos.Load())
				}
			case ChallengeTLSALPN01:
				if alpnHellos.Load() == 0 || httpAnswered.Load() != 0 {
					t.Errorf("TLS-ALPN hellos %d, HTTP-01 requests %d; want TLS-ALPN hellos only",
						alpnHellos.Load(), httpAnswered.Load())
				}
			}

			t.Run("plain-HTTP requests other than challenges reach next", func(t *testing.T) {
				for _, path := range []string{"/", "/.well-known/acme-challenge/unknown-token"} {
					req, err := http.NewRequest(http.MethodGet, "http://"+ln.HTTP+path, nil)
					if err != nil {
						t.Fatal(err)
					}
					req.Host = tc.domain
					req.Header.Set("X-Test", "1")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Next") != "yes" {
						t.Errorf("GET %s: %d, X-Next %q; want next's 404", path, resp.StatusCode, resp.Header.Get("X-Next"))
					}
				}
			})

			t.Run("storage", func(t *testing.T) {
				fi, err := os.Stat(filepath.Join(dataDir, "acme"))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o700 {
					t.Errorf("storage mode %v, want 0700", fi.Mode().Perm())
				}
			})

			t.Run("restart reuses the stored certificate", func(t *testing.T) {
				m.Close()
				before := httpAnswered.Load() + alpnHellos.Load()
				m2, err := New(t.Context(), cfg, dataDir, logger)
				if err != nil {
					t.Fatal(err)
				}
				defer m2.Close()
				addr2 := serveTLS(t, m2.TLSConfig())
				if err := m2.Start(t.Context(), Listeners{HTTP: ln.HTTP, HTTPS: addr2}); err != nil {
					t.Fatal(err)
				}
				st2 := waitForCertificate(t, addr2, tc.domain, roots)
				if !st2.PeerCertificates[0].Equal(leaf) {
					t.Error("a new certificate was obtained instead of the stored one")
				}
				if after := httpAnswered.Load() + alpnHellos.Load(); after != before {
					t.Errorf("%d new challenge requests, want none", after-before)
				}
			})
		})
	}
}

// waitForCertificate dials addr until it serves a certificate for domain
// that verifies against roots.
func waitForCertificate(t *testing.T, addr, domain string, roots *x509.CertPool) tls.ConnectionState {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		st, err := handshake(addr, &tls.Config{ServerName: domain, RootCAs: roots})
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s within 40s; last handshake error: %v", domain, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// findPebble returns the Pebble binary named by MOAT_PEBBLE, found on PATH or
// where go install puts it, or skips the test.
func findPebble(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MOAT_PEBBLE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MOAT_PEBBLE: %v", err)
		}
		return p
	}
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.Join(filepath.SplitList(gp)[0], "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "pebble"); isExecutable(p) {
			return p
		}
	}
	msg := "pebble not found: set MOAT_PEBBLE or put pebble on PATH; install it with " +
		"go install github.com/letsencrypt/pebble/v2/cmd/pebble@" + pebbleVersion
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI must run the ACME test, not skip it)")
	}
	t.Skip(msg)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// startDNS serves DNS over TCP (the transport Pebble uses with -dnsserver),
// answering 127.0.0.1 to every A query and nothing to other types.
func startDNS(t *testing.T) string {
	t.Helper()
	ln := listenLoopback(t)
	started := make(chan struct{})
	srv := &dns.Server{
		Listener:          ln,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			for _, q := range r.Question {
				if q.Qtype == dns.TypeA {
					m.Answer = append(m.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
						A:   net.IPv4(127, 0, 0, 1).To4(),
					})
				}
			}
			_ = w.WriteMsg(m)
		}),
	}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// pebble is a running Pebble server.
type pebble struct {
	directory string // ACME directory URL
	mgmt      string // management address
	client    *http.Client
}

// startPebble runs Pebble with its validation authority pointed at
// httpPort and tlsPort on whatever dnsAddr resolves names to. Pebble's own
// ports are picked free just before it starts; should another process take
// one first, Pebble exits and is started again on new ports.
func startPebble(t *testing.T, bin string, ca *certstest.CA, dnsAddr string, httpPort, tlsPort int) *pebble {
	t.Helper()
	certFile, keyFile := ca.Leaf(t, "127.0.0.1", "localhost")
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}},
	}
	t.Cleanup(client.CloseIdleConnections)
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		p := &pebble{mgmt: freeAddr(t), client: client}
		listen := freeAddr(t)
		p.directory = "https://" + listen + "/dir"
		conf := map[string]any{"pebble": map[string]any{
			"listenAddress":           listen,
			"managementListenAddress": p.mgmt,
			"certificate":             certFile,
			"privateKey":              keyFile,
			"httpPort":                httpPort,
			"tlsPort":                 tlsPort,
			"ocspResponderURL":        "",
			"retryAfter":              map[string]int{"authz": 1, "order": 1},
			"keyAlgorithm":            "ecdsa",
		}}
		if lastErr = runPebble(t, bin, conf, dnsAddr, p); lastErr == nil {
			return p
		}
		t.Logf("pebble attempt %d: %v", attempt, lastErr)
	}
	t.Fatalf("pebble did not start: %v", lastErr)
	return nil
}

// runPebble starts Pebble with conf and waits until both its directory and
// its management interface answer. It returns an error when Pebble exits
// first.
func runPebble(t *testing.T, bin string, conf map[string]any, dnsAddr string, p *pebble) error {
	t.Helper()
	dir := t.TempDir()
	data, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-config", confPath, "-dnsserver", dnsAddr)
	cmd.Dir = dir
	// Validation must really happen: never let PEBBLE_VA_ALWAYS_VALID through.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PEBBLE_")
	})
	cmd.Env = append(cmd.Env, "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pebble output:\n%s", out)
		}
	})

	ready := func(url string) error {
		resp, err := p.client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := ready(p.directory)
		if err == nil {
			err = ready("https://" + p.mgmt + "/roots/0")
		}
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pebble exited: %s", out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not ready within 15s: %v\n%s", err, out)
		}
	}
}

// roots returns Pebble's issuing root, which its management interface serves.
func (p *pebble) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if resp.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble root: %s %q", resp.Status, body)
	}
	return pool
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func portOf(t *testing.T, ln net.Listener) int {
	t.Helper()
	_, p, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// serveOn serves srv on ln (over TLS when useTLS) until the test ends.
func serveOn(t *testing.T, ln net.Listener, srv *http.Server, useTLS bool) {
	t.Helper()
	srv.ReadHeaderTimeout = 5 * time.Second
	srv.ErrorLog = newDiscardLog()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if useTLS {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

// syncBuffer is a bytes.Buffer safe for a child process's two pipes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestACMEStartListeners(t *testing.T) {
	tests := []struct {
		name        string
		challenges  []string
		ln          Listeners
		wantErr     bool
		wantHTTP01  bool
		wantTLSALPN bool
		wantHost    string
		wantHTTP    int
		wantTLS     int
	}{
		{name: "both challenges, both listeners", ln: Listeners{HTTP: "127.0.0.1:8080", HTTPS: "127.0.0.1:8443"},
			wantHTTP01: true, wantTLSALPN: true, wantHost: "127.0.0.1", wantHTTP: 8080, wantTLS: 8443},
		{name: "both challenges, no plain listener", ln: Listeners{HTTPS: "[::]:443"},
			wantTLSALPN: true, wantHost: "::", wantTLS: 443},
		{name: "listeners on different hosts", ln: Listeners{HTTP: "10.0.0.1:80", HTTPS: "10.0.0.2:443"},
			wantHTTP01: true, wantTLSALPN: true, wantHost: "", wantHTTP: 80, wantTLS: 443},
		{name: "http-01 only, no plain listener", challenges: []string{"http-01"}, ln: Listeners{HTTPS: ":443"}, wantErr: true},
		{name: "tls-alpn-01 only", challenges: []string{"tls-alpn-01"}, ln: Listeners{HTTP: ":80", HTTPS: ":443"},
			wantTLSALPN: true, wantTLS: 443},
		{name: "unbound port", ln: Listeners{HTTPS: "127.0.0.1:https"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := testLogger(t)
			a, err := NewACME(&config.ACME{
				Domains:    []string{"moat.example"},
				CA:         "https://127.0.0.1:1/dir", // nothing listens: no request leaves the machine
				Challenges: tc.challenges,
				AcceptTOS:  true,
			}, t.TempDir(), logger)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			err = a.Start(t.Context(), tc.ln)
			if tc.wantErr {
				if err == nil {
					t.Fatal("Start succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			iss := a.issuer.Load()
			if !iss.DisableHTTPChallenge != tc.wantHTTP01 || !iss.DisableTLSALPNChallenge != tc.wantTLSALPN {
				t.Errorf("http-01 %v, tls-alpn-01 %v; want %v, %v",
					!iss.DisableHTTPChallenge, !iss.DisableTLSALPNChallenge, tc.wantHTTP01, tc.wantTLSALPN)
			}
			if iss.ListenHost != tc.wantHost || iss.AltHTTPPort != tc.wantHTTP || iss.AltTLSALPNPort != tc.wantTLS {
				t.Errorf("listen host %q, ports %d/%d; want %q, %d/%d",
					iss.ListenHost, iss.AltHTTPPort, iss.AltTLSALPNPort, tc.wantHost, tc.wantHTTP, tc.wantTLS)
			}
			if err := a.Start(t.Context(), tc.ln); err == nil {
				t.Error("second Start succeeded")
			}
		})
	}
}

func TestACMEBeforeStart(t *testing.T) {
	a, err := NewACME(&config.ACME{Domains: []string{"moat.example"}, AcceptTOS: true}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "moat.example"}); err == nil {
		t.Error("GetCertificate before Start succeeded")
	}
	h := a.HTTPChallengeHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/.well-known/acme-challenge/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("status %d, want next's %d", resp.StatusCode, http.StatusTeapot)
	}
}

func TestClosingStorage(t *testing.T) {
	ctx := t.Context()
	s := &closingStorage{fs: &certmagic.FileStorage{Path: t.TempDir()}}
	if err := s.Store(ctx, "kept", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Lock(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	s.close()

	tests := []struct {
		name    string
		op      func() error
		wantErr bool
	}{
		{"Store refused", func() error { return s.Store(ctx, "new", []byte("x")) }, true},
		{"Lock refused", func() error { return s.Lock(ctx, "other") }, true},
		{"TryLock refused", func() error { _, err := s.TryLock(ctx, "other"); return err }, true},
		{"Load refused", func() error { _, err := s.Load(ctx, "kept"); return err }, true},
		{"Unlock allowed", func() error { return s.Unlock(ctx, "held") }, false},
		{"Delete allowed", func() error { return s.Delete(ctx, "kept") }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if tc.wantErr && !errors.Is(err, errStorageClosed) {
				t.Errorf("error %v, want errStorageClosed", err)
			}
			if !tc.wantErr && err != nil {
				t.Errorf("error %v, want success", err)
			}
		})
	}
	if s.fs.Exists(ctx, "new") || s.fs.Exists(ctx, "kept") {
		t.Error("storage changed by refused writes, or Delete did not delete")
	}
}

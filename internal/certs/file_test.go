package certs

import (
	"context"
	"crypto/tls"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/certs/certstest"
	"github.com/moatgw/moat/internal/config"
)

// servedSerial returns the serial number of the certificate served for sni.
func servedSerial(t *testing.T, addr, sni string) *big.Int {
	t.Helper()
	st, err := handshake(addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake with SNI %q: %v", sni, err)
	}
	return st.PeerCertificates[0].SerialNumber
}

func serialOf(t *testing.T, certFile string) *big.Int {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, strings.TrimSuffix(certFile, "cert.pem")+"key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber
}

func TestFileSourceSNI(t *testing.T) {
	ca := certstest.NewCA(t)
	aCert, aKey := ca.Leaf(t, "a.moat.test", "127.0.0.1")
	bCert, bKey := ca.Leaf(t, "b.moat.test", "*.w.moat.test")
	logger, _ := testLogger(t)
	fs, err := NewFileSource([]config.Certificate{{Cert: aCert, Key: aKey}, {Cert: bCert, Key: bKey}}, logger)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, ServerConfig(fs.GetCertificate))
	a, b := serialOf(t, aCert), serialOf(t, bCert)

	tests := []struct {
		name string
		sni  string
		want *big.Int
	}{
		{"exact first", "a.moat.test", a},
		{"exact second", "b.moat.test", b},
		{"exact, other case and trailing dot", "B.Moat.Test.", b},
		{"wildcard", "x.w.moat.test", b},
		{"wildcard covers one label only", "y.x.w.moat.test", a},
		{"wildcard does not cover its parent", "w.moat.test", a},
		{"unknown name gets the default", "c.moat.test", a},
		{"no SNI gets the default", "", a},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := servedSerial(t, addr, tc.sni); got.Cmp(tc.want) != 0 {
				t.Errorf("served serial %x, want %x", got, tc.want)
			}
		})
	}

	t.Run("verifies against the CA", func(t *testing.T) {
		if _, err := handshake(addr, &tls.Config{ServerName: "x.w.moat.test", RootCAs: ca.Pool()}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFileSourceRSAAndECDSA(t *testing.T) {
	ca := certstest.NewCA(t)
	rsaCert, rsaKey := ca.RSALeaf(t, "moat.test")
	ecCert, ecKey := ca.Leaf(t, "moat.test")
	fs, err := NewFileSource([]config.Certificate{{Cert: rsaCert, Key: rsaKey}, {Cert: ecCert, Key: ecKey}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, ServerConfig(fs.GetCertificate))
	tests := []struct {
		name  string
		suite uint16
		want  *big.Int
	}{
		{"RSA-only client gets the RSA certificate", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, serialOf(t, rsaCert)},
		{"ECDSA-only client gets the ECDSA certificate", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, serialOf(t, ecCert)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := handshake(addr, &tls.Config{ServerName: "moat.test", RootCAs: ca.Pool(),
				MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tc.suite}})
			if err != nil {
				t.Fatal(err)
			}
			if got := st.PeerCertificates[0].SerialNumber; got.Cmp(tc.want) != 0 {
				t.Errorf("served serial %x, want %x", got, tc.want)
			}
		})
	}
}

func TestNewFileSourceRefuses(t *testing.T) {
	ca := certstest.NewCA(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T) config.Certificate
		wantErr string // "" for success
	}{
		{"key mode 0600 accepted", func(t *testing.T) config.Certificate { return leafWithKeyMode(t, ca, 0o600) }, ""},
		{"key mode 0400 accepted", func(t *testing.T) config.Certificate { return leafWithKeyMode(t, ca, 0o400) }, ""},
		{"key mode 0644 refused", func(t *testing.T) config.Certificate { return leafWithKeyMode(t, ca, 0o644) }, "chmod 600"},
		{"key mode 0640 refused", func(t *testing.T) config.Certificate { return leafWithKeyMode(t, ca, 0o640) }, "group or others"},
		{"key mode 0602 refused", func(t *testing.T) config.Certificate { return leafWithKeyMode(t, ca, 0o602) }, "group or others"},
		{"missing certificate", func(t *testing.T) config.Certificate {
			c := leafWithKeyMode(t, ca, 0o600)
			c.Cert += ".missing"
			return c
		}, "no such file"},
		{"key of another certificate", func(t *testing.T) config.Certificate {
			c := leafWithKeyMode(t, ca, 0o600)
			_, otherKey := ca.Leaf(t, "other.moat.test")
			c.Key = otherKey
			return c
		}, "private key does not match"},
		{"garbage certificate", func(t *testing.T) config.Certificate {
			c := leafWithKeyMode(t, ca, 0o600)
			if err := os.WriteFile(c.Cert, []byte("not a certificate"), 0o644); err != nil {
				t.Fatal(err)
			}
			return c
		}, "failed to find any PEM data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFileSource([]config.Certificate{tc.setup(t)}, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("NewFileSource: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("NewFileSource succeeded, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	t.Run("no certificates", func(t *testing.T) {
		if _, err := NewFileSource(nil, nil); err == nil {
			t.Fatal("NewFileSource(nil) succeeded")
		}
	})
}

func leafWithKeyMode(t *testing.T, ca *certstest.CA, mode os.FileMode) config.Certificate {
	t.Helper()
	certFile, keyFile := ca.Leaf(t, "moat.test")
	if err := os.Chmod(keyFile, mode); err != nil {
		t.Fatal(err)
	}
	return config.Certificate{Cert: certFile, Key: keyFile}
}

func TestFileSourceReload(t *testing.T) {
	const (
		reloaded = "tls certificate reloaded"
		failed   = "tls certificate reload failed, keeping the previous certificate"
	)
	ca := certstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := ca.TLSCertificate(t, "moat.test")
	certstest.WritePair(t, first, certFile, keyFile)

	logger, logs := testLogger(t)
	fs, err := NewFileSource([]config.Certificate{{Cert: certFile, Key: keyFile}}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		fs.Run(ctx, 20*time.Millisecond)
	}()
	defer func() {
		cancel()
		<-stopped
	}()
	addr := serveTLS(t, ServerConfig(fs.GetCertificate))
	if got := servedSerial(t, addr, "moat.test"); got.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatalf("served %x, want the first certificate %x", got, first.Leaf.SerialNumber)
	}

	// Each step changes the files, waits for the poller to act, and checks
	// which certificate is served.
	current := first
	var pending tls.Certificate // written in two steps
	steps := []struct {
		name    string
		change  func(t *testing.T) *tls.Certificate // returns the new pair, or nil when it is broken
		waitFor string
	}{
		{"new pair is picked up", func(t *testing.T) *tls.Certificate {
			c := ca.TLSCertificate(t, "moat.test")
			certstest.WritePair(t, c, certFile, keyFile)
			return &c
		}, reloaded},
		{"garbage certificate keeps the old one", func(t *testing.T) *tls.Certificate {
			if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		}, failed},
		{"fixed certificate is picked up", func(t *testing.T) *tls.Certificate {
			certstest.WritePair(t, current, certFile, keyFile)
			return &current
		}, reloaded},
		{"key of another pair keeps the old one", func(t *testing.T) *tls.Certificate {
			pending = ca.TLSCertificate(t, "moat.test")
			tmp := t.TempDir()
			certstest.WritePair(t, pending, filepath.Join(tmp, "c"), filepath.Join(tmp, "k"))
			replaceFile(t, filepath.Join(tmp, "k"), keyFile)
			return nil
		}, failed},
		{"matching certificate is picked up", func(t *testing.T) *tls.Certificate {
			tmp := t.TempDir()
			certstest.WritePair(t, pending, filepath.Join(tmp, "c"), filepath.Join(tmp, "k"))
			replaceFile(t, filepath.Join(tmp, "c"), certFile)
			return &pending
		}, reloaded},
		{"key made readable by others keeps the old one", func(t *testing.T) *tls.Certificate {
			if err := os.Chmod(keyFile, 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		}, failed},
		{"key mode fixed is picked up", func(t *testing.T) *tls.Certificate {
			if err := os.Chmod(keyFile, 0o600); err != nil {
				t.Fatal(err)
			}
			return &current
		}, reloaded},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			before := logs.count(step.waitFor)
			next := step.change(t)
			logs.waitCount(t, step.waitFor, before)
			want := current
			if next != nil {
				want = *next
			}
			if next != nil {
				// A pair written in two steps may be seen half-written first;
				// wait until the complete pair is served.
				eventually(t, 5*time.Second, func() bool {
					return servedSerial(t, addr, "moat.test").Cmp(want.Leaf.SerialNumber) == 0
				}, "new certificate %x not served", want.Leaf.SerialNumber)
			} else if got := servedSerial(t, addr, "moat.test"); got.Cmp(want.Leaf.SerialNumber) != 0 {
				t.Fatalf("served %x, want the previous certificate %x", got, want.Leaf.SerialNumber)
			}
			current = want
		})
	}

	t.Run("Run stops when ctx ends", func(t *testing.T) {
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
}

func TestFileSourceClose(t *testing.T) {
	ca := certstest.NewCA(t)
	certFile, keyFile := ca.Leaf(t, "moat.test")
	fs, err := NewFileSource([]config.Certificate{{Cert: certFile, Key: keyFile}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		fs.Run(t.Context(), time.Hour)
	}()
	fs.Close()
	fs.Close()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

// replaceFile renames src over dst, as tools that write certificates
// atomically do.
func replaceFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Rename(src, dst); err != nil {
		t.Fatal(err)
	}
}

func FuzzFileSourceServerName(f *testing.F) {
	ca := certstest.NewCA(f)
	aCert, aKey := ca.Leaf(f, "a.moat.test")
	bCert, bKey := ca.Leaf(f, "b.moat.test", "*.w.moat.test")
	fs, err := NewFileSource([]config.Certificate{{Cert: aCert, Key: aKey}, {Cert: bCert, Key: bKey}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	set := fs.current.Load()
	for _, s := range []string{"", "a.moat.test", "B.MOAT.TEST.", "x.w.moat.test", ".", "*.w.moat.test", "w.moat.test.", "..", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sni string) {
		c, err := fs.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		if err != nil || c == nil {
			t.Fatalf("GetCertificate(%q) = %v, %v", sni, c, err)
		}
		if c != set.certs[0] && c != set.certs[1] {
			t.Fatalf("GetCertificate(%q) returned a certificate that is not configured", sni)
		}
		// SNI names are ASCII and compared without regard to ASCII case.
		lower := strings.Map(func(r rune) rune {
			if 'A' <= r && r <= 'Z' {
				return r + ('a' - 'A')
			}
			return r
		}, sni)
		name := strings.TrimSuffix(lower, ".")
		label, parent, _ := strings.Cut(name, ".")
		wantB := name == "b.moat.test" || (parent == "w.moat.test" && label != "")
		if got := c == set.certs[1]; got != wantB {
			t.Fatalf("GetCertificate(%q) picked the second certificate: %v, want %v", sni, got, wantB)
		}
	})
}

func BenchmarkFileSourceGetCertificate(b *testing.B) {
	ca := certstest.NewCA(b)
	var certs []config.Certificate
	for _, name := range []string{"a.moat.test", "b.moat.test", "*.w.moat.test"} {
		certFile, keyFile := ca.Leaf(b, name)
		certs = append(certs, config.Certificate{Cert: certFile, Key: keyFile})
	}
	fs, err := NewFileSource(certs, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, sni := range []string{"b.moat.test", "x.w.moat.test", "unknown.moat.test"} {
		b.Run(sni, func(b *testing.B) {
			hello := &tls.ClientHelloInfo{ServerName: sni}
			for b.Loop() {
				if _, err := fs.GetCertificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// devFiles reads back what EnsureDev wrote.
type devFiles struct {
	ca, leaf *x509.Certificate
}

func readDev(t *testing.T, dataDir string) devFiles {
	t.Helper()
	dir := filepath.Join(dataDir, "tls")
	return devFiles{ca: readCert(t, filepath.Join(dir, "ca.crt")), leaf: readCert(t, filepath.Join(dir, "dev.crt"))}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureDevCreates(t *testing.T) {
	logger, _ := testLogger(t)
	dataDir := t.TempDir()
	d, err := EnsureDev(dataDir, []string{"localhost", "127.0.0.1", "App.Moat.Test", "::1"}, logger)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("modes", func(t *testing.T) {
		dir := filepath.Join(dataDir, "tls")
		want := map[string]fs.FileMode{
			dir:                           fs.ModeDir | 0o700,
			filepath.Join(dir, "ca.key"):  0o600,
			filepath.Join(dir, "ca.crt"):  0o644,
			filepath.Join(dir, "dev.key"): 0o600,
			filepath.Join(dir, "dev.crt"): 0o644,
		}
		for path, mode := range want {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != mode {
				t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(want)-1 {
			t.Errorf("%d files in %s, want %d (no temporary files left)", len(entries), dir, len(want)-1)
		}
	})

	got := readDev(t, dataDir)
	t.Run("CA", func(t *testing.T) {
		ca := got.ca
		if ca.Subject.CommonName != "Moat Development CA" || !ca.IsCA || ca.Subject.SerialNumber == "" {
			t.Errorf("CA subject %q, IsCA %v", ca.Subject, ca.IsCA)
		}
		if d.CACertPath() != filepath.Join(dataDir, "tls", "ca.crt") {
			t.Errorf("CACertPath %q", d.CACertPath())
		}
		if k, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("CA key %T, want ECDSA P-256", ca.PublicKey)
		}
		if years := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24 / 365; years < 9.9 || years > 10.1 {
			t.Errorf("CA valid %.1f years, want 10", years)
		}
	})
	t.Run("leaf", func(t *testing.T) {
		leaf := got.leaf
		if days := time.Until(leaf.NotAfter).Hours() / 24; days > 366 || days < 360 {
			t.Errorf("leaf valid %.0f more days, want about a year", days)
		}
		if !slices.Equal(leaf.DNSNames, []string{"app.moat.test", "localhost"}) {
			t.Errorf("DNS names %q", leaf.DNSNames)
		}
		if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
			t.Errorf("IP addresses %v", leaf.IPAddresses)
		}
	})

	t.Run("handshake verifies against the CA file", func(t *testing.T) {
		pemBytes, err := os.ReadFile(d.CACertPath())
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			t.Fatal("no certificate in the CA file")
		}
		addr := serveTLS(t, ServerConfig(d.GetCertificate))
		tests := []struct {
			serverName string
			wantOK     bool
		}{
			{"localhost", true},
			{"127.0.0.1", true},
			{"app.moat.test", true},
			{"other.moat.test", false},
			{"127.0.0.2", false},
		}
		for _, tc := range tests {
			_, err := handshake(addr, &tls.Config{ServerName: tc.serverName, RootCAs: pool})
			if (err == nil) != tc.wantOK {
				t.Errorf("%s: handshake error %v, want success %v", tc.serverName, err, tc.wantOK)
			}
		}
	})

	t.Run("trust hint", func(t *testing.T) {
		hint := d.TrustHint()
		for _, want := range []string{"curl --cacert " + d.CACertPath(), "update-ca-certificates", "security add-trusted-cert", "Firefox", "Chrome"} {
			if !strings.Contains(hint, want) {
				t.Errorf("TrustHint lacks %q:\n%s", want, hint)
			}
		}
	})
}

func TestEnsureDevReuseAndRenew(t *testing.T) {
	hosts := []string{"localhost", "127.0.0.1"}
	tests := []struct {
		name      string
		change    func(t *testing.T, dataDir string) // between the two calls
		hosts     []string                           // of the second call
		wantErr   string
		newCA     bool
		newLeaf   bool
		wantNames []string
	}{
		{name: "second start reuses both", hosts: hosts},
		{name: "same hosts in another order and case", hosts: []string{"127.0.0.1", "LocalHost"}},
		{name: "host list changed", hosts: []string{"localhost", "127.0.0.1", "api.moat.test"},
			newLeaf: true, wantNames: []string{"api.moat.test", "localhost"}},
		{name: "leaf within 30 days of expiry", hosts: hosts, newLeaf: true,
			change: func(t *testing.T, dataDir string) { writeDevLeaf(t, dataDir, 20*24*time.Hour) }},
		{name: "leaf 40 days from expiry kept", hosts: hosts,
			change: func(t *testing.T, dataDir string) { writeDevLeaf(t, dataDir, 40*24*time.Hour) }},
		{name: "CA key lost", hosts: hosts, newCA: true, newLeaf: true,
			change: func(t *testing.T, dataDir string) { remove(t, filepath.Join(dataDir, "tls", "ca.key")) }},
		{name: "leaf key lost", hosts: hosts, newLeaf: true,
			change: func(t *testing.T, dataDir string) { remove(t, filepath.Join(dataDir, "tls", "dev.key")) }},
		{name: "CA key readable by others refused", hosts: hosts, wantErr: "chmod 600",
			change: func(t *testing.T, dataDir string) { chmod(t, filepath.Join(dataDir, "tls", "ca.key"), 0o644) }},
		{name: "leaf key readable by group refused", hosts: hosts, wantErr: "group or others",
			change: func(t *testing.T, dataDir string) { chmod(t, filepath.Join(dataDir, "tls", "dev.key"), 0o640) }},
		{name: "directory mode repaired", hosts: hosts,
			change: func(t *testing.T, dataDir string) { chmod(t, filepath.Join(dataDir, "tls"), 0o755) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := testLogger(t)
			dataDir := t.TempDir()
			if _, err := EnsureDev(dataDir, hosts, logger); err != nil {
				t.Fatal(err)
			}
			if tc.change != nil {
				tc.change(t, dataDir)
			}
			before := readDev(t, dataDir)
			d, err := EnsureDev(dataDir, tc.hosts, logger)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			after := readDev(t, dataDir)
			if gotNew := !after.ca.Equal(before.ca); gotNew != tc.newCA {
				t.Errorf("new CA: %v, want %v", gotNew, tc.newCA)
			}
			if gotNew := after.leaf.SerialNumber.Cmp(before.leaf.SerialNumber) != 0; gotNew != tc.newLeaf {
				t.Errorf("new leaf: %v, want %v", gotNew, tc.newLeaf)
			}
			if tc.wantNames != nil && !slices.Equal(after.leaf.DNSNames, tc.wantNames) {
				t.Errorf("DNS names %q, want %q", after.leaf.DNSNames, tc.wantNames)
			}
			if err := after.leaf.CheckSignatureFrom(after.ca); err != nil {
				t.Errorf("leaf not signed by the CA: %v", err)
			}
			if time.Until(after.leaf.NotAfter) < devRenewBefore {
				t.Errorf("leaf expires %v, within the renewal window", after.leaf.NotAfter)
			}
			served, err := d.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil || served.Leaf.SerialNumber.Cmp(after.leaf.SerialNumber) != 0 {
				t.Errorf("GetCertificate serves %v, %v; want the leaf on disk", served.Leaf.SerialNumber, err)
			}
			if fi, err := os.Stat(filepath.Join(dataDir, "tls")); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("directory mode %v, %v; want 0700", fi.Mode(), err)
			}
		})
	}
}

func TestDevSourceRenewsInHandshake(t *testing.T) {
	logger, _ := testLogger(t)
	dataDir := t.TempDir()
	d, err := EnsureDev(dataDir, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	writeDevLeaf(t, dataDir, 10*24*time.Hour)
	old, err := loadDevPair(d.CertPath(), filepath.Join(dataDir, "tls", "dev.key"))
	if err != nil {
		t.Fatal(err)
	}
	d.cert.Store(old)

	c, err := d.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 || time.Until(c.Leaf.NotAfter) < 300*24*time.Hour {
		t.Fatalf("served the old certificate (expires %v)", c.Leaf.NotAfter)
	}
	if onDisk := readDev(t, dataDir).leaf; onDisk.SerialNumber.Cmp(c.Leaf.SerialNumber) != 0 {
		t.Errorf("renewed certificate not written to disk")
	}
	if !slices.Equal(c.Leaf.DNSNames, []string{"localhost"}) || len(c.Leaf.IPAddresses) != 2 {
		t.Errorf("default hosts: DNS %q, IP %v", c.Leaf.DNSNames, c.Leaf.IPAddresses)
	}
}

func TestEnsureDevErrors(t *testing.T) {
	tests := []struct {
		name    string
		dataDir string
		hosts   []string
	}{
		{"no data directory", "", nil},
		{"host with a port", t.TempDir(), []string{"localhost:8443"}},
		{"URL as host", t.TempDir(), []string{"https://localhost"}},
		{"empty host", t.TempDir(), []string{" "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EnsureDev(tc.dataDir, tc.hosts, nil); err == nil {
				t.Fatal("EnsureDev succeeded, want an error")
			}
		})
	}
}

// writeDevLeaf replaces the development leaf with one for the same hosts
// that expires after validFor.
func writeDevLeaf(t *testing.T, dataDir string, validFor time.Duration) {
	t.Helper()
	dir := filepath.Join(dataDir, "tls")
	files := readDev(t, dataDir)
	ca, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *files.leaf
	tmpl.SerialNumber, err = randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotAfter = time.Now().Add(validFor)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Leaf, key.Public(), ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := writePair(filepath.Join(dir, "dev.crt"), filepath.Join(dir, "dev.key"), der, key); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

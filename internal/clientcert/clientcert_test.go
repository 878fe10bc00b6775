package clientcert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/certs/certstest"
)

func state(c tls.Certificate) *tls.ConnectionState {
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		chain = append(chain, x)
	}
	return &tls.ConnectionState{PeerCertificates: chain}
}

func TestVerify(t *testing.T) {
	ca, other := certstest.NewCA(t), certstest.NewCA(t)
	v, err := New([]string{ca.CertFile}, []string{"service"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	good := ca.ClientCertificate(t, "billing-worker", later)
	tests := []struct {
		name string
		cs   *tls.ConnectionState
		want error
	}{
		{"no connection state", nil, ErrNoCertificate},
		{"no certificate", &tls.ConnectionState{}, ErrNoCertificate},
		{"from the trusted CA", state(good), nil},
		{"from another CA", state(other.ClientCertificate(t, "intruder", later)), ErrRefused},
		{"expired", state(ca.ClientCertificate(t, "old", time.Now().Add(-time.Minute))), ErrRefused},
		{"a server certificate", state(ca.TLSCertificate(t, "api.example.test")), ErrRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(tc.cs)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (p != nil) {
				t.Fatalf("Verify = %+v, %v; want error %v", p, err, tc.want)
			}
		})
	}
	p, _ := v.Verify(state(good))
	if p.Method != authn.MethodMTLS || p.Name != "billing-worker" || !p.HasRole("service") ||
		p.Subject != "CN=billing-worker,O=Moat Test" || p.Issuer != "CN=Moat Test CA" {
		t.Errorf("principal %+v", p)
	}
	if fp, _ := p.Claims["fingerprint"].(string); len(fp) != 64 {
		t.Errorf("fingerprint claim %q", fp)
	}
	if em, _ := p.Claims["email"].([]string); len(em) != 1 || em[0] != "billing-worker@example.test" {
		t.Errorf("email claim %v", p.Claims["email"])
	}
}

func TestLoadCAsRefusesFilesWithoutCertificates(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{empty, filepath.Join(dir, "missing.pem")} {
		if _, _, err := LoadCAs([]string{f}); err == nil {
			t.Errorf("LoadCAs(%s) succeeded", filepath.Base(f))
		}
	}
}

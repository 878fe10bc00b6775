package certstest_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/moatgw/moat/internal/certs/certstest"
)

func TestLeafVerifies(t *testing.T) {
	ca := certstest.NewCA(t)
	other := certstest.NewCA(t)
	tests := []struct {
		name  string
		leaf  func(t testing.TB, hosts ...string) (string, string)
		host  string
		pool  *x509.CertPool
		valid bool
	}{
		{"ECDSA leaf, DNS name", ca.Leaf, "moat.test", ca.Pool(), true},
		{"ECDSA leaf, IP address", ca.Leaf, "127.0.0.1", ca.Pool(), true},
		{"RSA leaf", ca.RSALeaf, "moat.test", ca.Pool(), true},
		{"other CA's pool", ca.Leaf, "moat.test", other.Pool(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certFile, keyFile := tc.leaf(t, tc.host)
			fi, err := os.Stat(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
			}
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			_, err = pair.Leaf.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: tc.pool})
			if (err == nil) != tc.valid {
				t.Errorf("Verify: %v, want valid %v", err, tc.valid)
			}
		})
	}
	t.Run("CA file", func(t *testing.T) {
		data, err := os.ReadFile(ca.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			t.Error("no certificate in CertFile")
		}
	})
}

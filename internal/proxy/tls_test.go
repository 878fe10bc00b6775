package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatgw/moat/internal/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Moat test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a server certificate for 127.0.0.1 and the given names.
func (ca *testCA) issue(t *testing.T, names ...string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "upstream"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	leaf, err := x509.ParseCertificate(der)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

func TestUpstreamTLS(t *testing.T) {
	ca := newTestCA(t)
	cert, leaf := ca.issue(t, "upstream.internal")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		_, _ = w.Write([]byte("secure"))
	}))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	must(t, os.WriteFile(caFile, ca.pem, 0o600))
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	otherSPKI, err := x509.MarshalPKIXPublicKey(&otherKey.PublicKey)
	must(t, err)
	otherSum := sha256.Sum256(otherSPKI)
	wrongPin := base64.StdEncoding.EncodeToString(otherSum[:])

	tests := []struct {
		name    string
		cfg     config.UpstreamTLS
		ok      bool
		wantErr string // in the upstream's last error, when not ok
	}{
		{"CA file", config.UpstreamTLS{CA: caFile}, true, ""},
		{"inline CA", config.UpstreamTLS{CA: string(ca.pem)}, true, ""},
		{"system roots only", config.UpstreamTLS{}, false, "unknown authority"},
		{"leaf pin", config.UpstreamTLS{CA: caFile, PinSPKI: []string{wrongPin, SPKIPin(leaf)}}, true, ""},
		{"CA pin", config.UpstreamTLS{CA: caFile, PinSPKI: []string{SPKIPin(ca.cert)}}, true, ""},
		{"pin mismatch", config.UpstreamTLS{CA: caFile, PinSPKI: []string{wrongPin}}, false, "pinned public key"},
		{"server name", config.UpstreamTLS{CA: caFile, ServerName: "upstream.internal"}, true, ""},
		{"wrong server name", config.UpstreamTLS{CA: caFile, ServerName: "other.example"}, false, "other.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := UpstreamTLSConfig(tt.cfg)
			must(t, err)
			p, rec := newProxy(t, Options{Upstreams: urls(t, up.URL), UpstreamTLS: tc})
			resp := get(t, front(t, p, nil).URL+"/")
			body := readBody(t, resp)
			if !tt.ok {
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d, want 502", resp.StatusCode)
				}
				if _, ok := rec.find("upstream.error"); !ok {
					t.Error("no upstream.error event")
				}
				if got := p.Upstreams()[0].LastError; !strings.Contains(got, tt.wantErr) {
					t.Errorf("last error %q, want one about %q", got, tt.wantErr)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || body != "secure" {
				t.Fatalf("status %d body %q, want 200 secure", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Proto"); got != "HTTP/2.0" {
				t.Errorf("upstream spoken to over %s, want HTTP/2.0", got)
			}
		})
	}
}

func TestUpstreamTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	must(t, os.WriteFile(junk, []byte("not a certificate"), 0o600))
	tests := []struct {
		name string
		cfg  config.UpstreamTLS
		want string
	}{
		{"missing file", config.UpstreamTLS{CA: filepath.Join(dir, "none.pem")}, "reading upstream CA"},
		{"no certificate", config.UpstreamTLS{CA: junk}, "no PEM certificate"},
		{"pin not base64", config.UpstreamTLS{PinSPKI: []string{"not base64!"}}, "SHA-256"},
		{"pin wrong length", config.UpstreamTLS{PinSPKI: []string{"AAAA"}}, "SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UpstreamTLSConfig(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one about %q", err, tt.want)
			}
		})
	}
	tc, err := UpstreamTLSConfig(config.UpstreamTLS{})
	must(t, err)
	if tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", tc.MinVersion)
	}
}

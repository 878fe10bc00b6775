package framing

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a self-signed certificate for 127.0.0.1 and a pool trusting it.
type testCA struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newTestCA(t testing.TB) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "framing test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), // before the clock of synctest bubbles
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return testCA{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}
}

func (ca testCA) serverConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.cert},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
}

func (ca testCA) clientConfig(protos ...string) *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", NextProtos: protos}
}

// gateway is the handler of the test servers: it refuses a request with
// ambiguous framing the way a server using this package does, and records
// the requests it served.
type gateway struct {
	mu     sync.Mutex
	served []string
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, ok := FromContext(r.Context())
	if !ok && r.ProtoMajor == 1 {
		http.Error(w, "connection not scanned", http.StatusInternalServerError)
		return
	}
	if ok {
		if rule := c.Next(r); rule != "" {
			w.Header().Set("Connection", "close")
			http.Error(w, rule, http.StatusBadRequest)
			return
		}
	}
	g.mu.Lock()
	g.served = append(g.served, r.Method+" "+r.RequestURI)
	g.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	connTLS := ok && c.TLS() != nil
	fmt.Fprintf(w, "%s %s proto=%s tls=%t conn=%t conntls=%t body=%q", r.Method, r.RequestURI, r.Proto, r.TLS != nil, ok, connTLS, body)
}

func (g *gateway) seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.served)
}

// startServer serves a gateway through wrap(listener) with net/http.
func startServer(t *testing.T, wrap func(net.Listener) net.Listener) (*httptest.Server, *gateway) {
	t.Helper()
	g := &gateway{}
	ts := httptest.NewUnstartedServer(g)
	ts.Listener = wrap(ts.Listener)
	ts.Config.ConnContext = ConnContext
	ts.Config.ReadHeaderTimeout = 10 * time.Second
	ts.Config.ErrorLog = nil
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, g
}

type rawResponse struct {
	status int
	body   string
}

// exchange writes raw to c and reads responses until the server closes the
// connection, or until want responses arrived when want > 0.
func exchange(t *testing.T, c net.Conn, raw string, want int) []rawResponse {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	br := bufio.NewReader(c)
	var got []rawResponse
	for want == 0 || len(got) < want {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			if strings.Contains(err.Error(), "timeout") {
				t.Fatalf("reading response %d: %v", len(got)+1, err)
			}
			break
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("reading response body: %v", err)
		}
		got = append(got, rawResponse{res.StatusCode, string(body)})
	}
	return got
}

// closedByServer reports whether the server closed c: a read gets EOF or a
// reset rather than data or a timeout.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return n == 0 && err != nil
}

package certs

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/moatgw/moat/internal/certs/certstest"
	"github.com/moatgw/moat/internal/config"
)

// permissiveConfig accepts everything Go can still speak; a handshake that
// works against it and fails against ServerConfig fails because of
// ServerConfig, not because of the client.
func permissiveConfig(certs ...tls.Certificate) *tls.Config {
	var all []uint16
	for _, s := range tls.CipherSuites() {
		all = append(all, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		all = append(all, s.ID)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS10,
		CipherSuites: all,
		CurvePreferences: []tls.CurveID{
			tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521,
		},
		Certificates: certs,
	}
}

func TestServerConfigHandshakes(t *testing.T) {
	ca := certstest.NewCA(t)
	ecCert := ca.TLSCertificate(t, "moat.test")
	rsaCertFile, rsaKeyFile := ca.RSALeaf(t, "moat.test")
	rsaCert, err := tls.LoadX509KeyPair(rsaCertFile, rsaKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	fixed := func(c tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c, nil }
	}
	servers := map[string]struct{ moat, permissive string }{
		"ecdsa": {serveTLS(t, ServerConfig(fixed(ecCert))), serveTLS(t, permissiveConfig(ecCert))},
		"rsa":   {serveTLS(t, ServerConfig(fixed(rsaCert))), serveTLS(t, permissiveConfig(rsaCert))},
	}

	tests := []struct {
		name        string
		key         string // "ecdsa" or "rsa"
		client      *tls.Config
		wantOK      bool
		wantVersion uint16
		wantSuite   uint16
		wantCurve   tls.CurveID
	}{
		{name: "TLS 1.0 refused", key: "ecdsa",
			client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}},
		{name: "TLS 1.1 refused", key: "rsa",
			client: &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}},
		{name: "TLS 1.2 ECDHE-ECDSA AES-128-CBC-SHA refused", key: "ecdsa",
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}},
		{name: "TLS 1.2 ECDHE-RSA AES-128-CBC-SHA refused", key: "rsa",
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}},
		{name: "TLS 1.2 ECDHE-RSA AES-256-CBC-SHA refused", key: "rsa",
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}}},
		{name: "TLS 1.2 RSA key exchange AES-128-GCM refused", key: "rsa",
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}},
		{name: "TLS 1.3 with only P-384 refused", key: "ecdsa",
			client: &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.CurveP384}}},
		{name: "TLS 1.2 ECDHE-ECDSA AES-128-GCM accepted", key: "ecdsa", wantOK: true,
			client:      &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "TLS 1.2 ECDHE-RSA AES-256-GCM accepted", key: "rsa", wantOK: true,
			client:      &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}},
			wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
		{name: "TLS 1.2 ECDHE-ECDSA ChaCha20-Poly1305 accepted", key: "ecdsa", wantOK: true,
			client:      &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
			wantVersion: tls.VersionTLS12, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "TLS 1.2 with only P-256 accepted", key: "ecdsa", wantOK: true,
			client:      &tls.Config{MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP256}},
			wantVersion: tls.VersionTLS12, wantCurve: tls.CurveP256},
		{name: "TLS 1.3 default client gets X25519MLKEM768", key: "ecdsa", wantOK: true,
			wantVersion: tls.VersionTLS13, wantCurve: tls.X25519MLKEM768},
		{name: "TLS 1.3 with only X25519 accepted", key: "rsa", wantOK: true,
			client:      &tls.Config{CurvePreferences: []tls.CurveID{tls.X25519}},
			wantVersion: tls.VersionTLS13, wantCurve: tls.X25519},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := &tls.Config{}
			if tc.client != nil {
				client = tc.client.Clone()
			}
			client.RootCAs = ca.Pool()
			client.ServerName = "moat.test"
			srv := servers[tc.key]

			if !tc.wantOK {
				// The same client must succeed against a permissive server,
				// or this case proves nothing.
				if _, err := handshake(srv.permissive, client.Clone()); err != nil {
					t.Fatalf("control handshake against a permissive server failed: %v", err)
				}
			}
			st, err := handshake(srv.moat, client)
			if !tc.wantOK {
				if err == nil {
					t.Fatalf("handshake succeeded (version %s, suite %s), want it refused",
						tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if tc.wantVersion != 0 && st.Version != tc.wantVersion {
				t.Errorf("version %s, want %s", tls.VersionName(st.Version), tls.VersionName(tc.wantVersion))
			}
			if tc.wantSuite != 0 && st.CipherSuite != tc.wantSuite {
				t.Errorf("suite %s, want %s", tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(tc.wantSuite))
			}
			if tc.wantCurve != 0 && st.CurveID != tc.wantCurve {
				t.Errorf("key exchange %v, want %v", st.CurveID, tc.wantCurve)
			}
		})
	}
}

func TestServerConfigALPN(t *testing.T) {
	ca := certstest.NewCA(t)
	cert := ca.TLSCertificate(t, "moat.test", "127.0.0.1")
	addr := serveTLS(t, ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }))

	t.Run("h2 negotiated", func(t *testing.T) {
		st, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "moat.test", NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("ALPN %q, want h2", st.NegotiatedProtocol)
		}
	})
	t.Run("http/1.1 only client", func(t *testing.T) {
		st, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "moat.test", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("ALPN %q, want http/1.1", st.NegotiatedProtocol)
		}
	})
	t.Run("HTTP/2 request", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: ca.Pool()},
			ForceAttemptHTTP2: true,
		}}
		defer client.CloseIdleConnections()
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 || string(body) != "ok HTTP/2.0" {
			t.Errorf("got %s %q, want HTTP/2.0", resp.Proto, body)
		}
	})
}

func TestNew(t *testing.T) {
	ca := certstest.NewCA(t)
	certFile, keyFile := ca.Leaf(t, "moat.test")
	files := []config.Certificate{{Cert: certFile, Key: keyFile}}
	acme := func(challenges ...string) *config.ACME {
		return &config.ACME{Domains: []string{"moat.example"}, AcceptTOS: true, Challenges: challenges}
	}
	tests := []struct {
		name      string
		cfg       config.TLS
		wantErr   bool
		wantProto []string
	}{
		{name: "nothing set", cfg: config.TLS{}, wantErr: true},
		{name: "files and dev", cfg: config.TLS{Certificates: files, Dev: &config.DevTLS{}}, wantErr: true},
		{name: "dev and acme", cfg: config.TLS{Dev: &config.DevTLS{}, ACME: acme()}, wantErr: true},
		{name: "files", cfg: config.TLS{Certificates: files}, wantProto: []string{"h2", "http/1.1"}},
		{name: "dev", cfg: config.TLS{Dev: &config.DevTLS{}}, wantProto: []string{"h2", "http/1.1"}},
		{name: "acme with both challenges", cfg: config.TLS{ACME: acme()},
			wantProto: []string{"h2", "http/1.1", "acme-tls/1"}},
		{name: "acme with tls-alpn-01", cfg: config.TLS{ACME: acme("tls-alpn-01")},
			wantProto: []string{"h2", "http/1.1", "acme-tls/1"}},
		{name: "acme with http-01", cfg: config.TLS{ACME: acme("http-01")},
			wantProto: []string{"h2", "http/1.1"}},
		{name: "acme unknown challenge", cfg: config.TLS{ACME: acme("dns-01")}, wantErr: true},
		{name: "acme without accept_tos", cfg: config.TLS{ACME: &config.ACME{Domains: []string{"moat.example"}}}, wantErr: true},
		{name: "acme wildcard", cfg: config.TLS{ACME: &config.ACME{Domains: []string{"*.moat.example"}, AcceptTOS: true}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := testLogger(t)
			m, err := New(context.Background(), tc.cfg, t.TempDir(), logger)
			if tc.wantErr {
				if err == nil {
					m.Close()
					t.Fatal("New succeeded, want an error")
				}
				t.Logf("error (as wanted): %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if got := m.TLSConfig().NextProtos; !slices.Equal(got, tc.wantProto) {
				t.Errorf("NextProtos %q, want %q", got, tc.wantProto)
			}
			if (m.Dev() != nil) != (tc.cfg.Dev != nil) {
				t.Errorf("Dev() = %v with dev config %v", m.Dev(), tc.cfg.Dev)
			}
			if (m.Files() != nil) != (len(tc.cfg.Certificates) > 0) {
				t.Errorf("Files() = %v with %d certificates", m.Files(), len(tc.cfg.Certificates))
			}
		})
	}
}

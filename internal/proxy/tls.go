package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/moatgw/moat/internal/config"
)

// errPinMismatch is returned from the TLS handshake when no certificate of
// the upstream's verified chain matches a configured pin.
var errPinMismatch = errors.New("upstream certificate matches no pinned public key")

// UpstreamTLSConfig builds the client TLS configuration for a route's https
// upstreams from c: TLS 1.2 or later; the roots in c.CA instead of the
// system's when set (a PEM file path, or the PEM text itself); c.ServerName
// verified instead of the URL's host when set; and, when c.PinSPKI lists
// pins, a handshake that also requires the SHA-256 hash of the
// SubjectPublicKeyInfo of some certificate in the verified chain to equal
// one of them. Pins add to normal verification, never replace it.
func UpstreamTLSConfig(c config.UpstreamTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CA != "" {
		pemBytes := []byte(c.CA)
		if !strings.Contains(c.CA, "-----BEGIN") {
			b, err := os.ReadFile(c.CA)
			if err != nil {
				return nil, fmt.Errorf("reading upstream CA bundle: %w", err)
			}
			pemBytes = b
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, errors.New("upstream CA bundle holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if len(c.PinSPKI) == 0 {
		return cfg, nil
	}
	pins := make([][]byte, 0, len(c.PinSPKI))
	for _, s := range c.PinSPKI {
		pin, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil || len(pin) != sha256.Size {
			return nil, fmt.Errorf("upstream pin %q: want the base64 of a SHA-256 hash (44 characters)", s)
		}
		pins = append(pins, pin)
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		for _, chain := range cs.VerifiedChains {
			for _, cert := range chain {
				sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
				for _, pin := range pins {
					if subtle.ConstantTimeCompare(sum[:], pin) == 1 {
						return nil
					}
				}
			}
		}
		return errPinMismatch
	}
	return cfg, nil
}

// SPKIPin returns the pin of cert as UpstreamTLSConfig expects it: the
// base64 SHA-256 hash of its SubjectPublicKeyInfo.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

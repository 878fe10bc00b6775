// Package clientcert authenticates callers by TLS client certificate
// (mutual TLS): it checks the certificate a client presented against the
// CAs a route trusts and turns it into a Principal.
//
// Moat's HTTPS listener asks for a client certificate without requiring
// one (tls.RequestClientCert) as soon as any route accepts the mtls
// method, and leaves the verification to the route: each route trusts its
// own CAs, which a single listener-wide setting could not express.
package clientcert

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/moatgw/moat/internal/authn"
)

// ErrNoCertificate means the client presented no certificate.
var ErrNoCertificate = errors.New("no client certificate")

// ErrRefused is matched by every error for a certificate that does not
// verify: expired, not yet valid, from another CA, not meant for client
// authentication.
var ErrRefused = errors.New("client certificate refused")

// Verifier checks client certificates against a set of CAs. It is
// immutable and safe for concurrent use.
type Verifier struct {
	roots *x509.CertPool
	roles []string
	now   func() time.Time
}

// LoadCAs reads PEM files of CA certificates into a pool, and returns
// their subjects too (for the listener's list of acceptable CAs).
func LoadCAs(files []string) (*x509.CertPool, []*x509.Certificate, error) {
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("client CA %s: %w", f, err)
		}
		n := 0
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("client CA %s: %w", f, err)
			}
			pool.AddCert(c)
			certs = append(certs, c)
			n++
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("client CA %s: no PEM certificate in it", f)
		}
	}
	return pool, certs, nil
}

// New returns a Verifier trusting the CAs in caFiles and giving roles to
// every caller it accepts. now may be nil (time.Now).
func New(caFiles []string, roles []string, now func() time.Time) (*Verifier, error) {
	pool, _, err := LoadCAs(caFiles)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{roots: pool, roles: slices.Clone(roles), now: now}, nil
}

// Verify checks the client certificate of a TLS connection: the chain the
// client sent must lead to one of the Verifier's CAs, be valid now, and
// allow client authentication. It returns ErrNoCertificate when there is
// none and an error matching ErrRefused when it does not verify.
func (v *Verifier) Verify(cs *tls.ConnectionState) (*authn.Principal, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, ErrNoCertificate
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return principal(leaf, v.roles), nil
}

func principal(c *x509.Certificate, roles []string) *authn.Principal {
	name := c.Subject.CommonName
	if name == "" && len(c.DNSNames) > 0 {
		name = c.DNSNames[0]
	}
	if name == "" && len(c.EmailAddresses) > 0 {
		name = c.EmailAddresses[0]
	}
	sum := sha256.Sum256(c.Raw)
	claims := map[string]any{"fingerprint": hex.EncodeToString(sum[:])}
	if len(c.DNSNames) > 0 {
		claims["dns"] = slices.Clone(c.DNSNames)
	}
	if len(c.EmailAddresses) > 0 {
		claims["email"] = slices.Clone(c.EmailAddresses)
	}
	if len(c.URIs) > 0 {
		uris := make([]string, len(c.URIs))
		for i, u := range c.URIs {
			uris[i] = u.String()
		}
		claims["uri"] = uris
	}
	return &authn.Principal{
		Subject:  c.Subject.String(),
		Name:     name,
		Method:   authn.MethodMTLS,
		Roles:    slices.Clone(roles),
		Issuer:   c.Issuer.String(),
		AuthTime: time.Time{},
		Claims:   claims,
	}
}

// Package certs provides the HTTPS listener's TLS: a hardened tls.Config and
// the three certificate sources Moat knows, PEM files reloaded when they
// change, a local development CA, and ACME.
//
// The server builds everything with [New] from the tls section of the config
// and takes [Manager.TLSConfig] for its HTTPS listener and
// [Manager.HTTPHandler] for its plain-HTTP listener.
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/mholt/acmez/v3"

	"github.com/moatgw/moat/internal/config"
)

// ACMETLSALPNProtocol is the ALPN protocol name of the ACME TLS-ALPN-01
// challenge (RFC 8737, https://www.rfc-editor.org/rfc/rfc8737).
const ACMETLSALPNProtocol = acmez.ACMETLS1Protocol

// ServerConfig returns the TLS configuration of Moat's HTTPS listener, with
// certificates chosen by getCert. Each call returns a new value that the
// caller may change.
//
// The choices follow the "intermediate" profile of Mozilla's Server Side TLS
// guidelines (https://wiki.mozilla.org/Security/Server_Side_TLS), which
// accepts every client of the last several years while offering nothing with
// a known weakness, narrowed where Go allows it:
//
//   - Versions: TLS 1.2 and 1.3. TLS 1.0 and 1.1 are deprecated by RFC 8996
//     (https://www.rfc-editor.org/rfc/rfc8996): they rely on SHA-1 and
//     MD5 in the handshake and offer no AEAD cipher. Go negotiates TLS 1.3
//     (RFC 8446) whenever the client supports it; 1.2 stays for older clients,
//     as in the intermediate profile. The "modern" profile drops 1.2, which
//     would shut out clients that still cannot speak 1.3.
//   - TLS 1.2 suites: only ECDHE key exchange, for forward secrecy, with an
//     AEAD cipher (AES-GCM or ChaCha20-Poly1305), as RFC 9325 (BCP 195,
//     https://www.rfc-editor.org/rfc/rfc9325#section-4.2) recommends. CBC
//     suites are left out: their MAC-then-encrypt construction is what
//     padding-oracle attacks such as Lucky Thirteen exploit. RSA key
//     exchange is left out for its missing forward secrecy. Every remaining
//     suite is on HTTP/2's allowed list (RFC 9113, section 9.2.2). The order
//     is not ours to set: Go puts AES-GCM first unless the client signals it
//     has no AES hardware. TLS 1.3 suites are all AEAD and not configurable.
//   - Key exchange: the hybrid post-quantum X25519MLKEM768
//     (https://datatracker.ietf.org/doc/draft-ietf-tls-ecdhe-mlkem/), which
//     Go 1.24 and later offer by default and current browsers send, so that a
//     recording of today's traffic cannot be decrypted by a future quantum
//     computer; then X25519 (RFC 7748) and P-256 for everyone else. P-384 and
//     P-521 are left out: every client that does ECDHE offers X25519 or P-256.
//   - ALPN (RFC 7301): h2, then http/1.1. [Manager.TLSConfig] adds
//     [ACMETLSALPNProtocol] when ACME uses the TLS-ALPN-01 challenge.
//   - Session tickets stay on: Go encrypts them with keys it rotates itself,
//     and a Go server never accepts TLS 1.3 0-RTT data, so resumption brings
//     no replay risk.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256},
		NextProtos:       []string{"h2", "http/1.1"},
		GetCertificate:   getCert,
	}
}

// Listeners are the addresses (host:port, as net.Listener.Addr reports
// them) of Moat's own running listeners, which answer the ACME challenges.
type Listeners struct {
	// HTTP is the plain-HTTP listener; empty when there is none.
	HTTP string
	// HTTPS is the HTTPS listener.
	HTTPS string
}

// Manager owns the certificate source chosen by the tls config section and
// whatever runs in the background for it (file polling, ACME renewals). Its
// methods are safe for concurrent use.
type Manager struct {
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	file    *FileSource
	dev     *DevSource
	acme    *ACMESource

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New builds the certificate source that cfg selects; exactly one of
// certificates, dev and acme must be set. File sources start polling their
// files at once, until ctx ends or Close is called. ACME begins only with
// [Manager.Start], once the listeners run.
func New(ctx context.Context, cfg config.TLS, dataDir string, logger *slog.Logger) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := 0
	if len(cfg.Certificates) > 0 {
		n++
	}
	if cfg.Dev != nil {
		n++
	}
	if cfg.ACME != nil {
		n++
	}
	if n != 1 {
		return nil, errors.New("tls: exactly one of certificates, dev and acme must be set")
	}

	m := &Manager{}
	ctx, m.cancel = context.WithCancel(ctx)
	switch {
	case len(cfg.Certificates) > 0:
		fs, err := NewFileSource(cfg.Certificates, logger)
		if err != nil {
			m.cancel()
			return nil, err
		}
		m.file, m.getCert = fs, fs.GetCertificate
		m.wg.Go(func() { fs.Run(ctx, 0) })
	case cfg.Dev != nil:
		ds, err := EnsureDev(dataDir, cfg.Dev.Hosts, logger)
		if err != nil {
			m.cancel()
			return nil, err
		}
		m.dev, m.getCert = ds, ds.GetCertificate
	default:
		as, err := NewACME(cfg.ACME, dataDir, logger)
		if err != nil {
			m.cancel()
			return nil, err
		}
		m.acme, m.getCert = as, as.GetCertificate
	}
	return m, nil
}

// Start starts ACME certificate management; ln are Moat's running listeners,
// which must already accept connections so that they, and not a listener of
// the ACME library, answer the challenges. Start does nothing for the file
// and development sources.
func (m *Manager) Start(ctx context.Context, ln Listeners) error {
	if m.acme == nil {
		return nil
	}
	return m.acme.Start(ctx, ln)
}

// TLSConfig returns a new TLS configuration for the HTTPS listener: the one
// of [ServerConfig], serving this manager's certificates, with
// [ACMETLSALPNProtocol] added when ACME answers TLS-ALPN-01 challenges.
func (m *Manager) TLSConfig() *tls.Config {
	cfg := ServerConfig(m.getCert)
	if m.acme != nil && m.acme.tlsALPN {
		cfg.NextProtos = append(cfg.NextProtos, ACMETLSALPNProtocol)
	}
	return cfg
}

// HTTPHandler wraps the plain-HTTP listener's handler: with ACME HTTP-01 it
// answers /.well-known/acme-challenge/ requests for challenges in progress
// and passes every other request to next; otherwise it returns next.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	if m.acme == nil {
		return next
	}
	return m.acme.HTTPChallengeHandler(next)
}

// Dev returns the development CA source, or nil when another source is in use.
func (m *Manager) Dev() *DevSource { return m.dev }

// Files returns the file source, or nil when another source is in use. Its
// Reload method lets a config reload pick up changed files at once.
func (m *Manager) Files() *FileSource { return m.file }

// Close stops background work: it waits for file polling to end, and stops
// ACME management (an ACME request in flight ends shortly after). It is safe
// to call more than once.
func (m *Manager) Close() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		if m.file != nil {
			err = m.file.Close()
		}
		if m.acme != nil {
			err = errors.Join(err, m.acme.Close())
		}
		m.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("closing tls: %w", err)
	}
	return nil
}

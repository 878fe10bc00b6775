package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatgw/moat/internal/config"
)

// DefaultPollInterval is how often a running [FileSource] looks at its files.
const DefaultPollInterval = 5 * time.Second

// FileSource serves certificate and key pairs read from PEM files and picks
// one per handshake by SNI. Run watches the files and swaps in a pair when it
// changes; a changed pair that does not load is logged and the previous one
// kept, so a half-written or mistaken file never takes the listener down.
//
// Files are polled from one goroutine rather than checked during handshakes:
// the handshake path then costs one atomic load, no file system call, and a
// failed reload is logged once, when it happens, instead of on the handshake
// of an unlucky client. Polling also sees changes that file notifications
// miss, such as a symbolic link swapped to a new target.
type FileSource struct {
	logger *slog.Logger

	mu    sync.Mutex // serializes reloads and guards pairs
	pairs []*filePair

	current atomic.Pointer[certSet]

	closeOnce sync.Once
	closed    chan struct{}
}

// filePair is one configured pair and what was last seen of its files.
type filePair struct {
	cfg      config.Certificate
	cert     *tls.Certificate
	certSeen os.FileInfo
	keySeen  os.FileInfo
}

// certSet is an immutable snapshot used by GetCertificate.
type certSet struct {
	certs    []*tls.Certificate
	exact    map[string][]*tls.Certificate // lower-case DNS name
	wildcard map[string][]*tls.Certificate // "example.com" for "*.example.com"
}

// NewFileSource loads every pair in certs. The first is the default, served
// when the client sends no SNI or a name no certificate covers. It fails if
// any pair cannot be loaded or a key file is readable or writable by group
// or others.
func NewFileSource(certs []config.Certificate, logger *slog.Logger) (*FileSource, error) {
	if len(certs) == 0 {
		return nil, errors.New("tls certificates: none configured")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &FileSource{
		logger: logger.With("component", "tls"),
		closed: make(chan struct{}),
	}
	for i, c := range certs {
		p := &filePair{cfg: c}
		certSeen, keySeen, cert, err := loadPair(c)
		if err != nil {
			return nil, fmt.Errorf("tls certificate %d: %w", i+1, err)
		}
		p.cert, p.certSeen, p.keySeen = cert, certSeen, keySeen
		s.pairs = append(s.pairs, p)
		s.logger.Info("tls certificate loaded", pairAttrs(p)...)
		warnExpiry(s.logger, p)
	}
	s.publish()
	return s, nil
}

// GetCertificate picks the certificate for a handshake: one whose DNS names
// hold the SNI name exactly, else one with a matching one-label wildcard,
// else the default (first) certificate. Among several candidates it prefers
// the first the client can use (an RSA and an ECDSA certificate for the same
// name, say). It never fails and is safe for concurrent use.
func (s *FileSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.current.Load()
	name := normalizeName(hello.ServerName)
	if name != "" {
		if c := pick(hello, set.exact[name]); c != nil {
			return c, nil
		}
		if label, parent, ok := strings.Cut(name, "."); ok && label != "" && parent != "" {
			if c := pick(hello, set.wildcard[parent]); c != nil {
				return c, nil
			}
		}
	}
	return set.certs[0], nil
}

// pick returns the first candidate the client supports, or the first
// candidate when it supports none (the handshake then fails, as it must).
func pick(hello *tls.ClientHelloInfo, candidates []*tls.Certificate) *tls.Certificate {
	if len(candidates) == 0 {
		return nil
	}
	for _, c := range candidates {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return candidates[0]
}

// normalizeName lower-cases the ASCII letters of a DNS name (SNI names are
// ASCII, IDNs travel as A-labels) and drops a trailing dot.
func normalizeName(name string) string {
	return strings.TrimSuffix(strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, name), ".")
}

// Run polls the files every interval (DefaultPollInterval when interval is
// zero or less) and reloads the pairs that changed, until ctx ends or Close
// is called.
func (s *FileSource) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		case <-t.C:
			_ = s.Reload()
		}
	}
}

// Close stops Run. It is safe to call more than once.
func (s *FileSource) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// Reload loads again every pair whose certificate or key file changed (in
// modification time, size or identity) since it was last read. A pair that
// fails to load keeps its previous certificate; the failure is logged and
// returned, and the pair is tried again when its files next change. Safe for
// concurrent use.
func (s *FileSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	changed := false
	for _, p := range s.pairs {
		certSeen, certErr := os.Stat(p.cfg.Cert)
		keySeen, keyErr := os.Stat(p.cfg.Key)
		if certErr == nil && keyErr == nil && sameFile(p.certSeen, certSeen) && sameFile(p.keySeen, keySeen) {
			continue
		}
		if certErr != nil || keyErr != nil {
			// A missing file is often the middle of a replacement; say so
			// once, then wait for the files to come back.
			if p.certSeen == nil && p.keySeen == nil {
				continue
			}
			p.certSeen, p.keySeen = nil, nil
			err := errors.Join(certErr, keyErr)
			s.logger.Warn("tls certificate reload failed, keeping the previous certificate",
				"cert", p.cfg.Cert, "key", p.cfg.Key, "error", err)
			errs = append(errs, fmt.Errorf("reloading %s: %w", p.cfg.Cert, err))
			continue
		}
		certSeen, keySeen, cert, err := loadPair(p.cfg)
		// Remember what was seen even on failure, so that one bad file is
		// reported once and not at every poll.
		p.certSeen, p.keySeen = certSeen, keySeen
		if err != nil {
			s.logger.Warn("tls certificate reload failed, keeping the previous certificate",
				"cert", p.cfg.Cert, "key", p.cfg.Key, "error", err)
			errs = append(errs, fmt.Errorf("reloading %s: %w", p.cfg.Cert, err))
			continue
		}
		p.cert = cert
		changed = true
		s.logger.Info("tls certificate reloaded", pairAttrs(p)...)
		warnExpiry(s.logger, p)
	}
	if changed {
		s.publish()
	}
	return errors.Join(errs...)
}

// publish builds a new snapshot from s.pairs; s.mu must be held or s not yet
// shared.
func (s *FileSource) publish() {
	set := &certSet{
		exact:    make(map[string][]*tls.Certificate),
		wildcard: make(map[string][]*tls.Certificate),
	}
	for _, p := range s.pairs {
		set.certs = append(set.certs, p.cert)
		for _, n := range p.cert.Leaf.DNSNames {
			n = normalizeName(n)
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				set.wildcard[parent] = append(set.wildcard[parent], p.cert)
			} else {
				set.exact[n] = append(set.exact[n], p.cert)
			}
		}
	}
	s.current.Store(set)
}

// sameFile reports whether two observations of a file look like the same
// content: same file, modification time, size and mode (a key fixed with
// chmod changes only its mode).
func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) &&
		a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size() && a.Mode() == b.Mode()
}

// loadPair reads one pair. The files are looked at before they are read, so
// that a change made while reading shows at the next poll.
func loadPair(c config.Certificate) (certSeen, keySeen os.FileInfo, cert *tls.Certificate, err error) {
	certSeen, err = os.Stat(c.Cert)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certificate file: %w", err)
	}
	keySeen, err = os.Stat(c.Key)
	if err != nil {
		return certSeen, nil, nil, fmt.Errorf("key file: %w", err)
	}
	if err := checkKeyMode(c.Key, keySeen); err != nil {
		return certSeen, keySeen, nil, err
	}
	pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return certSeen, keySeen, nil, fmt.Errorf("loading %s and %s: %w", c.Cert, c.Key, err)
	}
	if pair.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return certSeen, keySeen, nil, fmt.Errorf("parsing %s: %w", c.Cert, err)
		}
	}
	return certSeen, keySeen, &pair, nil
}

// checkKeyMode refuses a private key file that group or others may read or
// write: anyone who can read the key can impersonate the server. (Windows
// has no such mode bits and is not checked.)
func checkKeyMode(path string, fi fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o066 != 0 {
		return fmt.Errorf("key file %s is readable or writable by group or others (mode %#o); run chmod 600 %s", path, perm, path)
	}
	return nil
}

func pairAttrs(p *filePair) []any {
	leaf := p.cert.Leaf
	return []any{
		"cert", p.cfg.Cert,
		"names", leaf.DNSNames,
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
	}
}

// warnExpiry logs a warning when a loaded certificate is expired or about to.
func warnExpiry(logger *slog.Logger, p *filePair) {
	leaf := p.cert.Leaf
	switch left := time.Until(leaf.NotAfter); {
	case left <= 0:
		logger.Warn("tls certificate has expired", pairAttrs(p)...)
	case left < 14*24*time.Hour:
		logger.Warn("tls certificate expires soon", pairAttrs(p)...)
	}
	if time.Now().Before(leaf.NotBefore) {
		logger.Warn("tls certificate is not valid yet", pairAttrs(p)...)
	}
}

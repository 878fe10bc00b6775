package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/moatgw/moat/internal/config"
)

// ACME challenge types, as written in the config.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// DefaultACMECA is the ACME directory used when the config names none:
// Let's Encrypt production.
const DefaultACMECA = certmagic.LetsEncryptProductionCA

// ACMESource obtains and renews certificates with ACME (RFC 8555) through
// CertMagic, keeping account and certificates under <data_dir>/acme.
//
// The challenges are answered by Moat's own listeners: HTTP-01 by the
// plain-HTTP listener through HTTPChallengeHandler, TLS-ALPN-01 by the HTTPS
// listener through GetCertificate (whose tls.Config must offer
// [ACMETLSALPNProtocol]). CertMagic is told their addresses; it tries to bind
// them, finds them taken, and leaves the answering to them.
type ACMESource struct {
	logger  *slog.Logger
	zap     *zap.Logger
	domains []string
	email   string
	ca      string
	roots   *x509.CertPool // nil: system roots
	dir     string
	http01  bool // wanted by the config
	tlsALPN bool

	mu      sync.Mutex // guards started, closed, cache, cancel, storage
	started bool
	closed  bool
	cache   *certmagic.Cache
	cancel  context.CancelFunc
	storage *closingStorage

	magic  atomic.Pointer[certmagic.Config]
	issuer atomic.Pointer[certmagic.ACMEIssuer]
}

// NewACME checks cfg and prepares the storage directory dataDir/acme (mode
// 0700). Nothing is requested from the CA before Start.
func NewACME(cfg *config.ACME, dataDir string, logger *slog.Logger) (*ACMESource, error) {
	if cfg == nil {
		return nil, errors.New("acme: no configuration")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "acme")
	a := &ACMESource{
		logger: logger,
		zap:    newZapLogger(logger),
		email:  strings.TrimSpace(cfg.Email),
		ca:     cfg.CA,
	}
	if !cfg.AcceptTOS {
		return nil, errors.New("acme: accept_tos must be true to confirm acceptance of the CA's terms of service")
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("acme: no domains")
	}
	for _, d := range cfg.Domains {
		d = normalizeName(strings.TrimSpace(d))
		switch {
		case strings.Contains(d, "*"):
			return nil, fmt.Errorf("acme: domain %q: wildcard certificates need the DNS-01 challenge, which Moat does not offer", d)
		case !certmagic.SubjectQualifiesForCert(d):
			return nil, fmt.Errorf("acme: domain %q is not a valid certificate name", d)
		}
		if !slices.Contains(a.domains, d) {
			a.domains = append(a.domains, d)
		}
	}
	if a.ca == "" {
		a.ca = DefaultACMECA
	}
	if cfg.CARoot != "" {
		pemBytes, err := os.ReadFile(cfg.CARoot)
		if err != nil {
			return nil, fmt.Errorf("acme: ca_root: %w", err)
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("acme: ca_root %s: no PEM certificate found", cfg.CARoot)
		}
	}
	challenges := cfg.Challenges
	if len(challenges) == 0 {
		challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
	}
	for _, c := range challenges {
		switch strings.ToLower(strings.TrimSpace(c)) {
		case ChallengeHTTP01:
			a.http01 = true
		case ChallengeTLSALPN01:
			a.tlsALPN = true
		default:
			return nil, fmt.Errorf("acme: unknown challenge %q: want %s or %s", c, ChallengeHTTP01, ChallengeTLSALPN01)
		}
	}
	if dataDir == "" {
		return nil, errors.New("acme: data directory is not set")
	}
	a.dir = filepath.Join(dataDir, "acme")
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	if err := os.Chmod(a.dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	return a, nil
}

// Start loads certificates from storage and obtains or renews the rest in
// the background, retrying failures, until ctx ends or Close is called. The
// listeners in ln must already accept connections: CertMagic would otherwise
// bind their addresses itself. HTTP-01 is left out when ln has no HTTP
// listener; Start fails when no wanted challenge can be answered.
func (a *ACMESource) Start(ctx context.Context, ln Listeners) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started || a.closed {
		return errors.New("acme: already started or closed")
	}
	http01 := a.http01 && ln.HTTP != ""
	tlsALPN := a.tlsALPN && ln.HTTPS != ""
	if a.http01 && !http01 {
		a.logger.Warn("acme http-01 challenge disabled: there is no plain-HTTP listener (listen.http)")
	}
	if !http01 && !tlsALPN {
		return errors.New("acme: no challenge can be answered: http-01 needs the plain-HTTP listener, tls-alpn-01 the HTTPS listener")
	}
	host, httpPort, tlsPort, err := challengeAddrs(ln, http01, tlsALPN)
	if err != nil {
		return err
	}

	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if m := a.magic.Load(); m != nil {
				return m, nil
			}
			return nil, errors.New("acme: not started")
		},
		Logger: a.zap,
	})
	storage := &closingStorage{fs: &certmagic.FileStorage{Path: a.dir}}
	magic := certmagic.New(cache, certmagic.Config{
		Storage:           storage,
		DefaultServerName: a.domains[0],
		OnEvent:           a.onEvent,
		ShouldEmitFunc:    func(name string) bool { return name == "cert_obtained" },
		Logger:            a.zap,
	})
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      a.ca,
		Email:                   a.email,
		Agreed:                  true,
		TrustedRoots:            a.roots,
		DisableHTTPChallenge:    !http01,
		DisableTLSALPNChallenge: !tlsALPN,
		ListenHost:              host,
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          tlsPort,
		Logger:                  a.zap,
	})
	magic.Issuers = []certmagic.Issuer{issuer}
	a.magic.Store(magic)
	a.issuer.Store(issuer)

	mctx, cancel := context.WithCancel(ctx)
	if err := magic.ManageAsync(mctx, a.domains); err != nil {
		cancel()
		cache.Stop()
		storage.close()
		a.magic.Store(nil)
		a.issuer.Store(nil)
		return fmt.Errorf("acme: %w", err)
	}
	a.started, a.cache, a.cancel, a.storage = true, cache, cancel, storage
	var challenges []string
	if http01 {
		challenges = append(challenges, ChallengeHTTP01)
	}
	if tlsALPN {
		challenges = append(challenges, ChallengeTLSALPN01)
	}
	a.logger.Info("acme certificate management started", "domains", a.domains, "ca", a.ca, "challenges", challenges)
	return nil
}

// challengeAddrs derives the host and ports CertMagic must find taken.
// CertMagic has one listen host for both challenges; when the two listeners
// are bound to different hosts it gets the wildcard host, whose bind fails
// as well.
func challengeAddrs(ln Listeners, http01, tlsALPN bool) (host string, httpPort, tlsPort int, err error) {
	var hosts []string
	parse := func(addr string) (int, error) {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return 0, fmt.Errorf("acme: listener address %q: %w", addr, err)
		}
		port, err := strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return 0, fmt.Errorf("acme: listener address %q: want a numeric port, as the bound listener reports it", addr)
		}
		hosts = append(hosts, h)
		return port, nil
	}
	if http01 {
		if httpPort, err = parse(ln.HTTP); err != nil {
			return "", 0, 0, err
		}
	}
	if tlsALPN {
		if tlsPort, err = parse(ln.HTTPS); err != nil {
			return "", 0, 0, err
		}
	}
	if len(slices.Compact(hosts)) == 1 {
		host = hosts[0]
	}
	return host, httpPort, tlsPort, nil
}

func (a *ACMESource) onEvent(_ context.Context, name string, data map[string]any) error {
	if name == "cert_obtained" {
		a.logger.Info("acme certificate obtained", "domain", data["identifier"], "renewal", data["renewal"], "issuer", data["issuer"])
	}
	return nil
}

// GetCertificate returns the managed certificate for the handshake's SNI
// name (the first domain when the client sends none), or the challenge
// certificate of a TLS-ALPN-01 validation in progress. It fails when no
// certificate is available yet. Safe for concurrent use.
func (a *ACMESource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := a.magic.Load()
	if m == nil {
		return nil, errors.New("acme: certificate management has not started")
	}
	return m.GetCertificate(hello)
}

// HTTPChallengeHandler returns a handler for the plain-HTTP listener that
// answers HTTP-01 validation requests under /.well-known/acme-challenge/ for
// challenges in progress and passes every other request to next. Safe for
// concurrent use.
func (a *ACMESource) HTTPChallengeHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if iss := a.issuer.Load(); iss != nil && iss.HandleHTTPChallenge(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Close stops certificate management. An ACME request in flight ends at its
// next cancellation check, shortly after Close returns, but it can no longer
// write to the data directory by then. It is safe to call more than once.
func (a *ACMESource) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if a.started {
		a.cancel()
		a.cache.Stop()
		a.storage.close()
	}
	return nil
}

// errStorageClosed is returned by a closed closingStorage.
var errStorageClosed = errors.New("acme: storage closed")

// closingStorage is CertMagic's file storage with an end: once closed it
// refuses every operation that could create a file, and closing waits for
// the operations in flight. ACME work cancelled by Close may take a moment
// to notice; this way it can no longer write into the data directory.
// Unlock and Delete stay allowed, so that no stale lock or challenge token
// is left behind.
type closingStorage struct {
	fs     *certmagic.FileStorage
	mu     sync.RWMutex // read-held by each operation, write-held to close
	closed bool
}

var (
	_ certmagic.Storage   = (*closingStorage)(nil)
	_ certmagic.TryLocker = (*closingStorage)(nil)
)

// begin starts an operation; it reports false when the storage is closed.
// The caller must call s.mu.RUnlock when begin returns true.
func (s *closingStorage) begin() bool {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return false
	}
	return true
}

// close refuses further operations and waits for those in flight.
func (s *closingStorage) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

func (s *closingStorage) Lock(ctx context.Context, name string) error {
	if !s.begin() {
		return errStorageClosed
	}
	defer s.mu.RUnlock()
	return s.fs.Lock(ctx, name)
}

func (s *closingStorage) TryLock(ctx context.Context, name string) (bool, error) {
	if !s.begin() {
		return false, errStorageClosed
	}
	defer s.mu.RUnlock()
	return s.fs.TryLock(ctx, name)
}

func (s *closingStorage) Unlock(ctx context.Context, name string) error {
	return s.fs.Unlock(ctx, name)
}

func (s *closingStorage) Store(ctx context.Context, key string, value []byte) error {
	if !s.begin() {
		return errStorageClosed
	}
	defer s.mu.RUnlock()
	return s.fs.Store(ctx, key, value)
}

func (s *closingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if !s.begin() {
		return nil, errStorageClosed
	}
	defer s.mu.RUnlock()
	return s.fs.Load(ctx, key)
}

func (s *closingStorage) Delete(ctx context.Context, key string) error {
	return s.fs.Delete(ctx, key)
}

func (s *closingStorage) Exists(ctx context.Context, key string) bool {
	if !s.begin() {
		return false
	}
	defer s.mu.RUnlock()
	return s.fs.Exists(ctx, key)
}

func (s *closingStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	if !s.begin() {
		return nil, errStorageClosed
	}
	defer s.mu.RUnlock()
	return s.fs.List(ctx, path, recursive)
}

func (s *closingStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if !s.begin() {
		return certmagic.KeyInfo{}, errStorageClosed
	}
	defer s.mu.RUnlock()
	return s.fs.Stat(ctx, key)
}

func (s *closingStorage) String() string { return s.fs.String() }

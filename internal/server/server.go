// Package server is Moat's one wiring place: it builds the listeners from a
// config, compiles routes into immutable handler snapshots, and owns start,
// reload and graceful stop.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"

	"github.com/moatgw/moat/internal/admin"
	"github.com/moatgw/moat/internal/apikey"
	"github.com/moatgw/moat/internal/assertion"
	"github.com/moatgw/moat/internal/audit"
	"github.com/moatgw/moat/internal/backup"
	"github.com/moatgw/moat/internal/certs"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/csrf"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/framing"
	"github.com/moatgw/moat/internal/jwtauth"
)

// Options are what a Server is built from.
type Options struct {
	Config  *config.Config // validated, defaults applied
	Logger  *slog.Logger   // Moat's own messages
	Access  *slog.Logger   // access log; defaults to Logger
	Events  event.Recorder // security events; defaults to a slog sink on Logger
	Version string
	// Now is the clock of sessions, lockouts and passkey ceremonies; nil
	// means time.Now. Tests set it to move time on.
	Now func() time.Time
	// HTTPClient makes Moat's own requests to identity providers (OIDC
	// discovery and tokens, JWT key sets); nil means a client with a 10 s
	// timeout. Tests set it to trust their provider's certificate.
	HTTPClient *http.Client
}

// Server is a running gateway: the HTTPS listener, the optional plain-HTTP
// redirect listener and the admin listener.
type Server struct {
	logger     *slog.Logger
	baseLogger *slog.Logger // without the component attribute
	access     *slog.Logger
	events     event.Recorder
	metrics    *metrics
	version    string

	snap  atomic.Pointer[snapshot]
	certs atomic.Pointer[tlsState]
	state *State // the store and key ring
	// audit keeps every security event in the hash-chained audit log.
	audit *audit.Writer
	// csrfKey makes and checks the routes' CSRF tokens; from the store,
	// so that every instance accepts the others' tokens.
	csrfKey []byte

	now         func() time.Time // the clock of accounts, sessions and the portal
	oidcClient  *http.Client
	apikeys     *apikey.Service
	jwt         *jwtauth.Verifier // nil without jwt.issuers
	assertions  *assertion.Signer
	adminAPI    *admin.Handler
	limits      *limiters        // rate limit stores
	testNow     func() time.Time // Options.Now as given: nil in production
	limitEvents eventWindow      // aggregates rate limit and shedding events
	accounts    *Accounts
	portal      http.Handler // the login portal under /.moat/
	bootstrap   string       // the first admin's enrollment link, if one was made at this start

	mu       sync.Mutex // serialises Reload and Shutdown
	ctx      context.Context
	cancel   context.CancelFunc
	servers  []*http.Server // the gateway listeners
	admin    *http.Server   // closed last, so /readyz answers 503 while draining
	addrs    map[string]net.Addr
	draining atomic.Bool
	wg       sync.WaitGroup
	errc     chan error
}

// tlsState is a certificate manager with the TLS config built from it once.
type tlsState struct {
	m    *certs.Manager
	conf *tls.Config
}

func newTLSState(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*tlsState, error) {
	cm, err := certs.New(ctx, cfg.TLS, cfg.DataDir, logger)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tlsState{m: cm, conf: cm.TLSConfig()}, nil
}

// New compiles cfg and prepares certificates; it binds nothing yet.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Access == nil {
		o.Access = o.Logger
	}
	s := &Server{
		logger:     o.Logger.With("component", "server"),
		baseLogger: o.Logger,
		access:     o.Access,
		version:    o.Version,
		addrs:      map[string]net.Addr{},
		errc:       make(chan error, 3),
	}
	s.metrics = newMetrics(o.Version, s.snap.Load)
	if o.Events == nil {
		o.Events = event.SlogSink{Logger: o.Logger.With("component", "security")}
	}
	s.events = countingRecorder{next: o.Events, events: s.metrics.events}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.oidcClient = o.HTTPClient
	s.now, s.testNow = o.Now, o.Now
	if s.now == nil {
		s.now = time.Now
	}

	s.limitEvents = eventWindow{window: 10 * time.Second, max: 10_000}
	if err := s.openLimiters(s.ctx, o.Config); err != nil {
		return nil, err
	}
	var err error
	s.state, err = OpenState(s.ctx, o.Config, StateOptions{Migrate: true}, o.Logger.With("component", "store"))
	if err != nil {
		_ = s.limits.close()
		return nil, err
	}
	// Every security event is also kept in the hash-chained audit log.
	if s.audit, err = openAudit(s.ctx, s.state, o.Logger); err != nil {
		_ = s.limits.close()
		_ = s.state.Close()
		return nil, err
	}
	s.events = countingRecorder{next: event.Multi{o.Events, s.audit}, events: s.metrics.events}
	s.metrics.watchAudit(s.audit)
	closeState := func() {
		s.closeAudit(context.Background())
		_ = s.state.Close()
	}
	// The key of the routes' CSRF tokens, the same on every instance.
	if s.csrfKey, err = s.state.Store.Secrets().GetOrCreate(s.ctx, secretAppCSRFKey, csrf.KeySize); err != nil {
		_ = s.limits.close()
		closeState()
		return nil, fmt.Errorf("loading the CSRF key: %w", err)
	}
	snap, err := s.compile(o.Config)
	if err != nil {
		_ = s.limits.close()
		closeState()
		return nil, err
	}
	if err := s.openAccounts(o.Config); err != nil {
		snap.close()
		closeState()
		return nil, err
	}
	if err := s.openIdentity(o.Config); err != nil {
		snap.close()
		_ = s.accounts.Close()
		closeState()
		return nil, err
	}
	ts, err := newTLSState(s.ctx, o.Config, o.Logger)
	if err != nil {
		snap.close()
		_ = s.accounts.Close()
		closeState()
		return nil, err
	}
	s.snap.Store(snap)
	s.certs.Store(ts)
	s.metrics.reloadTS.SetToCurrentTime()
	return s, nil
}

// openAccounts opens the accounts capability and the portal on it, and
// makes the first admin of an empty store.
func (s *Server) openAccounts(cfg *config.Config) error {
	var err error
	if s.accounts, err = OpenAccounts(s.ctx, cfg, s.state, s.limits.failures, s.events, s.baseLogger, s.now); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	if s.portal, err = s.portalHandler(s.ctx, cfg); err != nil {
		_ = s.accounts.Close()
		return fmt.Errorf("login portal: %w", err)
	}
	if s.bootstrap, err = s.accounts.Bootstrap(s.ctx, cfg); err != nil {
		_ = s.accounts.Close()
		return err
	}
	return nil
}

// APIKeys returns the API key service the server checks keys with.
func (s *Server) APIKeys() *apikey.Service { return s.apikeys }

// Accounts returns the accounts capability the server runs.
func (s *Server) Accounts() *Accounts { return s.accounts }

// BootstrapLink returns the one-time enrollment link of the first admin,
// made because the store had no user, or "".
func (s *Server) BootstrapLink() string { return s.bootstrap }

// Start binds the listeners and starts serving in the background. Errors
// binding a listener are returned; later serving errors end Wait.
func (s *Server) Start() error {
	cfg := s.snap.Load().cfg
	lim := cfg.Limits
	base := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: lim.ReadHeaderTimeout.D(),
			ReadTimeout:       lim.ReadTimeout.D(),
			WriteTimeout:      lim.WriteTimeout.D(),
			IdleTimeout:       lim.IdleTimeout.D(),
			MaxHeaderBytes:    int(lim.MaxHeaderBytes),
			ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		}
	}

	// Bind every listener before any serves, so that the addresses are
	// settled before a handler can read them.
	var lns []net.Listener
	listen := func(name, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("%s listener: %w", name, err)
		}
		lns = append(lns, ln)
		s.addrs[name] = ln.Addr()
		return ln, nil
	}
	ln, err := listen("https", cfg.Listen.HTTPS)
	if err != nil {
		return err
	}
	var pln, aln net.Listener
	if cfg.Listen.HTTP != "" {
		if pln, err = listen("http", cfg.Listen.HTTP); err != nil {
			return err
		}
	}
	if cfg.Listen.Admin != "" {
		if aln, err = listen("admin", cfg.Listen.Admin); err != nil {
			return err
		}
	}

	gw := base(gateway{s: s})
	gw.TLSConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.snap.Load().tlsConfig(s.certs.Load().conf), nil
		},
	}
	if lim.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, lim.MaxConnections)
	}
	// TLS handshakes happen in the listener, so that HTTP/1.1 connections
	// can be watched for ambiguous framing on their way to net/http (see
	// framing): the gateway refuses a request whose framing the scanner
	// flagged.
	handshakeLog := s.logger.With("component", "tls")
	fl := framing.NewListener(ln, gw.TLSConfig, framing.Options{
		Limits:           framing.Limits{MaxHeaderBytes: int(lim.MaxHeaderBytes)},
		HandshakeTimeout: lim.ReadHeaderTimeout.D(),
		OnHandshakeError: func(remote net.Addr, err error) {
			handshakeLog.Debug("TLS handshake failed", "remote", remote.String(), "err", err)
		},
	})
	gw.ConnContext = framing.ConnContext
	s.servers = append(s.servers, gw)
	s.serve("https", func() error { return gw.Serve(fl) })
	if pln != nil {
		plain := base(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Looked up per request: a reload may bring a new ACME manager.
			s.certs.Load().m.HTTPHandler(redirector{s: s}).ServeHTTP(w, r)
		}))
		s.servers = append(s.servers, plain)
		s.serve("http", func() error { return plain.Serve(pln) })
	}
	if aln != nil {
		admin := base(s.adminHandler())
		s.admin = admin
		s.serve("admin", func() error { return admin.Serve(aln) })
	}
	s.snap.Load().start(s.ctx)
	s.wg.Go(s.refreshKeys)
	s.startIdentity()
	if err := s.startBackups(cfg); err != nil {
		s.closeAll()
		return err
	}
	if err := s.startCerts(s.certs.Load()); err != nil {
		s.closeAll()
		return err
	}
	s.logger.Info("moat started", "https", s.addrs["https"], "http", s.addrs["http"], "admin", s.addrs["admin"], "routes", len(cfg.Routes))
	if ca := s.DevCA(); ca != "" {
		s.logger.Warn("serving a development certificate: clients must trust the local CA; for production use tls.certificates or tls.acme (docs/tls.md)", "ca_cert", ca)
	}
	return nil
}

// startBackups starts the backup scheduler when the config has a backup
// section. Each result becomes a security event and sets the backup metrics.
func (s *Server) startBackups(cfg *config.Config) error {
	if cfg.Backup == nil {
		return nil
	}
	bs, err := BackupCrypto(cfg)
	if err != nil {
		return err
	}
	sched, err := backup.NewScheduler(backup.SchedulerOptions{
		Store:      s.state.Store,
		Dir:        bs.Dir,
		Interval:   cfg.Backup.Interval.D(),
		Retention:  cfg.Backup.Retention,
		Encryption: bs.Encryption,
		Decryption: bs.Decryption,
		Scratch:    bs.Scratch,
		Logger:     s.baseLogger.With("component", "backup"),
		OnResult:   s.backupResult,
	})
	if err != nil {
		return fmt.Errorf("backups: %w", err)
	}
	s.wg.Go(func() { _ = sched.Run(s.ctx) })
	return nil
}

func (s *Server) backupResult(res backup.Result) {
	e := event.Event{Time: time.Now(), Kind: "backup.verified", Outcome: event.Success, Rule: "backup.schedule",
		Details: map[string]string{"file": res.File}}
	if res.Verified {
		s.metrics.backupTS.Set(float64(time.Now().Unix()))
		s.metrics.backupOK.Set(1)
	} else {
		e.Outcome = event.Failure
		if res.File == "" {
			e.Kind = "backup.failed"
		}
		if res.Err != nil {
			e.Details["error"] = res.Err.Error()
		}
		s.metrics.backupOK.Set(0)
	}
	s.events.Record(s.ctx, e)
}

// refreshKeys reloads the key ring's data keys every minute, so that a
// rotation made by moat keys rotate in another process is picked up.
func (s *Server) refreshKeys() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.state.Ring.Reload(s.ctx); err != nil && s.ctx.Err() == nil {
				s.logger.Error("reloading the key ring", "err", err)
			}
		}
	}
}

// startCerts starts certificate management that needs running listeners
// (ACME answers its challenges on them).
func (s *Server) startCerts(ts *tlsState) error {
	ln := certs.Listeners{HTTPS: s.addrs["https"].String()}
	if a := s.addrs["http"]; a != nil {
		ln.HTTP = a.String()
	}
	if err := ts.m.Start(s.ctx, ln); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}

func (s *Server) serve(name string, run func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("%s listener: %w", name, err)
		}
	}()
}

// Addr returns the bound address of a listener: "https", "http" or "admin".
func (s *Server) Addr(name string) net.Addr { return s.addrs[name] }

// DevCA returns the path of the development CA certificate, or "" when
// certificates come from elsewhere.
func (s *Server) DevCA() string {
	if d := s.certs.Load().m.Dev(); d != nil {
		return d.CACertPath()
	}
	return ""
}

// TrustHint returns how to make clients trust the development CA, or ""
// when certificates come from elsewhere.
func (s *Server) TrustHint() string {
	if d := s.certs.Load().m.Dev(); d != nil {
		return d.TrustHint()
	}
	return ""
}

// Errors delivers serving errors that stop a listener.
func (s *Server) Errors() <-chan error { return s.errc }

// Reload validates nothing itself: cfg must already be validated. It
// compiles cfg and swaps it in atomically; on any error the running
// configuration stays in place. Listener addresses and limits take effect
// only at the next start, and a change to them is logged.
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	old := s.snap.Load()
	next, err := s.compile(cfg)
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		return err
	}
	var oldCerts *tlsState
	if !reflect.DeepEqual(old.cfg.TLS, cfg.TLS) || old.cfg.DataDir != cfg.DataDir {
		ts, err := newTLSState(s.ctx, cfg, s.baseLogger)
		if err == nil && len(s.addrs) > 0 {
			if err = s.startCerts(ts); err != nil {
				_ = ts.m.Close()
			}
		}
		if err != nil {
			next.close()
			s.metrics.reloads.WithLabelValues("failure").Inc()
			return err
		}
		oldCerts = s.certs.Swap(ts)
	} else if fs := s.certs.Load().m.Files(); fs != nil {
		// Same files: read them again now rather than at the next poll.
		if err := fs.Reload(); err != nil {
			s.logger.Warn("certificate files could not be reloaded; the previous certificates stay in use", "err", err)
		}
	}
	oldLim, newLim := old.cfg.Limits, cfg.Limits
	oldLim.ShutdownTimeout, newLim.ShutdownTimeout = 0, 0 // used as soon as it is loaded
	if !reflect.DeepEqual(old.cfg.Listen, cfg.Listen) || oldLim != newLim || old.cfg.Log.Level != cfg.Log.Level ||
		old.cfg.Database != cfg.Database || old.cfg.Keys != cfg.Keys || !reflect.DeepEqual(old.cfg.Backup, cfg.Backup) ||
		!reflect.DeepEqual(old.cfg.Accounts, cfg.Accounts) || !reflect.DeepEqual(old.cfg.OIDC, cfg.OIDC) ||
		!reflect.DeepEqual(old.cfg.JWT, cfg.JWT) || old.cfg.Assertion != cfg.Assertion {
		s.logger.Warn("listen, limits, log.level, database, keys, accounts, oidc, jwt, assertion or backup settings changed; they take effect at the next restart")
	}
	if err := s.state.Ring.Reload(s.ctx); err != nil {
		s.logger.Error("reloading the key ring", "err", err)
	}
	next.start(s.ctx)
	s.snap.Store(next)
	// In-flight requests hold the old snapshot; give them time before its
	// upstream connections and health checks stop.
	time.AfterFunc(cfg.Limits.ShutdownTimeout.D()+time.Second, func() {
		old.close()
		if oldCerts != nil {
			_ = oldCerts.m.Close()
		}
	})
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.metrics.reloadTS.SetToCurrentTime()
	s.logger.Info("configuration reloaded", "routes", len(cfg.Routes))
	return nil
}

// ReloadFailed records a reload that failed before reaching the server
// (for example a config file that did not validate).
func (s *Server) ReloadFailed() { s.metrics.reloads.WithLabelValues("failure").Inc() }

// Shutdown stops accepting connections, lets in-flight requests finish
// until ctx is done, then closes everything. The admin listener stays open
// until the gateway listeners have drained, answering /readyz with 503, so
// that a load balancer sees the instance leave.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining.Store(true)
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
				_ = srv.Close()
			}
		}()
	}
	wg.Wait()
	if s.admin != nil {
		if err := s.admin.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			_ = s.admin.Close()
		}
	}
	s.cancel()
	s.wg.Wait()
	s.snap.Load().close()
	_ = s.certs.Load().m.Close()
	if err := s.accounts.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.limits.close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.closeAudit(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.state.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Server) closeAll() {
	for _, srv := range s.servers {
		_ = srv.Close()
	}
	if s.admin != nil {
		_ = s.admin.Close()
	}
	s.cancel()
}

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

	"github.com/moatgw/moat/internal/certs"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/event"
)

// Options are what a Server is built from.
type Options struct {
	Config  *config.Config // validated, defaults applied
	Logger  *slog.Logger   // Moat's own messages
	Access  *slog.Logger   // access log; defaults to Logger
	Events  event.Recorder // security events; defaults to a slog sink on Logger
	Version string
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

	snap, err := s.compile(o.Config)
	if err != nil {
		return nil, err
	}
	ts, err := newTLSState(s.ctx, o.Config, o.Logger)
	if err != nil {
		snap.close()
		return nil, err
	}
	s.snap.Store(snap)
	s.certs.Store(ts)
	s.metrics.reloadTS.SetToCurrentTime()
	return s, nil
}

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

	gw := base(gateway{s: s})
	gw.TLSConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.certs.Load().conf, nil
		},
	}
	ln, err := net.Listen("tcp", cfg.Listen.HTTPS)
	if err != nil {
		return fmt.Errorf("https listener: %w", err)
	}
	s.addrs["https"] = ln.Addr()
	if lim.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, lim.MaxConnections)
	}
	s.servers = append(s.servers, gw)
	s.serve("https", func() error { return gw.ServeTLS(ln, "", "") })

	if cfg.Listen.HTTP != "" {
		plain := base(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Looked up per request: a reload may bring a new ACME manager.
			s.certs.Load().m.HTTPHandler(redirector{s: s}).ServeHTTP(w, r)
		}))
		pln, err := net.Listen("tcp", cfg.Listen.HTTP)
		if err != nil {
			s.closeAll()
			return fmt.Errorf("http listener: %w", err)
		}
		s.addrs["http"] = pln.Addr()
		s.servers = append(s.servers, plain)
		s.serve("http", func() error { return plain.Serve(pln) })
	}

	if cfg.Listen.Admin != "" {
		admin := base(s.adminHandler())
		aln, err := net.Listen("tcp", cfg.Listen.Admin)
		if err != nil {
			s.closeAll()
			return fmt.Errorf("admin listener: %w", err)
		}
		s.addrs["admin"] = aln.Addr()
		s.admin = admin
		s.serve("admin", func() error { return admin.Serve(aln) })
	}
	s.snap.Load().start(s.ctx)
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
	if !reflect.DeepEqual(old.cfg.Listen, cfg.Listen) || oldLim != newLim || old.cfg.Log.Level != cfg.Log.Level {
		s.logger.Warn("listen, limits or log.level settings changed; they take effect at the next restart")
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
	s.wg.Wait()
	s.cancel()
	s.snap.Load().close()
	_ = s.certs.Load().m.Close()
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

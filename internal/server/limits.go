package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/authz"
	"github.com/moatgw/moat/internal/config"
	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/ratelimit"
	"github.com/moatgw/moat/internal/request"
	"github.com/moatgw/moat/internal/shed"
)

// limiters are the rate limit stores, built once at start
// (rate_limits.store and redis_url are read at start only).
type limiters struct {
	open, closed ratelimit.Store        // by failure mode; the same store with memory
	failures     ratelimit.FailureStore // sign-in failure counts
	redis        *redis.Client
	v6Prefix     int
}

func (s *Server) openLimiters(ctx context.Context, cfg *config.Config) error {
	rl := cfg.RateLimits
	// Production passes no clock: the store then reads the cheaper
	// monotonic one. Tests pass theirs.
	mem := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: rl.MaxKeys, Now: s.testNow})
	memFailures := ratelimit.NewMemoryFailures(rl.MaxKeys, s.now)
	s.limits = &limiters{open: mem, closed: mem, failures: memFailures, v6Prefix: rl.IPv6Prefix}
	if rl.Store != config.StoreRedis {
		return nil
	}
	raw, err := resolveURL(rl.RedisURL)
	if err != nil {
		return fmt.Errorf("rate_limits.redis_url: %w", err)
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return errors.New("rate_limits.redis_url: not a valid Redis URL")
	}
	// Short timeouts: while Redis is away, a limit answers by its failure
	// mode at once rather than after the client's retries.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries = time.Second, 500*time.Millisecond, 500*time.Millisecond, 1
	client := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		s.logger.Warn("Redis for rate limits does not answer yet; limits follow their failure mode until it does", "err", err)
	}
	log := s.baseLogger
	s.limits.redis = client
	s.limits.open = ratelimit.NewRedis(ratelimit.RedisOptions{Client: client, Prefix: "moat:rl:", FailureMode: ratelimit.FailOpen, Fallback: mem, Logger: log})
	s.limits.closed = ratelimit.NewRedis(ratelimit.RedisOptions{Client: client, Prefix: "moat:rl:", FailureMode: ratelimit.FailClosed, Logger: log})
	mode := ratelimit.FailClosed
	if cfg.Accounts.Lockout.FailureMode == config.FailOpen {
		mode = ratelimit.FailOpen
	}
	s.limits.failures = ratelimit.NewRedisFailures(ratelimit.RedisFailuresOptions{Client: client, Prefix: "moat:failures:", FailureMode: mode, Fallback: memFailures, Logger: log})
	return nil
}

func (l *limiters) close() error {
	if l == nil || l.redis == nil {
		return nil
	}
	return l.redis.Close()
}

// routeLimit is one compiled limit.
type routeLimit struct {
	limit ratelimit.Limit
	key   string         // config.KeyIP, KeyPrincipal, KeyAPIKey, KeyRoute, KeyExpr
	expr  *authz.KeyExpr // with KeyExpr
	store ratelimit.Store
}

// compileLimits turns configured limits into compiled ones, split into
// those decided before authentication (by address or route) and after.
func (s *Server) compileLimits(ls []config.RateLimit) (pre, post []routeLimit, err error) {
	for _, l := range ls {
		rl := routeLimit{
			limit: ratelimit.Limit{Name: l.Name, Rate: l.Rate, Period: l.Per.D(), Burst: l.Burst},
			key:   l.Key,
			store: s.limits.open,
		}
		if l.FailureMode == config.FailClosed {
			rl.store = s.limits.closed
		}
		if err := rl.limit.Validate(); err != nil {
			return nil, nil, fmt.Errorf("rate limit %s: %w", l.Name, err)
		}
		if l.Key == config.KeyExpr {
			if rl.expr, err = authz.CompileKey(l.Expr); err != nil {
				return nil, nil, fmt.Errorf("rate limit %s: expr: %w", l.Name, err)
			}
		}
		// Limits that may count by who is calling are decided after
		// authentication; an expression may read the principal.
		if l.Key == config.KeyPrincipal || l.Key == config.KeyAPIKey || l.Key == config.KeyExpr {
			post = append(post, rl)
		} else {
			pre = append(pre, rl)
		}
	}
	return pre, post, nil
}

// newShed builds a load-shedding limiter, nil when max is 0.
func newShed(max int, ls config.LoadShedding) *shed.Limiter {
	if max <= 0 {
		return nil
	}
	return shed.New(shed.Options{MaxInFlight: max, MaxQueue: ls.MaxQueue, QueueWait: ls.QueueWait.D()})
}

// isPreflight reports whether r is a CORS preflight, which must not use up
// a client's allowance: the browser sends it on its own before the real
// request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// limitKey is what limit l counts for this request, or "" when it does
// not apply (a principal limit on an anonymous request, an API key limit
// on another kind of caller).
func (g gateway) limitKey(r *http.Request, l *routeLimit, info *request.Info, rt *compiledRoute) string {
	switch l.key {
	case config.KeyIP:
		return "ip:" + ratelimit.KeyIP(info.ClientIP, g.s.limits.v6Prefix)
	case config.KeyRoute:
		return "route:" + rt.name
	case config.KeyPrincipal:
		if p := info.Principal; p != nil {
			return "p:" + p.Method + ":" + p.Issuer + ":" + p.Subject
		}
	case config.KeyAPIKey:
		if p := info.Principal; p != nil && p.Method == authn.MethodAPIKey {
			return "k:" + p.KeyID
		}
	case config.KeyExpr:
		req := authz.Request{Method: r.Method, Path: r.URL.Path, Header: r.Header, ClientIP: info.ClientIP, Time: g.s.now(), Principal: info.Principal}
		if rt.query {
			req.Query = r.URL.Query()
		}
		k, err := l.expr.Eval(&req)
		if err != nil {
			// No answer for this request: every such request shares one
			// allowance, so leaving out what the expression reads is no
			// way around the limit.
			return "x!"
		}
		return "x:" + k
	}
	return ""
}

// rateLimit decides the limits in order. It returns true when the request
// may go on (setting the RateLimit headers), and answers 429 (or 503 when
// a fail-closed limit cannot be decided) otherwise.
func (g gateway) rateLimit(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute, limits ...[]routeLimit) bool {
	if isPreflight(r) {
		return true
	}
	var buf [8]ratelimit.Result
	results := buf[:0]
	for _, set := range limits {
		for i := range set {
			l := &set[i]
			key := g.limitKey(r, l, info, rt)
			if key == "" {
				continue
			}
			res, err := l.store.Take(r.Context(), key, l.limit, 1)
			if err != nil {
				g.unavailable(w, r, info, snap, "ratelimit.unavailable", "deciding a rate limit", err)
				return false
			}
			results = append(results, res)
			if !res.Allowed {
				ratelimit.Headers(w.Header(), results...)
				g.limited(w, r, info, snap, l.limit.Name, key)
				return false
			}
		}
	}
	if len(results) > 0 {
		ratelimit.Headers(w.Header(), results...)
	}
	return true
}

// limited answers 429 and records the refusal, aggregated: one event per
// limit and key in each 10-second window, the next one saying how many
// were left out.
func (g gateway) limited(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, name, key string) {
	problem.Write(w, r, info.ID, &problem.Error{Status: http.StatusTooManyRequests,
		Detail: "Too many requests: slow down and retry after the time in Retry-After."})
	g.s.metrics.limited.WithLabelValues(info.Route, name).Inc()
	n, ok := g.s.limitEvents.admit(name+"|"+key, g.s.now())
	if !ok {
		return
	}
	e := event.Event{
		Time: g.s.now(), Kind: "request.limited", Outcome: event.Denied, ClientIP: info.ClientIP.String(),
		Route: info.Route, RequestID: info.ID, Rule: "ratelimit." + name,
		Details: map[string]string{"method": r.Method, "path": truncate(r.URL.Path, 256), "key": strings.SplitN(key, ":", 2)[0]},
	}
	if info.Principal != nil {
		e.Principal = info.Principal.Name
	}
	if n > 0 {
		e.Details["suppressed"] = fmt.Sprint(n)
	}
	g.s.events.Record(r.Context(), e)
}

// eventWindow aggregates repeated events: the first per key in a window
// is recorded, the others counted and reported with the next one.
type eventWindow struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	seen   map[string]*windowEntry
}

type windowEntry struct {
	start      time.Time
	suppressed int
}

// admit reports whether an event for key should be recorded now, and how
// many were suppressed since the last one.
func (e *eventWindow) admit(key string, now time.Time) (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen == nil || len(e.seen) >= e.max {
		e.seen = make(map[string]*windowEntry)
	}
	w, ok := e.seen[key]
	if !ok {
		e.seen[key] = &windowEntry{start: now}
		return 0, true
	}
	if now.Sub(w.start) < e.window {
		w.suppressed++
		return 0, false
	}
	n := w.suppressed
	w.start, w.suppressed = now, 0
	return n, true
}

// shedLoad admits the request under the global and the route's in-flight
// caps, or answers 503 with Retry-After.
func (g gateway) shedLoad(w http.ResponseWriter, r *http.Request, info *request.Info, snap *snapshot, rt *compiledRoute) (func(), bool) {
	release, which, ok := shed.Both(r.Context(), snap.shed, rt.shed)
	if ok {
		return release, true
	}
	g.s.metrics.shed.WithLabelValues(info.Route, which).Inc()
	w.Header().Set("Retry-After", "1")
	problem.Write(w, r, info.ID, &problem.Error{Status: http.StatusServiceUnavailable,
		Detail: "Moat is busy: too many requests at once. Retry shortly."})
	if n, ok := g.s.limitEvents.admit("shed|"+which+"|"+info.Route, g.s.now()); ok {
		e := event.Event{Time: g.s.now(), Kind: "request.shed", Outcome: event.Denied, ClientIP: info.ClientIP.String(),
			Route: info.Route, RequestID: info.ID, Rule: "shed." + which}
		if n > 0 {
			e.Details = map[string]string{"suppressed": fmt.Sprint(n)}
		}
		g.s.events.Record(r.Context(), e)
	}
	return nil, false
}

package config

import (
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Access policies of a route.
const (
	PolicyPublic        = "public"        // anyone may use the route
	PolicyAuthenticated = "authenticated" // a signed-in user may use the route
	PolicyDeny          = "deny"          // no one may use the route
)

// Authentication methods a route may accept.
const (
	MethodSession = "session"
	MethodJWT     = "jwt"
	MethodAPIKey  = "apikey"
	MethodMTLS    = "mtls"
)

// ACME challenge types.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Log levels.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

const day = 24 * time.Hour

// ApplyDefaults fills in every setting the configuration leaves out. A
// string, list or boolean is defaulted when it is empty. A number,
// duration or size is defaulted when it is zero, unless the file wrote the
// zero explicitly: a Config from Load or Parse remembers which keys its
// file set, so "max_fails: 0" stays 0. For a Config built in code every
// zero is defaulted. ApplyDefaults also lower-cases host names. Calling it
// again changes nothing.
func (c *Config) ApplyDefaults() {
	str(&c.DataDir, "./moat-data")
	str(&c.Listen.HTTPS, ":8443")
	str(&c.Listen.Admin, "127.0.0.1:9090")

	l := &c.Limits
	num(c, &l.ReadHeaderTimeout, "limits.read_header_timeout", Duration(10*time.Second))
	num(c, &l.ReadTimeout, "limits.read_timeout", Duration(60*time.Second))
	// WriteTimeout stays 0 (off): a limit would cut server-sent events and long downloads.
	num(c, &l.IdleTimeout, "limits.idle_timeout", Duration(120*time.Second))
	num(c, &l.MaxHeaderBytes, "limits.max_header_bytes", 32<<10)
	num(c, &l.MaxConnections, "limits.max_connections", 10000)
	num(c, &l.ShutdownTimeout, "limits.shutdown_timeout", Duration(30*time.Second))

	num(c, &c.TLS.HSTS.MaxAge, "tls.hsts.max_age", Duration(730*day))
	boolean(&c.TLS.HSTS.IncludeSubdomains, true)
	if dev := c.TLS.Dev; dev != nil {
		if len(dev.Hosts) == 0 {
			dev.Hosts = []string{"localhost", "127.0.0.1", "::1"}
		}
		lower(dev.Hosts)
	}
	if acme := c.TLS.ACME; acme != nil {
		if len(acme.Challenges) == 0 {
			acme.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
		}
		lower(acme.Domains)
	}

	str(&c.Log.Level, LevelInfo)
	boolean(&c.Log.Access, true)

	c.accountDefaults()
	c.identityDefaults()
	c.limitDefaults()

	if b := c.Backup; b != nil {
		str(&b.Dir, filepath.Join(c.DataDir, "backups"))
		num(c, &b.Interval, "backup.interval", Duration(24*time.Hour))
		num(c, &b.Retention, "backup.retention", 7)
	}

	for i := range c.Routes {
		r := &c.Routes[i]
		p := indexPath("routes", i) + "."
		lower(r.Hosts)
		str(&r.Path, "/")
		num(c, &r.MaxFails, p+"max_fails", 3)
		num(c, &r.FailTimeout, p+"fail_timeout", Duration(10*time.Second))
		num(c, &r.MaxRequestBody, p+"max_request_body", 10<<20)
		// MaxResponseBody stays 0 (no limit).
		num(c, &r.Timeout, p+"timeout", Duration(30*time.Second))
		boolean(&r.MaskErrors, true)
		if (r.Policy == PolicyAuthenticated || r.Policy == PolicyPublic && len(r.Allow)+len(r.Deny) > 0) && len(r.Accept) == 0 {
			r.Accept = []string{MethodSession}
		}
		if w := r.WAF; w != nil {
			str(&w.Mode, "block")
			str(&w.BodyLimitAction, "reject")
		}
		if oa := r.OpenAPI; oa != nil {
			str(&oa.Responses, ResponsesOff)
			num(c, &oa.MaxBody, p+"openapi.max_body", ByteSize(1<<20))
		}
		if h := r.HealthCheck; h != nil {
			num(c, &h.Interval, p+"health_check.interval", Duration(10*time.Second))
			num(c, &h.Timeout, p+"health_check.timeout", Duration(2*time.Second))
		}
	}
}

func (c *Config) accountDefaults() {
	a := &c.Accounts
	str(&a.PublicURL, c.defaultPublicURL())
	if a.MFARoles == nil {
		a.MFARoles = []string{"admin", "moat:admin"}
	}
	num(c, &a.EnrollLinkTTL, "accounts.enroll_link_ttl", Duration(72*time.Hour))
	pw := &a.Password
	num(c, &pw.MinLength, "accounts.password.min_length", 12)
	num(c, &pw.MaxLength, "accounts.password.max_length", 128)
	num(c, &pw.Memory, "accounts.password.memory", 19<<20)
	num(c, &pw.Iterations, "accounts.password.iterations", 2)
	num(c, &pw.Parallelism, "accounts.password.parallelism", 1)
	num(c, &pw.HashMemoryBudget, "accounts.password.hash_memory_budget", 256<<20)
	num(c, &pw.HashWait, "accounts.password.hash_wait", Duration(2*time.Second))
	lo := &a.Lockout
	num(c, &lo.MaxFailures, "accounts.lockout.max_failures", 5)
	num(c, &lo.AddressMaxFailures, "accounts.lockout.address_max_failures", 20)
	num(c, &lo.Window, "accounts.lockout.window", Duration(15*time.Minute))
	num(c, &lo.LockFor, "accounts.lockout.lock_for", Duration(15*time.Minute))
	num(c, &lo.BackOff, "accounts.lockout.back_off", Duration(time.Second))
	str(&lo.FailureMode, FailClosed)
	se := &a.Sessions
	num(c, &se.IdleTimeout, "accounts.sessions.idle_timeout", Duration(30*time.Minute))
	num(c, &se.AbsoluteTimeout, "accounts.sessions.absolute_timeout", Duration(12*time.Hour))
	pk := &a.Passkeys
	str(&pk.DisplayName, "Moat")
	if u, err := url.Parse(a.PublicURL); err == nil && u.Hostname() != "" {
		str(&pk.RPID, strings.ToLower(u.Hostname()))
		if len(pk.Origins) == 0 {
			pk.Origins = []string{strings.ToLower(u.Scheme + "://" + u.Host)}
		}
	}
}

// defaultPublicURL guesses the address users reach Moat at from the
// certificates' and routes' host names and the HTTPS listener's port.
func (c *Config) defaultPublicURL() string {
	host := "localhost"
	var names []string
	if c.TLS.ACME != nil {
		names = append(names, c.TLS.ACME.Domains...)
	}
	if c.TLS.Dev != nil {
		names = append(names, c.TLS.Dev.Hosts...)
	}
	for _, r := range c.Routes {
		names = append(names, r.Hosts...)
	}
	for _, n := range names {
		if n != "" && !strings.HasPrefix(n, "*") {
			host = strings.ToLower(n)
			break
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		host = "[" + host + "]"
	}
	_, port, err := net.SplitHostPort(c.Listen.HTTPS)
	if err != nil || port == "443" || port == "" || port == "0" {
		return "https://" + host
	}
	return "https://" + host + ":" + port
}

func (c *Config) identityDefaults() {
	for i := range c.OIDC.Providers {
		p := &c.OIDC.Providers[i]
		str(&p.DisplayName, p.Name)
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"openid", "email", "profile"}
		}
	}
	num(c, &c.JWT.MaxTokenBytes, "jwt.max_token_bytes", 8<<10)
	for i := range c.JWT.Issuers {
		is := &c.JWT.Issuers[i]
		if len(is.Algorithms) == 0 {
			is.Algorithms = []string{"RS256", "ES256", "EdDSA"}
		}
		num(c, &is.ClockSkew, indexPath("jwt.issuers", i)+".clock_skew", Duration(30*time.Second))
	}
	num(c, &c.Assertion.Lifetime, "assertion.lifetime", Duration(time.Minute))
	num(c, &c.Assertion.Rotation, "assertion.rotation", Duration(24*time.Hour))
}

// Rate limit stores and failure modes.
const (
	StoreMemory = "memory"
	StoreRedis  = "redis"
	FailOpen    = "fail_open"
	FailClosed  = "fail_closed"
)

// Rate limit keys.
const (
	KeyIP        = "ip"
	KeyPrincipal = "principal"
	KeyAPIKey    = "apikey"
	KeyRoute     = "route"
	KeyExpr      = "expr"
)

func (c *Config) limitDefaults() {
	rl := &c.RateLimits
	str(&rl.Store, StoreMemory)
	str(&rl.FailureMode, FailOpen)
	num(c, &rl.MaxKeys, "rate_limits.max_keys", 100_000)
	num(c, &rl.IPv6Prefix, "rate_limits.ipv6_prefix", 64)
	limits := func(ls []RateLimit, path string) {
		for i := range ls {
			l := &ls[i]
			num(c, &l.Per, indexPath(path, i)+".per", Duration(time.Second))
			if l.Burst == 0 {
				l.Burst = l.Rate
			}
			str(&l.FailureMode, rl.FailureMode)
		}
	}
	limits(rl.Global, "rate_limits.global")
	for i := range c.Routes {
		limits(c.Routes[i].RateLimits, indexPath("routes", i)+".rate_limits")
	}
	ls := &c.LoadShedding
	num(c, &ls.MaxQueue, "load_shedding.max_queue", 100)
	num(c, &ls.QueueWait, "load_shedding.queue_wait", Duration(100*time.Millisecond))
}

func str(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func boolean(b **bool, def bool) {
	if *b == nil {
		*b = &def
	}
}

// num sets *v to def when it is zero and the file did not write it.
func num[T ~int | ~int64](c *Config, v *T, path string, def T) {
	if *v == 0 && !c.src.has(path) {
		*v = def
	}
}

func lower(names []string) {
	for i, n := range names {
		names[i] = strings.ToLower(n)
	}
}

// MasksErrors reports whether upstream 5xx bodies are replaced by a
// generic problem page (the default).
func (r Route) MasksErrors() bool { return r.MaskErrors == nil || *r.MaskErrors }

// IncludesSubdomains reports whether HSTS covers subdomains (the default).
func (h HSTS) IncludesSubdomains() bool { return h.IncludeSubdomains == nil || *h.IncludeSubdomains }

// Value returns the Strict-Transport-Security header value for h, such as
// "max-age=63072000; includeSubDomains".
func (h HSTS) Value() string {
	v := "max-age=" + strconv.FormatInt(int64(h.MaxAge.D()/time.Second), 10)
	if h.IncludesSubdomains() {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// AccessEnabled reports whether the access log is written (the default).
func (l Log) AccessEnabled() bool { return l.Access == nil || *l.Access }

// SlogLevel returns the level as a slog.Level; an empty or unknown level
// is Info.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case LevelDebug:
		return slog.LevelDebug
	case LevelWarn:
		return slog.LevelWarn
	case LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

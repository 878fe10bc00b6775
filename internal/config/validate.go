package config

import (
	"errors"
	"filippo.io/age"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"time"
)

// minHSTSMaxAge is the shortest HSTS max-age accepted.
const minHSTSMaxAge = 365 * day

// Validate checks the whole configuration and reports every problem at
// once, as Problems, or returns nil. Call it after ApplyDefaults: several
// settings are required and only defaults fill them. For a Config from
// Load or Parse each problem carries the file position of the offending
// value, or of the nearest enclosing one when the value is missing.
// Validate reads the file system: certificate, key and CA files must exist
// and key files must be private.
func (c *Config) Validate() error {
	v := &validator{src: c.src}
	v.listen(c.Listen)
	v.limits(c.Limits)
	v.tls(c.TLS, c.Listen)
	for i, p := range c.TrustedProxies {
		v.check(indexPath("trusted_proxies", i), checkProxy(p))
	}
	for i, h := range c.ReservedHeaders {
		if !isToken(h) {
			v.add(indexPath("reserved_headers", i), "%q is not a valid header field name", clip(h, 60))
		}
	}
	v.headers("headers", c.Headers)
	v.check("log.level", oneOf("log level", c.Log.Level, LevelDebug, LevelInfo, LevelWarn, LevelError))
	v.check("database.url", checkDatabaseURL(c.Database.URL))
	v.check("database.migrate_url", checkDatabaseURL(c.Database.MigrateURL))
	if c.Keys.MasterKey == "" {
		v.add("keys.master_key", "required: Moat encrypts secrets at rest and refuses to start without a master key; make one with `umask 077 && moat keys generate > /etc/moat/master.key` and set master_key: file:/etc/moat/master.key")
	}
	v.accounts(c.Accounts)
	v.identity(c)
	v.rateLimits(c)
	if c.Backup != nil {
		v.backup(*c.Backup)
	}
	v.routes(c.Routes)
	if len(v.problems) == 0 {
		return nil
	}
	return v.problems.tidy()
}

// validator collects problems, placing each in the file when it can.
type validator struct {
	src      *source
	problems Problems
}

func (v *validator) add(path, format string, args ...any) {
	p := Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	if v.src != nil {
		p.File = v.src.file
		if pos, ok := v.src.find(path); ok {
			p.Line, p.Col = pos.line, pos.col
		}
	}
	v.problems = append(v.problems, p)
}

// check records err, if any, as the problem at path.
func (v *validator) check(path string, err error) {
	if err != nil {
		v.add(path, "%s", err)
	}
}

// positive requires d > 0.
func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, "must be greater than 0")
	}
}

// nonNegative requires n >= 0.
func nonNegative[T ~int | ~int64](v *validator, path string, n T) {
	if n < 0 {
		v.add(path, "must not be negative")
	}
}

func (v *validator) listen(l Listen) {
	if l.HTTPS == "" {
		v.add("listen.https", `required: the address of the HTTPS listener, such as ":8443"`)
	} else {
		v.check("listen.https", checkAddr(l.HTTPS))
	}
	if l.HTTP != "" {
		v.check("listen.http", checkAddr(l.HTTP))
	}
	switch {
	case l.Admin == "":
		v.add("listen.admin", `required: the address of the admin listener, such as "127.0.0.1:9090"`)
	case checkAddr(l.Admin) != nil:
		v.check("listen.admin", checkAddr(l.Admin))
	case !l.AdminPublic && !isLoopback(l.Admin):
		v.add("listen.admin", "%q is not a loopback address: the admin listener serves metrics and health, so keep it on 127.0.0.1 or ::1, or set listen.admin_public: true to expose it", l.Admin)
	}
}

func (v *validator) limits(l Limits) {
	v.positive("limits.read_header_timeout", l.ReadHeaderTimeout)
	nonNegative(v, "limits.read_timeout", l.ReadTimeout)
	nonNegative(v, "limits.write_timeout", l.WriteTimeout)
	v.positive("limits.idle_timeout", l.IdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		v.add("limits.max_header_bytes", "must be greater than 0")
	}
	nonNegative(v, "limits.max_connections", l.MaxConnections)
	nonNegative(v, "limits.shutdown_timeout", l.ShutdownTimeout)
}

func (v *validator) tls(t TLS, l Listen) {
	var sources []string
	if len(t.Certificates) > 0 {
		sources = append(sources, "certificates")
	}
	if t.Dev != nil {
		sources = append(sources, "dev")
	}
	if t.ACME != nil {
		sources = append(sources, "acme")
	}
	switch len(sources) {
	case 0:
		v.add("tls", `no certificate source: set one of tls.certificates, tls.acme or tls.dev (write "dev: {}" under tls for local testing)`)
	case 1:
	default:
		v.add("tls."+sources[1], "tls.certificates, tls.dev and tls.acme exclude each other: choose one (found %s)", strings.Join(sources, ", "))
	}

	for i, cert := range t.Certificates {
		p := indexPath("tls.certificates", i)
		if cert.Cert == "" {
			v.add(p+".cert", "required: the path to a PEM certificate chain")
		} else if err := checkFile(cert.Cert); err != nil {
			v.add(p+".cert", "certificate file %q: %v", cert.Cert, err)
		}
		if cert.Key == "" {
			v.add(p+".key", "required: the path to a PEM private key")
		} else if err := checkPrivateFile(cert.Key); err != nil {
			v.add(p+".key", "key file %q: %v", cert.Key, err)
		}
	}
	if t.Dev != nil {
		for i, h := range t.Dev.Hosts {
			v.check(indexPath("tls.dev.hosts", i), checkHost(h, true))
		}
	}
	if t.ACME != nil {
		v.acme(*t.ACME, l)
	}
	if t.HSTS.MaxAge < Duration(minHSTSMaxAge) {
		v.add("tls.hsts.max_age", "must be at least 365d (one year), got %s", t.HSTS.MaxAge)
	}
}

func (v *validator) acme(a ACME, l Listen) {
	if len(a.Domains) == 0 {
		v.add("tls.acme.domains", "at least one domain is required")
	}
	for i, d := range a.Domains {
		p := indexPath("tls.acme.domains", i)
		if strings.Contains(d, "*") {
			v.add(p, "wildcard names need the DNS-01 challenge, which Moat does not support: list each name")
			continue
		}
		if _, err := netip.ParseAddr(d); err == nil {
			v.add(p, "%q: want a DNS name, not an IP address", d)
			continue
		}
		if err := checkDNSName(d); err != nil {
			v.add(p, "%q: %v", clip(d, 60), err)
		}
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			v.add("tls.acme.email", "%q is not an email address", clip(a.Email, 60))
		}
	}
	if a.CA != "" {
		v.check("tls.acme.ca", checkURL(a.CA, "https"))
	}
	if a.CARoot != "" {
		if err := checkFile(a.CARoot); err != nil {
			v.add("tls.acme.ca_root", "CA file %q: %v", a.CARoot, err)
		}
	}
	for i, ch := range a.Challenges {
		p := indexPath("tls.acme.challenges", i)
		if err := oneOf("challenge", ch, ChallengeHTTP01, ChallengeTLSALPN01); err != nil {
			v.check(p, err)
		} else if ch == ChallengeHTTP01 && l.HTTP == "" {
			v.add(p, `the http-01 challenge needs the plain-HTTP listener: set listen.http (such as ":80") or use only tls-alpn-01`)
		}
	}
	if !a.AcceptTOS {
		v.add("tls.acme.accept_tos", "must be true: set accept_tos: true to accept the CA's terms of service")
	}
}

func (v *validator) backup(b Backup) {
	switch {
	case len(b.Recipients) == 0 && b.Passphrase == "":
		v.add("backup", "set recipients (age public keys) or passphrase: backups are always encrypted")
	case len(b.Recipients) > 0 && b.Passphrase != "":
		v.add("backup.passphrase", "set recipients or passphrase, not both: an age file is encrypted to one or the other")
	case len(b.Recipients) > 0 && b.Identity == "":
		v.add("backup.identity", "required with recipients: the age identity (a secret reference) that decrypts each new backup to verify it")
	}
	for i, r := range b.Recipients {
		if _, err := age.ParseX25519Recipient(r); err != nil {
			v.add(indexPath("backup.recipients", i), "%q is not an age X25519 recipient (age1...)", clip(r, 70))
		}
	}
	if b.Interval.D() < time.Minute {
		v.add("backup.interval", "must be at least 1m")
	}
	if b.Retention < 1 {
		v.add("backup.retention", "must keep at least one backup")
	}
}

// checkDatabaseURL accepts an empty URL (SQLite), a secret reference, or an
// inline PostgreSQL URL that holds no password.
func checkDatabaseURL(s string) error {
	if s == "" || isSecretRef(s) {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" && u.Query().Get("host") == "" {
		return errors.New("want a PostgreSQL URL such as postgres://moat@db.example.com/moat?sslmode=verify-full, a secret reference (env:NAME, file:PATH), or nothing for SQLite")
	}
	if _, has := u.User.Password(); has || u.Query().Has("password") {
		return errors.New("the URL holds a password: put the whole URL in a secret reference (env:NAME or file:PATH) instead")
	}
	return nil
}

// headers checks that each header value can be sent.
func (v *validator) headers(path string, h Headers) {
	rv := reflect.ValueOf(h)
	for _, f := range yamlFields(rv.Type()) {
		if !validHeaderValue(rv.Field(f.index).String()) {
			v.add(joinPath(path, f.name), "must not contain control characters")
		}
	}
	switch strings.ToUpper(h.FrameOptions) {
	case "", "OFF", "DENY", "SAMEORIGIN":
	default:
		v.add(joinPath(path, "frame_options"), "%q must be DENY, SAMEORIGIN or off", clip(h.FrameOptions, 40))
	}
}

func (v *validator) routes(routes []Route) {
	if len(routes) == 0 {
		v.add("routes", "at least one route is required")
		return
	}
	names := make(map[string]int)
	matches := make(map[string]int)
	for i, r := range routes {
		p := indexPath("routes", i)
		switch {
		case r.Name == "":
			v.add(p+".name", "required: every route needs a name")
		case !routeName.MatchString(r.Name):
			v.add(p+".name", "%q must be 1 to 63 lower-case letters, digits, _ or -, starting with a letter or digit", clip(r.Name, 70))
		default:
			if j, ok := names[r.Name]; ok {
				v.add(p+".name", "duplicate route name %q (also routes[%d])", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		v.route(p, r)

		// Two routes overlap when they share a host (or both have none)
		// and their paths differ at most by a trailing slash.
		hosts := r.Hosts
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		for _, h := range hosts {
			key := strings.TrimSuffix(strings.ToLower(h), ".") + " " + strings.TrimRight(r.Path, "/")
			if j, ok := matches[key]; ok && j != i {
				v.add(p, "matches the same requests as routes[%d] (%s) for host %q and path %q: one of them could never match", j, routes[j].Name, displayHost(h), r.Path)
				break
			}
			matches[key] = i
		}
	}
}

func displayHost(h string) string {
	if h == "" {
		return "*"
	}
	return h
}

func (v *validator) route(p string, r Route) {
	switch r.Policy {
	case "":
		v.add(p+".policy", `missing: every route must declare its access policy ("public", "authenticated" or "deny"); deny by default`)
	default:
		v.check(p+".policy", oneOf("policy", r.Policy, PolicyPublic, PolicyAuthenticated, PolicyDeny))
	}
	if len(r.Roles) > 0 && r.Policy != PolicyAuthenticated {
		v.add(p+".roles", "roles apply only to routes whose policy is authenticated")
	}
	v.routeMethods(p, r)
	v.accessRules(p, r)
	for i, role := range r.Roles {
		v.check(indexPath(p+".roles", i), checkRole(role))
	}
	if r.Path == "/.moat" || strings.HasPrefix(r.Path, "/.moat/") {
		v.add(p+".path", "paths under /.moat/ are reserved for Moat's login portal")
	}
	if r.Path == "/.well-known/moat" || strings.HasPrefix(r.Path, "/.well-known/moat/") {
		v.add(p+".path", "paths under /.well-known/moat/ are reserved for Moat's published keys")
	}
	if len(r.Upstreams) == 0 && r.Policy != PolicyDeny {
		v.add(p+".upstreams", "at least one upstream URL is required unless the policy is deny")
	}
	for i, u := range r.Upstreams {
		v.check(indexPath(p+".upstreams", i), checkURL(u, "http", "https"))
	}
	seen := make(map[string]bool)
	for i, h := range r.Hosts {
		hp := indexPath(p+".hosts", i)
		if err := checkHost(h, true); err != nil {
			v.add(hp, "%q: %v", clip(h, 60), err)
		} else if seen[h] {
			v.add(hp, "%q is listed twice", h)
		}
		seen[h] = true
	}
	v.check(p+".path", checkRoutePath(r.Path))

	if ca := r.UpstreamTLS.CA; ca != "" {
		if err := checkFile(ca); err != nil {
			v.add(p+".upstream_tls.ca", "CA file %q: %v", ca, err)
		}
	}
	if sn := r.UpstreamTLS.ServerName; sn != "" {
		if err := checkHost(sn, false); err != nil {
			v.add(p+".upstream_tls.server_name", "%q: %v", clip(sn, 60), err)
		}
	}
	for i, pin := range r.UpstreamTLS.PinSPKI {
		v.check(indexPath(p+".upstream_tls.pin_spki", i), checkPin(pin))
	}

	if hc := r.HealthCheck; hc != nil {
		switch {
		case hc.Path == "":
			v.add(p+".health_check.path", `required: the path to request, such as "/healthz"`)
		case !strings.HasPrefix(hc.Path, "/"):
			v.add(p+".health_check.path", `must start with "/"`)
		case strings.ContainsFunc(hc.Path, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }):
			v.add(p+".health_check.path", "must not contain spaces, control characters or a fragment")
		}
		v.positive(p+".health_check.interval", hc.Interval)
		v.positive(p+".health_check.timeout", hc.Timeout)
	}

	nonNegative(v, p+".max_fails", r.MaxFails)
	if r.MaxFails > 0 {
		v.positive(p+".fail_timeout", r.FailTimeout)
	}
	nonNegative(v, p+".max_request_body", r.MaxRequestBody)
	q := r.Request
	nonNegative(v, p+".request.max_url_bytes", q.MaxURLBytes)
	nonNegative(v, p+".request.max_headers", q.MaxHeaders)
	nonNegative(v, p+".request.max_query_params", q.MaxQueryParams)
	nonNegative(v, p+".request.max_cookies", q.MaxCookies)
	nonNegative(v, p+".request.max_json_depth", q.MaxJSONDepth)
	nonNegative(v, p+".request.max_form_fields", q.MaxFormFields)
	for t, c := range q.BodyCaps {
		if c == 0 {
			v.add(p+".request.body_caps", "cap for %q must be greater than 0", clip(t, 60))
		}
	}
	if err := r.Hygiene().Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			v.add(p+".request", "%s", line)
		}
	}
	if oa := r.OpenAPI; oa != nil {
		v.openAPI(p+".openapi", r, oa)
	}
	v.crossOrigin(p, r)
	v.checkWAF(p, r)
	v.cookies(p, r)
	nonNegative(v, p+".max_response_body", r.MaxResponseBody)
	nonNegative(v, p+".timeout", r.Timeout)
	v.headers(p+".headers", r.Headers)
}

package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testFiles writes the files that certificate and CA settings refer to.
type testFiles struct {
	cert, key, openKey, ca string
}

func newTestFiles(t *testing.T) testFiles {
	t.Helper()
	dir := t.TempDir()
	f := testFiles{
		cert:    filepath.Join(dir, "cert.pem"),
		key:     filepath.Join(dir, "key.pem"),
		openKey: filepath.Join(dir, "open-key.pem"),
		ca:      filepath.Join(dir, "ca.pem"),
	}
	for path, mode := range map[string]os.FileMode{f.cert: 0o644, f.key: 0o600, f.openKey: 0o644, f.ca: 0o644} {
		if err := os.WriteFile(path, []byte("-----BEGIN TEST-----\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // umask may have narrowed it
			t.Fatal(err)
		}
	}
	return f
}

const testRecipient = "age13j0x9v8t7g7a8pje2q9rjr4z7q48lv4rq766rx6knndqksygnqdsvx6zgv"

// validBase is a valid configuration with two routes, from a file.
func validBase(t *testing.T) *Config {
	t.Helper()
	c, err := Parse("moat.yaml", withKeys(`tls:
  dev: {}
routes:
  - name: api
    hosts: [api.example.com]
    path: /v1
    policy: public
    upstreams: [http://127.0.0.1:8081]
  - name: web
    policy: public
    upstreams: [https://web.internal:8443/base]
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pin is a valid pin_spki entry: base64 of 32 bytes.
const pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

func TestValidateRules(t *testing.T) {
	files := newTestFiles(t)
	tests := []struct {
		name   string
		mutate func(c *Config)
		path   string // of the expected problem
		msg    string // part of its message
	}{
		// Routes.
		{"no routes", func(c *Config) { c.Routes = nil }, "routes", "at least one route is required"},
		{"route without name", func(c *Config) { c.Routes[0].Name = "" }, "routes[0].name", "required"},
		{"route name with capitals", func(c *Config) { c.Routes[0].Name = "API" }, "routes[0].name", "lower-case letters"},
		{"route name with a dot", func(c *Config) { c.Routes[0].Name = "a.b" }, "routes[0].name", "lower-case letters"},
		{"route name too long", func(c *Config) { c.Routes[0].Name = strings.Repeat("a", 64) }, "routes[0].name", "1 to 63"},
		{"route name starting with a dash", func(c *Config) { c.Routes[0].Name = "-a" }, "routes[0].name", "starting with a letter or digit"},
		{"duplicate route name", func(c *Config) { c.Routes[1].Name = "api" }, "routes[1].name", `duplicate route name "api" (also routes[0])`},
		{"missing policy", func(c *Config) { c.Routes[0].Policy = "" }, "routes[0].policy", "every route must declare its access policy"},
		{"unknown policy", func(c *Config) { c.Routes[0].Policy = "pubic" }, "routes[0].policy", `unknown policy "pubic": want "public", "authenticated", "deny" (did you mean "public"?)`},
		{"roles on a public route", func(c *Config) { c.Routes[0].Roles = []string{"admin"} }, "routes[0].roles", "only to routes whose policy is authenticated"},
		{"bad role name", func(c *Config) { c.Routes[0].Policy = PolicyAuthenticated; c.Routes[0].Roles = []string{"Ad min"} }, "routes[0].roles[0]", "lower-case letters"},
		{"route under the portal prefix", func(c *Config) { c.Routes[0].Path = "/.moat/x" }, "routes[0].path", "reserved for Moat's login portal"},
		{"route over the published keys", func(c *Config) { c.Routes[0].Path = "/.well-known/moat" }, "routes[0].path", "reserved for Moat's published keys"},

		// Identity.
		{"methods on a public route", func(c *Config) { c.Routes[0].Accept = []string{"jwt"} }, "routes[0].accept", "only to routes whose policy is authenticated"},
		{"unknown method", func(c *Config) { c.Routes[0].Policy = PolicyAuthenticated; c.Routes[0].Accept = []string{"basic"} }, "routes[0].accept[0]", `unknown method "basic"`},
		{"jwt without issuers", func(c *Config) { c.Routes[0].Policy = PolicyAuthenticated; c.Routes[0].Accept = []string{"jwt"} }, "routes[0].accept[0]", "jwt needs at least one issuer"},
		{"mtls without CAs", func(c *Config) { c.Routes[0].Policy = PolicyAuthenticated; c.Routes[0].Accept = []string{"mtls"} }, "routes[0].client_certs", "required with the mtls method"},
		{"client certs without mtls", func(c *Config) {
			c.Routes[0].Policy = PolicyAuthenticated
			c.Routes[0].ClientCerts = &ClientCerts{CAs: []string{files.ca}}
		}, "routes[0].client_certs", "does not list mtls"},
		{"oidc provider with an inline secret", func(c *Config) {
			c.OIDC.Providers = []OIDCProvider{{Name: "corp", Issuer: "https://idp.example.com", ClientID: "moat", ClientSecret: "hunter2"}}
		}, "oidc.providers[0].client_secret", "must be a secret reference"},
		{"oidc provider over plain http", func(c *Config) {
			c.OIDC.Providers = []OIDCProvider{{Name: "corp", Issuer: "http://idp.example.com", ClientID: "moat", ClientSecret: "env:X"}}
		}, "oidc.providers[0].issuer", "only for a loopback address"},
		{"oidc provider name with capitals", func(c *Config) {
			c.OIDC.Providers = []OIDCProvider{{Name: "Corp", Issuer: "https://idp.example.com", ClientID: "moat", ClientSecret: "env:X"}}
		}, "oidc.providers[0].name", "lower-case letters"},
		{"role map without a claim", func(c *Config) {
			c.OIDC.Providers = []OIDCProvider{{Name: "corp", Issuer: "https://idp.example.com", ClientID: "moat", ClientSecret: "env:X",
				RoleMap: []RoleMapping{{From: "eng", Roles: []string{"user"}}}}}
		}, "oidc.providers[0].role_map", "needs roles_claim"},
		{"jwt issuer without audiences", func(c *Config) { c.JWT.Issuers = []JWTIssuer{{Issuer: "https://idp.example.com"}} }, "jwt.issuers[0].audiences", "required"},
		{"jwt issuer with HS256", func(c *Config) {
			c.JWT.Issuers = []JWTIssuer{{Issuer: "https://idp.example.com", Audiences: []string{"api"}, Algorithms: []string{"HS256"}}}
		}, "jwt.issuers[0].algorithms[0]", "never are"},
		{"jwt issuer with alg none", func(c *Config) {
			c.JWT.Issuers = []JWTIssuer{{Issuer: "https://idp.example.com", Audiences: []string{"api"}, Algorithms: []string{"none"}}}
		}, "jwt.issuers[0].algorithms[0]", "is not accepted"},
		{"jwt clock skew too lax", func(c *Config) {
			c.JWT.Issuers = []JWTIssuer{{Issuer: "https://idp.example.com", Audiences: []string{"api"}, ClockSkew: Duration(time.Hour)}}
		}, "jwt.issuers[0].clock_skew", "between 0 and 5m"},
		{"assertion lifetime too long", func(c *Config) { c.Assertion.Lifetime = Duration(time.Hour) }, "assertion.lifetime", "at most 10m"},

		// Access rules.
		{"rules on a deny route", func(c *Config) { c.Routes[0].Policy = PolicyDeny; c.Routes[0].Allow = []AccessRule{{}} }, "routes[0].allow", "policy is deny refuses everything"},
		{"rule method in lower case", func(c *Config) { c.Routes[0].Allow = []AccessRule{{Methods: []string{"get"}}} }, "routes[0].allow[0].methods[0]", "upper case"},
		{"rule path outside the route", func(c *Config) {
			c.Routes[0].Path = "/api"
			c.Routes[0].Deny = []AccessRule{{Paths: []string{"/admin"}}}
		}, "routes[0].deny[0].paths[0]", "outside the route's path"},
		{"rule source ip with host bits", func(c *Config) { c.Routes[0].Deny = []AccessRule{{SourceIPs: []string{"10.1.2.3/8"}}} }, "routes[0].deny[0].source_ips[0]", "did you mean 10.0.0.0/8"},
		{"rule unknown auth method", func(c *Config) { c.Routes[0].Allow = []AccessRule{{AuthMethods: []string{"sms"}}} }, "routes[0].allow[0].auth_methods[0]", `unknown authentication method "sms"`},
		{"anonymous-only rule on an authenticated route", func(c *Config) {
			no := false
			c.Routes[0].Policy = PolicyAuthenticated
			c.Routes[0].Allow = []AccessRule{{Authenticated: &no}}
		}, "routes[0].allow[0].authenticated", "never matches"},
		{"rule name with spaces", func(c *Config) { c.Routes[0].Allow = []AccessRule{{Name: "read only"}} }, "routes[0].allow[0].name", "lower-case letters"},

		// Rate limits.
		{"redis store without a url", func(c *Config) { c.RateLimits.Store = "redis" }, "rate_limits.redis_url", "required with store redis"},
		{"unknown store", func(c *Config) { c.RateLimits.Store = "disk" }, "rate_limits.store", `unknown store "disk"`},
		{"global limit by principal", func(c *Config) {
			c.RateLimits.Global = []RateLimit{{Name: "who", Key: "principal", Rate: 10, Per: Duration(time.Second), Burst: 10, FailureMode: FailOpen}}
		}, "rate_limits.global[0].key", "before authentication"},
		{"limit with no rate", func(c *Config) {
			c.Routes[0].RateLimits = []RateLimit{{Name: "ip", Key: "ip", Per: Duration(time.Second), Burst: 1, FailureMode: FailOpen}}
		}, "routes[0].rate_limits[0].rate", "at least 1"},
		{"openapi without a spec", func(c *Config) { c.Routes[0].OpenAPI = &OpenAPI{Responses: "off"} }, "routes[0].openapi.spec", "required"},
		{"openapi spec missing", func(c *Config) { c.Routes[0].OpenAPI = &OpenAPI{Spec: "/nonexistent/api.yaml", Responses: "off"} }, "routes[0].openapi.spec", "/nonexistent/api.yaml"},
		{"openapi responses mode", func(c *Config) { c.Routes[0].OpenAPI = &OpenAPI{Spec: "x", Responses: "block"} }, "routes[0].openapi.responses", `unknown responses "block"`},
		{"expr key without expr", func(c *Config) {
			c.Routes[0].RateLimits = []RateLimit{{Name: "t", Key: "expr", Rate: 1, Per: Duration(time.Second), Burst: 1, FailureMode: FailOpen}}
		}, "routes[0].rate_limits[0].expr", "required with key expr"},
		{"expr with another key", func(c *Config) {
			c.Routes[0].RateLimits = []RateLimit{{Name: "t", Key: "ip", Expr: `"x"`, Rate: 1, Per: Duration(time.Second), Burst: 1, FailureMode: FailOpen}}
		}, "routes[0].rate_limits[0].expr", "only used with key expr"},
		{"expr of type bool", func(c *Config) {
			c.Routes[0].RateLimits = []RateLimit{{Name: "t", Key: "expr", Expr: `request.method == "GET"`, Rate: 1, Per: Duration(time.Second), Burst: 1, FailureMode: FailOpen}}
		}, "routes[0].rate_limits[0].expr", "must have type string"},
		{"limit with an unknown key", func(c *Config) {
			c.Routes[0].RateLimits = []RateLimit{{Name: "ip", Key: "cookie", Rate: 1, Per: Duration(time.Second), Burst: 1, FailureMode: FailOpen}}
		}, "routes[0].rate_limits[0].key", `unknown key "cookie"`},
		{"duplicate limit names", func(c *Config) {
			l := RateLimit{Name: "ip", Key: "ip", Rate: 1, Per: Duration(time.Second), Burst: 1, FailureMode: FailOpen}
			c.Routes[0].RateLimits = []RateLimit{l, l}
		}, "routes[0].rate_limits[1].name", "duplicate limit name"},

		// Accounts.
		{"public url over http", func(c *Config) { c.Accounts.PublicURL = "http://login.example.com" }, "accounts.public_url", "want an absolute https URL"},
		{"public url with a path", func(c *Config) { c.Accounts.PublicURL = "https://login.example.com/sso" }, "accounts.public_url", "must be an origin"},
		{"bad mfa role", func(c *Config) { c.Accounts.MFARoles = []string{""} }, "accounts.mfa_roles[0]", "1 to 64 characters"},
		{"password minimum below NIST", func(c *Config) { c.Accounts.Password.MinLength = 6 }, "accounts.password.min_length", "at least 8"},
		{"password maximum below 64", func(c *Config) { c.Accounts.Password.MaxLength = 32 }, "accounts.password.max_length", "between 64 and 1024"},
		{"password maximum below minimum", func(c *Config) {
			c.Accounts.Password.MinLength = 100
			c.Accounts.Password.MaxLength = 80
		}, "accounts.password.max_length", "less than min_length"},
		{"argon2 memory below OWASP", func(c *Config) { c.Accounts.Password.Memory = 8 << 20 }, "accounts.password.memory", "19MiB"},
		{"argon2 one pass", func(c *Config) { c.Accounts.Password.Iterations = 1 }, "accounts.password.iterations", "between 2 and 10"},
		{"argon2 no lanes", func(c *Config) { c.Accounts.Password.Parallelism = 0 }, "accounts.password.parallelism", "between 1 and 16"},
		{"hash budget below one hash", func(c *Config) { c.Accounts.Password.HashMemoryBudget = 1 << 20 }, "accounts.password.hash_memory_budget", "at least one hash"},
		{"lockout never", func(c *Config) { c.Accounts.Lockout.MaxFailures = 0 }, "accounts.lockout.max_failures", "at least 1"},
		{"idle longer than absolute", func(c *Config) { c.Accounts.Sessions.IdleTimeout = Duration(24 * time.Hour) }, "accounts.sessions.idle_timeout", "longer than absolute_timeout"},
		{"redis url with a password", func(c *Config) { c.Accounts.Sessions.RedisURL = "redis://:hunter2@cache:6379/0" }, "accounts.sessions.redis_url", "secret reference"},
		{"redis url of another scheme", func(c *Config) { c.Accounts.Sessions.RedisURL = "http://cache" }, "accounts.sessions.redis_url", "redis:// or rediss://"},
		{"passkey origin off the rp id", func(c *Config) { c.Accounts.Passkeys.Origins = []string{"https://evil.example"} }, "accounts.passkeys.origins[0]", "is not rp_id"},
		{"passkey origin over http", func(c *Config) { c.Accounts.Passkeys.Origins = []string{"http://localhost:8443"} }, "accounts.passkeys.origins[0]", "not an https origin"},

		{"public route without upstreams", func(c *Config) { c.Routes[0].Upstreams = nil }, "routes[0].upstreams", "at least one upstream URL is required unless the policy is deny"},
		{"upstream without scheme", func(c *Config) { c.Routes[0].Upstreams = []string{"127.0.0.1:8080"} }, "routes[0].upstreams[0]", "want an absolute http or https URL"},
		{"upstream with another scheme", func(c *Config) { c.Routes[0].Upstreams = []string{"ftp://files"} }, "routes[0].upstreams[0]", `scheme "ftp"`},
		{"upstream without host", func(c *Config) { c.Routes[0].Upstreams = []string{"http:///x"} }, "routes[0].upstreams[0]", "no host"},
		{"upstream with credentials", func(c *Config) { c.Routes[0].Upstreams = []string{"http://user:pw@x"} }, "routes[0].upstreams[0]", "must not carry credentials"},
		{"upstream with query", func(c *Config) { c.Routes[0].Upstreams = []string{"http://x/?a=1"} }, "routes[0].upstreams[0]", "must not have a query"},
		{"upstream with fragment", func(c *Config) { c.Routes[0].Upstreams = []string{"http://x/#top"} }, "routes[0].upstreams[0]", "must not have a fragment"},
		{"upstream with bad port", func(c *Config) { c.Routes[0].Upstreams = []string{"http://x:70000"} }, "routes[0].upstreams[0]", `port "70000" is not a number from 1 to 65535`},
		{"host with underscore", func(c *Config) { c.Routes[0].Hosts = []string{"a_b.example"} }, "routes[0].hosts[0]", `character '_' is not allowed`},
		{"host with capitals", func(c *Config) { c.Routes[0].Hosts = []string{"API.example.com"} }, "routes[0].hosts[0]", "must be lower case"},
		{"host with port", func(c *Config) { c.Routes[0].Hosts = []string{"api.example.com:443"} }, "routes[0].hosts[0]", "without brackets or port"},
		{"host with inner wildcard", func(c *Config) { c.Routes[0].Hosts = []string{"api.*.com"} }, "routes[0].hosts[0]", "whole first label"},
		{"host with two wildcards", func(c *Config) { c.Routes[0].Hosts = []string{"*.*.example.com"} }, "routes[0].hosts[0]", "only one leading wildcard label"},
		{"bare wildcard host", func(c *Config) { c.Routes[0].Hosts = []string{"*"} }, "routes[0].hosts[0]", "whole first label"},
		{"host with empty label", func(c *Config) { c.Routes[0].Hosts = []string{"api..com"} }, "routes[0].hosts[0]", "empty label"},
		{"host with trailing dot", func(c *Config) { c.Routes[0].Hosts = []string{"api.com."} }, "routes[0].hosts[0]", "empty label"},
		{"host with hyphen at label end", func(c *Config) { c.Routes[0].Hosts = []string{"api-.com"} }, "routes[0].hosts[0]", "hyphen"},
		{"host with zone", func(c *Config) { c.Routes[0].Hosts = []string{"fe80::1%eth0"} }, "routes[0].hosts[0]", "zone"},
		{"host listed twice", func(c *Config) { c.Routes[0].Hosts = []string{"a.com", "a.com"} }, "routes[0].hosts[1]", "listed twice"},
		{"path without slash", func(c *Config) { c.Routes[0].Path = "v1" }, "routes[0].path", `must start with "/"`},
		{"path with dot-dot", func(c *Config) { c.Routes[0].Path = "/v1/../admin" }, "routes[0].path", `".."`},
		{"path with double slash", func(c *Config) { c.Routes[0].Path = "/v1//x" }, "routes[0].path", `"//"`},
		{"path with percent", func(c *Config) { c.Routes[0].Path = "/v1%2fx" }, "routes[0].path", `"%"`},
		{"path with query", func(c *Config) { c.Routes[0].Path = "/v1?x" }, "routes[0].path", "query"},
		{"path with space", func(c *Config) { c.Routes[0].Path = "/v 1" }, "routes[0].path", "spaces"},
		{"same hosts and path", func(c *Config) { c.Routes[1].Hosts, c.Routes[1].Path = []string{"api.example.com"}, "/v1" }, "routes[1]", "matches the same requests as routes[0] (api)"},
		{"same host set in another order", func(c *Config) {
			c.Routes[0].Hosts = []string{"a.com", "b.com"}
			c.Routes[1].Hosts, c.Routes[1].Path = []string{"b.com", "a.com"}, "/v1"
		}, "routes[1]", "matches the same requests"},
		{"paths differ by a trailing slash", func(c *Config) { c.Routes[1].Hosts, c.Routes[1].Path = []string{"API.example.com"}, "/v1/" }, "routes[1]", "matches the same requests as routes[0] (api)"},
		{"hosts overlap in part", func(c *Config) {
			c.Routes[1].Hosts, c.Routes[1].Path = []string{"other.example.com", "api.example.com"}, "/v1"
		}, "routes[1]", `for host "api.example.com"`},
		{"master key missing", func(c *Config) { c.Keys.MasterKey = "" }, "keys.master_key", "moat keys generate"},
		{"database url with password", func(c *Config) { c.Database.URL = "postgres://moat:hunter2@db.example.com/moat" }, "database.url", "holds a password"},
		{"database url password parameter", func(c *Config) { c.Database.URL = "postgres://moat@db.example.com/moat?password=x" }, "database.url", "holds a password"},
		{"database url not postgres", func(c *Config) { c.Database.URL = "mysql://db.example.com/moat" }, "database.url", "PostgreSQL URL"},
		{"migrate url with password", func(c *Config) { c.Database.MigrateURL = "postgresql://a:b@h/db" }, "database.migrate_url", "holds a password"},
		{"backup without encryption", func(c *Config) { c.Backup = &Backup{Interval: Duration(time.Hour), Retention: 1} }, "backup", "always encrypted"},
		{"backup with both", func(c *Config) {
			c.Backup = &Backup{Interval: Duration(time.Hour), Retention: 1, Passphrase: "env:P", Recipients: []string{testRecipient}, Identity: "env:I"}
		}, "backup.passphrase", "not both"},
		{"backup recipients without identity", func(c *Config) {
			c.Backup = &Backup{Interval: Duration(time.Hour), Retention: 1, Recipients: []string{testRecipient}}
		}, "backup.identity", "required with recipients"},
		{"backup bad recipient", func(c *Config) {
			c.Backup = &Backup{Interval: Duration(time.Hour), Retention: 1, Recipients: []string{"age1nope"}, Identity: "env:I"}
		}, "backup.recipients[0]", "not an age X25519 recipient"},
		{"backup retention zero", func(c *Config) { c.Backup = &Backup{Interval: Duration(time.Hour), Passphrase: "env:P"} }, "backup.retention", "at least one"},
		{"backup interval short", func(c *Config) {
			c.Backup = &Backup{Interval: Duration(time.Second), Retention: 3, Passphrase: "env:P"}
		}, "backup.interval", "at least 1m"},
		{"frame options unknown", func(c *Config) { c.Routes[0].Headers.FrameOptions = "ALLOW-FROM https://x" }, "routes[0].headers.frame_options", "must be DENY, SAMEORIGIN or off"},
		{"upstream CA missing", func(c *Config) { c.Routes[1].UpstreamTLS.CA = "/nonexistent/ca.pem" }, "routes[1].upstream_tls.ca", `CA file "/nonexistent/ca.pem": no such file`},
		{"upstream CA is a directory", func(c *Config) { c.Routes[1].UpstreamTLS.CA = filepath.Dir(files.ca) }, "routes[1].upstream_tls.ca", "not a regular file"},
		{"bad server name", func(c *Config) { c.Routes[1].UpstreamTLS.ServerName = "*.web" }, "routes[1].upstream_tls.server_name", "wildcards are not allowed"},
		{"pin not base64", func(c *Config) { c.Routes[1].UpstreamTLS.PinSPKI = []string{"not base64!"} }, "routes[1].upstream_tls.pin_spki[0]", "not valid base64"},
		{"pin of the wrong length", func(c *Config) { c.Routes[1].UpstreamTLS.PinSPKI = []string{pin, "AAAA"} }, "routes[1].upstream_tls.pin_spki[1]", "decodes to 3 bytes"},
		{"health check without path", func(c *Config) { c.Routes[0].HealthCheck = &HealthCheck{Interval: 1, Timeout: 1} }, "routes[0].health_check.path", "required"},
		{"health check path without slash", func(c *Config) { c.Routes[0].HealthCheck = &HealthCheck{Path: "healthz", Interval: 1, Timeout: 1} }, "routes[0].health_check.path", `must start with "/"`},
		{"health check zero interval", func(c *Config) { c.Routes[0].HealthCheck = &HealthCheck{Path: "/h", Timeout: 1} }, "routes[0].health_check.interval", "must be greater than 0"},
		{"health check zero timeout", func(c *Config) { c.Routes[0].HealthCheck = &HealthCheck{Path: "/h", Interval: 1} }, "routes[0].health_check.timeout", "must be greater than 0"},
		{"negative max_fails", func(c *Config) { c.Routes[0].MaxFails = -1 }, "routes[0].max_fails", "must not be negative"},
		{"zero fail_timeout with max_fails", func(c *Config) { c.Routes[0].FailTimeout = 0 }, "routes[0].fail_timeout", "must be greater than 0"},
		{"negative request body limit", func(c *Config) { c.Routes[0].MaxRequestBody = -1 }, "routes[0].max_request_body", "must not be negative"},
		{"route header with newline", func(c *Config) { c.Routes[0].Headers.FrameOptions = "DENY\r\nX-Evil: 1" }, "routes[0].headers.frame_options", "control characters"},

		// TLS.
		{"no certificate source", func(c *Config) { c.TLS.Dev = nil }, "tls", `no certificate source: set one of tls.certificates, tls.acme or tls.dev (write "dev: {}" under tls for local testing)`},
		{"two certificate sources", func(c *Config) {
			c.TLS.Certificates = []Certificate{{Cert: files.cert, Key: files.key}}
		}, "tls.dev", "exclude each other: choose one (found certificates, dev)"},
		{"certificate file missing", func(c *Config) {
			c.TLS.Dev, c.TLS.Certificates = nil, []Certificate{{Cert: "/nonexistent/cert.pem", Key: files.key}}
		}, "tls.certificates[0].cert", "no such file"},
		{"certificate without key", func(c *Config) {
			c.TLS.Dev, c.TLS.Certificates = nil, []Certificate{{Cert: files.cert}}
		}, "tls.certificates[0].key", "required"},
		{"certificate without cert", func(c *Config) {
			c.TLS.Dev, c.TLS.Certificates = nil, []Certificate{{Key: files.key}}
		}, "tls.certificates[0].cert", "required"},
		{"key file missing", func(c *Config) {
			c.TLS.Dev, c.TLS.Certificates = nil, []Certificate{{Cert: files.cert, Key: "/nonexistent/key.pem"}}
		}, "tls.certificates[0].key", "no such file"},
		{"bad dev host", func(c *Config) { c.TLS.Dev.Hosts = []string{"local host"} }, "tls.dev.hosts[0]", "not allowed"},
		{"short HSTS max-age", func(c *Config) { c.TLS.HSTS.MaxAge = Duration(30 * day) }, "tls.hsts.max_age", "must be at least 365d (one year), got 30d"},
		{"acme without domains", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, &ACME{AcceptTOS: true, Challenges: []string{"tls-alpn-01"}}
		}, "tls.acme.domains", "at least one domain"},
		{"acme wildcard domain", func(c *Config) { c.TLS.Dev, c.TLS.ACME = nil, acme("*.example.com") }, "tls.acme.domains[0]", "DNS-01"},
		{"acme IP domain", func(c *Config) { c.TLS.Dev, c.TLS.ACME = nil, acme("192.0.2.1") }, "tls.acme.domains[0]", "want a DNS name, not an IP address"},
		{"acme invalid domain", func(c *Config) { c.TLS.Dev, c.TLS.ACME = nil, acme("example.com", "x_y.com") }, "tls.acme.domains[1]", "not allowed"},
		{"acme unknown challenge", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, acme("example.com")
			c.TLS.ACME.Challenges = []string{"dns-01"}
		}, "tls.acme.challenges[0]", `unknown challenge "dns-01"`},
		{"acme http-01 without listen.http", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, acme("example.com")
			c.TLS.ACME.Challenges = []string{"http-01"}
		}, "tls.acme.challenges[0]", "needs the plain-HTTP listener: set listen.http"},
		{"acme terms not accepted", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, acme("example.com")
			c.TLS.ACME.AcceptTOS = false
		}, "tls.acme.accept_tos", "must be true"},
		{"acme CA over http", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, acme("example.com")
			c.TLS.ACME.CA = "http://ca.internal/directory"
		}, "tls.acme.ca", `scheme "http": want an absolute https URL`},
		{"acme CA root missing", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, acme("example.com")
			c.TLS.ACME.CARoot = "/nonexistent/root.pem"
		}, "tls.acme.ca_root", "no such file"},
		{"acme email invalid", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, acme("example.com")
			c.TLS.ACME.Email = "Ops <ops@example.com>"
		}, "tls.acme.email", "is not an email address"},

		// Listeners and limits.
		{"no HTTPS listener", func(c *Config) { c.Listen.HTTPS = "" }, "listen.https", "required"},
		{"HTTPS listener without host:port", func(c *Config) { c.Listen.HTTPS = "8443" }, "listen.https", "want host:port"},
		{"HTTPS listener with bad port", func(c *Config) { c.Listen.HTTPS = ":70000" }, "listen.https", `port "70000"`},
		{"HTTPS listener with named port", func(c *Config) { c.Listen.HTTPS = ":https" }, "listen.https", `port "https"`},
		{"HTTP listener with bad host", func(c *Config) { c.Listen.HTTP = "bad host:80" }, "listen.http", `host "bad host"`},
		{"admin on all interfaces", func(c *Config) { c.Listen.Admin = ":9090" }, "listen.admin", "is not a loopback address"},
		{"admin on a public address", func(c *Config) { c.Listen.Admin = "192.0.2.1:9090" }, "listen.admin", "set listen.admin_public: true"},
		{"admin without address", func(c *Config) { c.Listen.Admin = "" }, "listen.admin", "required"},
		{"admin with a bad address", func(c *Config) { c.Listen.Admin = "localhost" }, "listen.admin", "want host:port"},
		{"zero read_header_timeout", func(c *Config) { c.Limits.ReadHeaderTimeout = 0 }, "limits.read_header_timeout", "must be greater than 0"},
		{"zero idle_timeout", func(c *Config) { c.Limits.IdleTimeout = 0 }, "limits.idle_timeout", "must be greater than 0"},
		{"negative read_timeout", func(c *Config) { c.Limits.ReadTimeout = -1 }, "limits.read_timeout", "must not be negative"},
		{"zero max_header_bytes", func(c *Config) { c.Limits.MaxHeaderBytes = 0 }, "limits.max_header_bytes", "must be greater than 0"},
		{"negative max_connections", func(c *Config) { c.Limits.MaxConnections = -1 }, "limits.max_connections", "must not be negative"},

		// The rest.
		{"bad trusted proxy", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/33"} }, "trusted_proxies[1]", `want a CIDR such as 10.0.0.0/8 or an IP address, got "10.0.0.0/33"`},
		{"bad reserved header", func(c *Config) { c.ReservedHeaders = []string{"X-Ok", "X Bad"} }, "reserved_headers[1]", `"X Bad" is not a valid header field name`},
		{"empty reserved header", func(c *Config) { c.ReservedHeaders = []string{""} }, "reserved_headers[0]", "not a valid header field name"},
		{"header with control character", func(c *Config) { c.Headers.ContentSecurityPolicy = "default-src\x00" }, "headers.content_security_policy", "control characters"},
		{"unknown log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `unknown log level "verbose"`},
		{"log level with typo", func(c *Config) { c.Log.Level = "warning" }, "log.level", `did you mean "warn"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validBase(t)
			tt.mutate(c)
			ps := problemsOf(t, c.Validate())
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("want a problem at %s containing %q, got:\n%v", tt.path, tt.msg, ps)
		})
	}
}

func acme(domains ...string) *ACME {
	return &ACME{Domains: domains, AcceptTOS: true, Challenges: []string{ChallengeTLSALPN01}}
}

func TestValidateAccepts(t *testing.T) {
	files := newTestFiles(t)
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"the base", func(*Config) {}},
		{"deny route without upstreams", func(c *Config) { c.Routes[0].Policy, c.Routes[0].Upstreams = PolicyDeny, nil }},
		{"same path on other hosts", func(c *Config) { c.Routes[1].Hosts, c.Routes[1].Path = []string{"*.example.com"}, "/v1" }},
		{"IP and wildcard hosts", func(c *Config) {
			c.Routes[0].Hosts = []string{"192.0.2.1", "2001:db8::1", "*.api.example.com", "localhost"}
		}},
		{"certificate files", func(c *Config) {
			c.TLS.Dev, c.TLS.Certificates = nil, []Certificate{{Cert: files.cert, Key: files.key}}
		}},
		{"acme with http-01 and listen.http", func(c *Config) {
			c.TLS.Dev, c.TLS.ACME = nil, acme("example.com", "www.example.com")
			c.TLS.ACME.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
			c.TLS.ACME.Email, c.TLS.ACME.CA, c.TLS.ACME.CARoot = "ops@example.com", "https://acme.internal/dir", files.ca
			c.Listen.HTTP = ":80"
		}},
		{"admin on localhost", func(c *Config) { c.Listen.Admin = "localhost:9090" }},
		{"admin on IPv6 loopback", func(c *Config) { c.Listen.Admin = "[::1]:9090" }},
		{"public admin when allowed", func(c *Config) { c.Listen.Admin, c.Listen.AdminPublic = ":9090", true }},
		{"listeners on named hosts", func(c *Config) { c.Listen.HTTPS, c.Listen.HTTP = "gateway.internal:443", "0.0.0.0:80" }},
		{"upstream TLS settings", func(c *Config) {
			c.Routes[1].UpstreamTLS = UpstreamTLS{CA: files.ca, ServerName: "web.internal", PinSPKI: []string{pin}}
		}},
		{"health check", func(c *Config) {
			c.Routes[0].HealthCheck = &HealthCheck{Path: "/healthz?full=1", Interval: Duration(time.Second), Timeout: Duration(time.Second)}
		}},
		{"passive marking off", func(c *Config) { c.Routes[0].MaxFails, c.Routes[0].FailTimeout = 0, 0 }},
		{"unlimited connections", func(c *Config) { c.Limits.MaxConnections = 0 }},
		{"trusted proxies", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"} }},
		{"reserved headers", func(c *Config) { c.ReservedHeaders = []string{"X-Internal-User", "X-Tenant"} }},
		{"header removed", func(c *Config) { c.Headers.FrameOptions = "off" }},
		{"one-year HSTS", func(c *Config) { c.TLS.HSTS.MaxAge = Duration(365 * day) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validBase(t)
			tt.mutate(c)
			if err := c.Validate(); err != nil {
				t.Errorf("got problems:\n%v", err)
			}
		})
	}
}

func TestValidateKeyFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes")
	}
	files := newTestFiles(t)
	c := validBase(t)
	c.TLS.Dev, c.TLS.Certificates = nil, []Certificate{{Cert: files.cert, Key: files.openKey}}
	ps := problemsOf(t, c.Validate())
	want := "key file \"" + files.openKey + "\": group or others may access the file (mode 0644): run chmod 600 " + files.openKey
	if len(ps) != 1 || ps[0].Path != "tls.certificates[0].key" || ps[0].Msg != want {
		t.Errorf("got %v\nwant tls.certificates[0].key: %s", ps, want)
	}
}

func TestValidateReportsEveryProblemWithPositions(t *testing.T) {
	_, err := Parse("moat.yaml", withKeys(`listen:
  admin: 0.0.0.0:9090
log:
  level: loud
routes:
  - name: api
    upstreams: [http://127.0.0.1:8081]
  - name: api
    policy: public
    upstreams: ["ftp://x"]
`))
	ps := problemsOf(t, err)
	want := []string{
		`moat.yaml:1:1: tls: no certificate source: set one of tls.certificates, tls.acme or tls.dev (write "dev: {}" under tls for local testing)`,
		`moat.yaml:2:10: listen.admin: "0.0.0.0:9090" is not a loopback address: the admin listener serves metrics and health, so keep it on 127.0.0.1 or ::1, or set listen.admin_public: true to expose it`,
		`moat.yaml:4:10: log.level: unknown log level "loud": want "debug", "info", "warn", "error"`,
		`moat.yaml:6:5: routes[0].policy: missing: every route must declare its access policy ("public", "authenticated" or "deny"); deny by default`,
		`moat.yaml:8:5: routes[1]: matches the same requests as routes[0] (api) for host "*" and path "/": one of them could never match`,
		`moat.yaml:8:11: routes[1].name: duplicate route name "api" (also routes[0])`,
		`moat.yaml:10:17: routes[1].upstreams[0]: scheme "ftp": want an absolute http or https URL such as https://example.com`,
	}
	got := strings.Split(ps.Error(), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidateInCodeHasNoPositions(t *testing.T) {
	c := &Config{}
	c.ApplyDefaults()
	ps := problemsOf(t, c.Validate())
	for _, p := range ps {
		if p.File != "" || p.Line != 0 {
			t.Errorf("problem %v has a position, want none for a Config built in code", p)
		}
	}
	if got := ps.Error(); !strings.Contains(got, "routes: at least one route is required") {
		t.Errorf("got %q", got)
	}
}

func TestValidateMessagesDoNotQuoteCredentials(t *testing.T) {
	c := validBase(t)
	c.Routes[0].Upstreams = []string{"http://admin:s3cr3t-pw@x:bad/", "http://admin:s3cr3t-pw@x/"}
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("got %v, want problems that do not quote the password", err)
	}
}

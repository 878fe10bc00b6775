// Package config defines Moat's configuration file: its types, strict YAML
// decoding with file:line:column errors, defaults, validation that reports
// every problem at once, and secret references.
package config

import (
	"net/http"

	"github.com/moatgw/moat/internal/hygiene"
	"github.com/moatgw/moat/internal/session"
)

// Config is the whole of moat.yaml. Field comments are the reference text
// that the JSON Schema and docs/configuration.md are generated from.
type Config struct {
	// Directory for Moat's own state: the SQLite database (moat.db) when database.url is empty, the development CA, ACME accounts and certificates, and the default backup directory (backups). A relative path is relative to the working directory.
	DataDir string `yaml:"data_dir,omitempty" json:"data_dir,omitempty"`
	// Network addresses Moat listens on.
	Listen Listen `yaml:"listen,omitempty" json:"listen,omitempty"`
	// Timeouts and caps that protect the listeners from slow or greedy clients.
	Limits Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
	// TLS for the HTTPS listener.
	TLS TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// CIDRs of proxies in front of Moat whose X-Forwarded-* and X-Request-Id headers are believed.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty" json:"trusted_proxies,omitempty"`
	// Extra request headers that clients may never send to an upstream (X-Moat-* always is reserved).
	ReservedHeaders []string `yaml:"reserved_headers,omitempty" json:"reserved_headers,omitempty"`
	// Security headers added to every response; routes may override them.
	Headers Headers `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Logging of Moat's own messages, the access log and security events.
	Log Log `yaml:"log,omitempty" json:"log,omitempty"`
	// Where Moat keeps its durable state: SQLite in the data directory by default, or PostgreSQL.
	Database Database `yaml:"database,omitempty" json:"database,omitempty"`
	// Encryption of secrets at rest. Required: Moat refuses to start without a master key.
	Keys Keys `yaml:"keys" json:"keys"`
	// Local accounts, the login portal Moat serves under /.moat/ on every host, second factors and sessions.
	Accounts Accounts `yaml:"accounts,omitempty" json:"accounts,omitempty"`
	// Sign-in through external OpenID Connect providers, listed on the login page.
	OIDC OIDC `yaml:"oidc,omitempty" json:"oidc,omitempty"`
	// JWT bearer tokens from external issuers, for API clients.
	JWT JWT `yaml:"jwt,omitempty" json:"jwt,omitempty"`
	// The signed identity assertion (X-Moat-Assertion) sent to upstreams with every request that has an authenticated principal.
	Assertion Assertion `yaml:"assertion,omitempty" json:"assertion,omitempty"`
	// Rate limits: where their counters live, and the limits every route gets.
	RateLimits RateLimits `yaml:"rate_limits,omitempty" json:"rate_limits,omitempty"`
	// Caps on requests in flight across all routes, with a short queue; excess gets 503.
	LoadShedding LoadShedding `yaml:"load_shedding,omitempty" json:"load_shedding,omitempty"`
	// Scheduled, encrypted, verified backups taken by moat serve. Absent: no scheduled backups.
	Backup *Backup `yaml:"backup,omitempty" json:"backup,omitempty"`
	// Routes map requests to upstreams. A request that matches none gets 404.
	Routes []Route `yaml:"routes" json:"routes"`

	// src records where the file set each field; nil for a Config built in code.
	src *source
}

// Listen holds listener addresses.
type Listen struct {
	// Address (host:port) of the HTTPS gateway listener.
	HTTPS string `yaml:"https,omitempty" json:"https,omitempty"`
	// Optional plain-HTTP listener that only redirects to HTTPS (308) and answers ACME HTTP-01 challenges. Empty disables it.
	HTTP string `yaml:"http,omitempty" json:"http,omitempty"`
	// Admin listener for /healthz, /readyz and /metrics. Must be a loopback address unless admin_public is true.
	Admin string `yaml:"admin,omitempty" json:"admin,omitempty"`
	// Allow the admin listener on a non-loopback address. Off by default.
	AdminPublic bool `yaml:"admin_public,omitempty" json:"admin_public,omitempty"`
}

// Limits bounds what one client can make the listeners hold.
type Limits struct {
	// Time allowed to read the request headers (cuts slowloris clients). Must be greater than 0.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout,omitempty" json:"read_header_timeout,omitempty"`
	// Time allowed to read a whole request, body included. 0 means no limit.
	ReadTimeout Duration `yaml:"read_timeout,omitempty" json:"read_timeout,omitempty"`
	// Time allowed to write a whole response. 0 (the default) means no limit: a limit would cut server-sent events and long downloads.
	WriteTimeout Duration `yaml:"write_timeout,omitempty" json:"write_timeout,omitempty"`
	// Time an idle keep-alive connection is kept open. Must be greater than 0.
	IdleTimeout Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	// Largest request header block accepted, in bytes. Must be greater than 0.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes,omitempty" json:"max_header_bytes,omitempty"`
	// Most connections open at once on the HTTPS listener; more wait to be accepted. 0 means no limit.
	MaxConnections int `yaml:"max_connections,omitempty" json:"max_connections,omitempty"`
	// Time allowed for in-flight requests to finish on shutdown. 0 does not wait.
	ShutdownTimeout Duration `yaml:"shutdown_timeout,omitempty" json:"shutdown_timeout,omitempty"`
}

// TLS configures the HTTPS listener's certificates. Exactly one source is used:
// certificates from files, ACME, or the development CA.
type TLS struct {
	// Certificates from PEM files, chosen by SNI; reloaded when the files change.
	Certificates []Certificate `yaml:"certificates,omitempty" json:"certificates,omitempty"`
	// Create a local development CA and certificate in the data directory.
	Dev *DevTLS `yaml:"dev,omitempty" json:"dev,omitempty"`
	// Obtain certificates automatically with ACME.
	ACME *ACME `yaml:"acme,omitempty" json:"acme,omitempty"`
	// Strict-Transport-Security sent on every HTTPS response.
	HSTS HSTS `yaml:"hsts,omitempty" json:"hsts,omitempty"`
}

// Certificate is one certificate and key pair in PEM files.
type Certificate struct {
	// Path to the PEM certificate chain.
	Cert string `yaml:"cert" json:"cert"`
	// Path to the PEM private key (must not be readable by group or others).
	Key string `yaml:"key" json:"key"`
}

// DevTLS configures the development CA.
type DevTLS struct {
	// Host names and IP addresses the development certificate covers.
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
}

// ACME configures automatic certificates.
type ACME struct {
	// Domains to obtain certificates for: DNS names without wildcards (a wildcard needs the DNS-01 challenge, which is not supported).
	Domains []string `yaml:"domains" json:"domains"`
	// Contact email given to the CA.
	Email string `yaml:"email,omitempty" json:"email,omitempty"`
	// ACME directory URL (https). Defaults to Let's Encrypt production.
	CA string `yaml:"ca,omitempty" json:"ca,omitempty"`
	// PEM file of root certificates to trust for the ACME directory (for a private CA).
	CARoot string `yaml:"ca_root,omitempty" json:"ca_root,omitempty"`
	// Challenge types to use: http-01, tls-alpn-01. Both by default. http-01 needs listen.http.
	Challenges []string `yaml:"challenges,omitempty" json:"challenges,omitempty"`
	// Must be true to confirm acceptance of the CA's terms of service.
	AcceptTOS bool `yaml:"accept_tos,omitempty" json:"accept_tos,omitempty"`
}

// HSTS configures Strict-Transport-Security.
type HSTS struct {
	// max-age; at least one year. Default 2 years.
	MaxAge Duration `yaml:"max_age,omitempty" json:"max_age,omitempty"`
	// Add includeSubDomains. Default true.
	IncludeSubdomains *bool `yaml:"include_subdomains,omitempty" json:"include_subdomains,omitempty"`
	// Add preload. Default false.
	Preload bool `yaml:"preload,omitempty" json:"preload,omitempty"`
}

// Headers are the security headers on responses. An empty string keeps the
// default; the value "off" removes the header. X-Content-Type-Options:
// nosniff is always sent and cannot be turned off.
type Headers struct {
	// Content-Security-Policy sent when the upstream sends none. Default: frame-ancestors 'none' with X-Frame-Options DENY, frame-ancestors 'self' with SAMEORIGIN, none when frame_options is off.
	ContentSecurityPolicy string `yaml:"content_security_policy,omitempty" json:"content_security_policy,omitempty"`
	// X-Frame-Options: DENY, SAMEORIGIN or off. Default DENY.
	FrameOptions string `yaml:"frame_options,omitempty" json:"frame_options,omitempty"`
	// Referrer-Policy. Default strict-origin-when-cross-origin.
	ReferrerPolicy string `yaml:"referrer_policy,omitempty" json:"referrer_policy,omitempty"`
	// Cross-Origin-Opener-Policy. Default same-origin.
	CrossOriginOpenerPolicy string `yaml:"cross_origin_opener_policy,omitempty" json:"cross_origin_opener_policy,omitempty"`
	// Permissions-Policy. Default denies camera, microphone, geolocation, payment and usb.
	PermissionsPolicy string `yaml:"permissions_policy,omitempty" json:"permissions_policy,omitempty"`
}

// Log configures logging. A change to level takes effect at the next
// restart; a change to access takes effect on SIGHUP.
type Log struct {
	// Level of Moat's own messages: debug, info, warn, error. The access log and security events are written whatever the level.
	Level string `yaml:"level,omitempty" json:"level,omitempty"`
	// Write one access-log line per request. Default true.
	Access *bool `yaml:"access,omitempty" json:"access,omitempty"`
}

// Route sends matching requests to upstreams under an access policy. A
// request goes to the route with the longest matching path among those that
// name its host exactly; if none matches, among those whose wildcard covers
// its host; then among those without hosts.
type Route struct {
	// Unique name, used in logs, metrics and events: 1 to 63 lower-case letters, digits, _ or -, starting with a letter or digit.
	Name string `yaml:"name" json:"name"`
	// Host names this route answers: exact (api.example.com), an IP address, or one leading wildcard label (*.example.com). Empty matches any host. Lower-cased on load.
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// Path prefix, ending at a segment boundary: /api matches /api and /api/users, not /apis; /api/ is the same prefix as /api. Default "/". Must start with "/" and contain no "..", "//" or "%".
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Access policy: public (anyone), authenticated (a signed-in user; browsers are sent to the login page, API clients get 401) or deny (no one). Required: a route without a policy does not load.
	Policy string `yaml:"policy" json:"policy"`
	// With policy authenticated: the caller must have at least one of these roles, or gets 403, before any allow rule is considered. Empty: any caller with credentials.
	Roles []string `yaml:"roles,omitempty" json:"roles,omitempty"`
	// Allow rules: a request must match one of them (deny by default). Empty: every caller the policy lets in.
	Allow []AccessRule `yaml:"allow,omitempty" json:"allow,omitempty"`
	// Deny rules, checked first: a request that matches one is refused (403), whatever allow says.
	Deny []AccessRule `yaml:"deny,omitempty" json:"deny,omitempty"`
	// How callers may authenticate: session (the login portal's cookie, local or OIDC sign-in), jwt (a bearer token from jwt.issuers), apikey (a Moat API key), mtls (a client certificate, see client_certs). Default [session] for policy authenticated; on a public route with allow rules that look at the caller, credentials of these kinds are checked when present.
	Accept []string `yaml:"accept,omitempty" json:"accept,omitempty"`
	// Client certificates for the mtls method: the CAs that issue them. Required when accept lists mtls.
	ClientCerts *ClientCerts `yaml:"client_certs,omitempty" json:"client_certs,omitempty"`
	// Upstream base URLs (http or https), tried round-robin. Required unless the policy is deny. No credentials, query or fragment.
	Upstreams []string `yaml:"upstreams,omitempty" json:"upstreams,omitempty"`
	// Remove the route's path prefix before proxying.
	StripPrefix bool `yaml:"strip_prefix,omitempty" json:"strip_prefix,omitempty"`
	// TLS to https upstreams.
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls,omitempty" json:"upstream_tls,omitempty"`
	// Active health checks of the upstreams.
	HealthCheck *HealthCheck `yaml:"health_check,omitempty" json:"health_check,omitempty"`
	// Passive failure marking: an upstream failing this many times in a row is skipped for fail_timeout. 0 turns it off.
	MaxFails int `yaml:"max_fails,omitempty" json:"max_fails,omitempty"`
	// How long a failed upstream is skipped. Must be greater than 0 when max_fails is.
	FailTimeout Duration `yaml:"fail_timeout,omitempty" json:"fail_timeout,omitempty"`
	// Largest request body accepted; larger gets 413. Default 10MiB; 0 means no limit.
	MaxRequestBody ByteSize `yaml:"max_request_body,omitempty" json:"max_request_body,omitempty"`
	// Bounds on what a request may carry (request hygiene), beyond max_request_body. Omitted values take the defaults.
	Request RequestLimits `yaml:"request,omitempty" json:"request,omitempty"`
	// An OpenAPI document the route's requests must follow: an allowlist of operations, parameters and bodies.
	OpenAPI *OpenAPI `yaml:"openapi,omitempty" json:"openapi,omitempty"`
	// A web application firewall: the OWASP Core Rule Set inspects the route's requests (line, headers, body). Off unless this section is present.
	WAF *WAF `yaml:"waf,omitempty" json:"waf,omitempty"`
	// Cross-site request forgery protection of requests signed in with the session cookie (and client certificates). On by default.
	CSRF CSRF `yaml:"csrf,omitempty" json:"csrf,omitempty"`
	// Attributes Moat adds to the cookies the upstream sets, where it left them out.
	Cookies UpstreamCookies `yaml:"cookies,omitempty" json:"cookies,omitempty"`
	// Cross-origin resource sharing: Moat answers preflights and sets the Access-Control-* headers itself. Off unless allowed_origins is set.
	CORS *CORS `yaml:"cors,omitempty" json:"cors,omitempty"`
	// Largest upstream response body passed on; larger is cut off. 0 (the default) means no limit.
	MaxResponseBody ByteSize `yaml:"max_response_body,omitempty" json:"max_response_body,omitempty"`
	// Time allowed for the upstream to send response headers. 0 means no limit.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Replace upstream 5xx bodies with a generic problem page carrying the request id. Default true.
	MaskErrors *bool `yaml:"mask_errors,omitempty" json:"mask_errors,omitempty"`
	// Security header overrides for this route.
	Headers Headers `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Rate limits of this route, besides the global ones. Limits keyed by principal or apikey apply after authentication.
	RateLimits []RateLimit `yaml:"rate_limits,omitempty" json:"rate_limits,omitempty"`
	// Requests this route serves at once; more wait up to load_shedding.queue_wait, then get 503. 0: no cap of its own.
	MaxInFlight int `yaml:"max_in_flight,omitempty" json:"max_in_flight,omitempty"`
}

// RequestLimits bounds the form of a route's requests. Requests beyond
// them are refused before they reach the upstream: 414 for the URL, 431 for
// headers and cookies, 413 for a body, 415 for its type, 400 otherwise.
type RequestLimits struct {
	// Longest request target (path and query). Default 8KiB.
	MaxURLBytes ByteSize `yaml:"max_url_bytes,omitempty" json:"max_url_bytes,omitempty"`
	// Most header fields. Default 100.
	MaxHeaders int `yaml:"max_headers,omitempty" json:"max_headers,omitempty"`
	// Most query parameters. Default 256.
	MaxQueryParams int `yaml:"max_query_params,omitempty" json:"max_query_params,omitempty"`
	// Most cookies. Default 64.
	MaxCookies int `yaml:"max_cookies,omitempty" json:"max_cookies,omitempty"`
	// Body caps by media type ("application/json", "image/*"), below max_request_body; a body over its type's cap gets 413.
	BodyCaps map[string]ByteSize `yaml:"body_caps,omitempty" json:"body_caps,omitempty"`
	// Media types a request body may have ("application/json", "text/*"); another type, or a body without Content-Type, gets 415. Empty: any type.
	ContentTypes []string `yaml:"content_types,omitempty" json:"content_types,omitempty"`
	// Let an encoded slash (%2F) through in the path, for upstreams that keep it apart from "/". Default false: refused, since upstreams disagree about it.
	AllowEncodedSlash bool `yaml:"allow_encoded_slash,omitempty" json:"allow_encoded_slash,omitempty"`
	// Deepest nesting of arrays and objects in a JSON body. Default 64.
	MaxJSONDepth int `yaml:"max_json_depth,omitempty" json:"max_json_depth,omitempty"`
	// Most fields of a URL-encoded form body, or parts of a multipart one. Default 1000.
	MaxFormFields int `yaml:"max_form_fields,omitempty" json:"max_form_fields,omitempty"`
}

// Hygiene returns the route's request limits in the form the gateway
// checks them, with max_request_body as the body cap.
func (r *Route) Hygiene() hygiene.Limits {
	q := r.Request
	l := hygiene.Limits{
		MaxURLBytes: int(q.MaxURLBytes), MaxHeaders: q.MaxHeaders, MaxQueryParams: q.MaxQueryParams,
		MaxCookies: q.MaxCookies, ContentTypes: q.ContentTypes, AllowEncodedSlash: q.AllowEncodedSlash,
		MaxJSONDepth: q.MaxJSONDepth, MaxFormFields: q.MaxFormFields, MaxBodyBytes: int64(r.MaxRequestBody),
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = -1 // no limit
	}
	if len(q.BodyCaps) > 0 {
		l.BodyCaps = make(map[string]int64, len(q.BodyCaps))
		for t, c := range q.BodyCaps {
			l.BodyCaps[t] = int64(c)
		}
	}
	return l
}

// WAF configures the web application firewall of a route: Coraza with the
// OWASP Core Rule Set v4, embedded.
type WAF struct {
	// block (refuse with 403 when the anomaly score reaches the threshold; the default), detect (record what would be blocked, refuse nothing) or off.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// CRS paranoia level, 1 (the default: few false positives) to 4 (most rules, most false positives).
	ParanoiaLevel int `yaml:"paranoia_level,omitempty" json:"paranoia_level,omitempty"`
	// Inbound anomaly score at which a request is blocked. Default 5 (one critical rule).
	InboundThreshold int `yaml:"inbound_threshold,omitempty" json:"inbound_threshold,omitempty"`
	// Rules to exclude, for false positives: ids ("942100") or id ranges ("942100-942199"). Each must name a rule of the set.
	RemoveRules []string `yaml:"remove_rules,omitempty" json:"remove_rules,omitempty"`
	// Rules to exclude by tag ("attack-sqli", "paranoia-level/2"). Each must be carried by a rule of the set.
	RemoveTags []string `yaml:"remove_tags,omitempty" json:"remove_tags,omitempty"`
	// Largest body inspected. Default 1MiB, at most 64MiB.
	BodyLimit ByteSize `yaml:"body_limit,omitempty" json:"body_limit,omitempty"`
	// A body over body_limit: reject (413; the default) or partial (inspect the first body_limit bytes, pass the rest uninspected).
	BodyLimitAction string `yaml:"body_limit_action,omitempty" json:"body_limit_action,omitempty"`
	// CRS setup variables (crs-setup.conf tx.NAME), e.g. allowed_methods: "GET HEAD POST OPTIONS PUT DELETE" or allowed_request_content_type for upload types.
	Variables map[string]string `yaml:"variables,omitempty" json:"variables,omitempty"`
}

// CSRF configures cross-site request forgery protection. Unsafe requests
// (not GET, HEAD or OPTIONS) authenticated by the session cookie must come
// from the route's own origin or a trusted one (Sec-Fetch-Site, Origin), or
// carry a token bound to the session; requests authenticated by a bearer
// token or an API key cannot be forged across sites and are not checked.
type CSRF struct {
	// Turn the protection off for this route. Default false.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// Origins (https://app.example.com) that may send unsafe requests across sites, besides the route's own.
	TrustedOrigins []string `yaml:"trusted_origins,omitempty" json:"trusted_origins,omitempty"`
	// Insert the token as a hidden field into every POST form of the HTML pages the route serves to signed-in users. Default false.
	InjectForms bool `yaml:"inject_forms,omitempty" json:"inject_forms,omitempty"`
	// Hand the token to single-page applications in the readable cookie __Host-moat_csrf_token, to send back in the X-Moat-CSRF-Token header. Default false.
	TokenCookie bool `yaml:"token_cookie,omitempty" json:"token_cookie,omitempty"`
}

// UpstreamCookies hardens the Set-Cookie fields of a route's responses.
// An attribute the upstream set itself is kept.
type UpstreamCookies struct {
	// Add Secure: the cookie never travels over plain HTTP.
	Secure bool `yaml:"secure,omitempty" json:"secure,omitempty"`
	// Add HttpOnly: page scripts cannot read the cookie (leave it off for cookies the application's scripts read).
	HTTPOnly bool `yaml:"http_only,omitempty" json:"http_only,omitempty"`
	// Add SameSite: lax, strict or none (none needs secure).
	SameSite string `yaml:"same_site,omitempty" json:"same_site,omitempty"`
}

// CORS configures cross-origin resource sharing for a route.
type CORS struct {
	// Origins whose pages may call the route: exact (https://app.example.com), one wildcard label (https://*.example.com), "null", or "*" for any (not with allow_credentials). Required.
	AllowedOrigins []string `yaml:"allowed_origins" json:"allowed_origins"`
	// Methods a preflight may ask for. Default [GET, HEAD, POST].
	AllowedMethods []string `yaml:"allowed_methods,omitempty" json:"allowed_methods,omitempty"`
	// Request headers a preflight may ask for (Content-Type must be listed for JSON).
	AllowedHeaders []string `yaml:"allowed_headers,omitempty" json:"allowed_headers,omitempty"`
	// Response headers scripts may read, besides the safelisted ones.
	ExposedHeaders []string `yaml:"exposed_headers,omitempty" json:"exposed_headers,omitempty"`
	// Let scripts send cookies and read the responses. Never with "*" or "null".
	AllowCredentials bool `yaml:"allow_credentials,omitempty" json:"allow_credentials,omitempty"`
	// How long browsers may cache a preflight answer, up to 24h. Default: the browser's (5s).
	MaxAge Duration `yaml:"max_age,omitempty" json:"max_age,omitempty"`
}

// OpenAPI validates a route's requests against an OpenAPI document:
// requests matching no documented operation get 404 or 405, requests that
// break the document 400 listing every violation.
type OpenAPI struct {
	// Path of the OpenAPI 3.0 or 3.1 document, YAML or JSON. Its $refs may point only to files in its directory, never to URLs. Required.
	Spec string `yaml:"spec" json:"spec"`
	// Accept object properties the document does not name. Default false: refused.
	AllowUnknownProperties bool `yaml:"allow_unknown_properties,omitempty" json:"allow_unknown_properties,omitempty"`
	// Accept query parameters the document does not name. Default false: refused.
	AllowUnknownQuery bool `yaml:"allow_unknown_query,omitempty" json:"allow_unknown_query,omitempty"`
	// Match the document's paths right after the route's prefix, ignoring the base paths of its servers entries.
	IgnoreServers bool `yaml:"ignore_servers,omitempty" json:"ignore_servers,omitempty"`
	// Largest body read for validation; larger gets 413. Default 1MiB.
	MaxBody ByteSize `yaml:"max_body,omitempty" json:"max_body,omitempty"`
	// Upstream responses: off (the default) or report (validate them and record what departs from the document as openapi.response events; never change a response).
	Responses string `yaml:"responses,omitempty" json:"responses,omitempty"`
}

// UpstreamTLS configures TLS to an upstream.
type UpstreamTLS struct {
	// PEM bundle of CAs to trust instead of the system roots.
	CA string `yaml:"ca,omitempty" json:"ca,omitempty"`
	// Server name to verify, when it differs from the upstream URL's host.
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
	// Base64 SHA-256 hashes of acceptable SubjectPublicKeyInfo; any match passes.
	PinSPKI []string `yaml:"pin_spki,omitempty" json:"pin_spki,omitempty"`
}

// HealthCheck configures active upstream health checks.
type HealthCheck struct {
	// Path requested with GET; any 2xx or 3xx is healthy. Must start with "/".
	Path string `yaml:"path" json:"path"`
	// Time between checks. Default 10s. Must be greater than 0.
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Time allowed for one check. Default 2s. Must be greater than 0.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Database chooses the store.
type Database struct {
	// Empty for SQLite at data_dir/moat.db. Otherwise a PostgreSQL URL (postgres://user@host/db?sslmode=verify-full), written inline only when it holds no password; a URL with a password must be a secret reference (env:NAME or file:PATH).
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// URL of a migration role that owns the tables, used by moat db migrate and moat backup restore, and to verify PostgreSQL backups in a temporary schema (moat serve's scheduled backups, moat backup create and moat backup verify). moat serve otherwise connects, and migrates, with url. Empty means url. Same rules as url.
	MigrateURL string `yaml:"migrate_url,omitempty" json:"migrate_url,omitempty"`
}

// Keys configures the key ring that encrypts secrets at rest.
type Keys struct {
	// The master key (32 random bytes in base64, made by moat keys generate) as a secret reference: file:PATH (mode 0600, kept outside the data directory) or env:NAME.
	MasterKey Secret `yaml:"master_key" json:"master_key"`
}

// Backup configures scheduled backups. Backups are encrypted with age to
// recipients or with a passphrase, not both.
type Backup struct {
	// Directory for backup files. Default data_dir/backups.
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// Time between scheduled backups. Default 24h.
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Number of backup files kept; older ones are deleted. Default 7.
	Retention int `yaml:"retention,omitempty" json:"retention,omitempty"`
	// age X25519 recipients (age1...) the backups are encrypted to.
	Recipients []string `yaml:"recipients,omitempty" json:"recipients,omitempty"`
	// Passphrase the backups are encrypted with, as a secret reference; instead of recipients.
	Passphrase Secret `yaml:"passphrase,omitempty" json:"passphrase,omitempty"`
	// age identity (AGE-SECRET-KEY-1...) used to verify each new backup, as a secret reference. Required with recipients.
	Identity Secret `yaml:"identity,omitempty" json:"identity,omitempty"`
}

// Accounts configures local accounts and the login portal.
type Accounts struct {
	// Base URL users reach Moat at (https://host[:port]), for the links moat user prints and the passkey origin. Default: https:// with the first host of tls.acme.domains, tls.dev.hosts or the routes (else localhost), and the HTTPS listener's port unless it is 443.
	PublicURL string `yaml:"public_url,omitempty" json:"public_url,omitempty"`
	// Users with any of these roles must have a second factor (an authenticator app or a passkey) and enroll one at their first login before reaching anything else. Default [admin, moat:admin].
	MFARoles []string `yaml:"mfa_roles,omitempty" json:"mfa_roles,omitempty"`
	// How long an enrollment or password-reset link stays valid. Default 72h.
	EnrollLinkTTL Duration `yaml:"enroll_link_ttl,omitempty" json:"enroll_link_ttl,omitempty"`
	// Password rules and hashing cost.
	Password Passwords `yaml:"password,omitempty" json:"password,omitempty"`
	// Brute-force protection of logins, second factors and recovery codes.
	Lockout Lockout `yaml:"lockout,omitempty" json:"lockout,omitempty"`
	// Login sessions.
	Sessions Sessions `yaml:"sessions,omitempty" json:"sessions,omitempty"`
	// WebAuthn passkeys, as a second factor and for passwordless login.
	Passkeys Passkeys `yaml:"passkeys,omitempty" json:"passkeys,omitempty"`
}

// Passwords sets the password policy (NIST SP 800-63B: length and a
// breached-password list, no composition rules) and the argon2id cost.
type Passwords struct {
	// Fewest characters a password may have. Default 12; at least 8.
	MinLength int `yaml:"min_length,omitempty" json:"min_length,omitempty"`
	// Most characters a password may have. Default 128; at least 64 and at most 1024.
	MaxLength int `yaml:"max_length,omitempty" json:"max_length,omitempty"`
	// argon2id memory per hash. Default 19MiB (the OWASP minimum, which is also the floor).
	Memory ByteSize `yaml:"memory,omitempty" json:"memory,omitempty"`
	// argon2id passes over the memory. Default 2; at least 2.
	Iterations int `yaml:"iterations,omitempty" json:"iterations,omitempty"`
	// argon2id lanes. Default 1; at most 16.
	Parallelism int `yaml:"parallelism,omitempty" json:"parallelism,omitempty"`
	// Memory all password hashes computing at once may use; more logins wait. Default 256MiB; at least one hash's memory.
	HashMemoryBudget ByteSize `yaml:"hash_memory_budget,omitempty" json:"hash_memory_budget,omitempty"`
	// How long a login waits for room in the hashing budget before getting 503. Default 2s.
	HashWait Duration `yaml:"hash_wait,omitempty" json:"hash_wait,omitempty"`
}

// Lockout sets the failure counters: each failure doubles the wait before
// the next attempt, and too many in the window lock the key. The counters
// live where rate limits do (rate_limits.store): with redis, every instance
// counts the same failures.
type Lockout struct {
	// Failures per account within window that lock it. Default 5.
	MaxFailures int `yaml:"max_failures,omitempty" json:"max_failures,omitempty"`
	// Failures per client address (IPv6 by /64) within window that lock it. Default 20.
	AddressMaxFailures int `yaml:"address_max_failures,omitempty" json:"address_max_failures,omitempty"`
	// Period over which failures are counted. Default 15m.
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// How long a locked account or address stays locked. Default 15m.
	LockFor Duration `yaml:"lock_for,omitempty" json:"lock_for,omitempty"`
	// Wait after an account's first failure, doubling with each further one. Default 1s; 0 turns the back-off off.
	BackOff Duration `yaml:"back_off,omitempty" json:"back_off,omitempty"`
	// With rate_limits.store redis, when Redis cannot answer: fail_closed (refuse sign-ins with 503 until it answers; the default) or fail_open (count failures in this instance's memory, so each instance allows its own max_failures).
	FailureMode string `yaml:"failure_mode,omitempty" json:"failure_mode,omitempty"`
}

// Sessions configures login sessions.
type Sessions struct {
	// A session unused for this long ends. Default 30m.
	IdleTimeout Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	// A session ends this long after its login, however active. Default 12h.
	AbsoluteTimeout Duration `yaml:"absolute_timeout,omitempty" json:"absolute_timeout,omitempty"`
	// Redis URL (redis:// or rediss://) to keep sessions in, shared by every instance, with revocations reaching all of them at once; a secret reference when it holds a password. Empty: sessions live in the database.
	RedisURL string `yaml:"redis_url,omitempty" json:"redis_url,omitempty"`
	// SameSite of the session cookie: lax (the default: a link from another site arrives signed in) or strict (it arrives without the session; stronger against cross-site requests, at that cost).
	SameSite string `yaml:"same_site,omitempty" json:"same_site,omitempty"`
}

// SessionCookies returns how the session cookie is written.
func (s Sessions) SessionCookies() session.Cookies {
	if s.SameSite == "strict" {
		return session.Cookies{SameSite: http.SameSiteStrictMode}
	}
	return session.Cookies{SameSite: http.SameSiteLaxMode}
}

// Passkeys configures WebAuthn.
type Passkeys struct {
	// Turn passkeys off. They are on by default.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// Relying party id: the domain passkeys are bound to (changing it makes registered passkeys unusable). Default: the host of public_url.
	RPID string `yaml:"rp_id,omitempty" json:"rp_id,omitempty"`
	// Origins (https://host[:port]) browsers may run the ceremony from; each host must be rp_id or below it. Default: the origin of public_url.
	Origins []string `yaml:"origins,omitempty" json:"origins,omitempty"`
	// Name authenticators show for the site. Default "Moat".
	DisplayName string `yaml:"display_name,omitempty" json:"display_name,omitempty"`
}

// ClientCerts configures client certificate authentication on a route.
type ClientCerts struct {
	// PEM files of the CAs whose certificates are accepted (the chain must end at one of them).
	CAs []string `yaml:"cas" json:"cas"`
	// Roles given to every caller with a valid certificate.
	Roles []string `yaml:"roles,omitempty" json:"roles,omitempty"`
}

// OIDC configures sign-in through OpenID Connect providers.
type OIDC struct {
	// The providers, each a button on the login page. The redirect URI to register at each is accounts.public_url + /.moat/oidc/callback.
	Providers []OIDCProvider `yaml:"providers,omitempty" json:"providers,omitempty"`
}

// OIDCProvider is one OpenID Connect provider.
type OIDCProvider struct {
	// Short name, in URLs and events: 1 to 32 lower-case letters, digits or -.
	Name string `yaml:"name" json:"name"`
	// Text of the login button. Default: the name.
	DisplayName string `yaml:"display_name,omitempty" json:"display_name,omitempty"`
	// Issuer URL (https; http only on loopback); its discovery document is read from issuer + /.well-known/openid-configuration.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Client id registered at the provider.
	ClientID string `yaml:"client_id" json:"client_id"`
	// Client secret, as a secret reference (env:NAME or file:PATH).
	ClientSecret Secret `yaml:"client_secret" json:"client_secret"`
	// Scopes to ask for. Default [openid, email, profile]; openid is always asked for.
	Scopes []string `yaml:"scopes,omitempty" json:"scopes,omitempty"`
	// Claim that names the user. Default preferred_username, then email.
	UsernameClaim string `yaml:"username_claim,omitempty" json:"username_claim,omitempty"`
	// Claim path holding the user's groups or roles at the provider, such as groups or realm_access.roles.
	RolesClaim string `yaml:"roles_claim,omitempty" json:"roles_claim,omitempty"`
	// Maps values of roles_claim to Moat roles. Empty: the values are the roles.
	RoleMap []RoleMapping `yaml:"role_map,omitempty" json:"role_map,omitempty"`
	// Roles every user of this provider gets.
	DefaultRoles []string `yaml:"default_roles,omitempty" json:"default_roles,omitempty"`
	// Only users with a verified e-mail address in one of these domains may sign in.
	AllowedEmailDomains []string `yaml:"allowed_email_domains,omitempty" json:"allowed_email_domains,omitempty"`
	// Only users with one of these values in roles_claim may sign in.
	AllowedGroups []string `yaml:"allowed_groups,omitempty" json:"allowed_groups,omitempty"`
}

// RoleMapping maps one claim value to Moat roles.
type RoleMapping struct {
	// The claim value, such as a group name.
	From string `yaml:"from" json:"from"`
	// The Moat roles it grants.
	Roles []string `yaml:"roles" json:"roles"`
}

// JWT configures bearer token authentication.
type JWT struct {
	// The issuers whose tokens are accepted.
	Issuers []JWTIssuer `yaml:"issuers,omitempty" json:"issuers,omitempty"`
	// Largest token accepted. Default 8KiB.
	MaxTokenBytes ByteSize `yaml:"max_token_bytes,omitempty" json:"max_token_bytes,omitempty"`
}

// JWTIssuer is one token issuer.
type JWTIssuer struct {
	// The exact iss of its tokens.
	Issuer string `yaml:"issuer" json:"issuer"`
	// URL of its JWK Set (https; http only on loopback). Empty: read from the issuer's discovery document.
	JWKSURL string `yaml:"jwks_url,omitempty" json:"jwks_url,omitempty"`
	// A token's aud must hold one of these. Required.
	Audiences []string `yaml:"audiences" json:"audiences"`
	// Signature algorithms accepted: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. Default [RS256, ES256, EdDSA]. none and HS* are never accepted.
	Algorithms []string `yaml:"algorithms,omitempty" json:"algorithms,omitempty"`
	// Leeway for exp, nbf and iat. Default 30s; at most 5m.
	ClockSkew Duration `yaml:"clock_skew,omitempty" json:"clock_skew,omitempty"`
	// Claim path holding roles, such as roles or realm_access.roles.
	RolesClaim string `yaml:"roles_claim,omitempty" json:"roles_claim,omitempty"`
	// Maps values of roles_claim to Moat roles. Empty: the values are the roles.
	RoleMap []RoleMapping `yaml:"role_map,omitempty" json:"role_map,omitempty"`
	// Claim holding scopes (a space-separated string or a list). Default scope (and scp).
	ScopesClaim string `yaml:"scopes_claim,omitempty" json:"scopes_claim,omitempty"`
	// Claims copied to the principal (and to the identity assertion).
	Claims []string `yaml:"claims,omitempty" json:"claims,omitempty"`
}

// Assertion configures the identity assertion sent to upstreams.
type Assertion struct {
	// Lifetime of an assertion. Default 60s; at most 10m.
	Lifetime Duration `yaml:"lifetime,omitempty" json:"lifetime,omitempty"`
	// How often a new signing key is made; the old ones stay published until their assertions expire. Default 24h.
	Rotation Duration `yaml:"rotation,omitempty" json:"rotation,omitempty"`
}

// AccessRule is one allow or deny rule of a route. Its conditions must all
// hold; a rule without conditions matches every request.
type AccessRule struct {
	// Name used in events, logs and moat policy test. Default allow[i] or deny[i].
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// true: only callers with credentials; false: only anonymous callers.
	Authenticated *bool `yaml:"authenticated,omitempty" json:"authenticated,omitempty"`
	// The caller has any of these roles.
	Roles []string `yaml:"roles,omitempty" json:"roles,omitempty"`
	// The caller has all of these scopes (API keys and bearer tokens).
	Scopes []string `yaml:"scopes,omitempty" json:"scopes,omitempty"`
	// HTTP methods (GET, POST, ...), any of them.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// Path prefixes within the route's path, at segment boundaries: /api/admin matches /api/admin and /api/admin/users.
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"`
	// The caller used a second factor (an authenticator app, a recovery code, a passkey, or a provider's MFA).
	MFA bool `yaml:"mfa,omitempty" json:"mfa,omitempty"`
	// The caller signed in at most this long ago (implies mfa). Older sessions are sent to confirm their second factor again (step-up).
	MFAMaxAge Duration `yaml:"mfa_max_age,omitempty" json:"mfa_max_age,omitempty"`
	// The caller authenticated with any of these: pwd, otp, recovery, webauthn, oidc, mfa (e.g. [webauthn] for passkeys only).
	AuthMethods []string `yaml:"auth_methods,omitempty" json:"auth_methods,omitempty"`
	// The client address is in any of these CIDRs (after trusted_proxies).
	SourceIPs []string `yaml:"source_ips,omitempty" json:"source_ips,omitempty"`
	// A CEL expression returning bool over request (method, path, headers, query, ip, time) and principal (authenticated, subject, name, method, issuer, roles, scopes, amr, auth_time, claims). Checked when the config loads.
	Expr string `yaml:"expr,omitempty" json:"expr,omitempty"`
}

// RateLimits configures rate limiting.
type RateLimits struct {
	// Where counters live: memory (this instance; the default) or redis (shared by every instance using redis_url).
	Store string `yaml:"store,omitempty" json:"store,omitempty"`
	// Redis URL (redis:// or rediss://) for store redis; a secret reference when it holds a password.
	RedisURL string `yaml:"redis_url,omitempty" json:"redis_url,omitempty"`
	// When Redis cannot answer: fail_open (decide with a limiter in this instance's memory; the default) or fail_closed (refuse with 503). A limit may override it.
	FailureMode string `yaml:"failure_mode,omitempty" json:"failure_mode,omitempty"`
	// Most keys the memory store keeps; idle ones are evicted first. Default 100000.
	MaxKeys int `yaml:"max_keys,omitempty" json:"max_keys,omitempty"`
	// IPv6 clients are counted by this prefix length, since one host usually holds a whole /64. Default 64.
	IPv6Prefix int `yaml:"ipv6_prefix,omitempty" json:"ipv6_prefix,omitempty"`
	// Limits applied to every route, before authentication (so keyed by ip or route).
	Global []RateLimit `yaml:"global,omitempty" json:"global,omitempty"`
}

// RateLimit is one limit: rate requests per period, with a burst.
type RateLimit struct {
	// Name, in headers, metrics and events: 1 to 32 lower-case letters, digits or -.
	Name string `yaml:"name" json:"name"`
	// What is counted: ip (the client address), principal (the authenticated caller), apikey (the API key), route (everyone together), or expr (the string that expr returns).
	Key string `yaml:"key" json:"key"`
	// With key expr: a CEL expression of type string over request and principal, as in access rules (e.g. principal.claims["org"]). Requests for which it fails (a missing key) share one allowance. Checked when the config loads.
	Expr string `yaml:"expr,omitempty" json:"expr,omitempty"`
	// Requests allowed per period, sustained. Must be greater than 0.
	Rate int `yaml:"rate" json:"rate"`
	// The period of rate: 1s, 1m, 1h... Default 1s.
	Per Duration `yaml:"per,omitempty" json:"per,omitempty"`
	// Requests allowed at once. Default: rate.
	Burst int `yaml:"burst,omitempty" json:"burst,omitempty"`
	// Overrides rate_limits.failure_mode for this limit.
	FailureMode string `yaml:"failure_mode,omitempty" json:"failure_mode,omitempty"`
}

// LoadShedding caps what the gateway serves at once.
type LoadShedding struct {
	// Requests served at once across all routes; 0 (the default) means no cap.
	MaxInFlight int `yaml:"max_in_flight,omitempty" json:"max_in_flight,omitempty"`
	// Requests that may wait for a free slot (global or a route's). Default 100.
	MaxQueue int `yaml:"max_queue,omitempty" json:"max_queue,omitempty"`
	// How long a request waits for a slot before 503. Default 100ms.
	QueueWait Duration `yaml:"queue_wait,omitempty" json:"queue_wait,omitempty"`
}

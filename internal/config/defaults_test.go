package config

import (
	"log/slog"
	"reflect"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := Parse("moat.yaml", withKeys(minimal+"    health_check: {path: /healthz}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	tests := []struct {
		name      string
		got, want any
	}{
		{"data_dir", c.DataDir, "./moat-data"},
		{"listen.https", c.Listen.HTTPS, ":8443"},
		{"listen.admin", c.Listen.Admin, "127.0.0.1:9090"},
		{"listen.http stays off", c.Listen.HTTP, ""},
		{"limits.read_header_timeout", c.Limits.ReadHeaderTimeout.D(), 10 * time.Second},
		{"limits.read_timeout", c.Limits.ReadTimeout.D(), 60 * time.Second},
		{"limits.write_timeout is off", c.Limits.WriteTimeout.D(), time.Duration(0)},
		{"limits.idle_timeout", c.Limits.IdleTimeout.D(), 120 * time.Second},
		{"limits.max_header_bytes", c.Limits.MaxHeaderBytes, ByteSize(32 << 10)},
		{"limits.max_connections", c.Limits.MaxConnections, 10000},
		{"limits.shutdown_timeout", c.Limits.ShutdownTimeout.D(), 30 * time.Second},
		{"tls.hsts.max_age", c.TLS.HSTS.MaxAge.D(), 730 * 24 * time.Hour},
		{"tls.hsts.include_subdomains", c.TLS.HSTS.IncludesSubdomains(), true},
		{"tls.hsts.preload", c.TLS.HSTS.Preload, false},
		{"tls.dev.hosts", c.TLS.Dev.Hosts, []string{"localhost", "127.0.0.1", "::1"}},
		{"log.level", c.Log.Level, "info"},
		{"log.access", c.Log.AccessEnabled(), true},
		{"route path", r.Path, "/"},
		{"route max_fails", r.MaxFails, 3},
		{"route fail_timeout", r.FailTimeout.D(), 10 * time.Second},
		{"route max_request_body", r.MaxRequestBody, ByteSize(10 << 20)},
		{"route max_response_body is unlimited", r.MaxResponseBody, ByteSize(0)},
		{"route timeout", r.Timeout.D(), 30 * time.Second},
		{"route mask_errors", r.MasksErrors(), true},
		{"health_check interval", r.HealthCheck.Interval.D(), 10 * time.Second},
		{"health_check timeout", r.HealthCheck.Timeout.D(), 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestDefaultsACMEChallenges(t *testing.T) {
	c := &Config{TLS: TLS{ACME: &ACME{Domains: []string{"Example.COM"}}}}
	c.ApplyDefaults()
	if want := []string{"http-01", "tls-alpn-01"}; !reflect.DeepEqual(c.TLS.ACME.Challenges, want) {
		t.Errorf("challenges = %v, want %v", c.TLS.ACME.Challenges, want)
	}
	if c.TLS.ACME.Domains[0] != "example.com" {
		t.Errorf("domain = %q, want it lower-cased", c.TLS.ACME.Domains[0])
	}
}

func TestDefaultsKeepExplicitValues(t *testing.T) {
	c, err := Parse("moat.yaml", withKeys(`data_dir: /var/lib/moat
limits:
  max_connections: 0
  read_timeout: 0s
  max_header_bytes: 8KiB
tls:
  dev: {hosts: [Dev.Example]}
  hsts: {include_subdomains: false}
log: {access: false, level: debug}
routes:
  - name: app
    hosts: [API.Example.com]
    policy: public
    upstreams: [http://127.0.0.1:8080]
    max_fails: 0
    timeout: 0s
    max_request_body: 0
    mask_errors: false
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	tests := []struct {
		name      string
		got, want any
	}{
		{"data_dir", c.DataDir, "/var/lib/moat"},
		{"explicit zero max_connections", c.Limits.MaxConnections, 0},
		{"explicit zero read_timeout", c.Limits.ReadTimeout, Duration(0)},
		{"max_header_bytes", c.Limits.MaxHeaderBytes, ByteSize(8 << 10)},
		{"dev hosts, lower-cased", c.TLS.Dev.Hosts, []string{"dev.example"}},
		{"include_subdomains", c.TLS.HSTS.IncludesSubdomains(), false},
		{"access log", c.Log.AccessEnabled(), false},
		{"log level", c.Log.SlogLevel(), slog.LevelDebug},
		{"route hosts lower-cased", r.Hosts, []string{"api.example.com"}},
		{"explicit zero max_fails", r.MaxFails, 0},
		{"explicit zero timeout", r.Timeout, Duration(0)},
		{"explicit zero max_request_body", r.MaxRequestBody, ByteSize(0)},
		{"mask_errors", r.MasksErrors(), false},
		{"unset fail_timeout still defaulted", r.FailTimeout, Duration(10 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestApplyDefaultsInCode(t *testing.T) {
	c := &Config{Routes: []Route{{Name: "a"}}}
	c.ApplyDefaults()
	if c.Routes[0].MaxFails != 3 || c.Limits.MaxConnections != 10000 {
		t.Errorf("zero values of a Config built in code were not defaulted: %+v", c)
	}
	once := *c
	once.Routes = append([]Route(nil), c.Routes...)
	c.ApplyDefaults()
	if !reflect.DeepEqual(*c, once) {
		t.Errorf("ApplyDefaults is not idempotent:\n%+v\n%+v", *c, once)
	}
}

func TestAccessorsOnZeroValues(t *testing.T) {
	if !(Route{}).MasksErrors() || !(HSTS{}).IncludesSubdomains() || !(Log{}).AccessEnabled() {
		t.Error("a nil pointer-bool must read as its default, true")
	}
	if got := (Log{}).SlogLevel(); got != slog.LevelInfo {
		t.Errorf("SlogLevel of empty level = %v, want info", got)
	}
}

func TestLogSlogLevel(t *testing.T) {
	for level, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		t.Run(level, func(t *testing.T) {
			if got := (Log{Level: level}).SlogLevel(); got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestHSTSValue(t *testing.T) {
	no := false
	tests := []struct {
		name string
		h    HSTS
		want string
	}{
		{"default", HSTS{MaxAge: Duration(730 * day)}, "max-age=63072000; includeSubDomains"},
		{"no subdomains", HSTS{MaxAge: Duration(365 * day), IncludeSubdomains: &no}, "max-age=31536000"},
		{"preload", HSTS{MaxAge: Duration(365 * day), Preload: true}, "max-age=31536000; includeSubDomains; preload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Value(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUnitStrings(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"days", Duration(730 * day).String(), "730d"},
		{"minutes", Duration(2 * time.Minute).String(), "2m"},
		{"hours and minutes", Duration(90 * time.Minute).String(), "1h30m"},
		{"hours", Duration(5 * time.Hour).String(), "5h"},
		{"seconds", Duration(10 * time.Second).String(), "10s"},
		{"fraction", Duration(1500 * time.Millisecond).String(), "1.5s"},
		{"zero", Duration(0).String(), "0s"},
		{"MiB", ByteSize(10 << 20).String(), "10MiB"},
		{"KiB", ByteSize(1536 << 10).String(), "1536KiB"},
		{"GiB", ByteSize(2 << 30).String(), "2GiB"},
		{"bytes", ByteSize(1000).String(), "1000"},
		{"zero size", ByteSize(0).String(), "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	t.Run("round trip", func(t *testing.T) {
		for _, d := range []Duration{0, Duration(time.Millisecond), Duration(90 * time.Minute), Duration(3 * day), Duration(25 * time.Hour)} {
			back, err := ParseDuration(d.String())
			if err != nil || back != d {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.String(), back, err, d)
			}
		}
		for _, b := range []ByteSize{0, 1, 1023, 1 << 10, 5 << 20, 3 << 30} {
			back, err := ParseByteSize(b.String())
			if err != nil || back != b {
				t.Errorf("ParseByteSize(%q) = %v, %v; want %v", b.String(), back, err, b)
			}
		}
	})
}

func TestDefaultPublicURL(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		url    string
		rpID   string
		origin string
	}{
		{"nothing known", Config{}, "https://localhost:8443", "localhost", "https://localhost:8443"},
		{"acme domain on 443", Config{Listen: Listen{HTTPS: ":443"}, TLS: TLS{ACME: &ACME{Domains: []string{"Login.Example.com"}}}},
			"https://login.example.com", "login.example.com", "https://login.example.com"},
		{"dev hosts", Config{Listen: Listen{HTTPS: "127.0.0.1:9443"}, TLS: TLS{Dev: &DevTLS{Hosts: []string{"app.test"}}}},
			"https://app.test:9443", "app.test", "https://app.test:9443"},
		{"route host, wildcard skipped", Config{Routes: []Route{{Hosts: []string{"*.example.com", "api.example.com"}}}},
			"https://api.example.com:8443", "api.example.com", "https://api.example.com:8443"},
		{"port chosen by the system", Config{Listen: Listen{HTTPS: "127.0.0.1:0"}}, "https://localhost", "localhost", "https://localhost"},
		{"explicit public url wins", Config{Accounts: Accounts{PublicURL: "https://sso.example.org"}}, "https://sso.example.org", "sso.example.org", "https://sso.example.org"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.ApplyDefaults()
			a := c.Accounts
			if a.PublicURL != tc.url || a.Passkeys.RPID != tc.rpID || len(a.Passkeys.Origins) != 1 || a.Passkeys.Origins[0] != tc.origin {
				t.Errorf("public_url %q rp_id %q origins %q; want %q, %q, [%q]", a.PublicURL, a.Passkeys.RPID, a.Passkeys.Origins, tc.url, tc.rpID, tc.origin)
			}
			if len(a.MFARoles) != 2 || a.MFARoles[0] != "admin" || a.MFARoles[1] != "moat:admin" {
				t.Errorf("mfa_roles %q, want [admin moat:admin]", a.MFARoles)
			}
		})
	}
}

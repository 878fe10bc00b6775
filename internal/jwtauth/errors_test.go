package jwtauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWWWAuthenticate(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"expired", newError(ReasonExpired), `Bearer error="invalid_token", error_description="the token has expired"`},
		{"too large is invalid_request", newError(ReasonTooLarge), `Bearer error="invalid_request", error_description="the access token is too large"`},
		{"quotes and backslashes left out", &Error{Code: "invalid_token", Description: `say "hi" \ bye`}, `Bearer error="invalid_token", error_description="say hi  bye"`},
		{"CR LF cannot split the header", &Error{Code: "invalid_token", Description: "a\r\nSet-Cookie: x=1"}, `Bearer error="invalid_token", error_description="aSet-Cookie: x=1"`},
		{"non-ASCII left out", &Error{Code: "invalid_token", Description: "caf\u00e9 \x7f\x00tab\there"}, `Bearer error="invalid_token", error_description="caf tabhere"`},
		{"quote in the code", &Error{Code: `invalid_token", x="`, Description: "d"}, `Bearer error="invalid_token, x=", error_description="d"`},
		{"no description", &Error{Code: "invalid_token"}, `Bearer error="invalid_token"`},
		{"unavailable has no code", newError(ReasonUnavailable), `Bearer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.err.WWWAuthenticate()
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			rec := httptest.NewRecorder()
			rec.Header().Set("WWW-Authenticate", got) // must be a valid header value
			if strings.ContainsAny(got, "\r\n") {
				t.Error("header value holds CR or LF")
			}
		})
	}
}

func TestErrorStatus(t *testing.T) {
	tests := []struct {
		name   string
		err    *Error
		status int
	}{
		{"invalid token", newError(ReasonSignature), http.StatusUnauthorized},
		{"missing token", missingToken(), http.StatusBadRequest},
		{"too large", newError(ReasonTooLarge), http.StatusBadRequest},
		{"keys unavailable", unavailable(errors.New("dial tcp: refused")), http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Status(); got != tt.status {
				t.Errorf("status = %d, want %d", got, tt.status)
			}
		})
	}
	t.Run("unavailable wraps its cause for logs", func(t *testing.T) {
		cause := errors.New("dial tcp: refused")
		err := unavailable(cause)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, cause) {
			t.Errorf("%v does not wrap both ErrUnavailable and its cause", err)
		}
		if strings.Contains(err.Description, "dial") {
			t.Error("the public description holds the internal cause")
		}
	})
}

func TestFromRequest(t *testing.T) {
	const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
	tests := []struct {
		name    string
		headers []string
		want    string
	}{
		{"bearer JWT", []string{"Bearer " + jwt}, jwt},
		{"scheme is case-insensitive", []string{"bEARER " + jwt}, jwt},
		{"extra spaces", []string{"Bearer   " + jwt + " "}, jwt},
		{"empty signature reaches Verify", []string{"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0."}, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0."},
		{"no header", nil, ""},
		{"two headers", []string{"Bearer " + jwt, "Bearer " + jwt}, ""},
		{"API key", []string{"Bearer moat_abcdef0123456789"}, ""},
		{"basic auth", []string{"Basic dXNlcjpwYXNz"}, ""},
		{"scheme only", []string{"Bearer"}, ""},
		{"Bearer without a space", []string{"Bearer" + jwt}, ""},
		{"tab separator", []string{"Bearer\t" + jwt}, ""},
		{"two segments", []string{"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0"}, ""},
		{"JWE five segments", []string{"Bearer a.b.c.d.e"}, ""},
		{"empty header segment", []string{"Bearer .eyJzdWIiOiJ1In0.c2ln"}, ""},
		{"empty payload segment", []string{"Bearer eyJhbGciOiJFUzI1NiJ9..c2ln"}, ""},
		{"padding", []string{"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln=="}, ""},
		{"standard base64 characters", []string{"Bearer eyJh+GciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2/n"}, ""},
		{"space inside", []string{"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIi OiJ1In0.c2ln"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			if got := FromRequest(r); got != tt.want {
				t.Errorf("FromRequest = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	ok := Issuer{Issuer: "https://issuer.example", Audiences: []string{"api"}}
	with := func(f func(*Issuer)) Issuer { c := ok; f(&c); return c }
	tests := []struct {
		name    string
		opts    Options
		wantErr []string // substrings of the error; none: New succeeds
	}{
		{"minimal", Options{Issuers: []Issuer{ok}}, nil},
		{"explicit JWKS URL on loopback http", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Issuer = "my-service"; c.JWKSURL = "http://127.0.0.1:8080/jwks" })}}, nil},
		{"no issuers", Options{}, []string{"no issuers"}},
		{"alg none", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Algorithms = []string{"none"} })}}, []string{`algorithm "none"`}},
		{"HMAC", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Algorithms = []string{"RS256", "HS256"} })}}, []string{`algorithm "HS256"`}},
		{"ES512", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Algorithms = []string{"ES512"} })}}, []string{`algorithm "ES512"`}},
		{"no audiences", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Audiences = nil })}}, []string{"no audiences"}},
		{"empty audience", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Audiences = []string{""} })}}, []string{"audience is empty"}},
		{"issuer over http for discovery", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Issuer = "http://issuer.example" })}}, []string{"loopback"}},
		{"issuer not a URL, no JWKS URL", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Issuer = "my-service" })}}, []string{"read for discovery", "scheme must be https"}},
		{"issuer without a host", Options{Issuers: []Issuer{with(func(c *Issuer) { c.Issuer = "https:///path" })}}, []string{"not an absolute URL"}},
		{"JWKS URL over http to a remote host", Options{Issuers: []Issuer{with(func(c *Issuer) { c.JWKSURL = "http://keys.example/jwks" })}}, []string{"jwks url", "loopback"}},
		{"JWKS URL with credentials", Options{Issuers: []Issuer{with(func(c *Issuer) { c.JWKSURL = "https://u:p@keys.example/jwks" })}}, []string{"credentials"}},
		{"JWKS URL of another scheme", Options{Issuers: []Issuer{with(func(c *Issuer) { c.JWKSURL = "file:///etc/jwks" })}}, []string{"scheme"}},
		{"clock skew too large", Options{Issuers: []Issuer{with(func(c *Issuer) { c.ClockSkew = 6 * time.Minute })}}, []string{"clock skew"}},
		{"negative clock skew", Options{Issuers: []Issuer{with(func(c *Issuer) { c.ClockSkew = -time.Second })}}, []string{"clock skew"}},
		{"bad roles path", Options{Issuers: []Issuer{with(func(c *Issuer) { c.RolesClaim = "realm_access..roles" })}}, []string{"roles claim"}},
		{"empty role in the map", Options{Issuers: []Issuer{with(func(c *Issuer) { c.RoleMap = map[string][]string{"admin": {""}} })}}, []string{"role map"}},
		{"duplicate issuer", Options{Issuers: []Issuer{ok, ok}}, []string{"listed twice"}},
		{"negative limits", Options{Issuers: []Issuer{ok}, MaxTokenBytes: -1, JWKSRefreshInterval: -time.Second}, []string{"max token bytes", "refresh interval"}},
		{"every problem at once", Options{Issuers: []Issuer{
			with(func(c *Issuer) { c.Audiences = nil }),
			with(func(c *Issuer) { c.Issuer = "https://b.example"; c.Algorithms = []string{"HS256"} }),
		}}, []string{"issuer 0", "no audiences", "issuer 1", "HS256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(tt.opts)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if v.client == nil || v.now == nil || v.log == nil || v.maxTokenBytes != DefaultMaxTokenBytes {
					t.Error("defaults not filled in")
				}
				for _, is := range v.order {
					if is.cfg.ClockSkew != DefaultClockSkew || len(is.algs) == 0 {
						t.Errorf("issuer defaults not filled in: %+v", is.cfg)
					}
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted the options")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDefaultClientRedirects(t *testing.T) {
	tests := []struct {
		name  string
		to    string
		via   int
		allow bool
	}{
		{"https", "https://keys.example/jwks", 1, true},
		{"http on loopback", "http://127.0.0.1:8080/jwks", 1, true},
		{"http to a remote host", "http://keys.example/jwks", 1, false},
		{"another scheme", "ftp://keys.example/jwks", 1, false},
		{"too many redirects", "https://keys.example/jwks", 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.to, nil)
			err := checkRedirect(req, make([]*http.Request, tt.via))
			if (err == nil) != tt.allow {
				t.Errorf("checkRedirect(%s) = %v, want allowed %v", tt.to, err, tt.allow)
			}
		})
	}
}

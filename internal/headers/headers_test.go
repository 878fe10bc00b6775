package headers

import (
	"net/http"
	"testing"

	"github.com/moatgw/moat/internal/config"
)

func TestCompileDefaults(t *testing.T) {
	s, err := Compile(config.Headers{}, config.Headers{}, &config.HSTS{})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	s.Apply(h)
	want := map[string]string{
		"Strict-Transport-Security":  "max-age=63072000; includeSubDomains",
		"X-Content-Type-Options":     "nosniff",
		"X-Frame-Options":            "DENY",
		"Content-Security-Policy":    "frame-ancestors 'none'",
		"Referrer-Policy":            DefaultReferrerPolicy,
		"Cross-Origin-Opener-Policy": "same-origin",
		"Permissions-Policy":         DefaultPermissionsPolicy,
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestCompileOverrides(t *testing.T) {
	f := false
	tests := []struct {
		name          string
		global, route config.Headers
		hsts          *config.HSTS
		want          map[string]string // "" means absent
	}{
		{
			name:   "route beats global",
			global: config.Headers{ReferrerPolicy: "no-referrer"},
			route:  config.Headers{ReferrerPolicy: "same-origin"},
			want:   map[string]string{"Referrer-Policy": "same-origin"},
		},
		{
			name:   "global used when route silent",
			global: config.Headers{ReferrerPolicy: "no-referrer"},
			want:   map[string]string{"Referrer-Policy": "no-referrer"},
		},
		{
			name:  "off removes",
			route: config.Headers{PermissionsPolicy: "off", FrameOptions: "OFF"},
			want:  map[string]string{"Permissions-Policy": "", "X-Frame-Options": "", "Content-Security-Policy": ""},
		},
		{
			name:  "sameorigin framing",
			route: config.Headers{FrameOptions: "sameorigin"},
			want:  map[string]string{"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "frame-ancestors 'self'"},
		},
		{
			name: "hsts preload, no subdomains",
			hsts: &config.HSTS{MaxAge: config.Duration(31536000 * 1e9), IncludeSubdomains: &f, Preload: true},
			want: map[string]string{"Strict-Transport-Security": "max-age=31536000; preload"},
		},
		{
			name: "no hsts without https",
			want: map[string]string{"Strict-Transport-Security": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(tt.global, tt.route, tt.hsts)
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			s.Apply(h)
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for name, hd := range map[string]config.Headers{
		"header injection": {ReferrerPolicy: "no-referrer\r\nSet-Cookie: a=b"},
		"bad frame option": {FrameOptions: "ALLOW-FROM https://x"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Compile(config.Headers{}, hd, nil); err == nil {
				t.Error("want an error")
			}
		})
	}
}

func TestApplyUpstreamCannotWeaken(t *testing.T) {
	s, err := Compile(config.Headers{}, config.Headers{}, &config.HSTS{})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("X-Frame-Options", "ALLOWALL")
	h.Set("Strict-Transport-Security", "max-age=0")
	h.Set("Content-Security-Policy", "default-src 'self'")
	s.Apply(h)
	if got := h.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("X-Frame-Options = %q, want DENY", got)
	}
	if got := h.Get("Strict-Transport-Security"); got != "max-age=63072000; includeSubDomains" {
		t.Errorf("HSTS = %q", got)
	}
	if got := h.Get("Content-Security-Policy"); got != "default-src 'self'; frame-ancestors 'none'" {
		t.Errorf("the upstream's own CSP must be kept, with framing refused: got %q", got)
	}
	for in, want := range map[string]string{
		"frame-ancestors *; script-src 'self'":       "frame-ancestors 'none'; script-src 'self'",
		"script-src 'self' ; FRAME-ANCESTORS https:": "script-src 'self'; frame-ancestors 'none'",
		"frame-ancestors *; frame-ancestors https:":  "frame-ancestors 'none'",
	} {
		h := http.Header{"Content-Security-Policy": {in}}
		s.Apply(h)
		if got := h.Get("Content-Security-Policy"); got != want {
			t.Errorf("CSP %q became %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.Apply(http.Header{}) }); n > 1 {
		t.Errorf("Apply allocates %v times, want at most the map itself", n)
	}
}

package apikey

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFromRequest(t *testing.T) {
	key, _, _ := newKey()
	other, _, _ := newKey()
	const jwt = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	tests := []struct {
		name    string
		headers [][2]string
		want    string
	}{
		{"none", nil, ""},
		{"bearer", [][2]string{{"Authorization", "Bearer " + key}}, key},
		{"x-api-key", [][2]string{{"X-API-Key", key}}, key},
		{"x-api-key in lower case", [][2]string{{"x-api-key", key}}, key},
		{"both, same key", [][2]string{{"Authorization", "Bearer " + key}, {"X-API-Key", key}}, key},
		{"both, different keys", [][2]string{{"Authorization", "Bearer " + key}, {"X-API-Key", other}}, ""},
		{"two Authorization headers, different keys", [][2]string{{"Authorization", "Bearer " + key}, {"Authorization", "Bearer " + other}}, ""},
		{"two X-API-Key headers, same key", [][2]string{{"X-API-Key", key}, {"X-API-Key", key}}, key},
		{"a JWT", [][2]string{{"Authorization", "Bearer " + jwt}}, ""},
		{"a JWT and a key header", [][2]string{{"Authorization", "Bearer " + jwt}, {"X-API-Key", key}}, key},
		{"lower-case bearer", [][2]string{{"Authorization", "bearer " + key}}, key},
		{"upper-case bearer", [][2]string{{"Authorization", "BEARER " + key}}, key},
		{"extra spaces", [][2]string{{"Authorization", "  Bearer    " + key + "  "}}, key},
		{"extra spaces in x-api-key", [][2]string{{"X-API-Key", " \t" + key + " "}}, key},
		{"no space after the scheme", [][2]string{{"Authorization", "Bearer" + key}}, ""},
		{"scheme alone", [][2]string{{"Authorization", "Bearer"}}, ""},
		{"basic", [][2]string{{"Authorization", "Basic " + key}}, ""},
		{"no scheme", [][2]string{{"Authorization", key}}, ""},
		{"two keys in one header", [][2]string{{"Authorization", "Bearer " + key + " " + other}}, ""},
		{"a key in an X-API-Key list", [][2]string{{"X-API-Key", key + ", " + other}}, ""},
		{"not a moat key", [][2]string{{"X-API-Key", "sk_live_abc"}}, ""},
		{"upper-case prefix", [][2]string{{"X-API-Key", strings.ToUpper(key)}}, ""},
		// Shaped like a Moat key but broken: returned, for Verify to refuse.
		{"truncated key", [][2]string{{"Authorization", "Bearer " + key[:30]}}, key[:30]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tc.headers {
				r.Header.Add(h[0], h[1])
			}
			if got := FromRequest(r); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFromRequestServer sends keys through a real HTTP server, as
// clients do.
func TestFromRequestServer(t *testing.T) {
	key, _, _ := newKey()
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- FromRequest(r)
	}))
	defer srv.Close()
	for _, h := range [][2]string{{"Authorization", "bearer  " + key}, {"X-Api-Key", key}} {
		t.Run(h[0], func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set(h[0], h[1])
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if k := <-got; k != key {
				t.Errorf("server saw %q, want %q", k, key)
			}
		})
	}
}

func FuzzFromRequest(f *testing.F) {
	key, _, _ := newKey()
	f.Add("Bearer "+key, key)
	f.Add("bearer   "+key+" ", "")
	f.Add("Bearer eyJ0eXAiOiJKV1QifQ.e30.", "moat_x")
	f.Add("", "moat_\x00")
	f.Fuzz(func(t *testing.T, auth, xkey string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{auth}
		r.Header["X-Api-Key"] = []string{xkey}
		got := FromRequest(r)
		xk, a := strings.Trim(xkey, " \t"), strings.Trim(auth, " \t")
		if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			if ak := strings.TrimLeft(a[7:], " "); candidate(ak) && candidate(xk) && ak != xk && got != "" {
				t.Fatalf("two different keys %q and %q gave %q, want none", ak, xk, got)
			}
		}
		if got == "" {
			return
		}
		if !strings.HasPrefix(got, Prefix) || strings.ContainsAny(got, " \t\r\n") {
			t.Fatalf("FromRequest returned %q, not shaped like a key", got)
		}
		fromX := got == xk
		fromAuth := len(a) > 7 && strings.EqualFold(a[:7], "bearer ") && strings.TrimLeft(a[7:], " ") == got
		if !fromX && !fromAuth {
			t.Fatalf("FromRequest returned %q, which is neither header's whole credential", got)
		}
	})
}

package authz

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moatgw/moat/internal/authn"
)

func TestKeyExpr(t *testing.T) {
	alice := &authn.Principal{Subject: "u-1", Name: "alice", Method: authn.MethodJWT, Claims: map[string]any{"org": "acme"}}
	cases := []struct {
		name    string
		src     string
		req     Request
		want    string
		wantErr bool
	}{
		{"claim", `principal.claims["org"]`, Request{Principal: alice}, "acme", false},
		{"header", `request.headers["x-tenant"]`, Request{Header: http.Header{"X-Tenant": {"t-7"}}}, "t-7", false},
		{"missing header is an error", `request.headers["x-tenant"]`, Request{Header: http.Header{}}, "", true},
		{"with a default", `"x-tenant" in request.headers ? request.headers["x-tenant"] : "none"`, Request{}, "none", false},
		{"anonymous claim is an error", `principal.claims["org"]`, Request{}, "", true},
		{"concatenation", `request.method + ":" + principal.subject`, Request{Method: "POST", Principal: alice}, "POST:u-1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := CompileKey(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Eval(&tc.req)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("Eval = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCompileKeyRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"bool":    {`request.method == "GET"`, "must have type string, has type bool"},
		"int":     {`size(request.path)`, "must have type string"},
		"unknown": {`request.nope`, "at column"},
		"blank":   {`  `, "blank"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := CompileKey(tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CompileKey(%q) = %v, want an error containing %q", tc.src, err, tc.want)
			}
		})
	}
}

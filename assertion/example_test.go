package assertion_test

import (
	"fmt"
	"log"
	"net/http"
	"slices"
	"strings"

	"github.com/moatgw/moat/assertion"
)

// An upstream behind Moat's route "orders" accepts only requests that carry
// a valid assertion, and reads who made them from it.
func Example() {
	v := assertion.NewVerifier(
		"https://gw.example.com/.well-known/moat/jwks.json", // the gateway's key set
		"https://gw.example.com",                            // its issuer: the public URL in Moat's config
		"orders",                                            // the route this service is behind
		nil,                                                 // a default HTTP client
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders", func(w http.ResponseWriter, r *http.Request) {
		c, _ := assertion.FromContext(r.Context())
		if !slices.Contains(c.Roles, "clerk") {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "orders of %s (%s), signed in with %s\n",
			c.Subject, c.Name, strings.Join(c.AMR, "+"))
	})
	// Listen where only Moat can connect: the assertion is worth nothing
	// if clients can reach the service around the gateway.
	log.Fatal(http.ListenAndServe("10.0.0.5:8081", v.Middleware(mux)))
}

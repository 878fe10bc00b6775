// Package request carries the facts Moat establishes about a request (its id,
// the real client address, the matched route) through the handler chain.
package request

import (
	"context"

	"github.com/moatgw/moat/internal/authn"
	"net/netip"
	"time"
)

// Info is established once per request by the first stage of the chain and
// read by every later stage. Fields are set before the next stage runs and
// not changed afterwards, except Route, set by the router, and Principal,
// set by the authentication stage.
type Info struct {
	ID       string     // X-Request-Id, generated or accepted from a trusted proxy
	Start    time.Time  // when Moat started handling the request
	ClientIP netip.Addr // the real client, after trusted-proxy resolution
	Peer     netip.Addr // the TCP peer
	Trusted  bool       // the peer is a trusted proxy
	Scheme   string     // scheme the client used: "https" or "http"
	Route    string     // name of the matched route, empty before routing

	// Principal is who the request is made by, set by the authentication
	// stage; nil for an anonymous request or before that stage.
	Principal *authn.Principal
	// Assertion is the signed identity assertion for the upstream, made
	// by the authentication stage with the principal.
	Assertion string
}

type ctxKey struct{}

// With returns a context carrying info.
func With(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, ctxKey{}, info)
}

// From returns the Info in ctx, or nil when there is none.
func From(ctx context.Context) *Info {
	info, _ := ctx.Value(ctxKey{}).(*Info)
	return info
}

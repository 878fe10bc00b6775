package ratelimit

import (
	"cmp"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Headers sets the RateLimit-Policy and RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers-10 in h, one list member per result,
// the most restrictive first, and Retry-After when any result refused the
// request. It replaces fields already there, so call it once with every
// result that applied to the request. It does nothing without results.
//
// In the draft's terms each Limit is a quota policy whose identifier is its
// Name, as a structured-field String:
//
//	RateLimit-Policy: "ip";q=20;w=2, "user";q=100;w=60
//	RateLimit: "ip";r=0;t=2, "user";r=93;t=5
//
// q is Burst and w is the time to refill a whole burst (Burst emission
// intervals), in whole seconds rounded up: the quota that GCRA holds and
// restores, so that r (Result.Remaining) never exceeds q and t
// (Result.Reset, rounded up) never exceeds w, and q/w is the sustained rate
// (slightly under it when w is rounded). Retry-After is the longest
// RetryAfter of the refusals, in whole seconds rounded up, at least 1.
//
// Most restrictive first means refusals before allowances, then the longer
// wait, then fewer remaining, then the longer time to full. Headers is safe
// for concurrent use on distinct headers.
func Headers(h http.Header, results ...Result) {
	if len(results) == 0 {
		return
	}
	rs := slices.Clone(results)
	slices.SortStableFunc(rs, func(a, b Result) int {
		if a.Allowed != b.Allowed {
			if !a.Allowed {
				return -1
			}
			return 1
		}
		return cmp.Or(
			cmp.Compare(b.RetryAfter, a.RetryAfter),
			cmp.Compare(a.Remaining, b.Remaining),
			cmp.Compare(b.Reset, a.Reset),
		)
	})

	var policy, state strings.Builder
	var retry time.Duration
	for i, r := range rs {
		if i > 0 {
			policy.WriteString(", ")
			state.WriteString(", ")
		}
		name := sfString(r.Limit.Name)
		policy.WriteString(name)
		policy.WriteString(";q=")
		policy.WriteString(strconv.Itoa(r.Limit.Burst))
		policy.WriteString(";w=")
		policy.WriteString(strconv.FormatInt(max(seconds(r.Limit.span()), 1), 10))
		state.WriteString(name)
		state.WriteString(";r=")
		state.WriteString(strconv.Itoa(r.Remaining))
		state.WriteString(";t=")
		state.WriteString(strconv.FormatInt(seconds(r.Reset), 10))
		if !r.Allowed {
			retry = max(retry, r.RetryAfter)
		}
	}
	h.Set("RateLimit-Policy", policy.String())
	h.Set("RateLimit", state.String())
	if rs[0].Allowed {
		h.Del("Retry-After")
	} else {
		h.Set("Retry-After", strconv.FormatInt(max(seconds(retry), 1), 10))
	}
}

// seconds is d in whole seconds, rounded up, and 0 for d <= 0.
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// sfString serializes s as a structured-field String (RFC 9651, Section
// 4.1.6), dropping bytes a String cannot hold. Validate admits only names
// that need no escaping.
func sfString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// KeyIP returns the rate-limit key for a client address: an IPv4 address
// (or an IPv4-mapped IPv6 address) as is, and an IPv6 address as the prefix
// of v6Prefix bits that holds it (64 when v6Prefix is not in 1..128), since
// one client commonly has a whole /64 to rotate through. A zone is
// dropped. The invalid Addr gives "".
func KeyIP(ip netip.Addr, v6Prefix int) string {
	ip = ip.Unmap().WithZone("")
	switch {
	case !ip.IsValid():
		return ""
	case ip.Is4():
		return ip.String()
	}
	if v6Prefix < 1 || v6Prefix > 128 {
		v6Prefix = 64
	}
	p, _ := ip.Prefix(v6Prefix)
	return p.String()
}

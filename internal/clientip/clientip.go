// Package clientip finds the real client address of a request, believing
// X-Forwarded-For only when it was sent by a configured trusted proxy.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Trusted is a set of proxy networks whose forwarding headers are believed.
// The zero value trusts no one. It is safe for concurrent use.
type Trusted struct {
	prefixes []netip.Prefix
}

// Parse builds a Trusted from CIDRs or single addresses.
func Parse(cidrs []string) (*Trusted, error) {
	t := &Trusted{}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if p, err := netip.ParsePrefix(c); err == nil {
			t.prefixes = append(t.prefixes, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(c)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an address", c)
		}
		t.prefixes = append(t.prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return t, nil
}

// Contains reports whether a is a trusted proxy.
func (t *Trusted) Contains(a netip.Addr) bool {
	if t == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Empty reports whether no proxy is trusted.
func (t *Trusted) Empty() bool { return t == nil || len(t.prefixes) == 0 }

// PeerAddr parses the address of r's TCP peer from r.RemoteAddr.
func PeerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, _ := netip.ParseAddr(r.RemoteAddr)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// ClientIP returns the real client address of r and whether its TCP peer is
// a trusted proxy. When the peer is trusted, X-Forwarded-For is walked from
// the right, skipping trusted proxies; the first untrusted address is the
// client. A malformed entry stops the walk at the last good address, so a
// client cannot choose its own address by sending a spoofed header.
func (t *Trusted) ClientIP(r *http.Request) (client netip.Addr, peerTrusted bool) {
	return t.Resolve(PeerAddr(r), r.Header)
}

// Resolve is ClientIP for a peer address already parsed.
func (t *Trusted) Resolve(peer netip.Addr, h http.Header) (client netip.Addr, peerTrusted bool) {
	if !t.Contains(peer) {
		return peer, false
	}
	client = peer
	values := h.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var part string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				part, v = v[j+1:], v[:j]
			} else {
				part, v = v, ""
			}
			a, err := netip.ParseAddr(trimOWS(part))
			if err != nil {
				return client, true
			}
			client = a.Unmap()
			if !t.Contains(client) {
				return client, true
			}
		}
	}
	return client, true
}

// trimOWS removes HTTP optional whitespace (spaces and tabs, RFC 9110
// section 5.6.3) around s, and nothing else.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

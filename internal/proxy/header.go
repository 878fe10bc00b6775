package proxy

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/moatgw/moat/internal/request"
)

// canonicalName returns k in canonical MIME form with every '_' read as '-',
// so that x-moat-user, X-MOAT-USER and X_Moat_User all give X-Moat-User.
// Some upstream frameworks (CGI, WSGI, PHP) fold '_' and '-' together, so a
// name is judged by this form, never by its spelling. When k is already
// canonical it is returned as is, without allocating.
func canonicalName(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' || (upper && 'a' <= c && c <= 'z') || (!upper && 'A' <= c && c <= 'Z') {
			return canonicalSlow(k)
		}
		upper = c == '-'
	}
	return k
}

func canonicalSlow(k string) string {
	b := []byte(k)
	upper := true
	for i, c := range b {
		if c == '_' {
			c = '-'
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	return string(b)
}

// reservedPrefix starts the names of headers that only Moat may send to an
// upstream.
const reservedPrefix = "X-Moat-"

// What happens to a request header on its way to the upstream.
const (
	keepHeader          = iota
	dropHeader          // never forwarded: hop-by-hop, reserved, or rebuilt by the proxy
	dropUntrustedHeader // forwarded only from a trusted proxy
)

// requestAction classifies a request header by its canonical name.
func requestAction(cn string) int {
	switch cn {
	case "Connection", "Keep-Alive", "Proxy", "Proxy-Connection", "Proxy-Authorization",
		"Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
		"Content-Length",
		// Rebuilt from request.Info for every request.
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded",
		"X-Request-Id":
		return dropHeader
	case
		// Other spellings of the client address that frameworks believe.
		"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip",
		"X-Cluster-Client-Ip", "Client-Ip", "X-Original-Forwarded-For", "X-Forwarded",
		"Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Prefix",
		"X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Url-Scheme", "Front-End-Https",
		"X-Host", "X-Original-Host",
		// Path and method overrides that would let a client reach what the
		// gateway's policy did not allow.
		"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method",
		"X-Method-Override":
		return dropUntrustedHeader
	}
	if strings.HasPrefix(cn, reservedPrefix) || strings.HasPrefix(cn, "Proxy-") {
		return dropHeader
	}
	return keepHeader
}

// responseDrop reports whether a response header or trailer never reaches
// the client: hop-by-hop headers, the upstream's request id, and banners
// that tell an attacker what runs behind Moat.
func responseDrop(cn string) bool {
	switch cn {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te",
		"Trailer", "Transfer-Encoding", "Upgrade",
		// The response carries Moat's request id, and only Moat's.
		"X-Request-Id",
		// The upstream's alternative services are not Moat's.
		"Alt-Svc",
		// Banners.
		"Server", "Via", "X-Powered-By", "X-Powered-Cms", "X-Aspnet-Version",
		"X-Aspnetmvc-Version", "X-Sourcefiles", "X-Runtime", "X-Generator", "X-Backend-Server",
		"X-Server", "X-Application-Context", "X-Debug-Token", "X-Debug-Token-Link",
		"X-Drupal-Cache", "X-Drupal-Dynamic-Cache", "X-Mod-Pagespeed", "X-Page-Speed",
		"X-Turbo-Charged-By", "X-Varnish", "X-Envoy-Upstream-Service-Time", "Liferay-Portal":
		return true
	}
	return false
}

// connTokens appends to dst the header names listed in Connection values.
// Callers pass a small stack array so that the usual one or two names cost
// no allocation.
func connTokens(dst []string, values []string) []string {
	for _, v := range values {
		for v != "" {
			var tok string
			if i := strings.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, ""
			}
			if tok = strings.TrimSpace(tok); tok != "" {
				dst = append(dst, tok)
			}
		}
	}
	return dst
}

// named reports whether the canonical name cn is among the Connection
// tokens, compared as canonicalName would.
func named(tokens []string, cn string) bool {
	for _, tok := range tokens {
		if len(tok) == len(cn) && sameName(tok, cn) {
			return true
		}
	}
	return false
}

// sameName reports whether a and the canonical name cn, of equal length,
// are the same header name: ASCII case and '_' against '-' do not matter.
func sameName(a, cn string) bool {
	for i := 0; i < len(a); i++ {
		c, d := a[i], cn[i]
		if c == d {
			continue
		}
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated header holds token, ignoring case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var tok string
			if i := strings.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, ""
			}
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// upgradeType returns the protocol a request asks to switch to, or "" when it
// asks for none Moat passes on. Only WebSocket is passed: other upgrades, h2c
// above all, would let a client tunnel past the gateway.
func upgradeType(r *http.Request) string {
	if r.ProtoMajor != 1 {
		return ""
	}
	up := r.Header["Upgrade"]
	if len(up) != 1 || !strings.EqualFold(up[0], "websocket") {
		return ""
	}
	if !hasToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	return up[0]
}

// Slots in the array that holds the values of the headers Moat sets.
const (
	slotFor = iota
	slotProto
	slotHost
	slotForwarded
	slotRequestID
	slotConnection
	slotUpgrade
	slotTE
	slotUserAgent
	numSlots
)

// outboundHeader builds the header sent to the upstream from the client's
// header in: hop-by-hop headers (and those named in Connection) removed,
// X-Moat-* and reserved headers removed in every spelling, client-address
// headers dropped unless the peer is a trusted proxy, and the forwarding
// headers rebuilt from info. host is the Host the client asked for, upgrade
// the protocol being switched to or "". The single values Moat sets are
// stored in vals, to save allocations. in is not modified.
func (p *Proxy) outboundHeader(in http.Header, info *request.Info, host, upgrade string, vals *[numSlots]string) http.Header {
	out := make(http.Header, len(in)+5)
	var buf [4]string
	conn := connTokens(buf[:0], in["Connection"])
	for k, vv := range in {
		cn := canonicalName(k)
		switch requestAction(cn) {
		case dropHeader:
			continue
		case dropUntrustedHeader:
			if !info.Trusted {
				continue
			}
		}
		if p.reserved(cn) || named(conn, cn) {
			continue
		}
		out[k] = vv
	}

	one := func(i int, v string) []string {
		vals[i] = v
		return vals[i : i+1 : i+1]
	}

	client := info.ClientIP.WithZone("")
	node := client
	if info.Trusted {
		node = info.Peer.WithZone("")
	}
	clientStr := addrString(client)
	nodeStr := clientStr
	if node != client {
		nodeStr = addrString(node)
	}

	if prior := in["X-Forwarded-For"]; info.Trusted && len(prior) > 0 {
		out["X-Forwarded-For"] = one(slotFor, joinChain(prior, nodeStr))
	} else if clientStr != "" {
		out["X-Forwarded-For"] = one(slotFor, clientStr)
	}

	scheme := info.Scheme
	if prior := in["X-Forwarded-Proto"]; info.Trusted && len(prior) > 0 {
		out["X-Forwarded-Proto"] = prior
	} else if scheme == "https" || scheme == "http" {
		out["X-Forwarded-Proto"] = one(slotProto, scheme)
	}
	if prior := in["X-Forwarded-Host"]; info.Trusted && len(prior) > 0 {
		out["X-Forwarded-Host"] = prior
	} else if host != "" {
		out["X-Forwarded-Host"] = one(slotHost, host)
	}

	elem := forwardedElement(node, scheme, host)
	if prior := in["Forwarded"]; info.Trusted && len(prior) > 0 {
		fw := make([]string, len(prior)+1)
		copy(fw, prior)
		fw[len(prior)] = elem
		out["Forwarded"] = fw
	} else {
		out["Forwarded"] = one(slotForwarded, elem)
	}
	if info.ID != "" {
		out["X-Request-Id"] = one(slotRequestID, info.ID)
	}

	if upgrade != "" {
		out["Connection"] = one(slotConnection, "Upgrade")
		out["Upgrade"] = one(slotUpgrade, upgrade)
	}
	if hasToken(in["Te"], "trailers") {
		out["Te"] = one(slotTE, "trailers")
	}
	if _, ok := out["User-Agent"]; !ok {
		// Keep the transport from adding its own.
		out["User-Agent"] = one(slotUserAgent, "")
	}
	return out
}

// reserved reports whether cn is one of the configured reserved headers.
func (p *Proxy) reserved(cn string) bool {
	for _, r := range p.reservedNames {
		if len(r) == len(cn) && r == cn {
			return true
		}
	}
	return false
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// joinChain returns the prior X-Forwarded-For values joined with ", " and
// node appended, in one allocation.
func joinChain(prior []string, node string) string {
	if node == "" {
		return strings.Join(prior, ", ")
	}
	n := len(node)
	for _, v := range prior {
		n += len(v) + 2
	}
	var b strings.Builder
	b.Grow(n)
	for _, v := range prior {
		b.WriteString(v)
		b.WriteString(", ")
	}
	b.WriteString(node)
	return b.String()
}

// forwardedElement builds one RFC 7239 Forwarded element:
// for=<node>;proto=<scheme>;host=<host>. IPv6 nodes and hosts that are not
// tokens are quoted; a parameter whose value cannot be written is left out.
// See https://www.rfc-editor.org/rfc/rfc7239#section-4.
func forwardedElement(node netip.Addr, scheme, host string) string {
	var buf [128]byte
	b := buf[:0]
	if node.IsValid() {
		b = append(b, "for="...)
		if node.Is6() {
			b = append(b, `"[`...)
			b = node.AppendTo(b)
			b = append(b, `]"`...)
		} else {
			b = node.AppendTo(b)
		}
	} else {
		b = append(b, "for=unknown"...)
	}
	if scheme != "" && httpguts.ValidHeaderFieldName(scheme) {
		b = append(b, ";proto="...)
		b = append(b, scheme...)
	}
	if host != "" {
		if httpguts.ValidHeaderFieldName(host) {
			b = append(b, ";host="...)
			b = append(b, host...)
		} else if isQuotable(host) {
			b = append(b, `;host="`...)
			for i := 0; i < len(host); i++ {
				if c := host[i]; c == '"' || c == '\\' {
					b = append(b, '\\')
				}
				b = append(b, host[i])
			}
			b = append(b, '"')
		}
	}
	return string(b)
}

// isQuotable reports whether s can be written as an RFC 9110 quoted-string
// (no control characters).
func isQuotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// responseDropped reports whether the upstream's header or trailer k stays
// behind: responseDrop says so, or the upstream's Connection header, whose
// tokens are conn, names it.
func responseDropped(k string, conn []string) bool {
	cn := canonicalName(k)
	return responseDrop(cn) || named(conn, cn)
}

// copyResponseHeader copies the upstream's response header src into dst,
// leaving out what responseDropped does. Value slices are shared, not
// copied.
func copyResponseHeader(dst, src http.Header) {
	var buf [4]string
	conn := connTokens(buf[:0], src["Connection"])
	for k, vv := range src {
		if responseDropped(k, conn) {
			continue
		}
		if prev, ok := dst[k]; ok {
			dst[k] = mergeValues(prev, vv)
			continue
		}
		dst[k] = vv
	}
}

// mergeValues returns prev followed by the values of vv it does not hold
// yet, without modifying either.
func mergeValues(prev, vv []string) []string {
	out := prev[:len(prev):len(prev)]
	for _, v := range vv {
		if !slices.Contains(prev, v) {
			out = append(out, v)
		}
	}
	return out
}

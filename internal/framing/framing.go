// Package framing refuses HTTP/1.1 requests whose message framing is
// ambiguous, which net/http accepts and then hides from handlers.
//
// net/http takes a request with both Content-Length and Transfer-Encoding
// as chunked, keeps one of several equal Content-Length fields and joins
// obsolete line folding. Two HTTP parsers that resolve such a request
// differently disagree on where it ends, and the bytes one of them takes for
// a body reach the other as a request of their own: request smuggling
// (RFC 9112 section 11.2). RFC 9112 makes the first two an error that a
// server answers with 400 before closing the connection (sections 6.1 and
// 6.3) and lets a server refuse obs-fold with 400 (section 5.2).
//
// A Conn passes the bytes net/http reads through a Scanner, which follows
// the framing of every request on the connection and notes the first rule
// one breaks (see the Rule constants). A handler calls Conn.Next at the start
// of each request and, when it returns a rule, answers 400 with
// "Connection: close". NewListener terminates TLS and wraps HTTP/1.x
// connections in a Conn; HTTP/2 has explicit frame lengths and keeps the
// *tls.Conn that net/http needs for it.
package framing

import (
	"cmp"
	"net/http"
)

// The rules a request can break. Once a request breaks one, the scanner no
// longer knows where later requests on the connection start, so they report
// the same rule.
const (
	RuleCLTE        = "framing.cl_te"        // both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)
	RuleMultipleCL  = "framing.multiple_cl"  // more than one Content-Length field, or a list as its value
	RuleBadCL       = "framing.bad_cl"       // a Content-Length that is not 1*DIGIT within int64 (section 6.2)
	RuleTE          = "framing.te"           // a Transfer-Encoding other than one field "chunked" in HTTP/1.1
	RuleObsFold     = "framing.obs_fold"     // a field line starting with SP or HTAB (section 5.2)
	RuleHeaderName  = "framing.header_name"  // a field line without a token directly before its colon (section 5.1)
	RuleBadChunk    = "framing.bad_chunk"    // malformed chunked framing (section 7.1)
	RuleRequestLine = "framing.request_line" // not method SP request-target SP HTTP/1.x (section 3)
	RuleBareLF      = "framing.bare_lf"      // a line ending in LF without CR (section 2.2)
	RuleBareCR      = "framing.bare_cr"      // a CR not followed by LF (section 2.2)
	RuleTooLarge    = "framing.too_large"    // a header or trailer section over its limit
	RulePipeline    = "framing.pipeline"     // more pipelined requests ahead of their handlers than tracked
	RuleDesync      = "framing.desync"       // the request net/http handed over is not the one scanned next
)

// Limits bounds what a Scanner follows. Past a limit it stops with
// RuleTooLarge or RuleBadChunk. The zero value is the default for each
// field.
type Limits struct {
	// MaxHeaderBytes is the http.Server.MaxHeaderBytes of the server the
	// connection feeds: the request line and header section may take it plus
	// the 4096 bytes net/http allows on top. The default is
	// http.DefaultMaxHeaderBytes (1 MiB).
	MaxHeaderBytes int
	// MaxChunkLine is the longest chunk-size line, extensions included and
	// CRLF not. The default is 4096, the limit of net/http.
	MaxChunkLine int
	// MaxTrailerBytes is the longest trailer section, its final CRLF
	// included. The default is 16 KiB; net/http itself takes no more than
	// its 4 KiB read buffer.
	MaxTrailerBytes int
}

func (l Limits) withDefaults() Limits {
	return Limits{
		MaxHeaderBytes:  cmp.Or(max(l.MaxHeaderBytes, 0), http.DefaultMaxHeaderBytes),
		MaxChunkLine:    cmp.Or(max(l.MaxChunkLine, 0), 4096),
		MaxTrailerBytes: cmp.Or(max(l.MaxTrailerBytes, 0), 16<<10),
	}
}

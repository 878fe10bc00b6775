package framing

import (
	"bytes"
	"math"
)

// A Scanner follows the framing of the requests in the client-to-server
// byte stream of one HTTP/1.x connection (RFC 9112), fed in pieces of any
// size through Write, and notes the first rule a request breaks. Bodies pass
// through without being looked at or kept: a Scanner has a fixed size and
// Write never allocates.
//
// It accepts a subset of what net/http accepts and frames it the same way:
//
//   - request line: a token method, SP, a request-target without SP or
//     controls, SP, HTTP/1.0 to HTTP/1.9;
//   - field lines: a token name directly followed by ':'; every line ends
//     in CRLF, where net/http also takes a bare LF;
//   - body: chunked when the request has Transfer-Encoding "chunked",
//     Content-Length bytes when it has that, no body otherwise (RFC 9112
//     section 6.3);
//   - chunked: hexadecimal chunk sizes of up to 16 digits without
//     whitespace, extensions without controls, CRLF after each chunk and a
//     trailer section of field lines ending in an empty line;
//   - up to four CR or LF bytes before a request that follows a POST, which
//     net/http skips for old clients.
//
// After the first violation the Scanner stops: it no longer knows where
// later requests start, so they count as violating the same rule.
//
// The zero Scanner uses the default Limits. A Scanner is not safe for
// concurrent use; Conn guards its own.
type Scanner struct {
	lim   Limits
	st    state
	field uint8  // kind of the field whose value is being scanned
	phase uint8  // within a Content-Length or Transfer-Encoding value
	skip  uint8  // CR and LF bytes still skipped before the request line
	flags uint16 // about the message being scanned
	pos   int    // bytes matched in the current element
	n     int    // bytes of the current section: head, chunk line or trailer
	max   int    // limit of n
	clen  int64  // Content-Length
	left  uint64 // bytes left in the Content-Length body or chunk
	sum   uint64 // FNV-1a of method SP request-target

	msg   int    // number of the message being scanned, from 1
	heads int    // messages whose head was scanned
	bad   int    // first message violating a rule, or 0
	rule  string // the rule

	claimed int              // messages handed out by Next
	ring    [ringSize]uint64 // sums of heads scanned but not yet claimed
	first   int              // ring index of the oldest
	pending int              // sums in the ring
}

// ringSize bounds the requests scanned ahead of their handlers; one more
// breaks RulePipeline. net/http reads at most 4 KiB ahead of the request it
// handles, so only a client pipelining requests under 64 bytes gets there.
const ringSize = 64

type state uint8

const (
	sStart      state = iota // before a request line
	sMethod                  // in the method
	sTarget                  // in the request-target
	sVersion                 // in the HTTP version
	sLineLF                  // after the CR ending a request or field line
	sFieldStart              // at the start of a field line or of the empty line
	sName                    // in a field name
	sValue                   // in a field value not about framing
	sCL                      // in a Content-Length value
	sTE                      // in a Transfer-Encoding value
	sEndLF                   // after the CR of the empty line
	sChunkSize               // in the chunk size
	sChunkExt                // in chunk extensions
	sChunkLF                 // after the CR of a chunk-size line
	sData                    // in a Content-Length body or chunk data
	sDataCR                  // after chunk data
	sDataLF                  // after the CR following chunk data
	sStopped                 // after a violation
)

// Field kinds.
const (
	fOther uint8 = iota
	fCL
	fTE
)

// Flags.
const (
	flHTTP10  = 1 << iota // HTTP/1.0 request
	flSawCL               // a Content-Length field ended
	flSawTE               // a Transfer-Encoding field ended
	flTrailer             // the field states scan the trailer section
	flPost                // the method so far is a prefix of POST; after it, is POST
	flMaybeCL             // the field name so far is a prefix of Content-Length
	flMaybeTE             // the field name so far is a prefix of Transfer-Encoding
)

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// NewScanner returns a Scanner for the start of a connection.
func NewScanner(lim Limits) *Scanner {
	s := new(Scanner)
	s.init(lim)
	return s
}

func (s *Scanner) init(lim Limits) {
	s.lim = lim.withDefaults()
	s.msg = 1
	s.startMessage(false)
}

// Write scans p, the next bytes of the stream. It always consumes all of p
// and returns len(p), nil.
func (s *Scanner) Write(p []byte) (int, error) {
	if s.msg == 0 {
		s.init(Limits{})
	}
	n := len(p)
	for len(p) > 0 {
		switch s.st {
		case sStopped:
			return n, nil
		case sData:
			k := uint64(len(p))
			if k > s.left {
				k = s.left
			}
			p = p[k:]
			s.left -= k
			if s.left == 0 {
				s.endData()
			}
			continue
		}
		room := s.max - s.n
		if room <= 0 {
			s.overLimit()
			return n, nil
		}
		q := p
		if len(q) > room {
			q = q[:room]
		}
		p = p[s.scan(q):]
	}
	return n, nil
}

// Next claims the next request for a handler: net/http parsed it from the
// stream with the given method and request-target (http.Request.Method and
// RequestURI). It returns the rule the request or one before it broke, or
// "". Call it exactly once per request, in order.
//
// A request net/http answers itself, "OPTIONS *" by default, never reaches
// a handler; Next passes over it. When the request handed over is not the
// next one scanned, the two parsers disagree on the framing and Next
// returns RuleDesync, as it does for every later request.
func (s *Scanner) Next(method, target string) string {
	if s.msg == 0 {
		s.init(Limits{})
	}
	want := requestSum(method, target)
	for {
		s.claimed++
		have, ok := s.pop()
		if s.bad != 0 && s.claimed >= s.bad {
			return s.rule
		}
		switch {
		case !ok:
		case have == want:
			return ""
		case have == optionsStar && want != optionsStar:
			continue
		}
		s.stop(s.claimed, RuleDesync)
		return RuleDesync
	}
}

// Violation returns the number of the first request on the connection that
// broke a rule, counting from 1, and the rule; or 0, "".
func (s *Scanner) Violation() (msg int, rule string) { return s.bad, s.rule }

// Messages returns how many requests' request line and header section have
// been scanned.
func (s *Scanner) Messages() int { return s.heads }

var optionsStar = requestSum("OPTIONS", "*")

func requestSum(method, target string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(method); i++ {
		h = (h ^ uint64(method[i])) * fnvPrime
	}
	h = (h ^ ' ') * fnvPrime
	for i := 0; i < len(target); i++ {
		h = (h ^ uint64(target[i])) * fnvPrime
	}
	return h
}

func (s *Scanner) pop() (uint64, bool) {
	if s.pending == 0 {
		return 0, false
	}
	v := s.ring[s.first]
	s.ring[s.first] = 0
	s.first = (s.first + 1) % ringSize
	s.pending--
	return v, true
}

// stop records that message msg broke rule, unless an earlier one did, and
// stops scanning. It resets what only scanning used, so that the state
// after a violation does not depend on how the stream was split.
func (s *Scanner) stop(msg int, rule string) {
	if s.bad == 0 || msg < s.bad {
		s.bad, s.rule = msg, rule
	}
	*s = Scanner{
		lim: s.lim, st: sStopped, msg: s.msg, heads: s.heads, bad: s.bad, rule: s.rule,
		claimed: s.claimed, ring: s.ring, first: s.first, pending: s.pending,
	}
}

func (s *Scanner) startMessage(afterPost bool) {
	s.st = sStart
	s.field, s.phase, s.skip = fOther, 0, 0
	if afterPost {
		s.skip = 4
	}
	s.flags = flPost
	s.pos, s.n, s.max = 0, 0, s.lim.MaxHeaderBytes+4096
	s.clen, s.left = 0, 0
	s.sum = fnvOffset
}

func (s *Scanner) endMessage() {
	s.msg++
	s.startMessage(s.flags&flPost != 0)
}

func (s *Scanner) startChunk() {
	s.st = sChunkSize
	s.pos, s.left = 0, 0
	s.n, s.max = 0, s.lim.MaxChunkLine+2
}

// endData follows the last byte of a Content-Length body or a chunk.
func (s *Scanner) endData() {
	if s.flags&flSawTE == 0 {
		s.endMessage()
		return
	}
	s.st = sDataCR
	s.n, s.max = 0, 2
}

func (s *Scanner) overLimit() {
	switch s.st {
	case sChunkSize, sChunkExt, sChunkLF:
		s.stop(s.msg, RuleBadChunk)
	default:
		s.stop(s.msg, RuleTooLarge)
	}
}

// endHead follows the empty line ending the header section.
func (s *Scanner) endHead() {
	if s.pending == ringSize {
		s.stop(s.msg, RulePipeline)
		return
	}
	s.ring[(s.first+s.pending)%ringSize] = s.sum
	s.pending++
	s.heads++
	switch {
	case s.flags&flSawTE != 0:
		s.startChunk()
	case s.flags&flSawCL != 0 && s.clen > 0:
		s.st, s.n = sData, 0
		s.left = uint64(s.clen)
	default:
		s.endMessage()
	}
}

// endField follows the CRLF of a field line.
func (s *Scanner) endField() (rule string) {
	switch s.field {
	case fCL:
		switch {
		case s.flags&flSawCL != 0:
			return RuleMultipleCL
		case s.flags&flSawTE != 0:
			return RuleCLTE
		}
		s.flags |= flSawCL
	case fTE:
		switch {
		case s.flags&(flSawTE|flHTTP10) != 0:
			return RuleTE
		case s.flags&flSawCL != 0:
			return RuleCLTE
		}
		s.flags |= flSawTE
	}
	s.field = fOther
	return ""
}

// scan scans q, which fits in the current section, up to the end of q or of
// the section, and returns how many bytes it consumed.
func (s *Scanner) scan(q []byte) int {
	const (
		proto = "HTTP/1."
		cl    = "content-length"
		te    = "transfer-encoding"
	)
	for i := 0; i < len(q); i++ {
		b := q[i]
		rule := ""
		switch s.st {
		case sStart:
			if s.skip > 0 && (b == '\r' || b == '\n') {
				s.skip--
				continue
			}
			s.skip = 0
			s.st = sMethod
			fallthrough
		case sMethod:
			switch {
			case tchar[b]:
				if s.pos >= len("POST") || b != "POST"[s.pos] {
					s.flags &^= flPost
				}
				s.sum = (s.sum ^ uint64(b)) * fnvPrime
				s.pos++
			case b == ' ' && s.pos > 0:
				if s.pos != len("POST") {
					s.flags &^= flPost
				}
				s.sum = (s.sum ^ ' ') * fnvPrime
				s.st, s.pos = sTarget, 0
			default:
				rule = RuleRequestLine
			}
		case sTarget:
			j, sum := i, s.sum
			for ; j < len(q) && q[j] > ' ' && q[j] != 0x7f; j++ {
				sum = (sum ^ uint64(q[j])) * fnvPrime
			}
			s.sum = sum
			s.pos += j - i
			if i = j; i == len(q) {
				continue
			}
			if q[i] == ' ' && s.pos > 0 {
				s.st, s.pos = sVersion, 0
			} else {
				rule = RuleRequestLine
			}
		case sVersion:
			switch {
			case s.pos < len(proto):
				if b != proto[s.pos] {
					rule = RuleRequestLine
				}
				s.pos++
			case s.pos == len(proto):
				if b < '0' || b > '9' {
					rule = RuleRequestLine
				} else if b == '0' {
					s.flags |= flHTTP10
				}
				s.pos++
			case b == '\r':
				s.st = sLineLF
			case b == '\n':
				rule = RuleBareLF
			default:
				rule = RuleRequestLine
			}
		case sLineLF:
			if b != '\n' {
				rule = RuleBareCR
				break
			}
			if rule = s.endField(); rule == "" {
				s.st = sFieldStart
			}
		case sFieldStart:
			switch {
			case b == '\r':
				s.st = sEndLF
			case b == '\n':
				rule = RuleBareLF
			case b == ' ' || b == '\t':
				rule = RuleObsFold
			case tchar[b]:
				s.st, s.pos = sName, 0
				s.flags |= flMaybeCL | flMaybeTE
				i-- // scan b again as part of the name
			default:
				rule = RuleHeaderName
			}
		case sName:
			j := i
			for j < len(q) && tchar[q[j]] {
				j++
			}
			if s.flags&(flMaybeCL|flMaybeTE) != 0 {
				s.matchName(q[i:j])
			}
			s.pos += j - i
			if i = j; i == len(q) {
				continue
			}
			switch q[i] {
			case ':':
				s.field = fOther
				if s.flags&flTrailer == 0 {
					if s.flags&flMaybeCL != 0 && s.pos == len(cl) {
						s.field = fCL
					} else if s.flags&flMaybeTE != 0 && s.pos == len(te) {
						s.field = fTE
					}
				}
				s.phase, s.pos = 0, 0
				switch s.field {
				case fCL:
					s.st, s.clen = sCL, 0
				case fTE:
					s.st = sTE
				default:
					s.st = sValue
				}
			default:
				rule = RuleHeaderName
			}
		case sValue:
			j := crOrLF(q[i:])
			if j < 0 {
				i = len(q) - 1
				continue
			}
			i += j
			if q[i] == '\n' {
				rule = RuleBareLF
			} else {
				s.st = sLineLF
			}
		case sCL:
			switch {
			case b >= '0' && b <= '9':
				d := int64(b - '0')
				if s.phase == 2 || s.clen > (math.MaxInt64-d)/10 {
					rule = RuleBadCL
				}
				s.clen = s.clen*10 + d
				s.phase = 1
			case b == ' ' || b == '\t':
				if s.phase == 1 {
					s.phase = 2
				}
			case b == ',':
				rule = RuleMultipleCL
			case b == '\r':
				if s.phase == 0 {
					rule = RuleBadCL
				}
				s.st = sLineLF
			case b == '\n':
				rule = RuleBareLF
			default:
				rule = RuleBadCL
			}
		case sTE:
			const chunked = "chunked"
			switch {
			case b == ' ' || b == '\t':
				if s.phase == 1 {
					if s.pos != len(chunked) {
						rule = RuleTE
					}
					s.phase = 2
				}
			case b == '\r':
				if s.pos != len(chunked) {
					rule = RuleTE
				}
				s.st = sLineLF
			case b == '\n':
				rule = RuleBareLF
			case s.phase < 2 && s.pos < len(chunked) && b|0x20 == chunked[s.pos]:
				s.phase = 1
				s.pos++
			default:
				rule = RuleTE
			}
		case sEndLF:
			if b != '\n' {
				rule = RuleBareCR
				break
			}
			if s.flags&flTrailer != 0 {
				s.endMessage()
			} else {
				s.endHead()
			}
			return i + 1
		case sChunkSize:
			if d, ok := unhex(b); ok {
				if s.pos == 16 {
					rule = RuleBadChunk
				}
				s.left = s.left<<4 | d
				s.pos++
				break
			}
			switch {
			case s.pos == 0:
				rule = RuleBadChunk
			case b == ';':
				s.st = sChunkExt
			case b == '\r':
				s.st = sChunkLF
			default:
				rule = RuleBadChunk
			}
		case sChunkExt:
			switch {
			case b == '\r':
				s.st = sChunkLF
			case b < ' ' && b != '\t' || b == 0x7f:
				rule = RuleBadChunk
			}
		case sChunkLF:
			if b != '\n' {
				rule = RuleBadChunk
				break
			}
			if s.left == 0 {
				s.st = sFieldStart
				s.flags |= flTrailer
				s.n, s.max = 0, s.lim.MaxTrailerBytes
			} else {
				s.st, s.n = sData, 0
			}
			return i + 1
		case sDataCR:
			if b != '\r' {
				rule = RuleBadChunk
				break
			}
			s.st = sDataLF
		case sDataLF:
			if b != '\n' {
				rule = RuleBadChunk
				break
			}
			s.startChunk()
			return i + 1
		}
		if rule != "" {
			s.stop(s.msg, rule)
			return i + 1
		}
	}
	s.n += len(q)
	return len(q)
}

// matchName follows name, the next bytes of a field name, in matching
// Content-Length and Transfer-Encoding without regard to case.
func (s *Scanner) matchName(name []byte) {
	const (
		cl = "content-length"
		te = "transfer-encoding"
	)
	flags := s.flags
	for k, b := range name {
		c := b | 0x20 // lower case; maps no other tchar to a letter or '-'
		pos := s.pos + k
		if pos >= len(cl) || c != cl[pos] {
			flags &^= flMaybeCL
		}
		if pos >= len(te) || c != te[pos] {
			flags &^= flMaybeTE
		}
		if flags&(flMaybeCL|flMaybeTE) == 0 {
			break
		}
	}
	s.flags = flags
}

// crOrLF returns the index of the first CR or LF in p, or -1.
func crOrLF(p []byte) int {
	i := bytes.IndexByte(p, '\r')
	if i < 0 {
		return bytes.IndexByte(p, '\n')
	}
	if j := bytes.IndexByte(p[:i], '\n'); j >= 0 {
		return j
	}
	return i
}

func unhex(b byte) (uint64, bool) {
	switch {
	case '0' <= b && b <= '9':
		return uint64(b - '0'), true
	case 'a' <= b && b <= 'f':
		return uint64(b - 'a' + 10), true
	case 'A' <= b && b <= 'F':
		return uint64(b - 'A' + 10), true
	}
	return 0, false
}

// tchar is the set of token characters of RFC 9110 section 5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

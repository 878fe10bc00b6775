package waf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/moatgw/moat/internal/request"
)

// Verdict is the decision on one request. Its strings come from the rule
// set only (rule messages, severities, tags), never from the request.
type Verdict struct {
	// Interrupted is set when the request must not reach the upstream:
	// block mode, and the inbound anomaly score reached the threshold, a
	// disruptive rule denied it, or its body is over the cap with Reject.
	Interrupted bool
	// WouldInterrupt is set when block mode interrupts or would have
	// interrupted the request; in detect mode it is the only sign.
	WouldInterrupt bool
	// Status is the HTTP status to answer with when WouldInterrupt: 403
	// for an attack, 400 for a body that does not parse, 413 for a body
	// over the cap.
	Status int
	// RuleID is the rule that interrupted, 0 for the body cap.
	RuleID int
	// Score is the inbound anomaly score at the blocking paranoia level.
	Score int
	// Matches are the rules that matched, in evaluation order, each
	// once; rules that match silently (CRS initialization) are left out.
	Matches []Match
	// BodyOverLimit is set when the body was longer than the cap: it was
	// inspected up to the cap, or not at all when rejected.
	BodyOverLimit bool
	// BodyUninspected is set when the body was not read because its
	// content type is binary.
	BodyUninspected bool
}

// Match is one rule that matched.
type Match struct {
	ID       int
	Severity string   // "critical", "error", "warning", "notice", or empty
	Message  string   // the rule's message, without request data, at most 96 bytes
	Tags     []string // the rule's attack-* tags; shared, do not modify
	// Scoring marks the CRS bookkeeping rules (949xxx anomaly score
	// evaluation, 980xxx correlation) that report a total rather than
	// detect something.
	Scoring bool
}

// RuleIDs returns the ids of the matched rules that detected something,
// without the scoring rules.
func (v Verdict) RuleIDs() []int {
	ids := make([]int, 0, len(v.Matches))
	for _, m := range v.Matches {
		if !m.Scoring {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Categories returns the distinct attack-* tags of the matched rules,
// sorted, such as "attack-sqli" and "attack-xss".
func (v Verdict) Categories() []string {
	var cats []string
	for _, m := range v.Matches {
		for _, t := range m.Tags {
			if !slices.Contains(cats, t) {
				cats = append(cats, t)
			}
		}
	}
	slices.Sort(cats)
	return cats
}

// Severity returns the most severe severity of the matched rules, or ""
// when none has one.
func (v Verdict) Severity() string {
	best, rank := "", 99
	for _, m := range v.Matches {
		if r := severityRank(m.Severity); r < rank {
			best, rank = m.Severity, r
		}
	}
	return best
}

func severityRank(s string) int {
	for i, name := range [...]string{"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"} {
		if s == name {
			return i
		}
	}
	return 99
}

// errBodyRead marks a Check error caused by reading the request body.
var errBodyRead = errors.New("reading the request body")

// Check evaluates the request line, the headers (phase 1) and the body
// (phase 2) of r. It is safe for concurrent use.
//
// The body, unless its content type is binary, is read up to the cap and
// put back on r, so that a later reader (the upstream) receives exactly
// the bytes the client sent, including those past the cap. A body over the
// cap is rejected (block mode with Reject) before the rest is read. In
// mode Off, Check returns a zero Verdict and reads nothing.
//
// An error means the check could not be made, almost always because the
// body could not be read (errors.As finds *http.MaxBytesError when an
// outer limit cut it); the request must then be refused. Check never
// panics on malformed input, and every transaction it starts is closed
// before it returns.
func (w *WAF) Check(r *http.Request) (Verdict, error) {
	if w.engine == nil {
		return Verdict{}, nil
	}
	info := request.From(r.Context())
	opts := experimental.Options{Context: r.Context()}
	if info != nil {
		opts.ID = info.ID
	}
	tx := w.newTransaction(opts)
	defer w.closeTx(tx)

	feedRequest(tx, r, info)
	if it := tx.ProcessRequestHeaders(); it != nil {
		return w.verdict(tx, it, Verdict{}), nil
	}

	var v Verdict
	if hasBody(r) && tx.IsRequestBodyAccessible() {
		if w.binary.match(firstHeader(r.Header, "Content-Type")) {
			v.BodyUninspected = true
		} else {
			limit := w.cfg.BodyLimit
			reject := w.cfg.BodyLimitAction == Reject
			if reject && r.ContentLength > limit {
				// Refused unread: the body is not put back.
				v.BodyOverLimit = true
				if w.cfg.Mode == Block {
					return w.bodyTooLarge(tx, v), nil
				}
			}
			body, err := readCapped(r, limit)
			if err != nil {
				return Verdict{}, fmt.Errorf("waf: %w: %w", errBodyRead, err)
			}
			if int64(len(body)) > limit {
				v.BodyOverLimit = true
				body = body[:limit]
				if reject && w.cfg.Mode == Block {
					return w.bodyTooLarge(tx, v), nil
				}
			}
			if it, _, err := tx.WriteRequestBody(body); err != nil {
				return Verdict{}, fmt.Errorf("waf: inspecting the request body: %w", err)
			} else if it != nil {
				return w.verdict(tx, it, v), nil
			}
		}
	}
	it, err := tx.ProcessRequestBody()
	if err != nil {
		return Verdict{}, fmt.Errorf("waf: inspecting the request body: %w", err)
	}
	return w.verdict(tx, it, v), nil
}

// feedRequest gives tx the connection, the request line and the headers.
func feedRequest(tx types.Transaction, r *http.Request, info *request.Info) {
	var client netip.AddrPort
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap
	}
	if info != nil && info.ClientIP.IsValid() && info.ClientIP != client.Addr() {
		client = netip.AddrPortFrom(info.ClientIP, 0)
	}
	clientIP := ""
	if client.Addr().IsValid() {
		clientIP = client.Addr().Unmap().String()
	}
	tx.ProcessConnection(clientIP, int(client.Port()), "", 0)

	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	tx.ProcessURI(uri, r.Method, r.Proto)

	// net/http moves Host and Transfer-Encoding out of the header map;
	// the CRS inspects both.
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(r.Host)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(k, v)
		}
	}
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}
	// A server request keeps its Content-Length header; a request built
	// in process may only have the field.
	if r.ContentLength > 0 && len(r.Header["Content-Length"]) == 0 {
		tx.AddRequestHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
}

func firstHeader(h http.Header, key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// replayBody gives back the bytes Check read, then the unread rest, and
// closes the original body.
type replayBody struct {
	io.Reader
	io.Closer
}

// readCapped reads r.Body until its end or limit+1 bytes, whichever comes
// first, and puts back on r a body that yields the same bytes as the
// original. A result longer than limit means the body is over the cap.
func readCapped(r *http.Request, limit int64) ([]byte, error) {
	size := int64(512)
	if r.ContentLength > 0 {
		size = min(r.ContentLength, limit) + 1 // room to see the end
	}
	buf := make([]byte, 0, min(size, limit+1))
	orig := r.Body
	var err error
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(int64(cap(buf)), limit+1-int64(len(buf)))))
		}
		var n int
		n, err = orig.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	var rest io.Reader = bytes.NewReader(buf)
	if err == nil && int64(len(buf)) > limit {
		rest = io.MultiReader(rest, orig)
	}
	r.Body = replayBody{Reader: rest, Closer: orig}
	return buf, err
}

func (w *WAF) bodyTooLarge(tx types.Transaction, v Verdict) Verdict {
	v = w.verdict(tx, nil, v)
	v.Interrupted = true
	v.WouldInterrupt = true
	v.Status = http.StatusRequestEntityTooLarge
	v.RuleID = 0
	return v
}

// logged is implemented by Coraza's matched rules: false for rules that
// match without logging (nolog), such as the CRS initialization.
type logged interface{ Log() bool }

// detectionOnly is implemented by Coraza's transactions: the interruption
// that DetectionOnly mode recorded instead of performing.
type detectionOnly interface {
	DetectionOnlyInterruption() *types.Interruption
}

// variables is implemented by Coraza's transactions.
type variables interface {
	Variables() plugintypes.TransactionVariables
}

// verdict describes tx after it was interrupted by it (nil if not).
func (w *WAF) verdict(tx types.Transaction, it *types.Interruption, v Verdict) Verdict {
	for _, mr := range tx.MatchedRules() {
		if l, ok := mr.(logged); ok && !l.Log() {
			continue
		}
		id := mr.Rule().ID()
		if slices.ContainsFunc(v.Matches, func(m Match) bool { return m.ID == id }) {
			continue
		}
		info := w.rules[id]
		v.Matches = append(v.Matches, Match{
			ID:       id,
			Severity: info.severity,
			Message:  info.msg,
			Tags:     info.tags,
			Scoring:  info.scoring,
		})
	}
	if tv, ok := tx.(variables); ok {
		if s := tv.Variables().TX().Get("blocking_inbound_anomaly_score"); len(s) > 0 {
			v.Score, _ = strconv.Atoi(s[0])
		}
	}
	if it == nil {
		if d, ok := tx.(detectionOnly); ok {
			if di := d.DetectionOnlyInterruption(); di != nil {
				v.WouldInterrupt = true
				v.Status = interruptionStatus(di)
				v.RuleID = di.RuleID
			}
		}
		if v.BodyOverLimit && w.cfg.BodyLimitAction == Reject && !v.WouldInterrupt {
			v.WouldInterrupt = true
			v.Status = http.StatusRequestEntityTooLarge
		}
		return v
	}
	v.Interrupted = true
	v.WouldInterrupt = true
	v.Status = interruptionStatus(it)
	v.RuleID = it.RuleID
	return v
}

func interruptionStatus(it *types.Interruption) int {
	if it.Status >= 400 && it.Status <= 599 {
		return it.Status
	}
	return http.StatusForbidden
}

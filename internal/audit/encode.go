// Package audit keeps Moat's tamper-evident audit log: every security event
// becomes a record of a hash chain in the store, written in the background
// by a Writer in batches, with Ed25519-signed checkpoints, a Verify that
// names the first record that was edited, deleted, inserted or moved, and
// a Prune for retention that leaves a signed anchor behind.
//
// # Records
//
// A record's Data is the event in canonical JSON (see Encode): one object,
// keys sorted by their bytes, no insignificant white space, so the same
// event always gives the same bytes. Field names follow the Elastic Common
// Schema where one fits, written as flat dotted keys, so the records can be
// shipped to a SIEM as they are:
//
//	@timestamp       event time, RFC 3339 UTC with microseconds
//	event.sequence   the record's sequence number in the log
//	event.kind       "event", or "state" for a checkpoint
//	event.action     the Moat event kind, such as "request.denied"
//	event.outcome    "success", "failure" or "unknown"
//	event.type       ["allowed"], ["denied"] or ["info"], when the Moat outcome is one of those
//	user.name        the principal
//	source.ip        the client address
//	url.path         the route
//	http.request.id  the request id
//	rule.name        the rule or check that decided
//	labels           the event's details, an object of strings
//
// Checkpoints add the moat.checkpoint.* fields (see Checkpoint).
//
// A record's Hash is SHA-256 over the previous record's Hash (32 raw bytes,
// nothing for the first record of a log) followed by Data. Hashes are
// stored raw; inside JSON they are lower-case hex.
package audit

import (
	"crypto/sha256"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/moatgw/moat/internal/event"
)

// Record kinds the log writes itself.
const (
	// KindCheckpoint is a signed checkpoint (see Checkpoint).
	KindCheckpoint = "audit.checkpoint"
)

// TimeFormat is the layout of @timestamp: always UTC, always six fraction
// digits, matching the store's precision.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// ECS event.kind values.
const (
	ecsEvent = "event"
	ecsState = "state"
)

// field is one key and its value, already encoded as JSON.
type field struct {
	key   string
	value []byte
}

// doc collects the fields of one record.
type doc []field

func (d *doc) str(key, v string) {
	if v != "" {
		*d = append(*d, field{key, appendString(nil, v)})
	}
}

func (d *doc) int(key string, v int64) {
	*d = append(*d, field{key, strconv.AppendInt(nil, v, 10)})
}

// bytes sorts the fields and writes the object.
func (d doc) bytes() []byte {
	slices.SortFunc(d, func(a, b field) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	n := 2
	for _, f := range d {
		n += len(f.key) + len(f.value) + 4
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, f := range d {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, f.key)
		out = append(out, ':')
		out = append(out, f.value...)
	}
	return append(out, '}')
}

// object writes a JSON object whose keys the caller gives in sorted order.
type object struct {
	b []byte
	n int
}

func (o *object) key(k string) {
	if o.n > 0 {
		o.b = append(o.b, ',')
	}
	o.n++
	o.b = appendString(o.b, k)
	o.b = append(o.b, ':')
}

func (o *object) str(k, v string) {
	if v != "" {
		o.key(k)
		o.b = appendString(o.b, v)
	}
}

// Encode returns the canonical JSON of e as the record at seq. Details
// become labels; a zero Time is encoded as the zero time.
func Encode(seq int64, e event.Event) []byte {
	o := object{b: make([]byte, 0, 320)}
	o.b = append(o.b, '{')
	// The keys in sorted order.
	o.key("@timestamp")
	o.b = append(o.b, '"')
	o.b = e.Time.UTC().Truncate(time.Microsecond).AppendFormat(o.b, TimeFormat)
	o.b = append(o.b, '"')
	o.str("event.action", e.Kind)
	o.str("event.kind", ecsEvent)
	outcome, typ := ecsOutcome(e.Outcome)
	o.str("event.outcome", outcome)
	o.key("event.sequence")
	o.b = strconv.AppendInt(o.b, seq, 10)
	if typ != "" {
		o.key("event.type")
		o.b = append(appendString(append(o.b, '['), typ), ']')
	}
	o.str("http.request.id", e.RequestID)
	if len(e.Details) > 0 {
		o.key("labels")
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		labels := object{b: append(o.b, '{')}
		for _, k := range keys {
			labels.str(k, e.Details[k])
			if e.Details[k] == "" {
				labels.key(k)
				labels.b = append(labels.b, '"', '"')
			}
		}
		o.b = append(labels.b, '}')
	}
	o.str("rule.name", e.Rule)
	o.str("source.ip", e.ClientIP)
	o.str("url.path", e.Route)
	o.str("user.name", e.Principal)
	return append(o.b, '}')
}

// ecsOutcome maps a Moat outcome to ECS event.outcome and event.type.
// Together they keep the Moat outcome: allowed and denied are a success
// and a failure of type allowed and denied.
func ecsOutcome(o event.Outcome) (outcome, typ string) {
	switch o {
	case event.Allowed:
		return "success", "allowed"
	case event.Denied:
		return "failure", "denied"
	case event.Success:
		return "success", ""
	case event.Failure:
		return "failure", ""
	case event.Info:
		return "unknown", "info"
	case "":
		return "", ""
	}
	return "unknown", ""
}

func formatTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(TimeFormat)
}

// appendString appends s as a JSON string: quote and backslash escaped,
// control characters and DEL as \u00XX, invalid UTF-8 replaced by U+FFFD,
// everything else as it is.
func appendString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				out = append(out, '\\', c)
			case c < 0x20 || c == 0x7f:
				out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				out = append(out, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, s[i:i+n]...)
		}
		i += n
	}
	return append(out, '"')
}

// Hash is the hash of a record with data that follows a record with hash
// prev: SHA-256(prev || data).
func Hash(prev, data []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(data)
	return h.Sum(nil)
}

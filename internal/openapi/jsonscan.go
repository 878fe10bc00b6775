package openapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of a JSON body.
const maxJSONDepth = 512

// maxLinearKeys is how many member names of one object are compared one by
// one before a map takes over, so that a huge object costs linear time.
const maxLinearKeys = 32

// scanJSON checks that data is exactly one JSON value (RFC 8259) in UTF-8,
// without an object that repeats a member name. The JSON decoder behind
// kin-openapi ignores what follows the first value and keeps the last of
// repeated names, where the upstream's parser may do otherwise, so such a
// body could be validated as one thing and read as another. It returns the
// reason it is refused, with a pointer to the place when there is one.
func scanJSON(data []byte) (ptr, reason string) {
	s := jsonScanner{data: data}
	s.space()
	if !s.value(0) {
		return s.ptr, s.reason
	}
	s.space()
	if s.i != len(s.data) {
		return "", "has data after the JSON value"
	}
	return "", ""
}

type jsonScanner struct {
	data   []byte
	i      int
	frames []frame  // the containers around the current value
	keys   [][]byte // member names of the open objects, innermost last
	reason string
	ptr    string
}

type frame struct {
	array bool
	index int    // of the current element, for an array
	key   []byte // of the current member, for an object
}

func (s *jsonScanner) fail(reason string) bool {
	if s.reason == "" {
		s.reason = reason
	}
	return false
}

func (s *jsonScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) value(depth int) bool {
	if depth > maxJSONDepth {
		return s.fail("nests deeper than " + strconv.Itoa(maxJSONDepth) + " levels")
	}
	if s.i >= len(s.data) {
		return s.fail("is not valid JSON")
	}
	switch c := s.data[s.i]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if len(s.data)-s.i >= len(lit) && string(s.data[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return true
			}
		}
		return s.fail("is not valid JSON")
	}
}

func (s *jsonScanner) object(depth int) bool {
	s.i++ // {
	start := len(s.keys)
	defer func() { s.keys = s.keys[:start] }()
	var seen map[string]bool
	s.frames = append(s.frames, frame{})
	defer func() { s.frames = s.frames[:len(s.frames)-1] }()
	s.space()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return s.fail("is not valid JSON")
		}
		key, ok := s.str()
		if !ok {
			return false
		}
		dup := false
		if seen != nil {
			dup = seen[string(key)]
			seen[string(key)] = true
		} else {
			for _, k := range s.keys[start:] {
				if bytes.Equal(k, key) {
					dup = true
					break
				}
			}
			s.keys = append(s.keys, key)
			if len(s.keys)-start > maxLinearKeys {
				seen = make(map[string]bool, 2*maxLinearKeys)
				for _, k := range s.keys[start:] {
					seen[string(k)] = true
				}
			}
		}
		s.frames[len(s.frames)-1].key = key
		if dup {
			s.ptr = s.pointer()
			return s.fail("repeats a member name")
		}
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return s.fail("is not valid JSON")
		}
		s.i++
		s.space()
		if !s.value(depth + 1) {
			return false
		}
		if more, ok := s.separator('}'); !ok || !more {
			return ok
		}
	}
}

func (s *jsonScanner) array(depth int) bool {
	s.i++ // [
	s.frames = append(s.frames, frame{array: true})
	defer func() { s.frames = s.frames[:len(s.frames)-1] }()
	s.space()
	if s.i < len(s.data) && s.data[s.i] == ']' {
		s.i++
		return true
	}
	for n := 0; ; n++ {
		s.frames[len(s.frames)-1].index = n
		s.space()
		if !s.value(depth + 1) {
			return false
		}
		if more, ok := s.separator(']'); !ok || !more {
			return ok
		}
	}
}

// separator reads what follows a member or an element: a comma, when more
// follow, or end, which closes the object or array.
func (s *jsonScanner) separator(end byte) (more, ok bool) {
	s.space()
	if s.i < len(s.data) {
		switch s.data[s.i] {
		case ',':
			s.i++
			return true, true
		case end:
			s.i++
			return false, true
		}
	}
	return false, s.fail("is not valid JSON")
}

// str scans a string and returns its value; the value is decoded (and
// copied) only when it has escapes.
func (s *jsonScanner) str() ([]byte, bool) {
	start := s.i
	s.i++ // "
	escaped := false
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			raw := s.data[start:s.i]
			if !escaped {
				return raw[1 : len(raw)-1], true
			}
			var v string
			if json.Unmarshal(raw, &v) != nil {
				return nil, s.fail("is not valid JSON")
			}
			return []byte(v), true
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.data) {
				return nil, s.fail("is not valid JSON")
			}
			switch s.data[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.data) {
					return nil, s.fail("is not valid JSON")
				}
				for _, h := range s.data[s.i+2 : s.i+6] {
					if !isHex(h) {
						return nil, s.fail("is not valid JSON")
					}
				}
				s.i += 6
			default:
				return nil, s.fail("is not valid JSON")
			}
		case c < 0x20:
			return nil, s.fail("is not valid JSON")
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.data[s.i:])
			if r == utf8.RuneError && n <= 1 {
				return nil, s.fail("is not valid UTF-8")
			}
			s.i += n
		}
	}
	return nil, s.fail("is not valid JSON")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number scans a number of the RFC 8259 grammar.
func (s *jsonScanner) number() bool {
	if s.data[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.data) && s.data[s.i] == '0':
		s.i++
	case s.digits() == 0:
		return s.fail("is not valid JSON")
	}
	if s.i < len(s.data) && s.data[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.fail("is not valid JSON")
		}
	}
	if s.i < len(s.data) && (s.data[s.i] == 'e' || s.data[s.i] == 'E') {
		s.i++
		if s.i < len(s.data) && (s.data[s.i] == '+' || s.data[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.fail("is not valid JSON")
		}
	}
	return true
}

func (s *jsonScanner) digits() int {
	n := 0
	for s.i < len(s.data) && '0' <= s.data[s.i] && s.data[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// pointer renders the location of the current value.
func (s *jsonScanner) pointer() string {
	toks := make([]string, 0, len(s.frames))
	for _, f := range s.frames {
		if f.array {
			toks = append(toks, strconv.Itoa(f.index))
		} else {
			toks = append(toks, string(f.key))
		}
	}
	return pointer(toks)
}

package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration, at a place in its file.
type Problem struct {
	File string // file name given to Load or Parse; empty for a Config built in code
	Line int    // 1-based line, 0 when unknown
	Col  int    // 1-based column, 0 when unknown
	Path string // field path such as routes[1].policy; empty for the file as a whole
	Msg  string
}

// Error formats p as file:line:col: path: message, leaving out the parts
// that are unknown.
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
	}
	if p.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(p.Line))
		if p.Col > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Col))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one configuration, in file order. Its
// Error method puts one problem on each line, so a command can print it as
// it is. Match it with errors.As.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// tidy sorts ps by position (problems without one first, in the order
// found) and drops repeats, which aliases produce when a faulty anchored
// value is used in several places.
func (ps Problems) tidy() Problems {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	type key struct {
		line, col int
		path, msg string
	}
	seen := make(map[key]bool, len(ps))
	out := ps[:0]
	for _, p := range ps {
		k := key{line: p.Line, col: p.Col, msg: p.Msg}
		if p.Line == 0 {
			k.path = p.Path
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, p)
	}
	return out
}

// position is where a value starts in the file.
type position struct{ line, col int }

// source remembers where a decoded file set each field, so that defaults
// can leave explicit values alone and validation can point at the file.
type source struct {
	file string
	pos  map[string]position // field path → its value
}

// has reports whether the file set the field at path.
func (s *source) has(path string) bool {
	if s == nil {
		return false
	}
	_, ok := s.pos[path]
	return ok
}

// find returns the position of path or, when the file did not set it, of
// its nearest ancestor that the file did set.
func (s *source) find(path string) (position, bool) {
	if s == nil {
		return position{}, false
	}
	for {
		if p, ok := s.pos[path]; ok {
			return p, true
		}
		if path == "" {
			return position{}, false
		}
		path = parentPath(path)
	}
}

// parentPath drops the last element of a field path: "a.b[2]" → "a.b",
// "a.b" → "a", "a" → "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// joinPath appends a key to a field path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends a list index to a field path.
func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

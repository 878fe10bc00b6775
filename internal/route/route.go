// Package route matches requests to configured routes by host and path
// prefix. The most specific route wins: an exact host before a wildcard host
// before any host, then the longest path prefix.
//
// A Table is built once from config and is immutable afterwards, so lookups
// take no locks and allocate nothing.
package route

import (
	"fmt"
	"net"
	"sort"
	"strings"
)

// Spec is what a Table needs to know about one route.
type Spec[T any] struct {
	Hosts []string // exact names or "*.example.com"; empty means any host
	Path  string   // prefix; matches at a segment boundary
	Value T        // returned by Match
}

type entry[T any] struct {
	prefix string // normalised: no trailing slash, "" for "/"
	value  T
}

// Table maps a host and path to a route value. It is safe for concurrent use.
type Table[T any] struct {
	exact    map[string][]entry[T] // host -> entries, longest prefix first
	wildcard map[string][]entry[T] // parent domain of "*.parent" -> entries
	any      []entry[T]
}

// New builds a table. Two specs that would match exactly the same requests
// are an error.
func New[T any](specs []Spec[T]) (*Table[T], error) {
	t := &Table[T]{exact: map[string][]entry[T]{}, wildcard: map[string][]entry[T]{}}
	seen := map[string]bool{}
	for _, s := range specs {
		p := normPrefix(s.Path)
		hosts := s.Hosts
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		for _, h := range hosts {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			key := h + "\x00" + p
			if seen[key] {
				return nil, fmt.Errorf("two routes match host %q and path %q", displayHost(h), displayPath(p))
			}
			seen[key] = true
			e := entry[T]{prefix: p, value: s.Value}
			switch {
			case h == "":
				t.any = append(t.any, e)
			case strings.HasPrefix(h, "*."):
				t.wildcard[h[2:]] = append(t.wildcard[h[2:]], e)
			default:
				t.exact[h] = append(t.exact[h], e)
			}
		}
	}
	sortEntries(t.any)
	for _, es := range t.exact {
		sortEntries(es)
	}
	for _, es := range t.wildcard {
		sortEntries(es)
	}
	return t, nil
}

func displayHost(h string) string {
	if h == "" {
		return "*"
	}
	return h
}

func displayPath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func sortEntries[T any](es []entry[T]) {
	sort.SliceStable(es, func(i, j int) bool { return len(es[i].prefix) > len(es[j].prefix) })
}

func normPrefix(p string) string {
	return strings.TrimRight(p, "/")
}

// Match returns the value of the most specific route for host (as in
// Request.Host, with or without a port) and path (the decoded URL path).
func (t *Table[T]) Match(host, path string) (v T, ok bool) {
	h := normHost(host)
	if h != "" {
		if es, found := t.exact[h]; found {
			if v, ok = matchPath(es, path); ok {
				return v, true
			}
		}
		if i := strings.IndexByte(h, '.'); i > 0 {
			if es, found := t.wildcard[h[i+1:]]; found {
				if v, ok = matchPath(es, path); ok {
					return v, true
				}
			}
		}
	}
	return matchPath(t.any, path)
}

// MatchLoose reports whether any route of the table covers host and path
// when paths are compared without regard to case and a prefix may also end
// at '.', ';', a space or a tab. It is meant for a table of deny routes:
// backends that match paths case-insensitively, strip ";params" or format
// suffixes (".json"), or trim trailing spaces would otherwise serve a
// denied resource under another spelling. Unlike Match, every host class
// is tried, so a deny route without hosts covers every host.
func (t *Table[T]) MatchLoose(host, path string) (v T, ok bool) {
	h := normHost(host)
	if h != "" {
		if v, ok = matchLoose(t.exact[h], path); ok {
			return v, true
		}
		if i := strings.IndexByte(h, '.'); i > 0 {
			if v, ok = matchLoose(t.wildcard[h[i+1:]], path); ok {
				return v, true
			}
		}
	}
	return matchLoose(t.any, path)
}

func matchLoose[T any](es []entry[T], path string) (v T, ok bool) {
	for i := range es {
		p := es[i].prefix
		if p == "" {
			return es[i].value, true
		}
		if len(path) < len(p) || !strings.EqualFold(path[:len(p)], p) {
			continue
		}
		if len(path) == len(p) {
			return es[i].value, true
		}
		switch path[len(p)] {
		case '/', '.', ';', ' ', '\t':
			return es[i].value, true
		}
	}
	return v, false
}

// Hosts returns the exact and wildcard host names of the table's routes.
func (t *Table[T]) Hosts() []string {
	var hs []string
	for h := range t.exact {
		hs = append(hs, h)
	}
	for h := range t.wildcard {
		hs = append(hs, "*."+h)
	}
	sort.Strings(hs)
	return hs
}

// HostKnown reports whether any route could match host, whatever the path.
func (t *Table[T]) HostKnown(host string) bool {
	if len(t.any) > 0 {
		return true
	}
	h := normHost(host)
	if _, ok := t.exact[h]; ok {
		return true
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		_, ok := t.wildcard[h[i+1:]]
		return ok
	}
	return false
}

func matchPath[T any](es []entry[T], path string) (v T, ok bool) {
	for i := range es {
		p := es[i].prefix
		if p == "" {
			return es[i].value, true
		}
		if strings.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/') {
			return es[i].value, true
		}
	}
	return v, false
}

// normHost lower-cases host and removes a port and a trailing dot. It
// allocates only when host has upper-case letters.
func normHost(host string) string {
	if host == "" {
		return ""
	}
	if host[0] == '[' {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		} else {
			host = strings.Trim(host, "[]")
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

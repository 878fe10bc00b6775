package openapi

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// maxParams is the most path parameters one template may have; it sizes
// the fixed array a lookup captures values into, so that a lookup does not
// allocate.
const maxParams = 16

// router finds the path template a request path matches. It is a trie of
// path segments: each node has its literal children in a map and its
// templated children ("{id}", "{name}.json", "v{major}-{minor}") in a list,
// tried in order after the literal child. A lookup backtracks, so
// /a/{x}/c and /a/b/{y} both match what they should. It is immutable once
// built and safe for concurrent use.
type router struct {
	root     *node
	maxDepth int // segments in the longest template
}

type node struct {
	lit  map[string]*node
	tmpl []*edge
	end  *endpoint // a template ends here
}

// edge is a templated segment. parts holds its literal pieces around the
// parameters: "{name}.json" is ["", ".json"], "v{a}-{b}" is ["v", "-", ""].
// Templates whose segments differ only in parameter names share an edge.
type edge struct {
	key     string // the parts joined with "{}"
	parts   []string
	literal int // bytes of literal text, for ordering
	next    *node
}

// endpoint is a path template and its operations.
type endpoint struct {
	template string
	names    []string // parameter names in the order the lookup captures them
	methods  []methodOp
	allow    string // Allow header value
}

type methodOp struct {
	method string
	op     *Operation
}

// match is the result of a lookup: the endpoint and the decoded values of
// its path parameters, in the order of endpoint.names.
type match struct {
	ep   *endpoint
	vals [maxParams]string
	n    int
}

func newRouter() *router { return &router{root: &node{}} }

// add inserts a path template. It fails on a template that is not of the
// form OpenAPI allows or that repeats one already added.
func (rt *router) add(template string, ep *endpoint) error {
	if !strings.HasPrefix(template, "/") {
		return fmt.Errorf("path %q does not start with /", template)
	}
	segs := strings.Split(template[1:], "/")
	n := rt.root
	for _, s := range segs {
		if !strings.ContainsAny(s, "{}") {
			lit, err := url.PathUnescape(s)
			if err != nil {
				return fmt.Errorf("path %q: %w", template, err)
			}
			if n.lit == nil {
				n.lit = map[string]*node{}
			}
			c := n.lit[lit]
			if c == nil {
				c = &node{}
				n.lit[lit] = c
			}
			n = c
			continue
		}
		parts, names, err := parseSegment(s)
		if err != nil {
			return fmt.Errorf("path %q: %w", template, err)
		}
		ep.names = append(ep.names, names...)
		key := strings.Join(parts, "{}")
		var e *edge
		for _, x := range n.tmpl {
			if x.key == key {
				e = x
				break
			}
		}
		if e == nil {
			lit := 0
			for _, p := range parts {
				lit += len(p)
			}
			e = &edge{key: key, parts: parts, literal: lit, next: &node{}}
			n.tmpl = append(n.tmpl, e)
			// The more literal text a segment has, the more specific it is.
			slices.SortStableFunc(n.tmpl, func(a, b *edge) int {
				if c := cmp.Compare(b.literal, a.literal); c != 0 {
					return c
				}
				if c := cmp.Compare(len(a.parts), len(b.parts)); c != 0 {
					return c
				}
				return strings.Compare(a.key, b.key)
			})
		}
		n = e.next
	}
	if len(ep.names) > maxParams {
		return fmt.Errorf("path %q has more than %d parameters", template, maxParams)
	}
	if n.end != nil {
		return fmt.Errorf("paths %q and %q match the same requests", n.end.template, template)
	}
	n.end = ep
	rt.maxDepth = max(rt.maxDepth, len(segs))
	return nil
}

// parseSegment splits a templated segment into its literal parts and
// parameter names. Two parameters must be separated by literal text, or
// the segment could be split between them in more than one way.
func parseSegment(s string) (parts, names []string, err error) {
	rest := s
	for {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return nil, nil, fmt.Errorf("segment %q has an unmatched }", s)
			}
			lit, err := url.PathUnescape(rest)
			if err != nil {
				return nil, nil, err
			}
			parts = append(parts, lit)
			return parts, names, nil
		}
		lit, err := url.PathUnescape(rest[:open])
		if err != nil {
			return nil, nil, err
		}
		if strings.IndexByte(lit, '}') >= 0 {
			return nil, nil, fmt.Errorf("segment %q has an unmatched }", s)
		}
		if len(names) > 0 && lit == "" {
			return nil, nil, fmt.Errorf("segment %q has two parameters with nothing between them", s)
		}
		parts = append(parts, lit)
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, nil, fmt.Errorf("segment %q has an unmatched {", s)
		}
		name := rest[open+1 : open+end]
		if name == "" || strings.ContainsAny(name, "{/") {
			return nil, nil, fmt.Errorf("segment %q has an invalid parameter name", s)
		}
		names = append(names, name)
		rest = rest[open+end+1:]
	}
}

// lookup finds the endpoint for an escaped request path (as from
// url.URL.EscapedPath). Segments are split on "/" before they are
// percent-decoded, so an encoded slash stays inside its segment, as
// OpenAPI requires. Literal segments are preferred over templated ones at
// every level. A path with an invalid escape or a dot segment ("." or "..",
// encoded or not) matches nothing.
func (rt *router) lookup(path string, m *match) bool {
	m.ep, m.n = nil, 0
	if !strings.HasPrefix(path, "/") {
		return false
	}
	ep := rt.root.find(path[1:], 1, rt.maxDepth, m)
	m.ep = ep
	return ep != nil
}

func (n *node) find(path string, depth, maxDepth int, m *match) *endpoint {
	if depth > maxDepth {
		return nil
	}
	seg, rest, more := strings.Cut(path, "/")
	if strings.IndexByte(seg, '%') >= 0 {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return nil
		}
		seg = dec
	}
	if seg == "." || seg == ".." {
		// A dot segment would be resolved away by the upstream, or
		// carried into a parameter meant to name one thing.
		return nil
	}
	if c := n.lit[seg]; c != nil {
		if ep := c.cont(rest, more, depth, maxDepth, m); ep != nil {
			return ep
		}
	}
	for _, e := range n.tmpl {
		saved := m.n
		if e.capture(seg, m) {
			if ep := e.next.cont(rest, more, depth, maxDepth, m); ep != nil {
				return ep
			}
		}
		m.n = saved
	}
	return nil
}

func (n *node) cont(rest string, more bool, depth, maxDepth int, m *match) *endpoint {
	if !more {
		return n.end
	}
	return n.find(rest, depth+1, maxDepth, m)
}

// capture matches a decoded segment against the edge's parts and appends
// the parameter values to m. Each value is non-empty; a separator between
// two parameters ends the first at its first occurrence, and the last
// literal part must end the segment.
func (e *edge) capture(seg string, m *match) bool {
	last := len(e.parts) - 1
	rest, ok := strings.CutPrefix(seg, e.parts[0])
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, e.parts[last])
	if !ok || m.n+last > maxParams {
		return false
	}
	for _, sep := range e.parts[1:last] {
		i := strings.Index(rest, sep)
		if i <= 0 {
			return false
		}
		m.vals[m.n] = rest[:i]
		m.n++
		rest = rest[i+len(sep):]
	}
	if rest == "" {
		return false
	}
	m.vals[m.n] = rest
	m.n++
	return true
}

// operation returns the operation for method, or nil. HEAD falls back to
// GET when the document has no HEAD operation of its own, since a HEAD
// request is a GET without the response body (RFC 9110, section 9.3.2).
func (ep *endpoint) operation(method string) *Operation {
	var get *Operation
	for _, mo := range ep.methods {
		if mo.method == method {
			return mo.op
		}
		if mo.method == http.MethodGet {
			get = mo.op
		}
	}
	if method == http.MethodHead {
		return get
	}
	return nil
}

// finish sorts the methods and computes the Allow header value.
func (ep *endpoint) finish() {
	slices.SortFunc(ep.methods, func(a, b methodOp) int { return strings.Compare(a.method, b.method) })
	allow := make([]string, 0, len(ep.methods)+1)
	head := false
	for _, mo := range ep.methods {
		allow = append(allow, mo.method)
		head = head || mo.method == http.MethodHead
	}
	if !head && ep.operation(http.MethodGet) != nil {
		allow = append(allow, http.MethodHead)
		slices.Sort(allow)
	}
	ep.allow = strings.Join(allow, ", ")
}

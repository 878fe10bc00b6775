package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

const (
	// maxFileSize bounds the configuration file. Real ones are a few KiB.
	maxFileSize = 4 << 20
	// maxAliasValues bounds the values reached through aliases and merge
	// keys, so a small file cannot expand into a huge one.
	maxAliasValues = 100_000
	// maxProblems stops decoding a hopeless file early.
	maxProblems = 100
)

// Load reads the configuration file at path and returns it decoded, with
// defaults applied and validated. A file that is not a valid configuration
// gives Problems, one per fault, each with its line and column.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes a configuration from data strictly (unknown keys, wrong
// types, duplicate keys, several documents and empty files are errors),
// applies defaults and validates the result. filename is used in error
// messages only. Any error is of type Problems. Parse is safe for
// concurrent use.
func Parse(filename string, data []byte) (*Config, error) {
	c, err := decode(filename, data)
	if err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode turns data into a Config without defaults or validation.
func decode(filename string, data []byte) (*Config, error) {
	d := &decoder{
		src:    &source{file: filename, pos: make(map[string]position)},
		active: make(map[*yaml.Node]bool),
	}
	root := d.document(data)
	if root == nil {
		return nil, d.problems.tidy()
	}
	c := new(Config)
	d.value(root, reflect.ValueOf(c).Elem(), "")
	if len(d.problems) > 0 {
		return nil, d.problems.tidy()
	}
	c.src = d.src
	return c, nil
}

// decoder fills Go values from a YAML node tree, checking every key and
// type against the Go types and collecting every problem it finds.
type decoder struct {
	src      *source
	problems Problems
	stopped  bool // too many problems, or too much alias expansion

	active     map[*yaml.Node]bool // aliases and merged mappings being expanded
	aliasDepth int                 // > 0 while walking a value reached through an alias or merge
	aliasCount int                 // values walked with aliasDepth > 0
}

func (d *decoder) add(line, col int, path, format string, args ...any) {
	if d.stopped {
		return
	}
	if len(d.problems) == maxProblems {
		d.problems = append(d.problems, Problem{File: d.src.file, Line: line, Col: col,
			Msg: "too many problems; fix these first"})
		d.stopped = true
		return
	}
	d.problems = append(d.problems, Problem{File: d.src.file, Line: line, Col: col, Path: path,
		Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) addAt(n *yaml.Node, path, format string, args ...any) {
	d.add(n.Line, n.Column, path, format, args...)
}

// yamlLine matches the line number in the parser's error messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// document parses data as exactly one YAML document whose top level is a
// mapping and returns that mapping, or nil after recording why not.
func (d *decoder) document(data []byte) *yaml.Node {
	if len(data) > maxFileSize {
		d.add(0, 0, "", "file is too large (%d bytes; at most %d)", len(data), maxFileSize)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.add(0, 0, "", "empty file: a configuration needs at least tls and routes")
		} else {
			d.syntax(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err)
		return nil
	default:
		d.add(next.Line, next.Column, "", "a second YAML document starts here: a configuration file holds exactly one")
		return nil
	}
	if len(doc.Content) != 1 {
		d.add(doc.Line, doc.Column, "", "empty document")
		return nil
	}
	root := doc.Content[0]
	switch {
	case root.Kind == yaml.MappingNode:
		return root
	case isNull(root):
		d.addAt(root, "", "empty document: a configuration needs at least tls and routes")
	default:
		d.addAt(root, "", "the top level must be a mapping of keys such as tls and routes, not %s", describe(root, false))
	}
	return nil
}

// syntax records a YAML syntax error. The parser reports a line at best.
func (d *decoder) syntax(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.add(line, 0, "", "%s", msg[len(m[0]):])
		return
	}
	d.add(0, 0, "", "%s", strings.TrimPrefix(msg, "yaml: "))
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	secretType      = reflect.TypeFor[Secret]()
)

// value decodes node n into v, whose field path is path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.stopped {
		return
	}
	if _, ok := d.src.pos[path]; !ok {
		d.src.pos[path] = position{n.Line, n.Column}
	}
	if n.Kind == yaml.AliasNode {
		if d.active[n] {
			d.addAt(n, path, "alias *%s refers to a value that contains it", n.Value)
			return
		}
		d.active[n] = true
		d.aliasDepth++
		d.value(n.Alias, v, path)
		d.aliasDepth--
		delete(d.active, n)
		return
	}
	if !d.count(n, path) {
		return
	}
	t := v.Type()
	if isNull(n) {
		d.addAt(n, path, "empty value: want %s%s", want(t), emptyHint(t))
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			d.mismatch(n, t, path)
			return
		}
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.addAt(n, path, "%s", err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if n.Kind != yaml.MappingNode && t.Elem().Kind() == reflect.Struct {
			d.mismatch(n, t, path)
			return
		}
		p := reflect.New(t.Elem())
		d.value(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.mismatch(n, t, path)
			return
		}
		d.mapping(n, v, path)
	case reflect.Map:
		// A map of free keys to values (body_caps): string keys only.
		if n.Kind != yaml.MappingNode || t.Key().Kind() != reflect.String {
			d.mismatch(n, t, path)
			return
		}
		m := reflect.MakeMap(t)
		for _, e := range d.entries(n, path) {
			if e.key.Kind != yaml.ScalarNode || isNull(e.key) {
				d.addAt(e.key, path, "want a key name, not %s", describe(e.key, false))
				continue
			}
			val := reflect.New(t.Elem()).Elem()
			d.value(e.val, val, joinPath(path, e.key.Value))
			m.SetMapIndex(reflect.ValueOf(e.key.Value).Convert(t.Key()), val)
		}
		v.Set(m)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.mismatch(n, t, path)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), indexPath(path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.mismatch(n, t, path)
			return
		}
		if t == secretType && !isSecretRef(n.Value) {
			d.addAt(n, path, "%s", errInlineSecret)
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, ok := scalarBool(n)
		if !ok {
			d.mismatch(n, t, path)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.mismatch(n, t, path)
			return
		}
		if v.OverflowInt(i) {
			d.addAt(n, path, "number %s is too large", n.Value)
			return
		}
		v.SetInt(i)
	default:
		// Every field type of Config is handled above; a new kind needs a case.
		d.addAt(n, path, "cannot decode into a field of type %s", t)
	}
}

// count enforces the bound on values reached through aliases.
func (d *decoder) count(n *yaml.Node, path string) bool {
	if d.aliasDepth == 0 {
		return true
	}
	d.aliasCount++
	if d.aliasCount > maxAliasValues {
		d.addAt(n, path, "aliases expand to more than %d values", maxAliasValues)
		d.stopped = true
		return false
	}
	return true
}

// entry is one key and value of a mapping, after merge keys are expanded.
type entry struct {
	key, val *yaml.Node
	merged   bool // came from a merge key (<<)
}

// mapping decodes a mapping node into struct v.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	fields := yamlFields(v.Type())
	for _, e := range d.entries(n, path) {
		if d.stopped {
			return
		}
		if e.key.Kind != yaml.ScalarNode || isNull(e.key) {
			d.addAt(e.key, path, "want a key name, not %s", describe(e.key, false))
			continue
		}
		name := e.key.Value
		fpath := joinPath(path, name)
		f, ok := fieldByName(fields, name)
		if !ok {
			d.addAt(e.key, fpath, "unknown key%s", suggest(name, fields))
			continue
		}
		if e.merged {
			d.aliasDepth++
		}
		d.value(e.val, v.Field(f.index), fpath)
		if e.merged {
			d.aliasDepth--
		}
	}
}

// entries lists the keys and values of mapping n: its own first, then
// those of the mappings it merges with << that it does not set itself
// (among those, the first mapping to set a key wins). A key written twice
// in one mapping is a problem.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	var out []entry
	var merges []*yaml.Node
	first := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			merges = append(merges, v)
			continue
		}
		if k.Kind == yaml.ScalarNode {
			if prev, ok := first[k.Value]; ok {
				d.addAt(k, joinPath(path, k.Value), "duplicate key (first set at line %d:%d)", prev.Line, prev.Column)
				continue
			}
			first[k.Value] = k
		}
		out = append(out, entry{key: k, val: v})
	}
	for _, m := range merges {
		for _, e := range d.mergeSources(m, path) {
			if e.key.Kind == yaml.ScalarNode {
				if _, ok := first[e.key.Value]; ok {
					continue
				}
				first[e.key.Value] = e.key
			}
			e.merged = true
			out = append(out, e)
		}
	}
	return out
}

// mergeSources returns the entries that the value of a merge key brings:
// a mapping, or a list of mappings, possibly through aliases.
func (d *decoder) mergeSources(orig *yaml.Node, path string) []entry {
	v := d.follow(orig, path)
	if v == nil {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		if d.active[v] {
			d.addAt(orig, path, "merge key (<<) brings in a mapping that contains it")
			return nil
		}
		if d.aliasCount += len(v.Content) / 2; d.aliasCount > maxAliasValues {
			d.addAt(orig, path, "aliases expand to more than %d values", maxAliasValues)
			d.stopped = true
			return nil
		}
		d.active[v] = true
		defer delete(d.active, v)
		return d.entries(v, path)
	case yaml.SequenceNode:
		var out []entry
		for _, item := range v.Content {
			m := d.follow(item, path)
			if m == nil {
				continue
			}
			if m.Kind != yaml.MappingNode {
				d.addAt(item, path, "merge key (<<) wants a mapping or a list of mappings, not a list holding %s", describe(m, false))
				continue
			}
			out = append(out, d.mergeSources(item, path)...)
		}
		return out
	default:
		d.addAt(orig, path, "merge key (<<) wants a mapping or a list of mappings, not %s", describe(v, false))
		return nil
	}
}

// follow resolves aliases.
func (d *decoder) follow(n *yaml.Node, path string) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			d.addAt(n, path, "alias chain too long")
			return nil
		}
		n = n.Alias
	}
	return n
}

func (d *decoder) mismatch(n *yaml.Node, t reflect.Type, path string) {
	d.addAt(n, path, "want %s, got %s", want(t), describe(n, t == secretType))
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" && n.ShortTag() == "!!merge"
}

// scalarBool reads a YAML 1.2 boolean. The YAML 1.1 forms (yes, on, y)
// are refused: they are too easy to write by mistake.
func scalarBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, false
	}
	switch strings.ToLower(n.Value) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// want describes the values a Go type accepts.
func want(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return `a duration such as "30s"`
	case reflect.TypeFor[ByteSize]():
		return `a size such as "10MiB"`
	case secretType:
		return `a secret reference such as "env:NAME" or "file:PATH"`
	}
	switch t.Kind() {
	case reflect.Pointer:
		return want(t.Elem())
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	}
	return t.String()
}

func emptyHint(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		return " (write {} for an empty mapping)"
	case reflect.Slice:
		return " (write [] for an empty list)"
	}
	return ""
}

// describe names the kind of a node, with a short quote of a scalar's
// value unless hide is set.
func describe(n *yaml.Node, hide bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if isNull(n) {
			return "an empty value"
		}
		kind := map[string]string{"!!bool": "a boolean", "!!int": "a number", "!!float": "a number", "!!timestamp": "a timestamp"}[n.ShortTag()]
		if kind == "" {
			kind = "a string"
		}
		if hide {
			return kind
		}
		return kind + " " + strconv.Quote(clip(n.Value, 40))
	}
	return "an unknown value"
}

// clip shortens s to at most n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// field is one YAML key of a struct type.
type field struct {
	name     string // the key in the file
	index    int    // the struct field index
	required bool   // the yaml tag has no omitempty
}

// yamlFields lists the keys of struct type t in declaration order.
func yamlFields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, field{name: name, index: i, required: !strings.Contains(opts, "omitempty")})
	}
	return out
}

func fieldByName(fields []field, name string) (field, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// suggest names the closest known key to an unknown one, or lists the
// known keys when none is close.
func suggest(name string, fields []field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if best := closest(name, names); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// closest returns the candidate nearest to s by edit distance, if it is
// near enough to be a likely typo, ignoring case and - versus _.
func closest(s string, candidates []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	best, bestDist := "", 0
	for _, c := range candidates {
		dist := editDistance(norm(s), norm(c))
		if len(c) >= 4 && strings.HasPrefix(norm(s), norm(c)) {
			dist = 1 // "warning" for "warn"
		}
		limit := max(1, min(3, len(c)/3))
		if dist <= limit && (best == "" || dist < bestDist) {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, by bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

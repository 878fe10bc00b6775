package openapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"go.yaml.in/yaml/v3"
)

// maxDocumentBytes bounds each file of a document.
const maxDocumentBytes = 16 << 20

// Load reads the OpenAPI document at path (YAML or JSON), validates it and
// compiles a Validator. Every problem of the document is reported at once,
// each with its file and line where kin-openapi records one.
//
// A $ref may name the same document ("#/components/...") or another file
// in the document's directory or below it; a $ref to a URL (http, https or
// any other scheme) or to a file outside that directory is refused, so
// loading never makes a network request.
//
// The document must be OpenAPI 3.0.x. Documents of 3.1.x (and 3.2.x) load
// too, with kin-openapi's support: it validates their schemas as JSON
// Schema 2020-12, compiling each schema again for every value it validates,
// which makes their validation several times slower than that of 3.0.
func Load(path string, opts Options) (*Validator, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("openapi document %s: %w", path, err)
	}
	data, err := readFile(abs)
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	return load(data, abs, opts)
}

// LoadData is Load for a document held in memory. Its $refs may only name
// places in the document itself.
func LoadData(data []byte, opts Options) (*Validator, error) {
	return load(data, "", opts)
}

func load(data []byte, file string, opts Options) (*Validator, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("openapi options: %w", err)
	}
	name := "openapi document"
	if file != "" {
		name = file
	}
	if err := checkRefs(data, file); err != nil {
		return nil, err
	}
	l := openapi3.NewLoader()
	l.IncludeOrigin = true
	l.IsExternalRefsAllowed = file != ""
	l.ReadFromURIFunc = readRef(filepath.Dir(file), file != "")
	var doc *openapi3.T
	var err error
	if file != "" {
		doc, err = l.LoadFromDataWithPath(data, &url.URL{Path: filepath.ToSlash(file)})
	} else {
		doc, err = l.LoadFromData(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	switch doc.OpenAPIMajorMinor() {
	case "3.0", "3.1", "3.2":
	default:
		return nil, fmt.Errorf("%s: openapi version %q is not 3.0, 3.1 or 3.2", name, doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(),
		openapi3.EnableMultiError(),
		// Examples are documentation; a wrong one does not change what
		// requests are valid.
		openapi3.DisableExamplesValidation(),
	); err != nil {
		return nil, docErrors(err, name)
	}
	v, err := compile(doc, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxDocumentBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxDocumentBytes)
	}
	return data, nil
}

// readRef is the loader's only way to other files: local files under dir.
func readRef(dir string, files bool) openapi3.ReadFromURIFunc {
	return func(_ *openapi3.Loader, u *url.URL) ([]byte, error) {
		if (u.Scheme != "" && u.Scheme != "file") || u.Host != "" || u.Opaque != "" {
			return nil, fmt.Errorf("$ref to %s refused: only local files are read", u.Redacted())
		}
		if !files {
			return nil, fmt.Errorf("$ref to %s refused: a document loaded from memory can only refer to itself", u.Path)
		}
		p := filepath.Clean(filepath.FromSlash(u.Path))
		if !within(dir, p) {
			return nil, fmt.Errorf("$ref to %s refused: it is outside the document's directory %s", p, dir)
		}
		return readFile(p)
	}
}

func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// checkRefs looks at every $ref of the document before kin-openapi does,
// to refuse remote ones before any attempt to fetch them and to report
// broken ones with their line. A document that is not YAML is left for
// the loader to report.
func checkRefs(data []byte, file string) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil
	}
	at := func(line int) string { return fmt.Sprintf("openapi document: line %d", line) }
	if file != "" {
		at = func(line int) string { return fmt.Sprintf("%s:%d", file, line) }
	}
	var errs []error
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				switch k.Value {
				case "example", "default", "enum", "const", "value":
					continue // values, not OpenAPI objects
				case "$ref":
					if val.Kind == yaml.ScalarNode {
						if err := checkRef(&root, val.Value, file); err != nil {
							errs = append(errs, fmt.Errorf("%s: %w", at(val.Line), err))
						}
						continue
					}
				}
				walk(val)
			}
		}
	}
	walk(&root)
	return errors.Join(errs...)
}

func checkRef(root *yaml.Node, ref, file string) error {
	u, err := url.Parse(ref)
	if err != nil {
		return fmt.Errorf("$ref %q is not a valid URI reference", ref)
	}
	switch {
	case (u.Scheme != "" && u.Scheme != "file") || u.Host != "" || u.Opaque != "":
		return fmt.Errorf("$ref %q refused: only local files are read, not URLs", ref)
	case u.Path == "":
		if !resolves(root, u.Fragment) {
			return fmt.Errorf("$ref %q does not resolve in the document", ref)
		}
	case file == "":
		return fmt.Errorf("$ref %q refused: a document loaded from memory can only refer to itself", ref)
	default:
		p := u.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(file), filepath.FromSlash(p))
		}
		if !within(filepath.Dir(file), filepath.Clean(p)) {
			return fmt.Errorf("$ref %q refused: it is outside the document's directory", ref)
		}
	}
	return nil
}

// resolves reports whether the JSON Pointer fragment names a node of root.
func resolves(root *yaml.Node, fragment string) bool {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if fragment == "" {
		return true
	}
	if !strings.HasPrefix(fragment, "/") {
		return true // a plain-name fragment ($anchor) is for the loader to resolve
	}
	for _, tok := range strings.Split(fragment[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == tok {
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return false
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n.Content) {
				return false
			}
			n = n.Content[i]
		default:
			return false
		}
	}
	return true
}

// docErrors splits the errors of a document's validation into one per
// problem, each led by the file and line of the element it is about when
// kin-openapi recorded them.
func docErrors(err error, name string) error {
	var list []error
	var flatten func(error)
	flatten = func(e error) {
		if me, ok := e.(openapi3.MultiError); ok {
			for _, x := range me {
				flatten(x)
			}
			return
		}
		list = append(list, e)
	}
	flatten(err)
	out := make([]error, 0, len(list))
	for _, e := range list {
		loc := location(e)
		switch {
		case loc == nil:
			out = append(out, fmt.Errorf("%s: %w", name, e))
		case loc.File != "":
			out = append(out, fmt.Errorf("%s:%d: %w", loc.File, loc.Line, e))
		default:
			out = append(out, fmt.Errorf("%s: line %d: %w", name, loc.Line, e))
		}
	}
	return errors.Join(out...)
}

var originType = reflect.TypeFor[*openapi3.Origin]()

// location returns the innermost source location on err's chain: the Key
// of the Origin field that kin-openapi's typed validation errors carry.
func location(err error) *openapi3.Location {
	var loc *openapi3.Location
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				break
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		f := v.FieldByName("Origin")
		if !f.IsValid() || f.Type() != originType || f.IsNil() {
			continue
		}
		if o := f.Interface().(*openapi3.Origin); o.Key != nil && o.Key.Line > 0 {
			loc = o.Key
		}
	}
	return loc
}

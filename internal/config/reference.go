package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Reference returns the Markdown reference of every configuration key: a
// section per mapping with a table of its keys, their types, defaults and
// descriptions. Like Schema it is built from the Go types, the defaults of
// ApplyDefaults and the doc comments in docs. go generate writes it into
// docs/configuration.md.
func Reference(docs map[string]string) string {
	r := &refGen{docs: docs, seen: map[reflect.Type]string{}}
	r.section(reflect.TypeFor[Config](), reflect.ValueOf(*defaultsProbe()), "")
	var b strings.Builder
	for i, s := range r.sections {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(s)
	}
	return b.String()
}

type refGen struct {
	docs     map[string]string
	seen     map[reflect.Type]string // struct type → its section path
	sections []string
}

// section writes the table of struct type t at path, then the sections of
// the mappings it holds.
func (r *refGen) section(t reflect.Type, def reflect.Value, path string) {
	r.seen[t] = path
	var b strings.Builder
	if path == "" {
		b.WriteString("### Top level\n\n")
	} else {
		fmt.Fprintf(&b, "### `%s`\n\n", path)
		if d := r.docs[t.Name()]; d != "" {
			b.WriteString(d + "\n\n")
		}
	}
	b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
	type sub struct {
		t    reflect.Type
		def  reflect.Value
		path string
	}
	var subs []sub
	for _, f := range yamlFields(t) {
		sf := t.Field(f.index)
		fdef := def.Field(f.index)
		ft := sf.Type
		child := joinPath(path, f.name)
		if ft.Kind() == reflect.Pointer {
			if fdef.IsNil() {
				fdef = reflect.New(ft.Elem())
			}
			ft, fdef = ft.Elem(), fdef.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			child += "[]"
			item := reflect.New(ft.Elem()).Elem()
			if fdef.Len() > 0 {
				item = fdef.Index(0)
			}
			ft, fdef = ft.Elem(), item
		}
		typ := r.typeName(sf.Type)
		if ft.Kind() == reflect.Struct && !isLeaf(ft) {
			target, done := r.seen[ft]
			if !done {
				target = child
				subs = append(subs, sub{ft, fdef, child})
				r.seen[ft] = child
			}
			typ += fmt.Sprintf(", see [`%s`](#%s)", target, anchor(target))
		}
		dflt := "required"
		if !f.required {
			dflt = r.defaultText(def.Field(f.index))
		}
		desc := r.docs[t.Name()+"."+sf.Name]
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.name, typ, dflt, cell(desc))
	}
	r.sections = append(r.sections, b.String())
	for _, s := range subs {
		r.section(s.t, s.def, s.path)
	}
}

// isLeaf reports whether struct type t is written as a scalar.
func isLeaf(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(unmarshalerType)
}

func (r *refGen) typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "duration"
	case reflect.TypeFor[ByteSize]():
		return "size"
	case secretType:
		return "secret reference"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return r.typeName(t.Elem())
	case reflect.Struct:
		return "mapping"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "list of mappings"
		}
		return "list of " + r.typeName(t.Elem()) + "s"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	}
	return t.String()
}

// defaultText formats the default held in v for a table cell.
func (r *refGen) defaultText(v reflect.Value) string {
	if d, ok := defaultOf(v); ok {
		if list, ok := d.([]string); ok {
			return "`[" + strings.Join(list, ", ") + "]`"
		}
		if s, ok := d.(string); ok && s == "" {
			return "—"
		}
		return fmt.Sprintf("`%v`", d)
	}
	if v.Kind() == reflect.Pointer {
		return "—"
	}
	switch v.Interface().(type) {
	case Duration, ByteSize:
		return fmt.Sprintf("`%v`", v.Interface())
	}
	switch v.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int64, reflect.Int32:
		return fmt.Sprintf("`%v`", v.Interface())
	}
	return "—"
}

// anchor is the GitHub heading anchor of a section path.
func anchor(path string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(path) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// cell escapes text for a table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

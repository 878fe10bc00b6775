package config

//go:generate go run ./internal/genschema

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// Patterns of the string forms in the schema. ParseDuration, ParseByteSize
// and ResolveSecret accept at least what these match.
const (
	durationPattern = `^(0|[0-9]+d|\+?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	sizePattern     = `^[0-9]+ *(B|KB|MB|GB|KiB|MiB|GiB)?$`
	secretPattern   = `^(env|file):.+$`
	pinPattern      = `^[A-Za-z0-9+/]{43}=$`
)

// fieldRules are schema keywords added to a field's schema, keyed
// "Type.Field". They restate rules that Validate enforces.
var fieldRules = map[string]map[string]any{
	"Config.Routes":         {"minItems": 1},
	"Route.Name":            {"pattern": routeNamePattern},
	"Route.Policy":          {"enum": []string{PolicyPublic, PolicyDeny}},
	"Route.Path":            {"pattern": "^/"},
	"Route.MaxFails":        {"minimum": 0},
	"Limits.MaxConnections": {"minimum": 0},
	"Log.Level":             {"enum": []string{LevelDebug, LevelInfo, LevelWarn, LevelError}},
	"HealthCheck.Path":      {"pattern": "^/"},
	"ACME.Domains":          {"minItems": 1},
	"ACME.AcceptTOS":        {"const": true},
}

// itemRules are schema keywords added to the items of a list field.
var itemRules = map[string]map[string]any{
	"Route.Upstreams":     {"pattern": "^https?://"},
	"ACME.Challenges":     {"enum": []string{ChallengeHTTP01, ChallengeTLSALPN01}},
	"UpstreamTLS.PinSPKI": {"pattern": pinPattern},
}

// extraRequired are keys that must be present although their yaml tag
// has omitempty, keyed by type.
var extraRequired = map[string][]string{
	"ACME": {"accept_tos"},
}

// Schema returns the JSON Schema (draft 2020-12) of the configuration
// file, built from the Go types: every mapping refuses unknown keys,
// durations and sizes are strings with a pattern (sizes may also be
// integers), and defaults are those of ApplyDefaults. docs holds the doc
// comments of the types and their fields, keyed "Type" and "Type.Field";
// they become descriptions. It may be nil. go generate writes the result
// to moat.schema.json at the root of the repository.
func Schema(docs map[string]string) ([]byte, error) {
	g := schemaGen{docs: docs}
	root := g.object(reflect.TypeFor[Config](), reflect.ValueOf(*defaultsProbe()))
	out := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"title":       "Moat configuration",
		"description": "The configuration file of the Moat security gateway (moat.yaml). Reference: docs/configuration.md.",
	}
	for k, v := range root {
		out[k] = v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// defaultsProbe returns a configuration with every optional section
// present and defaults applied, from which the default of each field can
// be read.
func defaultsProbe() *Config {
	c := &Config{
		TLS:    TLS{Dev: &DevTLS{}, ACME: &ACME{}},
		Backup: &Backup{},
		Routes: []Route{{HealthCheck: &HealthCheck{}}},
	}
	c.ApplyDefaults()
	// The backup directory's default follows data_dir; its description
	// says so, where a fixed path would mislead.
	c.Backup.Dir = ""
	return c
}

type schemaGen struct {
	docs map[string]string
}

// object is the schema of struct type t; def holds its defaults.
func (g schemaGen) object(t reflect.Type, def reflect.Value) map[string]any {
	props := map[string]any{}
	required := []string{}
	for _, f := range yamlFields(t) {
		sf := t.Field(f.index)
		key := t.Name() + "." + sf.Name
		s := g.value(sf.Type, def.Field(f.index))
		for k, v := range fieldRules[key] {
			s[k] = v
		}
		if items, ok := s["items"].(map[string]any); ok {
			for k, v := range itemRules[key] {
				items[k] = v
			}
		}
		if d := g.docs[key]; d != "" {
			s["description"] = d
		}
		if d, ok := defaultOf(def.Field(f.index)); ok {
			s["default"] = d
		}
		props[f.name] = s
		if f.required {
			required = append(required, f.name)
		}
	}
	required = append(required, extraRequired[t.Name()]...)
	s := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"properties":           props,
	}
	if len(required) > 0 {
		s["required"] = required
	}
	if d := g.docs[t.Name()]; d != "" && t != reflect.TypeFor[Config]() {
		s["description"] = d
	}
	return s
}

// value is the schema of a field of type t; def holds its default.
func (g schemaGen) value(t reflect.Type, def reflect.Value) map[string]any {
	switch t {
	case reflect.TypeFor[Duration]():
		return map[string]any{"type": "string", "pattern": durationPattern}
	case reflect.TypeFor[ByteSize]():
		return map[string]any{"type": []string{"string", "integer"}, "pattern": sizePattern, "minimum": 0}
	case secretType:
		return map[string]any{"type": "string", "pattern": secretPattern}
	}
	switch t.Kind() {
	case reflect.Pointer:
		if def.IsNil() {
			def = reflect.New(t.Elem())
		}
		return g.value(t.Elem(), def.Elem())
	case reflect.Struct:
		return g.object(t, def)
	case reflect.Slice:
		item := reflect.New(t.Elem()).Elem()
		if def.Len() > 0 {
			item = def.Index(0)
		}
		items := g.value(t.Elem(), item)
		delete(items, "default")
		return map[string]any{"type": "array", "items": items}
	case reflect.Map:
		vals := g.value(t.Elem(), reflect.New(t.Elem()).Elem())
		delete(vals, "default")
		return map[string]any{"type": "object", "additionalProperties": vals}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return map[string]any{"type": "integer"}
	}
	panic("config: no schema for type " + t.String())
}

// defaultOf returns the default held in v in its YAML form, if v holds
// one: zero values and mappings are no default.
func defaultOf(v reflect.Value) (any, bool) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, false
		}
		v = v.Elem()
	}
	if v.IsZero() || v.Kind() == reflect.Struct {
		return nil, false
	}
	switch x := v.Interface().(type) {
	case Duration:
		return x.String(), true
	case ByteSize:
		return x.String(), true
	}
	return v.Interface(), true
}

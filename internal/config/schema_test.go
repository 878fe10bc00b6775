package config

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := Schema(map[string]string{"Route.Policy": "Access policy."})
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	return s
}

// schemaAt follows property names (and "items" for lists) from the root.
func schemaAt(t *testing.T, s map[string]any, path ...string) map[string]any {
	t.Helper()
	for _, p := range path {
		var next any
		if p == "items" {
			next = s["items"]
		} else {
			props, _ := s["properties"].(map[string]any)
			next = props[p]
		}
		m, ok := next.(map[string]any)
		if !ok {
			t.Fatalf("schema has no %s in %v", p, path)
		}
		s = m
	}
	return s
}

func TestSchemaShape(t *testing.T) {
	s := loadSchema(t)
	if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", s["$schema"])
	}

	t.Run("every mapping with named keys refuses unknown keys", func(t *testing.T) {
		var walk func(path string, v any)
		count := 0
		walk = func(path string, v any) {
			m, ok := v.(map[string]any)
			if !ok {
				return
			}
			if m["type"] == "object" {
				count++
				_, named := m["properties"]
				if _, isMap := m["additionalProperties"].(map[string]any); isMap && !named {
					// A map of free keys (body_caps): its values have a schema.
				} else if m["additionalProperties"] != false {
					t.Errorf("%s: additionalProperties = %v, want false", path, m["additionalProperties"])
				}
			}
			for k, sub := range m {
				walk(path+"/"+k, sub)
			}
		}
		walk("", s)
		if count < 12 {
			t.Errorf("found %d object schemas, want one per mapping", count)
		}
	})

	tests := []struct {
		name string
		path []string
		key  string
		want any
	}{
		{"policy enum", []string{"routes", "items", "policy"}, "enum", []any{"public", "deny"}},
		{"policy description", []string{"routes", "items", "policy"}, "description", "Access policy."},
		{"route required keys", []string{"routes", "items"}, "required", []any{"name", "policy"}},
		{"routes required", nil, "required", []any{"keys", "routes"}},
		{"log level enum", []string{"log", "level"}, "enum", []any{"debug", "info", "warn", "error"}},
		{"challenge enum", []string{"tls", "acme", "challenges", "items"}, "enum", []any{"http-01", "tls-alpn-01"}},
		{"acme required keys", []string{"tls", "acme"}, "required", []any{"domains", "accept_tos"}},
		{"duration is a string", []string{"limits", "read_timeout"}, "type", "string"},
		{"duration default", []string{"limits", "read_timeout"}, "default", "1m"},
		{"size is a string or integer", []string{"limits", "max_header_bytes"}, "type", []any{"string", "integer"}},
		{"size default", []string{"routes", "items", "max_request_body"}, "default", "10MiB"},
		{"pointer-bool default", []string{"tls", "hsts", "include_subdomains"}, "default", true},
		{"list default", []string{"tls", "dev", "hosts"}, "default", []any{"localhost", "127.0.0.1", "::1"}},
		{"string default", []string{"listen", "admin"}, "default", "127.0.0.1:9090"},
		{"integer default", []string{"limits", "max_connections"}, "default", float64(10000)},
		{"route name pattern", []string{"routes", "items", "name"}, "pattern", routeNamePattern},
		{"pin pattern", []string{"routes", "items", "upstream_tls", "pin_spki", "items"}, "pattern", pinPattern},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := schemaAt(t, s, tt.path...)[tt.key]
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%v %s = %#v, want %#v", tt.path, tt.key, got, tt.want)
			}
		})
	}
}

// TestSchemaPatternsAgreeWithParsers checks that what the schema's
// patterns accept, the decoder accepts too, and the usual forms match.
func TestSchemaPatternsAgreeWithParsers(t *testing.T) {
	duration := regexp.MustCompile(durationPattern)
	for _, s := range []string{"0", "30s", "1.5s", "500ms", "2m", "1h30m", "365d", "730d", "+5s", "10us", "10µs", ".5s", "1h2m3s4ms"} {
		if !duration.MatchString(s) {
			t.Errorf("duration pattern refuses %q", s)
		}
		if _, err := ParseDuration(s); err != nil {
			t.Errorf("ParseDuration(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "30", "00", "s", "1d2h", "-5s", "5 s", "1.5d", "d", "5x"} {
		if duration.MatchString(s) {
			t.Errorf("duration pattern accepts %q", s)
		}
	}
	size := regexp.MustCompile(sizePattern)
	for _, s := range []string{"0", "1024", "64KiB", "10MiB", "1GiB", "10MB", "5 KB", "7B"} {
		if !size.MatchString(s) {
			t.Errorf("size pattern refuses %q", s)
		}
		if _, err := ParseByteSize(s); err != nil {
			t.Errorf("ParseByteSize(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "-1", "10 megabytes", "1.5MiB", "MiB", "10mib"} {
		if size.MatchString(s) {
			t.Errorf("size pattern accepts %q", s)
		}
	}
	pinRE := regexp.MustCompile(pinPattern)
	if !pinRE.MatchString(pin) || checkPin(pin) != nil {
		t.Errorf("pin %q refused", pin)
	}
	secret := regexp.MustCompile(secretPattern)
	for _, s := range []string{"env:A", "file:/run/k"} {
		if !secret.MatchString(s) || !isSecretRef(s) {
			t.Errorf("secret reference %q refused", s)
		}
	}
}

func TestReference(t *testing.T) {
	ref := Reference(map[string]string{"Route.Policy": "Access policy | public or deny."})
	for _, want := range []string{
		"### Top level\n",
		"### `routes[]`\n",
		"### `routes[].health_check`\n",
		"| `policy` | string | required | Access policy \\| public or deny. |",
		"| `max_age` | duration | `730d` |",
		"| `hosts` | list of strings | `[localhost, 127.0.0.1, ::1]` |",
		"| `write_timeout` | duration | `0s` |",
		"| `headers` | mapping, see [`headers`](#headers) | — |",
		"| `certificates` | list of mappings, see [`tls.certificates[]`](#tlscertificates) | — |",
	} {
		if !strings.Contains(ref, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	// Every key of every mapping has its row.
	var types []reflect.Type
	var collect func(t reflect.Type)
	collect = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || isLeaf(t) || slices.Contains(types, t) {
			return
		}
		types = append(types, t)
		for _, f := range yamlFields(t) {
			collect(t.Field(f.index).Type)
		}
	}
	collect(reflect.TypeFor[Config]())
	for _, typ := range types {
		for _, f := range yamlFields(typ) {
			if !strings.Contains(ref, "| `"+f.name+"` |") {
				t.Errorf("reference lacks key %s.%s", typ.Name(), f.name)
			}
		}
	}
}

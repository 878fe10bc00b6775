package openapi

import (
	"github.com/getkin/kin-openapi/openapi3"
)

// closer makes copies of schemas in which objects that do not say whether
// they take additional properties take none, the allowlist reading of a
// document. The document's own schemas are never changed: the same schema
// may be reached both on its own and as a member of an allOf, where it
// must stay open, so each reading gets its own copy.
//
// The rules, chosen so that a valid document keeps accepting what it
// describes:
//   - An object schema with properties (its own or from allOf members) and
//     no additionalProperties is closed to the names it and its allOf
//     members list. The members themselves stay open at their top level, so
//     that each sees the others' properties; they still validate the values.
//   - A free-form object (type object and no properties at all) stays open:
//     OpenAPI defines it as accepting any properties.
//   - A schema with oneOf or anyOf, patternProperties or
//     unevaluatedProperties stays open at its level, since its property
//     names cannot be known in advance. The alternatives of oneOf and anyOf
//     are closed when the schema declares no properties of its own (the
//     usual oneOf: [Cat, Dog]) and is not itself an allOf member; otherwise
//     they stay open at their top level too.
//   - Schemas under not are left as they are, since closing them would
//     widen what not refuses.
type closer struct {
	memo map[closeKey]*openapi3.Schema
	any  *openapi3.SchemaRef // accepts every value, for names an allOf member checks
}

type closeKey struct {
	s    *openapi3.Schema
	open bool // leave the top level open (an allOf member)
}

func newCloser() *closer {
	return &closer{
		memo: map[closeKey]*openapi3.Schema{},
		any:  &openapi3.SchemaRef{Value: &openapi3.Schema{}},
	}
}

// ref returns a closed copy of r, keeping its $ref string so that errors and
// discriminator mappings still name it.
func (c *closer) ref(r *openapi3.SchemaRef, open bool) *openapi3.SchemaRef {
	if r == nil || r.Value == nil {
		return r
	}
	return &openapi3.SchemaRef{Ref: r.Ref, Value: c.schema(r.Value, open)}
}

func (c *closer) refs(rs openapi3.SchemaRefs, open bool) openapi3.SchemaRefs {
	if rs == nil {
		return nil
	}
	out := make(openapi3.SchemaRefs, len(rs))
	for i, r := range rs {
		out[i] = c.ref(r, open)
	}
	return out
}

func (c *closer) schemas(m openapi3.Schemas) openapi3.Schemas {
	if m == nil {
		return nil
	}
	out := make(openapi3.Schemas, len(m))
	for k, r := range m {
		out[k] = c.ref(r, false)
	}
	return out
}

func (c *closer) schema(s *openapi3.Schema, open bool) *openapi3.Schema {
	k := closeKey{s, open}
	if cp := c.memo[k]; cp != nil {
		return cp
	}
	cp := new(openapi3.Schema)
	*cp = *s
	c.memo[k] = cp // before descending: schemas may be recursive

	names, known := propertyNames(s, map[*openapi3.Schema]bool{})
	// The alternatives of oneOf and anyOf are closed only when nothing
	// around them declares properties they would then refuse.
	altOpen := open || !known || len(names) > 0

	cp.Properties = c.schemas(s.Properties)
	cp.Items = c.ref(s.Items, false)
	cp.AdditionalProperties.Schema = c.ref(s.AdditionalProperties.Schema, false)
	cp.AllOf = c.refs(s.AllOf, true)
	cp.OneOf = c.refs(s.OneOf, altOpen)
	cp.AnyOf = c.refs(s.AnyOf, altOpen)
	cp.PrefixItems = c.refs(s.PrefixItems, false)
	cp.Contains = c.ref(s.Contains, false)
	cp.PatternProperties = c.schemas(s.PatternProperties)
	cp.DependentSchemas = c.schemas(s.DependentSchemas)
	cp.If = c.ref(s.If, false)
	cp.Then = c.ref(s.Then, false)
	cp.Else = c.ref(s.Else, false)
	cp.Defs = c.schemas(s.Defs)

	if open || !known || len(names) == 0 || !closable(s) {
		return cp
	}
	for _, n := range names {
		if cp.Properties[n] == nil {
			if cp.Properties == nil {
				cp.Properties = openapi3.Schemas{}
			}
			cp.Properties[n] = c.any
		}
	}
	closed := false
	cp.AdditionalProperties = openapi3.AdditionalProperties{Has: &closed}
	return cp
}

// closable reports whether s is an object schema that leaves additional
// properties unsaid.
func closable(s *openapi3.Schema) bool {
	ap := s.AdditionalProperties
	return ap.Has == nil && ap.Schema == nil &&
		(s.Type == nil || s.Type.Permits(openapi3.TypeObject)) &&
		len(s.OneOf) == 0 && len(s.AnyOf) == 0 &&
		len(s.PatternProperties) == 0 &&
		s.UnevaluatedProperties.Has == nil && s.UnevaluatedProperties.Schema == nil
}

// propertyNames lists the property names s and its allOf members declare.
// ok is false when they cannot be known: a member that takes additional
// properties, or one with oneOf, anyOf or patternProperties.
func propertyNames(s *openapi3.Schema, seen map[*openapi3.Schema]bool) (names []string, ok bool) {
	if seen[s] {
		return nil, true
	}
	seen[s] = true
	for n := range s.Properties {
		names = append(names, n)
	}
	for _, m := range s.AllOf {
		if m == nil || m.Value == nil {
			continue
		}
		v := m.Value
		if v.AdditionalProperties.Has != nil && *v.AdditionalProperties.Has ||
			v.AdditionalProperties.Schema != nil ||
			len(v.OneOf) > 0 || len(v.AnyOf) > 0 || len(v.PatternProperties) > 0 {
			return nil, false
		}
		more, ok := propertyNames(v, seen)
		if !ok {
			return nil, false
		}
		names = append(names, more...)
	}
	return names, true
}

// uses2020 reports whether a schema, or one it contains, has a keyword
// that JSON Schema 2020-12 added and kin-openapi's own validator does not
// implement (the list kin-openapi consults before it validates an OpenAPI
// 3.1 schema with its own validator), or nullable, which OpenAPI 3.1
// dropped but kin-openapi's own validator would honour.
func uses2020(r *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) bool {
	if r == nil || r.Value == nil || seen[r.Value] {
		return false
	}
	s := r.Value
	seen[s] = true
	if s.Nullable || s.Const != nil || len(s.PrefixItems) > 0 || s.Contains != nil ||
		len(s.PatternProperties) > 0 || len(s.DependentSchemas) > 0 || s.PropertyNames != nil ||
		s.UnevaluatedItems.Has != nil || s.UnevaluatedItems.Schema != nil ||
		s.UnevaluatedProperties.Has != nil || s.UnevaluatedProperties.Schema != nil ||
		s.If != nil || s.Then != nil || s.Else != nil ||
		len(s.DependentRequired) > 0 || len(s.Defs) > 0 || s.ContentSchema != nil {
		return true
	}
	if uses2020(s.Items, seen) || uses2020(s.AdditionalProperties.Schema, seen) || uses2020(s.Not, seen) {
		return true
	}
	for _, list := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, x := range list {
			if uses2020(x, seen) {
				return true
			}
		}
	}
	for _, x := range s.Properties {
		if uses2020(x, seen) {
			return true
		}
	}
	return false
}

package authz

import (
	"errors"
	"fmt"
	"net/textproto"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/moatgw/moat/internal/authn"
)

const (
	// maxExprLen bounds an expression's length in bytes.
	maxExprLen = 4 << 10
	// maxExprCost bounds what one evaluation may cost, in CEL's cost units
	// (about one per operation, more for string and list operations in
	// proportion to their sizes). Comparing a few fields costs tens;
	// comprehensions over roles or claims cost hundreds.
	maxExprCost = 10_000
)

// CEL type names of the two variables. Expressions cannot construct them.
const (
	requestTypeName   = "moat.Request"
	principalTypeName = "moat.Principal"
)

// celEnv is the environment every expression of a policy is compiled in.
type celEnv struct {
	env  *cel.Env
	prov *provider
}

// celProgram is a compiled expression.
type celProgram struct {
	src     string
	prg     cel.Program
	tracked bool // runs with the cost limit
}

func newCELEnv() (*celEnv, error) {
	e := &celEnv{}
	env, err := cel.NewEnv(
		func(env *cel.Env) (*cel.Env, error) {
			e.prov = newProvider(env.CELTypeProvider(), env.CELTypeAdapter())
			return cel.CustomTypeProvider(e.prov)(env)
		},
		ext.Strings(),
		cel.DefaultUTCTimeZone(true),
		cel.ParserExpressionSizeLimit(maxExprLen),
		cel.Variable("request", types.NewObjectType(requestTypeName)),
		cel.Variable("principal", types.NewObjectType(principalTypeName)),
	)
	if err != nil {
		return nil, err
	}
	e.env = env
	return e, nil
}

// compile parses, type-checks and plans src, an expression of type bool.
// Each error says where in src it is, with CEL's own message.
func (e *celEnv) compile(src string) (*celProgram, error) {
	return e.compileAs(src, types.BoolType)
}

// compileAs is compile for an expression of type want.
func (e *celEnv) compileAs(src string, want *types.Type) (*celProgram, error) {
	if len(src) > maxExprLen {
		return nil, fmt.Errorf("is %d bytes long, more than the limit of %d", len(src), maxExprLen)
	}
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("is blank")
	}
	ast, iss := e.env.Compile(src)
	if iss.Err() != nil {
		var errs []error
		for _, ce := range iss.Errors() {
			errs = append(errs, fmt.Errorf("%s: %s", position(src, ce.Location.Line(), ce.Location.Column()), ce.Message))
		}
		return nil, errors.Join(errs...)
	}
	switch t := ast.OutputType(); t.Kind() {
	case want.Kind(), types.DynKind:
	default:
		return nil, fmt.Errorf("must have type %s, has type %s", want, t)
	}
	// An expression that costs at most maxExprCost on inputs of the
	// assumed sizes runs without the cost tracker, which would double its
	// time: the bound shows that its cost grows no faster than its inputs,
	// since a product of two sizes (a comprehension over a list in a
	// comprehension, a string operation on each element of a list, a
	// replace) would already exceed it. Any other runs with the limit.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	est, err := e.env.EstimateCost(ast, sizeEstimator{})
	tracked := err != nil || est.Max > maxExprCost
	if tracked {
		opts = append(opts, cel.CostLimit(maxExprCost))
	}
	prg, err := e.env.Program(ast, opts...)
	if err != nil {
		return nil, err
	}
	return &celProgram{src: src, prg: prg, tracked: tracked}, nil
}

// Input sizes assumed for the static cost estimate: a string (a header
// value, a path, a claim) of at most 8 KiB, and lists and maps (roles,
// headers, claims) of at most 256 entries.
const (
	assumedStringLen = 8 << 10
	assumedEntries   = 256
)

// sizeEstimator gives the static cost estimate the sizes of inputs.
type sizeEstimator struct{}

// EstimateSize implements cost.Estimator.
func (sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	str := cost.RangedSizeEstimate(0, assumedStringLen)
	entries := cost.RangedSizeEstimate(0, assumedEntries)
	var s cost.SizeEstimate
	switch n.Type().Kind() {
	case types.StringKind, types.BytesKind:
		s = str
	case types.ListKind:
		s = cost.ListSizeEstimate(entries, str)
	case types.MapKind:
		s = cost.MapSizeEstimate(entries, str, str)
	default:
		return nil
	}
	return &s
}

// EstimateCallCost implements cost.Estimator: CEL's own estimates serve.
func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// position names a place in src for an error: the column, and the line
// when src has several. col counts from 0, as CEL reports it.
func position(src string, line, col int) string {
	if strings.Contains(src, "\n") {
		return fmt.Sprintf("at line %d, column %d", line, col+1)
	}
	return fmt.Sprintf("at column %d", col+1)
}

// eval runs p on st's request.
func (p *celProgram) eval(st *celState) (bool, error) {
	out, _, err := p.prg.Eval(st)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("returned a %s, not a bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// provider adds the request and principal object types to CEL's own.
type provider struct {
	types.Provider
	adapter   types.Adapter
	objects   map[string]*objectType
	headerTyp *types.Type // map(string, string)
	claimsTyp *types.Type // map(string, dyn)
}

type objectType struct {
	typ     *types.Type
	names   []string
	fields  map[string]*types.FieldType
	getters map[string]func(*celState) any
}

func newProvider(base types.Provider, adapter types.Adapter) *provider {
	p := &provider{
		Provider:  base,
		adapter:   adapter,
		objects:   map[string]*objectType{},
		headerTyp: types.NewMapType(types.StringType, types.StringType),
		claimsTyp: types.NewMapType(types.StringType, types.DynType),
	}
	strList := types.NewListType(types.StringType)
	// The principal's fields, empty for an anonymous request.
	var noPrincipal authn.Principal
	prin := func(st *celState) *authn.Principal {
		if p := st.r.Principal; p != nil {
			return p
		}
		return &noPrincipal
	}
	p.addObject(requestTypeName, requestOf, []field{
		{"method", types.StringType, func(st *celState) any { return types.String(st.r.Method) }},
		{"path", types.StringType, func(st *celState) any { return types.String(st.r.Path) }},
		{"headers", p.headerTyp, func(st *celState) any { return &st.headers }},
		{"query", p.headerTyp, func(st *celState) any { return &st.query }},
		{"ip", types.StringType, func(st *celState) any {
			if a := st.r.ClientIP; a.IsValid() {
				return types.String(a.Unmap().String())
			}
			return types.String("")
		}},
		{"time", types.TimestampType, func(st *celState) any { return types.Timestamp{Time: st.r.Time} }},
	})
	p.addObject(principalTypeName, principalOf, []field{
		{"authenticated", types.BoolType, func(st *celState) any { return types.Bool(st.r.Principal != nil) }},
		{"subject", types.StringType, func(st *celState) any { return types.String(prin(st).Subject) }},
		{"name", types.StringType, func(st *celState) any { return types.String(prin(st).Name) }},
		{"method", types.StringType, func(st *celState) any { return types.String(prin(st).Method) }},
		{"issuer", types.StringType, func(st *celState) any { return types.String(prin(st).Issuer) }},
		{"roles", strList, func(st *celState) any { return types.NewStringList(p.adapter, prin(st).Roles) }},
		{"scopes", strList, func(st *celState) any { return types.NewStringList(p.adapter, prin(st).Scopes) }},
		{"amr", strList, func(st *celState) any { return types.NewStringList(p.adapter, prin(st).AuthMethods) }},
		{"auth_time", types.TimestampType, func(st *celState) any { return types.Timestamp{Time: prin(st).AuthTime} }},
		{"claims", p.claimsTyp, func(st *celState) any { return &st.claims }},
	})
	return p
}

// field is a field of an object type: its name, its CEL type and how to
// get it for the request being decided.
type field struct {
	name string
	typ  *types.Type
	get  func(st *celState) any
}

func requestOf(target any) (*celState, bool) {
	v, ok := target.(*requestVal)
	if !ok {
		return nil, false
	}
	return v.st, true
}

func principalOf(target any) (*celState, bool) {
	v, ok := target.(*principalVal)
	if !ok {
		return nil, false
	}
	return v.st, true
}

// addObject declares an object type whose values of is the state of.
func (p *provider) addObject(name string, of func(any) (*celState, bool), fields []field) {
	o := &objectType{typ: types.NewObjectType(name), fields: map[string]*types.FieldType{}, getters: map[string]func(*celState) any{}}
	for _, f := range fields {
		o.names = append(o.names, f.name)
		o.getters[f.name] = f.get
		o.fields[f.name] = &types.FieldType{
			Type: f.typ,
			IsSet: func(target any) bool {
				_, ok := of(target)
				return ok
			},
			GetFrom: func(target any) (any, error) {
				st, ok := of(target)
				if !ok {
					return nil, fmt.Errorf("no field %s on a %T", f.name, target)
				}
				return f.get(st), nil
			},
		}
	}
	p.objects[name] = o
}

// FindStructType implements types.Provider.
func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if o, ok := p.objects[name]; ok {
		return types.NewTypeTypeWithParam(o.typ), true
	}
	return p.Provider.FindStructType(name)
}

// FindStructFieldNames implements types.Provider.
func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if o, ok := p.objects[name]; ok {
		return o.names, true
	}
	return p.Provider.FindStructFieldNames(name)
}

// FindStructFieldType implements types.Provider.
func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if o, ok := p.objects[name]; ok {
		ft, found := o.fields[fieldName]
		return ft, found
	}
	return p.Provider.FindStructFieldType(name, fieldName)
}

// NewValue implements types.Provider. The request and principal cannot be
// constructed in an expression.
func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.objects[name]; ok {
		return types.NewErr("%s cannot be constructed", name)
	}
	return p.Provider.NewValue(name, fields)
}

// celState is the activation an expression runs with: the variables
// request and principal, backed by a Request without copying it. States
// are pooled; one serves one Decide call at a time.
type celState struct {
	r       *Request
	prov    *provider
	req     requestVal
	prin    principalVal
	headers headerMap
	query   queryMap
	claims  claimsMap
}

func (e *celEnv) newState() *celState {
	st := &celState{prov: e.prov}
	st.req.st = st
	st.prin.st = st
	st.headers.st = st
	st.query.st = st
	st.claims.st = st
	return st
}

func (st *celState) reset(r *Request) {
	st.r = r
	st.headers.mat = nil
	st.query.mat = nil
	st.claims.mat = nil
}

// ResolveName implements interpreter.Activation.
func (st *celState) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		return &st.req, true
	case "principal":
		return &st.prin, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (st *celState) Parent() interpreter.Activation { return nil }

func (st *celState) field(typeName, name string) (any, bool) {
	get, ok := st.prov.objects[typeName].getters[name]
	if !ok {
		return nil, false
	}
	return get(st), true
}

// object is what requestVal and principalVal share: a CEL value that only
// its fields can be taken from.
type object struct{}

func (object) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("type conversion to %v not supported", t)
}

func (object) ConvertToType(ref.Type) ref.Val { return types.NewErr("type conversion not supported") }

type requestVal struct {
	object
	st *celState
}

// FindStringKey gives a field to an expression that reached the request
// as a dyn value, such as dyn(request).method.
func (v *requestVal) FindStringKey(k string) (any, bool) {
	return v.st.field(requestTypeName, k)
}

func (v *requestVal) Equal(o ref.Val) ref.Val { return types.Bool(o == ref.Val(v)) }
func (v *requestVal) Type() ref.Type          { return v.st.prov.objects[requestTypeName].typ }
func (v *requestVal) Value() any              { return v }

type principalVal struct {
	object
	st *celState
}

// FindStringKey is as for requestVal.
func (v *principalVal) FindStringKey(k string) (any, bool) {
	return v.st.field(principalTypeName, k)
}

func (v *principalVal) Equal(o ref.Val) ref.Val { return types.Bool(o == ref.Val(v)) }
func (v *principalVal) Type() ref.Type          { return v.st.prov.objects[principalTypeName].typ }
func (v *principalVal) Value() any              { return v }

// stringMap is a map(string, string) that finds single keys without
// copying its source, and builds a CEL map only for whatever else an
// expression does with it (iterate, compare, size).
type stringMap struct {
	st  *celState
	mat traits.Mapper
}

type headerMap struct{ stringMap }
type queryMap struct{ stringMap }

// lookup finds key among the request's headers, which CEL sees under
// lower-case names.
func (m *headerMap) lookup(key string) (string, bool) {
	h := m.st.r.Header
	if len(h) == 0 || len(key) == 0 {
		return "", false
	}
	var buf [128]byte
	if len(key) <= len(buf) {
		canon, ok := canonicalKey(buf[:0], key)
		if !ok {
			return "", false // an upper-case letter: no lower-case name has it
		}
		if vs := h[string(canon)]; len(vs) > 0 {
			return vs[0], true
		}
	}
	// A header map built by hand may hold a name in another spelling.
	best, found := "", false
	for k, vs := range h {
		if len(vs) > 0 && len(k) == len(key) && strings.ToLower(k) == key && (!found || k < best) {
			best, found = k, true
		}
	}
	if !found {
		return "", false
	}
	return h[best][0], true
}

// canonicalKey appends to dst the canonical form (textproto) of the
// lower-case header name key. It reports false when key has an upper-case
// letter.
func canonicalKey(dst []byte, key string) ([]byte, bool) {
	upper := true
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			return nil, false
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst, true
}

func (m *headerMap) materialize() traits.Mapper {
	if m.mat == nil {
		out := make(map[string]string, len(m.st.r.Header))
		src := make(map[string]string, len(m.st.r.Header))
		for k, vs := range m.st.r.Header {
			if len(vs) == 0 {
				continue
			}
			lk := strings.ToLower(k)
			// The canonical spelling wins, then the smallest, as lookup does.
			if prev, ok := src[lk]; ok && (prev == textproto.CanonicalMIMEHeaderKey(prev) || (k != textproto.CanonicalMIMEHeaderKey(k) && prev < k)) {
				continue
			}
			src[lk] = k
			out[lk] = vs[0]
		}
		m.mat = types.NewStringStringMap(m.st.prov.adapter, out)
	}
	return m.mat
}

func (m *queryMap) lookup(key string) (string, bool) {
	if vs := m.st.r.Query[key]; len(vs) > 0 {
		return vs[0], true
	}
	return "", false
}

func (m *queryMap) materialize() traits.Mapper {
	if m.mat == nil {
		out := make(map[string]string, len(m.st.r.Query))
		for k, vs := range m.st.r.Query {
			if len(vs) > 0 {
				out[k] = vs[0]
			}
		}
		m.mat = types.NewStringStringMap(m.st.prov.adapter, out)
	}
	return m.mat
}

// The methods below make headerMap and queryMap CEL maps (traits.Mapper).
// FindStringKey is the interpreter's shortcut for m["constant"].

func (m *headerMap) FindStringKey(k string) (any, bool) { return mapFindString(m.lookup, k) }
func (m *headerMap) Find(k ref.Val) (ref.Val, bool)     { return mapFind(m.lookup, k) }
func (m *headerMap) Get(k ref.Val) ref.Val              { return mapGet(m.lookup, k) }
func (m *headerMap) Contains(k ref.Val) ref.Val         { return mapContains(m.lookup, k) }
func (m *headerMap) Size() ref.Val                      { return m.materialize().Size() }
func (m *headerMap) Iterator() traits.Iterator          { return m.materialize().Iterator() }
func (m *headerMap) Equal(o ref.Val) ref.Val            { return m.materialize().Equal(o) }
func (m *headerMap) Type() ref.Type                     { return m.st.prov.headerTyp }
func (m *headerMap) Value() any                         { return m.materialize().Value() }
func (m *headerMap) ConvertToType(t ref.Type) ref.Val   { return m.materialize().ConvertToType(t) }
func (m *headerMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.materialize().ConvertToNative(t)
}

func (m *queryMap) FindStringKey(k string) (any, bool) { return mapFindString(m.lookup, k) }
func (m *queryMap) Find(k ref.Val) (ref.Val, bool)     { return mapFind(m.lookup, k) }
func (m *queryMap) Get(k ref.Val) ref.Val              { return mapGet(m.lookup, k) }
func (m *queryMap) Contains(k ref.Val) ref.Val         { return mapContains(m.lookup, k) }
func (m *queryMap) Size() ref.Val                      { return m.materialize().Size() }
func (m *queryMap) Iterator() traits.Iterator          { return m.materialize().Iterator() }
func (m *queryMap) Equal(o ref.Val) ref.Val            { return m.materialize().Equal(o) }
func (m *queryMap) Type() ref.Type                     { return m.st.prov.headerTyp }
func (m *queryMap) Value() any                         { return m.materialize().Value() }
func (m *queryMap) ConvertToType(t ref.Type) ref.Val   { return m.materialize().ConvertToType(t) }
func (m *queryMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.materialize().ConvertToNative(t)
}

// claimsMap is the principal's claims as a CEL map(string, dyn). Like
// stringMap, it finds a constant key without building the CEL map.
type claimsMap struct {
	st  *celState
	mat traits.Mapper
}

func (m *claimsMap) claims() map[string]any {
	if p := m.st.r.Principal; p != nil {
		return p.Claims
	}
	return nil
}

func (m *claimsMap) materialize() traits.Mapper {
	if m.mat == nil {
		m.mat = types.NewStringInterfaceMap(m.st.prov.adapter, m.claims())
	}
	return m.mat
}

// FindStringKey returns the claim as it is; the interpreter converts it.
func (m *claimsMap) FindStringKey(k string) (any, bool) {
	v, ok := m.claims()[k]
	return v, ok
}
func (m *claimsMap) Find(k ref.Val) (ref.Val, bool)   { return m.materialize().Find(k) }
func (m *claimsMap) Get(k ref.Val) ref.Val            { return m.materialize().Get(k) }
func (m *claimsMap) Contains(k ref.Val) ref.Val       { return m.materialize().Contains(k) }
func (m *claimsMap) Size() ref.Val                    { return m.materialize().Size() }
func (m *claimsMap) Iterator() traits.Iterator        { return m.materialize().Iterator() }
func (m *claimsMap) Equal(o ref.Val) ref.Val          { return m.materialize().Equal(o) }
func (m *claimsMap) Type() ref.Type                   { return m.st.prov.claimsTyp }
func (m *claimsMap) Value() any                       { return m.materialize().Value() }
func (m *claimsMap) ConvertToType(t ref.Type) ref.Val { return m.materialize().ConvertToType(t) }
func (m *claimsMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.materialize().ConvertToNative(t)
}

func mapFindString(lookup func(string) (string, bool), k string) (any, bool) {
	v, ok := lookup(k)
	if !ok {
		return nil, false
	}
	return types.String(v), true
}

func mapFind(lookup func(string) (string, bool), k ref.Val) (ref.Val, bool) {
	s, ok := k.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(k), false
	}
	v, ok := lookup(string(s))
	if !ok {
		return nil, false
	}
	return types.String(v), true
}

func mapGet(lookup func(string) (string, bool), k ref.Val) ref.Val {
	v, ok := mapFind(lookup, k)
	if !ok {
		return types.ValOrErr(v, "no such key: %v", k)
	}
	return v
}

func mapContains(lookup func(string) (string, bool), k ref.Val) ref.Val {
	v, ok := mapFind(lookup, k)
	if !ok && v != nil {
		return v
	}
	return types.Bool(ok)
}

// Compile-time checks that the maps are CEL maps.
var (
	_ traits.Mapper = (*headerMap)(nil)
	_ traits.Mapper = (*queryMap)(nil)
	_ traits.Mapper = (*claimsMap)(nil)
)

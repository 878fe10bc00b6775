package authz

import (
	"fmt"
	"sync"

	"cel.dev/cel-go/common/types"
)

// KeyExpr is a compiled CEL expression of type string over the same
// request and principal as access rules' expressions: the key a rate limit
// counts a request under, such as `principal.claims["org"]` (one allowance
// per organisation) or `request.headers["x-tenant"]`. It is safe for
// concurrent use.
//
// A key taken from what the client sends (a header, the query) lets the
// client choose its own allowance: combine such a limit with one per
// address.
type KeyExpr struct {
	prg    *celProgram
	states *sync.Pool
}

// CompileKey compiles src, which must have type string. The same bounds as
// for access rules apply: at most 4096 bytes, and a cost limit on
// expressions whose cost could grow faster than their inputs.
func CompileKey(src string) (*KeyExpr, error) {
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("building the expression environment: %w", err)
	}
	prg, err := env.compileAs(src, types.StringType)
	if err != nil {
		return nil, err
	}
	return &KeyExpr{prg: prg, states: &sync.Pool{New: func() any { return env.newState() }}}, nil
}

// Eval returns r's key. An error (a missing map key, a value of another
// type, the cost limit) means the expression has no answer for r; the
// caller decides what that means (a rate limit counts all such requests
// under one shared key).
func (k *KeyExpr) Eval(r *Request) (string, error) {
	st := k.states.Get().(*celState)
	st.reset(r)
	out, _, err := k.prg.prg.Eval(st)
	st.reset(nil)
	k.states.Put(st)
	if err != nil {
		return "", err
	}
	s, ok := out.(types.String)
	if !ok {
		return "", fmt.Errorf("returned a %s, not a string", out.Type().TypeName())
	}
	return string(s), nil
}

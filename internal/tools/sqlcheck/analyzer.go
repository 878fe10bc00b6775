package main

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/types/typeutil"
)

var analyzer = &analysis.Analyzer{
	Name: "sqlcheck",
	Doc: "report SQL queries that are not constant strings\n\n" +
		"The query argument of database/sql, pgx, pgxpool and pgconn query methods must be a " +
		"compile-time constant; values go in query parameters. A comment //sqlcheck:ok <reason> " +
		"on the line allows an exception, for quoted identifiers.",
	Run: run,
}

// okDirective marks a line whose query may be built.
const okDirective = "//sqlcheck:ok"

// method names a method by its receiver's package path and type name.
type method struct{ pkg, typ, name string }

// queryArgs maps each query-taking method to the index of its query
// argument.
var queryArgs = map[method]int{}

func init() {
	add := func(pkg string, types []string, args map[string]int) {
		for _, t := range types {
			for name, i := range args {
				queryArgs[method{pkg, t, name}] = i
			}
		}
	}
	add("database/sql", []string{"DB", "Tx", "Conn"}, map[string]int{
		"Query": 0, "QueryContext": 1, "QueryRow": 0, "QueryRowContext": 1,
		"Exec": 0, "ExecContext": 1, "Prepare": 0, "PrepareContext": 1,
	})
	// Query, QueryRow, Exec (ctx, sql, args...) and Prepare (ctx, name, sql).
	pgxArgs := map[string]int{"Query": 1, "QueryRow": 1, "Exec": 1, "Prepare": 2}
	add("github.com/jackc/pgx/v5", []string{"Conn", "Tx"}, pgxArgs)
	add("github.com/jackc/pgx/v5/pgxpool", []string{"Pool", "Conn", "Tx"}, pgxArgs)
	add("github.com/jackc/pgx/v5", []string{"Batch"}, map[string]int{"Queue": 0})
	add("github.com/jackc/pgx/v5/pgconn", []string{"PgConn"}, map[string]int{"Exec": 1, "ExecParams": 1, "Prepare": 2})
	add("github.com/jackc/pgx/v5/pgconn", []string{"Batch"}, map[string]int{"ExecParams": 0})
}

func run(pass *analysis.Pass) (any, error) {
	w := findWrappers(pass)
	for _, file := range pass.Files {
		ok := directives(pass.Fset, file)
		ast.Inspect(file, func(n ast.Node) bool {
			call, isCall := n.(*ast.CallExpr)
			if !isCall {
				return true
			}
			i, name, found := w.sink(pass.TypesInfo, call)
			if !found || i >= len(call.Args) {
				return true
			}
			arg := call.Args[i]
			if tv, has := pass.TypesInfo.Types[arg]; has && tv.Value != nil {
				return true
			}
			if id, isIdent := ast.Unparen(arg).(*ast.Ident); isIdent && w.params[pass.TypesInfo.Uses[id]] {
				// A wrapper passing its own query parameter on: its callers
				// are checked instead.
				return true
			}
			for _, pos := range []token.Pos{call.Pos(), arg.Pos(), arg.End()} {
				reason, marked := ok[pass.Fset.Position(pos).Line]
				if !marked {
					continue
				}
				if reason == "" {
					pass.Reportf(arg.Pos(), "%s without a reason: say why the query text of %s is safe to build", okDirective, name)
				}
				return true
			}
			pass.Reportf(arg.Pos(), "the query passed to %s is not a constant string%s: pass values as query parameters "+
				"($1, ?); for a quoted identifier, add %s <reason> on the line", name, how(pass.TypesInfo, arg), okDirective)
			return true
		})
	}
	return nil, nil
}

// wrappers are the package's own functions that pass a string parameter
// straight on as the query of a query-taking call (func (s *Store) exec(ctx,
// query string, args ...any)). Calls to them are checked like calls to
// database/sql, so a helper cannot hide a built query.
type wrappers struct {
	funcs  map[*types.Func]int // query argument index
	params map[types.Object]bool
}

// sink reports whether call takes a query, the index of that argument and a
// name for messages.
func (w wrappers) sink(info *types.Info, call *ast.CallExpr) (int, string, bool) {
	if m, name, found := queryMethod(info, call); found {
		return queryArgs[m], name, true
	}
	if fn, isFunc := typeutil.Callee(info, call).(*types.Func); isFunc {
		if i, found := w.funcs[fn]; found {
			return i, fn.Name(), true
		}
	}
	return 0, "", false
}

func findWrappers(pass *analysis.Pass) wrappers {
	w := wrappers{funcs: map[*types.Func]int{}, params: map[types.Object]bool{}}
	for changed := true; changed; {
		changed = false
		for _, file := range pass.Files {
			for _, decl := range file.Decls {
				fd, isFunc := decl.(*ast.FuncDecl)
				if !isFunc || fd.Body == nil {
					continue
				}
				fn, _ := pass.TypesInfo.Defs[fd.Name].(*types.Func)
				if fn == nil {
					continue
				}
				if _, known := w.funcs[fn]; known {
					continue
				}
				params := fn.Signature().Params()
				ast.Inspect(fd.Body, func(n ast.Node) bool {
					call, isCall := n.(*ast.CallExpr)
					if !isCall {
						return true
					}
					i, _, found := w.sink(pass.TypesInfo, call)
					if !found || i >= len(call.Args) {
						return true
					}
					id, isIdent := ast.Unparen(call.Args[i]).(*ast.Ident)
					if !isIdent {
						return true
					}
					obj := pass.TypesInfo.Uses[id]
					for pi := range params.Len() {
						if p := params.At(pi); p == obj && types.Identical(p.Type(), types.Typ[types.String]) {
							w.funcs[fn], w.params[p] = pi, true
							changed = true
						}
					}
					return true
				})
			}
		}
	}
	return w
}

// directives maps each line with a //sqlcheck:ok comment to its reason.
func directives(fset *token.FileSet, file *ast.File) map[int]string {
	lines := map[int]string{}
	for _, g := range file.Comments {
		for _, c := range g.List {
			rest, found := strings.CutPrefix(c.Text, okDirective)
			if !found || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
				continue
			}
			lines[fset.Position(c.Pos()).Line] = strings.TrimSpace(rest)
		}
	}
	return lines
}

// queryMethod reports whether call calls a query-taking method, and names
// it for messages ("sql.DB.QueryContext").
func queryMethod(info *types.Info, call *ast.CallExpr) (method, string, bool) {
	fn, isFunc := typeutil.Callee(info, call).(*types.Func)
	if !isFunc {
		return method{}, "", false
	}
	recv := fn.Signature().Recv()
	if recv == nil {
		return method{}, "", false
	}
	t := types.Unalias(recv.Type())
	if p, isPtr := t.(*types.Pointer); isPtr {
		t = types.Unalias(p.Elem())
	}
	named, isNamed := t.(*types.Named)
	if !isNamed || named.Obj().Pkg() == nil {
		return method{}, "", false
	}
	obj := named.Obj()
	m := method{obj.Pkg().Path(), obj.Name(), fn.Name()}
	if _, found := queryArgs[m]; !found {
		return method{}, "", false
	}
	return m, obj.Pkg().Name() + "." + obj.Name() + "." + fn.Name(), true
}

// how says, for the message, how a non-constant query was built when that
// is plain from the expression.
func how(info *types.Info, e ast.Expr) string {
	e = ast.Unparen(e)
	switch e := e.(type) {
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			return " (it is concatenated from values)"
		}
	case *ast.CallExpr:
		fn, isFunc := typeutil.Callee(info, e).(*types.Func)
		if !isFunc || fn.Pkg() == nil {
			break
		}
		switch {
		case fn.Pkg().Path() == "fmt" && strings.HasPrefix(fn.Name(), "Sprint"):
			return fmt.Sprintf(" (it is built with fmt.%s)", fn.Name())
		case fn.Name() == "String" && fn.Signature().Recv() != nil:
			if r := fn.Signature().Recv().Type().String(); r == "*strings.Builder" || r == "*bytes.Buffer" {
				return " (it is built with a " + strings.TrimPrefix(r, "*") + ")"
			}
		case fn.Pkg().Path() == "strings" && (fn.Name() == "Join" || fn.Name() == "Replace" || fn.Name() == "ReplaceAll"):
			return " (it is built with strings." + fn.Name() + ")"
		}
	}
	return ""
}

// Command genschema writes the JSON Schema of Moat's configuration file
// (moat.schema.json) and the key reference in docs/configuration.md, both
// built from the types of package config and their doc comments. go
// generate runs it in internal/config:
//
//	go generate ./internal/config
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"

	"github.com/moatgw/moat/internal/config"
)

// The generated reference sits between these lines of the docs page.
const (
	beginMarker = "<!-- BEGIN GENERATED REFERENCE: go generate ./internal/config -->"
	endMarker   = "<!-- END GENERATED REFERENCE -->"
)

func main() {
	src := flag.String("src", "config.go", "Go file declaring the configuration types")
	schemaPath := flag.String("schema", "../../moat.schema.json", "JSON Schema file to write")
	docsPath := flag.String("docs", "../../docs/configuration.md", "Markdown page whose reference section to rewrite")
	flag.Parse()
	if err := run(*src, *schemaPath, *docsPath); err != nil {
		fmt.Fprintln(os.Stderr, "genschema:", err)
		os.Exit(1)
	}
}

func run(src, schemaPath, docsPath string) error {
	page, err := os.ReadFile(docsPath)
	if err != nil {
		return err
	}
	schema, page, err := generate(src, page)
	if err != nil {
		return err
	}
	if err := os.WriteFile(schemaPath, schema, 0o644); err != nil {
		return err
	}
	return os.WriteFile(docsPath, page, 0o644)
}

// generate returns the schema and the docs page with its reference
// section replaced.
func generate(src string, page []byte) (schema, newPage []byte, err error) {
	docs, err := readDocs(src)
	if err != nil {
		return nil, nil, err
	}
	schema, err = config.Schema(docs)
	if err != nil {
		return nil, nil, fmt.Errorf("building schema: %w", err)
	}
	newPage, err = splice(page, config.Reference(docs))
	if err != nil {
		return nil, nil, err
	}
	return schema, newPage, nil
}

// readDocs returns the doc comments of the struct types declared in the
// Go file at path and of their exported fields, keyed "Type" and
// "Type.Field", each on one line.
func readDocs(path string) (map[string]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	docs := make(map[string]string)
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, spec := range gd.Specs {
			ts := spec.(*ast.TypeSpec)
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			doc := ts.Doc
			if doc == nil && len(gd.Specs) == 1 {
				doc = gd.Doc
			}
			docs[ts.Name.Name] = oneLine(doc)
			for _, fld := range st.Fields.List {
				for _, name := range fld.Names {
					if name.IsExported() {
						docs[ts.Name.Name+"."+name.Name] = oneLine(fld.Doc)
					}
				}
			}
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s declares no struct types", path)
	}
	return docs, nil
}

func oneLine(g *ast.CommentGroup) string {
	return strings.Join(strings.Fields(g.Text()), " ")
}

// splice replaces the lines between the markers in page with ref.
func splice(page []byte, ref string) ([]byte, error) {
	begin := bytes.Index(page, []byte(beginMarker+"\n"))
	end := bytes.Index(page, []byte(endMarker))
	if begin < 0 || end < begin {
		return nil, errors.New("docs page lacks the generated reference markers:\n" + beginMarker + "\n" + endMarker)
	}
	begin += len(beginMarker) + 1
	var out bytes.Buffer
	out.Write(page[:begin])
	out.WriteString("\n" + ref + "\n")
	out.Write(page[end:])
	return out.Bytes(), nil
}

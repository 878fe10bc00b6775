package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite moat.schema.json and the docs reference")

const (
	configSrc  = "../../config.go"
	schemaFile = "../../../../moat.schema.json"
	docsFile   = "../../../../docs/configuration.md"
)

// TestGeneratedFilesAreCurrent fails when the committed schema or docs
// reference no longer match the configuration types.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	if *update {
		if err := run(configSrc, schemaFile, docsFile); err != nil {
			t.Fatal(err)
		}
	}
	page, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	schema, newPage, err := generate(configSrc, page)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	const fix = "run: go generate ./internal/config (or go test ./internal/config/internal/genschema -update)"
	if !bytes.Equal(committed, schema) {
		t.Errorf("moat.schema.json is stale: %s", fix)
	}
	if !bytes.Equal(page, newPage) {
		t.Errorf("the reference in docs/configuration.md is stale: %s", fix)
	}
}

// TestEveryFieldIsDocumented makes sure the schema and reference describe
// every key: a field without a doc comment would leave a hole.
func TestEveryFieldIsDocumented(t *testing.T) {
	docs, err := readDocs(configSrc)
	if err != nil {
		t.Fatal(err)
	}
	for key, doc := range docs {
		if doc == "" {
			t.Errorf("%s has no doc comment", key)
		}
	}
	for _, key := range []string{"Config", "Route", "Route.Policy", "TLS.Dev", "HealthCheck.Interval"} {
		if docs[key] == "" {
			t.Errorf("no doc read for %s", key)
		}
	}
	if _, ok := docs["Config.src"]; ok {
		t.Error("unexported field documented")
	}
}

func TestSplice(t *testing.T) {
	page := "# Title\n\n" + beginMarker + "\nold\n" + endMarker + "\ntail\n"
	got, err := splice([]byte(page), "new")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\n" + beginMarker + "\n\nnew\n" + endMarker + "\ntail\n"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	again, _ := splice(got, "new")
	if !bytes.Equal(again, got) {
		t.Error("splice is not idempotent")
	}
	if _, err := splice([]byte("no markers"), "x"); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("got %v, want an error about the markers", err)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const textEntry = `{
  "schema_version": "1.3.1",
  "id": "GO-2022-1059",
  "modified": "0001-01-01T00:00:00Z",
  "aliases": ["CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"],
  "affected": [{
    "package": {"name": "golang.org/x/text", "ecosystem": "Go"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.3.8"}]}]
  }]
}`

const netEntry = `{
  "id": "GO-2023-2102",
  "modified": "2024-05-20T16:03:47Z",
  "affected": [
    {"package": {"name": "stdlib"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.21.3"}]}]},
    {"package": {"name": "golang.org/x/net"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.17.0"}]}]},
    {"package": {"name": "golang.org/x/net"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.18.0"}, {"fixed": "0.18.1"}]}]}
  ]
}`

const textEntry2 = `{"id": "GO-2021-0113", "modified": "2023-01-02T03:04:05Z",
  "affected": [{"package": {"name": "golang.org/x/text"}}]}`

func writeEntries(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuild(t *testing.T) {
	src := writeEntries(t, map[string]string{
		"GO-2022-1059.json": textEntry,
		"GO-2023-2102.json": netEntry,
		"GO-2021-0113.json": textEntry2,
		"README.md":         "not an entry",
	})
	dst := filepath.Join(t.TempDir(), "db")
	// A stale database at dst must be replaced, not merged.
	if err := os.MkdirAll(filepath.Join(dst, "ID"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "ID", "GO-1999-0001.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	st, err := build(src, dst, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if st.entries != 3 || st.modules != 3 {
		t.Errorf("stats = %+v, want 3 entries and 3 modules", st)
	}

	var db dbMeta
	readJSON(t, filepath.Join(dst, "index", "db.json"), &db)
	if want := time.Date(2024, 5, 20, 16, 3, 47, 0, time.UTC); !db.Modified.Equal(want) {
		t.Errorf("db modified = %v, want %v (the newest entry)", db.Modified, want)
	}

	var mods []moduleMeta
	readJSON(t, filepath.Join(dst, "index", "modules.json"), &mods)
	got := map[string][]string{}
	var order []string
	for _, m := range mods {
		order = append(order, m.Path)
		for _, v := range m.Vulns {
			got[m.Path] = append(got[m.Path], v.ID)
		}
	}
	wantMods := map[string][]string{
		"golang.org/x/net":  {"GO-2023-2102"},
		"golang.org/x/text": {"GO-2021-0113", "GO-2022-1059"},
		"stdlib":            {"GO-2023-2102"},
	}
	if !reflect.DeepEqual(got, wantMods) {
		t.Errorf("modules index = %v, want %v", got, wantMods)
	}
	if want := []string{"golang.org/x/net", "golang.org/x/text", "stdlib"}; !reflect.DeepEqual(order, want) {
		t.Errorf("modules order = %v, want %v", order, want)
	}

	var vulns []vulnMeta
	readJSON(t, filepath.Join(dst, "index", "vulns.json"), &vulns)
	if len(vulns) != 3 || vulns[0].ID != "GO-2021-0113" || vulns[1].ID != "GO-2022-1059" {
		t.Errorf("vulns index = %+v, want three entries sorted by id", vulns)
	}
	if want := []string{"CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"}; !reflect.DeepEqual(vulns[1].Aliases, want) {
		t.Errorf("aliases = %v, want %v", vulns[1].Aliases, want)
	}

	b, err := os.ReadFile(filepath.Join(dst, "ID", "GO-2022-1059.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != textEntry {
		t.Errorf("ID/GO-2022-1059.json differs from its source entry")
	}
	if _, err := os.Stat(filepath.Join(dst, "ID", "GO-1999-0001.json")); !os.IsNotExist(err) {
		t.Errorf("stale entry survived the rebuild (stat error %v)", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "ID", "README.md")); !os.IsNotExist(err) {
		t.Errorf("non-JSON file copied into the database (stat error %v)", err)
	}
}

func TestBuildModifiedFloor(t *testing.T) {
	src := writeEntries(t, map[string]string{"GO-2022-1059.json": textEntry})
	dst := filepath.Join(t.TempDir(), "db")
	floor := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)
	if _, err := build(src, dst, floor); err != nil {
		t.Fatal(err)
	}
	var db dbMeta
	readJSON(t, filepath.Join(dst, "index", "db.json"), &db)
	if !db.Modified.Equal(floor) {
		t.Errorf("db modified = %v, want the floor %v when entries carry a zero time", db.Modified, floor)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no entries", map[string]string{"notes.txt": "x"}, "no entries"},
		{"not json", map[string]string{"GO-2022-1059.json": "{"}, "decoding GO-2022-1059.json"},
		{"name is not the id", map[string]string{"GO-2022-9999.json": textEntry}, "does not match id"},
		{"missing id", map[string]string{"x.json": `{"affected": []}`}, "invalid id"},
		{"id with a path", map[string]string{"x.json": `{"id": "../x"}`}, "invalid id"},
		{"package without name", map[string]string{"GO-1.json": `{"id": "GO-1", "affected": [{"package": {}}]}`}, "without a name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := writeEntries(t, tt.files)
			dst := filepath.Join(t.TempDir(), "db")
			_, err := build(src, dst, time.Time{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("build error = %v, want one containing %q", err, tt.want)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("a failed build left %s behind (stat error %v)", dst, err)
			}
		})
	}
}

func TestRun(t *testing.T) {
	src := writeEntries(t, map[string]string{"GO-2022-1059.json": textEntry})
	dst := filepath.Join(t.TempDir(), "db")
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"ok", []string{"-src", src, "-dst", dst, "-modified", "2026-11-05T23:49:57Z"}, 0, "1 entries, 1 modules, modified 2026-11-05T23:49:57Z", ""},
		{"missing dst", []string{"-src", src}, 2, "", "usage:"},
		{"bad time", []string{"-src", src, "-dst", dst, "-modified", "yesterday"}, 2, "", "invalid -modified"},
		{"missing src dir", []string{"-src", filepath.Join(src, "nope"), "-dst", dst}, 1, "", "reading entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.code, errOut.String())
			}
			if !strings.Contains(out.String(), tt.out) {
				t.Errorf("stdout = %q, want it to contain %q", out.String(), tt.out)
			}
			if !strings.Contains(errOut.String(), tt.err) {
				t.Errorf("stderr = %q, want it to contain %q", errOut.String(), tt.err)
			}
		})
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

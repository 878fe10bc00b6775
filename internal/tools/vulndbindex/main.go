// Command vulndbindex turns a directory of OSV entries, such as the data/osv
// directory of the golang.org/x/vulndb module, into a Go vulnerability
// database that govulncheck can read offline with -db file://DIR.
//
// The output follows the database API described at
// https://go.dev/security/vuln/database#api:
//
//	DIR/index/db.json       {"modified": time of the newest entry}
//	DIR/index/modules.json  every affected module and the IDs of its entries
//	DIR/index/vulns.json    every entry's ID, modification time and aliases
//	DIR/ID/<ID>.json        the entries themselves, byte for byte
//
// Usage:
//
//	vulndbindex -src DIR -dst DIR [-modified RFC3339]
//
// The destination is built beside DST and renamed into place, so a reader
// never sees half a database. Any entry that cannot be read, is not an OSV
// object, or whose file name is not its ID stops the build: a database that
// silently missed entries would make a scan pass that should fail.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vulndbindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := fs.String("src", "", "directory of OSV entries named <ID>.json")
	dst := fs.String("dst", "", "directory to write the database to (replaced if it exists)")
	modified := fs.String("modified", "", "RFC 3339 time to record as the database's modification time when the entries carry an older one")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *src == "" || *dst == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: vulndbindex -src DIR -dst DIR [-modified RFC3339]")
		return 2
	}
	var floor time.Time
	if *modified != "" {
		t, err := time.Parse(time.RFC3339, *modified)
		if err != nil {
			fmt.Fprintf(stderr, "vulndbindex: invalid -modified: %v\n", err)
			return 2
		}
		floor = t.UTC()
	}
	st, err := build(*src, *dst, floor)
	if err != nil {
		fmt.Fprintf(stderr, "vulndbindex: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "vulndbindex: %d entries, %d modules, modified %s, written to %s\n",
		st.entries, st.modules, st.modified.Format(time.RFC3339), *dst)
	return 0
}

// entry is the part of an OSV entry that the indexes need.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

// dbMeta is index/db.json.
type dbMeta struct {
	Modified time.Time `json:"modified"`
}

// moduleMeta is one element of index/modules.json.
//
// The API also allows a "fixed" hint per vulnerability, the newest version
// that fixes it, which lets a client skip reading entries that cannot affect
// the version it has. It is left out: without it govulncheck reads each
// entry of the module and decides from the entry's own ranges, which is
// always exact, whereas a wrong hint would hide a vulnerability.
type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

// vulnMeta is one element of index/vulns.json.
type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

type stats struct {
	entries, modules int
	modified         time.Time
}

// validID is the shape of an entry ID; it keeps IDs usable as file names.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// build reads every *.json file directly in src and writes the database to
// dst. floor is the least modification time recorded in index/db.json.
func build(src, dst string, floor time.Time) (stats, error) {
	files, err := os.ReadDir(src)
	if err != nil {
		return stats{}, fmt.Errorf("reading entries: %w", err)
	}
	parent := filepath.Dir(filepath.Clean(dst))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return stats{}, fmt.Errorf("creating %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return stats{}, fmt.Errorf("creating build directory: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	if err := os.Chmod(tmp, 0o755); err != nil {
		return stats{}, err
	}
	if err := os.Mkdir(filepath.Join(tmp, "ID"), 0o755); err != nil {
		return stats{}, err
	}
	if err := os.Mkdir(filepath.Join(tmp, "index"), 0o755); err != nil {
		return stats{}, err
	}

	db := dbMeta{Modified: floor}
	modules := map[string]*moduleMeta{}
	var vulns []vulnMeta
	for _, f := range files {
		name := f.Name()
		if f.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return stats{}, fmt.Errorf("reading entry: %w", err)
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return stats{}, fmt.Errorf("decoding %s: %w", name, err)
		}
		if !validID.MatchString(e.ID) {
			return stats{}, fmt.Errorf("%s: invalid id %q", name, e.ID)
		}
		if name != e.ID+".json" {
			return stats{}, fmt.Errorf("%s: file name does not match id %s", name, e.ID)
		}
		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		seen := map[string]bool{}
		for _, a := range e.Affected {
			path := a.Package.Name
			if path == "" {
				return stats{}, fmt.Errorf("%s: affected package without a name", name)
			}
			if seen[path] {
				continue
			}
			seen[path] = true
			m := modules[path]
			if m == nil {
				m = &moduleMeta{Path: path}
				modules[path] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
		if err := os.WriteFile(filepath.Join(tmp, "ID", name), raw, 0o644); err != nil {
			return stats{}, fmt.Errorf("writing entry: %w", err)
		}
	}
	if len(vulns) == 0 {
		return stats{}, errors.New("no entries found in " + src)
	}

	slices.SortFunc(vulns, func(a, b vulnMeta) int { return strings.Compare(a.ID, b.ID) })
	mods := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		slices.SortFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *moduleMeta) int { return strings.Compare(a.Path, b.Path) })

	for name, v := range map[string]any{"db.json": db, "modules.json": mods, "vulns.json": vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return stats{}, fmt.Errorf("encoding %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "index", name), b, 0o644); err != nil {
			return stats{}, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if err := os.RemoveAll(dst); err != nil {
		return stats{}, fmt.Errorf("replacing %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return stats{}, fmt.Errorf("moving database into place: %w", err)
	}
	return stats{entries: len(vulns), modules: len(mods), modified: db.Modified}, nil
}

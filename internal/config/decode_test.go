package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// minimal is the smallest valid configuration.
const minimal = `tls:
  dev: {}
routes:
  - name: app
    policy: public
    upstreams: [http://127.0.0.1:8080]
`

// problemsOf returns err as Problems, failing the test when it is not.
func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want problems")
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) is not Problems", err, err)
	}
	return ps
}

func TestParseDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each problem line, in order
	}{
		{
			name: "unknown key with suggestion",
			yaml: "tls: {dev: {}}\nroutes:\n  - name: a\n    polcy: public\n",
			want: []string{`moat.yaml:4:5: routes[0].polcy: unknown key (did you mean "policy"?)`},
		},
		{
			name: "unknown key without close match lists known keys",
			yaml: "colour: blue\n",
			want: []string{`moat.yaml:1:1: colour: unknown key (known keys: data_dir, listen, limits, tls, trusted_proxies, reserved_headers, headers, log, database, keys, accounts, oidc, jwt, assertion, rate_limits, load_shedding, backup, routes)`},
		},
		{
			name: "dash instead of underscore",
			yaml: "limits:\n  max-connections: 5\n",
			want: []string{`moat.yaml:2:3: limits.max-connections: unknown key (did you mean "max_connections"?)`},
		},
		{
			name: "string where a list is expected",
			yaml: "trusted_proxies: 10.0.0.0/8\n",
			want: []string{`moat.yaml:1:18: trusted_proxies: want a list, got a string "10.0.0.0/8"`},
		},
		{
			name: "list where a mapping is expected",
			yaml: "listen: [a, b]\n",
			want: []string{`moat.yaml:1:9: listen: want a mapping, got a list`},
		},
		{
			name: "mapping where a string is expected",
			yaml: "data_dir: {a: b}\n",
			want: []string{`moat.yaml:1:11: data_dir: want a string, got a mapping`},
		},
		{
			name: "scalar where a pointer mapping is expected",
			yaml: "tls:\n  dev: yes\n",
			want: []string{`moat.yaml:2:8: tls.dev: want a mapping, got a string "yes"`},
		},
		{
			name: "string where a number is expected",
			yaml: "limits:\n  max_connections: lots\n",
			want: []string{`moat.yaml:2:20: limits.max_connections: want a whole number, got a string "lots"`},
		},
		{
			name: "fraction where a whole number is expected",
			yaml: "limits:\n  max_connections: 1.5\n",
			want: []string{`moat.yaml:2:20: limits.max_connections: want a whole number, got a number "1.5"`},
		},
		{
			name: "number too large",
			yaml: "limits:\n  max_connections: 99999999999999999999\n",
			want: []string{`moat.yaml:2:20: limits.max_connections: want a whole number, got a number "99999999999999999999"`},
		},
		{
			name: "YAML 1.1 boolean refused",
			yaml: "log:\n  access: yes\n",
			want: []string{`moat.yaml:2:11: log.access: want true or false, got a string "yes"`},
		},
		{
			name: "bad duration",
			yaml: "limits:\n  read_timeout: 30\n",
			want: []string{`moat.yaml:2:17: limits.read_timeout: invalid duration "30": want a number with a unit such as "30s", "5m" or "365d"`},
		},
		{
			name: "list where a duration is expected",
			yaml: "limits:\n  read_timeout: [30s]\n",
			want: []string{`moat.yaml:2:17: limits.read_timeout: want a duration such as "30s", got a list`},
		},
		{
			name: "bad size",
			yaml: "limits:\n  max_header_bytes: 10 megabytes\n",
			want: []string{`moat.yaml:2:21: limits.max_header_bytes: invalid size "10 megabytes": want a number of bytes or a size such as "64KiB" or "10MiB"`},
		},
		{
			name: "duplicate key",
			yaml: "data_dir: a\ndata_dir: b\n",
			want: []string{`moat.yaml:2:1: data_dir: duplicate key (first set at line 1:1)`},
		},
		{
			name: "duplicate key in a list item",
			yaml: "routes:\n  - name: a\n    name: b\n",
			want: []string{`moat.yaml:3:5: routes[0].name: duplicate key (first set at line 2:5)`},
		},
		{
			name: "empty value for a mapping",
			yaml: "tls:\n  dev:\n",
			want: []string{`moat.yaml:2:7: tls.dev: empty value: want a mapping (write {} for an empty mapping)`},
		},
		{
			name: "empty value for a list",
			yaml: "routes:\n",
			want: []string{`moat.yaml:1:8: routes: empty value: want a list (write [] for an empty list)`},
		},
		{
			name: "null scalar",
			yaml: "data_dir: ~\n",
			want: []string{`moat.yaml:1:11: data_dir: empty value: want a string`},
		},
		{
			name: "key that is not a name",
			yaml: "? [a]\n: b\n",
			want: []string{`moat.yaml:1:3: want a key name, not a list`},
		},
		{
			name: "empty file",
			yaml: "",
			want: []string{`moat.yaml: empty file: a configuration needs at least tls and routes`},
		},
		{
			name: "comments only",
			yaml: "# nothing yet\n",
			want: []string{`moat.yaml: empty file: a configuration needs at least tls and routes`},
		},
		{
			name: "empty document",
			yaml: "---\n",
			want: []string{`moat.yaml:2:1: empty document: a configuration needs at least tls and routes`},
		},
		{
			name: "top level is a list",
			yaml: "- a\n- b\n",
			want: []string{`moat.yaml:1:1: the top level must be a mapping of keys such as tls and routes, not a list`},
		},
		{
			name: "top level is a string",
			yaml: "hello\n",
			want: []string{`moat.yaml:1:1: the top level must be a mapping of keys such as tls and routes, not a string "hello"`},
		},
		{
			name: "two documents",
			yaml: minimal + "---\n" + minimal,
			want: []string{`moat.yaml:7:1: a second YAML document starts here: a configuration file holds exactly one`},
		},
		{
			name: "trailing document separator",
			yaml: minimal + "---\n",
			want: []string{`moat.yaml:7:1: a second YAML document starts here: a configuration file holds exactly one`},
		},
		{
			name: "syntax error has a line",
			yaml: "tls:\n  dev: {}\n routes: []\n",
			want: []string{`moat.yaml:2: did not find expected key`},
		},
		{
			name: "unknown anchor",
			yaml: "routes: *nope\n",
			want: []string{`moat.yaml: unknown anchor 'nope' referenced`},
		},
		{
			name: "every problem is reported, in file order",
			yaml: "listen:\n  htps: x\nlimits:\n  read_timeout: soon\nroutes:\n  - name: a\n    policy: public\n    upstream: [http://x]\n",
			want: []string{
				`moat.yaml:2:3: listen.htps: unknown key (did you mean "https"?)`,
				`moat.yaml:4:17: limits.read_timeout: invalid duration "soon": want a number with a unit such as "30s", "5m" or "365d"`,
				`moat.yaml:8:5: routes[0].upstream: unknown key (did you mean "upstreams"?)`,
			},
		},
		{
			name: "alias refers to its own anchor",
			yaml: "routes: &r [*r]\n",
			want: []string{`moat.yaml:1:9: routes[0]: want a mapping, got a list`},
		},
		{
			name: "merge of a scalar",
			yaml: "listen:\n  <<: 5\n",
			want: []string{`moat.yaml:2:7: listen: merge key (<<) wants a mapping or a list of mappings, not a number "5"`},
		},
		{
			name: "merge that contains itself",
			yaml: "listen: &l\n  <<: *l\n",
			want: []string{`moat.yaml:2:7: listen: merge key (<<) brings in a mapping that contains it`},
		},
		{
			name: "unknown key brought by a merge",
			yaml: "routes:\n  - &base\n    name: a\n    policy: public\n  - <<: *base\n    polcy: deny\n",
			want: []string{`moat.yaml:6:5: routes[1].polcy: unknown key (did you mean "policy"?)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("moat.yaml", []byte(tt.yaml))
			if c != nil {
				t.Errorf("got a config along with the error")
			}
			ps := problemsOf(t, err)
			var got []string
			for _, p := range ps {
				got = append(got, p.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err.Error() != strings.Join(got, "\n") {
				t.Errorf("Error() = %q, want one problem per line", err.Error())
			}
		})
	}
}

func TestProblemFormat(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{"everything", Problem{File: "m.yaml", Line: 3, Col: 5, Path: "routes[0].name", Msg: "bad"}, "m.yaml:3:5: routes[0].name: bad"},
		{"no column", Problem{File: "m.yaml", Line: 3, Msg: "bad"}, "m.yaml:3: bad"},
		{"no position", Problem{File: "m.yaml", Path: "tls", Msg: "bad"}, "m.yaml: tls: bad"},
		{"built in code", Problem{Path: "tls", Msg: "bad"}, "tls: bad"},
		{"message only", Problem{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseAnchorsAndMerges(t *testing.T) {
	const doc = `tls: {dev: {}}
routes:
  - &base
    name: orders
    path: /orders
    policy: public
    upstreams: &ups [http://10.0.0.5:8080]
    timeout: 10s
  - <<: *base
    name: invoices
    path: /invoices
  - <<: [{name: first, timeout: 1s}, {name: second, max_fails: 7}]
    path: /lists
    policy: deny
    upstreams: *ups
`
	c, err := Parse("moat.yaml", withKeys(doc))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes
	if len(r) != 3 {
		t.Fatalf("got %d routes, want 3", len(r))
	}
	if r[1].Name != "invoices" || r[1].Path != "/invoices" || r[1].Policy != PolicyPublic || r[1].Timeout.D().Seconds() != 10 {
		t.Errorf("merged route = %+v, want own name and path over the merged ones, other keys merged", r[1])
	}
	if r[2].Name != "first" || r[2].Timeout.D().Seconds() != 1 || r[2].MaxFails != 7 || r[2].Upstreams[0] != "http://10.0.0.5:8080" {
		t.Errorf("route merged from a list = %+v, want the first mapping to win and keys from both", r[2])
	}
}

func TestParseBoundsAliasExpansion(t *testing.T) {
	t.Run("aliased list in many routes", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("trusted_proxies: &p [")
		for i := range 1000 {
			fmt.Fprintf(&b, "10.0.%d.%d,", i/250, i%250)
		}
		b.WriteString("]\ntls: {dev: {}}\nroutes:\n")
		for range 200 {
			b.WriteString("  - {name: a, hosts: *p}\n")
		}
		ps := problemsOf(t, parseString(b.String()))
		if !strings.Contains(ps.Error(), "aliases expand to more than 100000 values") {
			t.Errorf("got %v, want the alias bound", ps)
		}
	})
	t.Run("nested merges", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("routes:\n  - &m0 {name: a, path: /, policy: public, upstreams: [http://x]}\n")
		for i := 1; i < 40; i++ {
			fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
		}
		ps := problemsOf(t, parseString(b.String()))
		if !strings.Contains(ps.Error(), "aliases expand to more than 100000 values") {
			t.Errorf("got %v, want the alias bound", ps)
		}
	})
}

func parseString(s string) error {
	_, err := Parse("moat.yaml", withKeys(s))
	return err
}

func TestParseStopsAfterTooManyProblems(t *testing.T) {
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "key%d: x\n", i)
	}
	ps := problemsOf(t, parseString(b.String()))
	if len(ps) != maxProblems+1 || ps[len(ps)-1].Msg != "too many problems; fix these first" {
		t.Errorf("got %d problems ending %q, want %d ending with the stop", len(ps), ps[len(ps)-1].Msg, maxProblems+1)
	}
}

func TestParseRefusesLargeFile(t *testing.T) {
	data := []byte(minimal + "# " + strings.Repeat("x", maxFileSize) + "\n")
	ps := problemsOf(t, parseString(string(data)))
	if !strings.Contains(ps.Error(), "file is too large") {
		t.Errorf("got %v", ps)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, withKeys(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Routes[0].Name != "app" {
		t.Errorf("loaded %+v", c)
	}

	t.Run("problems name the file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte("nope: 1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ps := problemsOf(t, func() error { _, err := Load(bad); return err }())
		if ps[0].File != bad {
			t.Errorf("problem file = %q, want %q", ps[0].File, bad)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "absent.yaml"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %v, want a not-exist error", err)
		}
	})
}

// withSecret stands for the later configuration sections that hold secrets.
type withSecret struct {
	Key Secret `yaml:"key"`
}

func TestDecodeSecretField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"env reference", "key: env:API_KEY\n", ""},
		{"file reference", "key: file:/run/secrets/k\n", ""},
		{"inline value refused", "key: hunter2-very-secret\n", "moat.yaml:1:6: key: secrets must be references (env:NAME or file:PATH), never written inline"},
		{"wrong type does not quote", "key: [hunter2-very-secret]\n", "moat.yaml:1:6: key: want a secret reference such as \"env:NAME\" or \"file:PATH\", got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tt.yaml), &doc); err != nil {
				t.Fatal(err)
			}
			d := &decoder{src: &source{file: "moat.yaml", pos: map[string]position{}}, active: map[*yaml.Node]bool{}}
			var v withSecret
			d.value(doc.Content[0], reflect.ValueOf(&v).Elem(), "")
			got := d.problems.Error()
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if strings.Contains(got, "hunter2") {
				t.Errorf("problem %q quotes the secret", got)
			}
		})
	}
}

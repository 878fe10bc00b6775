package ftw

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatgw/moat/internal/waf"
)

// passFloor is the share of the CRS regression tests, ignored ones left
// out, that must pass. Raise it when the pass rate improves.
const passFloor = 0.995

const crsModule = "github.com/corazawaf/coraza-coreruleset/v4"

// crsTestsDir finds the tests/ folder of the rule set module in the module
// cache: through `go list` (which knows replace directives and GOFLAGS),
// or else through the version this test binary was built with.
func crsTestsDir(t *testing.T) string {
	t.Helper()
	var tried []string
	if out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", crsModule).Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			tried = append(tried, dir)
		}
	} else {
		t.Logf("go list -m %s: %v", crsModule, err)
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == crsModule {
				cache := os.Getenv("GOMODCACHE")
				if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil && cache == "" {
					cache = strings.TrimSpace(string(out))
				}
				if cache != "" {
					tried = append(tried, filepath.Join(cache, filepath.FromSlash(crsModule)+"@"+d.Version))
				}
			}
		}
	}
	for _, dir := range tried {
		tests := filepath.Join(dir, "tests")
		if fi, err := os.Stat(tests); err == nil && fi.IsDir() {
			return tests
		}
	}
	t.Fatalf("the CRS regression tests of %s are not in the module cache (looked in %v); run go mod download", crsModule, tried)
	return ""
}

// ignoreList is testdata/ignore.yaml: what is not run, and why.
type ignoreList struct {
	Directories map[string]string `yaml:"directories"`
	Tests       map[string]string `yaml:"tests"`
}

func loadIgnore(t *testing.T) ignoreList {
	t.Helper()
	b, err := os.ReadFile("testdata/ignore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var l ignoreList
	if err := yaml.Unmarshal(b, &l); err != nil {
		t.Fatalf("testdata/ignore.yaml: %v", err)
	}
	for k, reason := range l.Tests {
		if strings.TrimSpace(reason) == "" {
			t.Errorf("testdata/ignore.yaml: test %s is ignored without a reason", k)
		}
	}
	for k, reason := range l.Directories {
		if strings.TrimSpace(reason) == "" {
			t.Errorf("testdata/ignore.yaml: directory %s is ignored without a reason", k)
		}
	}
	return l
}

// regressionWAF is set up as the CRS expects for its tests: detection at
// paranoia level 4, and the limits of the CRS test configuration.
func regressionWAF(t *testing.T) *waf.WAF {
	t.Helper()
	w, err := waf.New(waf.Config{
		Mode:          waf.Detect,
		ParanoiaLevel: 4,
		Variables: map[string]string{
			"crs_validate_utf8_encoding": "1",
			"arg_name_length":            "100",
			"arg_length":                 "400",
			"total_arg_length":           "64000",
			"max_num_args":               "255",
			"max_file_size":              "64100",
			"combined_file_sizes":        "65535",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// rulesHeader carries the matched rule ids from the test server back to
// the runner.
const rulesHeader = "X-Ftw-Rules"

func regressionServer(t *testing.T, w *waf.WAF) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		v, err := w.Check(r)
		if err != nil {
			http.Error(rw, "check failed", http.StatusBadRequest)
			return
		}
		ids := make([]string, 0, len(v.Matches)+1)
		for _, m := range v.Matches {
			ids = append(ids, strconv.Itoa(m.ID))
		}
		rw.Header().Set(rulesHeader, strings.Join(append(ids, "0"), ","))
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(rw, "ok\n")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func parseIDs(h string) []int {
	var ids []int
	for s := range strings.SplitSeq(h, ",") {
		if n, err := strconv.Atoi(s); err == nil && n != 0 {
			ids = append(ids, n)
		}
	}
	return ids
}

type outcome struct {
	name    string
	ignored string  // the reason, when ignored
	errs    []error // why it failed
}

func runTest(addr string, f File, tc Test) []error {
	var errs []error
	for i, s := range tc.Stages {
		if why := s.Unsupported(); why != "" {
			return []error{fmt.Errorf("stage %d: unsupported: %s", i+1, why)}
		}
		raw, method, err := Build(s.Input)
		if err != nil {
			return []error{fmt.Errorf("stage %d: %w", i+1, err)}
		}
		resp := Send(addr, raw, method, time.Now().Add(60*time.Second))
		var ids []int
		if resp.Header != nil {
			ids = parseIDs(resp.Header.Get(rulesHeader))
		}
		for _, e := range Judge(s.Output, resp, ids) {
			errs = append(errs, fmt.Errorf("stage %d: %w", i+1, e))
		}
	}
	return errs
}

// TestCRSRegression runs the rule set's own regression tests against the
// WAF in detect mode at paranoia level 4 and fails when fewer than
// passFloor of them pass.
func TestCRSRegression(t *testing.T) {
	if testing.Short() {
		t.Skip("runs thousands of requests")
	}
	if raceDetector {
		t.Skip("runs without -race, in .ci/run's attack step")
	}
	dir := crsTestsDir(t)
	files, err := Load(os.DirFS(dir), ".")
	if err != nil {
		t.Fatal(err)
	}
	ignore := loadIgnore(t)
	addr := regressionServer(t, regressionWAF(t))

	type job struct {
		f  File
		tc Test
	}
	var jobs []job
	seen := map[string]bool{}
	dirs := map[string]bool{}
	for _, f := range files {
		dirs[f.Dir] = true
		for _, tc := range f.Tests {
			jobs = append(jobs, job{f, tc})
			seen[TestName(f.RuleID, tc.ID)] = true
		}
	}
	for name := range ignore.Tests {
		if !seen[name] {
			t.Errorf("testdata/ignore.yaml names test %s, which does not exist", name)
		}
	}
	for name := range ignore.Directories {
		if !dirs[name] {
			t.Errorf("testdata/ignore.yaml names directory %s, which does not exist", name)
		}
	}

	results := make([]outcome, len(jobs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				j := jobs[i]
				name := TestName(j.f.RuleID, j.tc.ID)
				o := outcome{name: name}
				if why, ok := ignore.Directories[j.f.Dir]; ok {
					o.ignored = why
				} else if why, ok := ignore.Tests[name]; ok {
					o.ignored = why
				} else {
					o.errs = runTest(addr, j.f, j.tc)
				}
				results[i] = o
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()

	var passed, failed, ignored int
	var failures []outcome
	for _, o := range results {
		switch {
		case o.ignored != "":
			ignored++
		case len(o.errs) > 0:
			failed++
			failures = append(failures, o)
		default:
			passed++
		}
	}
	slices.SortFunc(failures, func(a, b outcome) int { return cmp.Compare(a.name, b.name) })
	for _, o := range failures {
		t.Logf("FAIL %s: %v", o.name, errors.Join(o.errs...))
	}
	run := passed + failed
	rate := float64(passed) / float64(max(run, 1))
	t.Logf("CRS regression: %d passed, %d failed, %d ignored, %d total; pass rate %.2f%% (floor %.2f%%)",
		passed, failed, ignored, len(results), 100*rate, 100*passFloor)
	if run == 0 || rate < passFloor {
		t.Errorf("pass rate %.2f%% is below the floor of %.2f%%", 100*rate, 100*passFloor)
	}
}

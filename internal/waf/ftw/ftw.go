// Package ftw reads the OWASP Core Rule Set's regression tests, written in
// the go-ftw YAML format, turns each stage's input into the exact bytes of
// an HTTP/1.x request, sends it over a plain TCP connection, and judges the
// outcome against the stage's expected output: the rule ids that must and
// must not have matched, and the response status.
//
// It understands the fields the CRS v4 tests use: method, uri, version,
// headers, data, autocomplete_headers (stop_magic), encoded_request and
// raw_request on the input side; status, expect_error and log.expect_ids /
// log.no_expect_ids on the output side. Assertions on the text of an
// engine's log (log.match_regex, log.no_match_regex) cannot be judged from
// rule ids and are reported as unsupported, like any other unknown
// expectation. The request bytes follow go-ftw's rules: headers sorted by
// name, a form Content-Type and Content-Length added to a request with
// data, form data URL-encoded when it is not already, multipart data sent
// with CRLF line ends, and the template action {{ "S" | repeat N }} in data
// expanded.
//
// See https://github.com/coreruleset/go-ftw for the format.
package ftw

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is one YAML test file, usually holding the tests of one rule.
type File struct {
	Dir    string // the directory it was read from, such as "REQUEST-942-APPLICATION-ATTACK-SQLI"
	Name   string // the file name
	RuleID int    `yaml:"rule_id"`
	Tests  []Test `yaml:"tests"`
}

// Test is one test case: stages run in order.
type Test struct {
	ID     int     `yaml:"test_id"`
	Desc   string  `yaml:"desc"`
	Stages []Stage `yaml:"stages"`
}

// Stage is one request and what must come of it.
type Stage struct {
	Input  Input  `yaml:"input"`
	Output Output `yaml:"output"`
	// Stage is the older form, where input and output sit one level
	// deeper.
	Stage *Stage `yaml:"stage"`
}

// Input describes the request to send.
type Input struct {
	Method              *string           `yaml:"method"`
	URI                 *string           `yaml:"uri"`
	Version             *string           `yaml:"version"`
	Headers             map[string]string `yaml:"headers"`
	Data                *string           `yaml:"data"`
	AutocompleteHeaders *bool             `yaml:"autocomplete_headers"`
	StopMagic           *bool             `yaml:"stop_magic"`
	EncodedRequest      string            `yaml:"encoded_request"`
	RawRequest          string            `yaml:"raw_request"`
	Protocol            string            `yaml:"protocol"`
	DestAddr            string            `yaml:"dest_addr"`
	Port                int               `yaml:"port"`
}

// Output is what a stage expects.
type Output struct {
	Status      *int  `yaml:"status"`
	ExpectError *bool `yaml:"expect_error"`
	Log         Log   `yaml:"log"`
	// LogContains and NoLogContains are the older form of the log
	// expectations, as text such as `id "942100"`.
	LogContains   string `yaml:"log_contains"`
	NoLogContains string `yaml:"no_log_contains"`
	// Other expectations are kept so that a test relying on one is
	// reported as unsupported rather than passed.
	ResponseContains string `yaml:"response_contains"`
}

// Log is the expectation on the engine's log.
type Log struct {
	ExpectIDs    []int  `yaml:"expect_ids"`
	NoExpectIDs  []int  `yaml:"no_expect_ids"`
	MatchRegex   string `yaml:"match_regex"`
	NoMatchRegex string `yaml:"no_match_regex"`
}

// TestName is "RULE-TEST", the name the CRS uses for a test.
func TestName(ruleID, testID int) string {
	return strconv.Itoa(ruleID) + "-" + strconv.Itoa(testID)
}

// Parse decodes one test file.
func Parse(data []byte) (File, error) {
	var f File
	if err := yaml.Unmarshal(data, &f); err != nil {
		return File{}, fmt.Errorf("decoding test file: %w", err)
	}
	for i := range f.Tests {
		for j, s := range f.Tests[i].Stages {
			if s.Stage != nil {
				f.Tests[i].Stages[j] = *s.Stage
			}
		}
	}
	return f, nil
}

// Load reads every *.yaml file below root in fsys, in lexical order.
func Load(fsys fs.FS, root string) ([]File, error) {
	var files []File
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		f, err := Parse(b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		f.Dir = path.Base(path.Dir(p))
		f.Name = path.Base(p)
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading regression tests: %w", err)
	}
	return files, nil
}

// Unsupported returns why the runner cannot judge s, or "" when it can.
func (s Stage) Unsupported() string {
	o := s.Output
	switch {
	case o.Log.MatchRegex != "" || o.Log.NoMatchRegex != "":
		return "asserts on the engine's log text (match_regex)"
	case o.ResponseContains != "":
		return "asserts on the response body"
	case s.Input.Protocol != "" && s.Input.Protocol != "http":
		return "protocol " + s.Input.Protocol
	}
	if _, err := logIDs(o.LogContains); err != nil {
		return "log_contains: " + err.Error()
	}
	if _, err := logIDs(o.NoLogContains); err != nil {
		return "no_log_contains: " + err.Error()
	}
	return ""
}

// logIDs reads the rule ids from the older text form, `id "942100"`,
// possibly several joined by |.
func logIDs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var ids []int
	for alt := range strings.SplitSeq(s, "|") {
		alt = strings.TrimSpace(alt)
		rest, ok := strings.CutPrefix(alt, `id "`)
		if !ok {
			return nil, fmt.Errorf("%q is not id \"N\"", alt)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(rest, `"`))
		if err != nil {
			return nil, fmt.Errorf("%q is not id \"N\"", alt)
		}
		ids = append(ids, n)
	}
	return ids, nil
}

// methodsWithBody are the methods for which go-ftw always sends a
// Content-Length. It matches like go-ftw's unanchored pattern
// `^POST|PUT|PATCH|DELETE$`.
func methodsWithBody(m string) bool {
	return strings.HasPrefix(m, "POST") || strings.Contains(m, "PUT") ||
		strings.Contains(m, "PATCH") || strings.HasSuffix(m, "DELETE")
}

// Build returns the bytes of the request in, and its method.
func Build(in Input) (raw []byte, method string, err error) {
	if in.EncodedRequest != "" {
		clean := strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, in.EncodedRequest)
		raw, err := base64.StdEncoding.DecodeString(clean)
		if err != nil {
			return nil, "", fmt.Errorf("encoded_request: %w", err)
		}
		m, _, _ := bytes.Cut(raw, []byte(" "))
		return raw, string(m), nil
	}
	if in.RawRequest != "" {
		m, _, _ := strings.Cut(in.RawRequest, " ")
		return []byte(in.RawRequest), m, nil
	}

	method, uri, version := deref(in.Method, "GET"), deref(in.URI, "/"), deref(in.Version, "HTTP/1.1")
	auto := true
	if in.AutocompleteHeaders != nil {
		auto = *in.AutocompleteHeaders
	}
	if in.StopMagic != nil && *in.StopMagic {
		auto = false
	}
	headers := make(map[string]string, len(in.Headers)+3)
	for k, v := range in.Headers {
		headers[k] = v
	}
	addHeader := func(k, v string) {
		if headers[k] == "" {
			headers[k] = v
		}
	}
	data := []byte(expandRepeat(deref(in.Data, "")))
	if len(data) > 0 && auto {
		addHeader("Content-Type", "application/x-www-form-urlencoded")
		if data, err = encodeForm(headers["Content-Type"], data); err != nil {
			return nil, "", err
		}
	}
	if strings.HasPrefix(headers["Content-Type"], "multipart/form-data;") {
		data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	}
	if auto {
		addHeader("Connection", "close")
		if len(data) > 0 || methodsWithBody(method) {
			addHeader("Content-Length", strconv.Itoa(len(data)))
		}
	}

	var b bytes.Buffer
	b.WriteString(method + " " + uri + " " + version + "\r\n")
	for _, k := range slices.Sorted(maps.Keys(headers)) {
		b.WriteString(k + ": " + headers[k] + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(data)
	return b.Bytes(), method, nil
}

// repeatAction is the one template action the CRS tests use in data:
// {{ "S" | repeat N }}.
var repeatAction = regexp.MustCompile(`\{\{\s*"([^"]*)"\s*\|\s*repeat\s+([0-9]{1,7})\s*\}\}`)

// expandRepeat expands {{ "S" | repeat N }} to S repeated N times, as
// go-ftw's templates do; other text is left as it is.
func expandRepeat(s string) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	return repeatAction.ReplaceAllStringFunc(s, func(m string) string {
		sub := repeatAction.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[2])
		return strings.Repeat(sub[1], n)
	})
}

func deref(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// encodeForm URL-encodes the keys and values of form data that is not
// encoded yet (unescaping it changes nothing), as go-ftw does.
func encodeForm(contentType string, data []byte) ([]byte, error) {
	if contentType != "application/x-www-form-urlencoded" {
		return data, nil
	}
	unescaped, err := url.QueryUnescape(string(data))
	if unescaped != string(data) {
		return data, nil
	}
	if err != nil {
		return nil, fmt.Errorf("data %q is neither encoded nor encodable", data)
	}
	var b bytes.Buffer
	for pair := range strings.SplitSeq(string(data), "&") {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		k, v, hasValue := strings.Cut(pair, "=")
		b.WriteString(url.QueryEscape(k))
		if hasValue {
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(v))
		}
	}
	return b.Bytes(), nil
}

// Response is what came back for one request.
type Response struct {
	Status int
	Header http.Header
	Err    error // the request could not be sent or no response was read
}

// Send writes raw to a new TCP connection to addr and reads one response.
// The deadline bounds the whole exchange.
func Send(addr string, raw []byte, method string, deadline time.Time) Response {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return Response{Err: err}
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(raw); err != nil {
		return Response{Err: err}
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return Response{Err: err}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return Response{Status: resp.StatusCode, Header: resp.Header}
}

// Judge compares a response, and the ids of the rules that matched the
// request (nil when the request never reached the engine), with out. It
// returns every way they differ, or nil when the stage passes.
func Judge(out Output, resp Response, ids []int) []error {
	var errs []error
	if out.ExpectError != nil && *out.ExpectError {
		if resp.Err == nil && resp.Status < 400 {
			errs = append(errs, fmt.Errorf("expected an error, got status %d", resp.Status))
		}
	} else if resp.Err != nil {
		return []error{fmt.Errorf("no response: %w", resp.Err)}
	}
	if out.Status != nil && resp.Err == nil && resp.Status != *out.Status {
		errs = append(errs, fmt.Errorf("status %d, want %d", resp.Status, *out.Status))
	}
	expect := slices.Clone(out.Log.ExpectIDs)
	noExpect := slices.Clone(out.Log.NoExpectIDs)
	if l, _ := logIDs(out.LogContains); len(l) > 0 {
		// Alternatives: one of them is enough.
		if !slices.ContainsFunc(l, func(id int) bool { return slices.Contains(ids, id) }) {
			errs = append(errs, fmt.Errorf("none of %v matched (matched %v)", l, ids))
		}
	}
	if l, _ := logIDs(out.NoLogContains); len(l) > 0 {
		noExpect = append(noExpect, l...)
	}
	for _, id := range expect {
		if !slices.Contains(ids, id) {
			errs = append(errs, fmt.Errorf("rule %d did not match (matched %v)", id, ids))
		}
	}
	for _, id := range noExpect {
		if slices.Contains(ids, id) {
			errs = append(errs, fmt.Errorf("rule %d matched and must not have", id))
		}
	}
	return errs
}

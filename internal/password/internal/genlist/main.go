// Command genlist builds the breached-password list that package password
// embeds (data/breached.txt.gz) from the source lists named in
// data/SOURCE.md.
//
// Every entry is trimmed of surrounding white space, NFKC-normalised and
// lower-cased exactly as Policy.Check treats a candidate password. Entries
// shorter than 8 code points are dropped (they fail the lowest minimum length
// that Policy accepts before the list is consulted), as are entries that are
// not valid UTF-8 or hold control characters. The ranked sources (-json and
// the first -top lines of -ranked) are kept from 8 code points; the unranked
// rest of -ranked only from -restmin code points, which keeps the embedded
// file small. The result is deduplicated, sorted bytewise, written one per
// line and gzipped with a fixed header so that the same inputs always give
// the same bytes.
//
// Usage, from the repository root:
//
//	go run ./internal/password/internal/genlist \
//		-json /tmp/pw/zxcvbn/package/src/passwords.json \
//		-ranked /tmp/pw/blacklist/package/data/passwords.txt.gz \
//		-top 100000 -restmin 9 \
//		-out internal/password/data/breached.txt.gz
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// minLen is the shortest entry kept, in code points: the lowest minimum
// length that password.Policy accepts.
const minLen = 8

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "genlist:", err)
		os.Exit(1)
	}
}

func run(args []string, log io.Writer) error {
	fs := flag.NewFlagSet("genlist", flag.ContinueOnError)
	jsonPath := fs.String("json", "", "a JSON array of passwords, most common first")
	rankedPath := fs.String("ranked", "", "a text file (optionally .gz) of passwords, one a line, most common first")
	top := fs.Int("top", 100000, "how many lines of -ranked are ranked by frequency")
	restMin := fs.Int("restmin", 0, "keep lines of -ranked past -top from this many code points (0: skip them)")
	out := fs.String("out", "", "the gzip file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || (*jsonPath == "" && *rankedPath == "") {
		return errors.New("want -out and at least one of -json, -ranked")
	}

	set := map[string]struct{}{}
	read := 0
	if *jsonPath != "" {
		n, err := addJSON(set, *jsonPath)
		if err != nil {
			return err
		}
		read += n
	}
	if *rankedPath != "" {
		n, err := addRanked(set, *rankedPath, *top, *restMin)
		if err != nil {
			return err
		}
		read += n
	}

	entries := make([]string, 0, len(set))
	for e := range set {
		entries = append(entries, e)
	}
	slices.Sort(entries)

	var raw bytes.Buffer
	for _, e := range entries {
		raw.WriteString(e)
		raw.WriteByte('\n')
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	// The zero Header has no name and no time: the output is reproducible.
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(*out, gz.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(log, "read %d entries, kept %d; %d bytes, %d gzipped\n",
		read, len(entries), raw.Len(), gz.Len())
	return nil
}

// canonical is the form Policy.Check compares: NFKC, then lower case.
func canonical(s string) string {
	return strings.ToLower(norm.NFKC.String(s))
}

// add puts the canonical form of s into set when it is valid and has at
// least `least` code points (and never fewer than minLen).
func add(set map[string]struct{}, s string, least int) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return
	}
	c := canonical(s)
	if utf8.RuneCountInString(c) < max(least, minLen) {
		return
	}
	set[c] = struct{}{}
}

func addJSON(set map[string]struct{}, path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range list {
		add(set, s, minLen)
	}
	return len(list), nil
}

func addRanked(set map[string]struct{}, path string, top, restMin int) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		switch {
		case n < top:
			add(set, sc.Text(), minLen)
		case restMin > 0:
			add(set, sc.Text(), restMin)
		default:
			return n, nil
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

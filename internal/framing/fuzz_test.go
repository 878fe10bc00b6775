package framing

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

func addSeeds(f *testing.F, extra ...any) {
	for _, tc := range scanCases {
		f.Add(append([]any{[]byte(tc.in)}, extra...)...)
	}
}

// FuzzScannerSplit feeds arbitrary bytes in one piece and in pieces cut
// where cuts says. The Scanner must end in the same state, never panic and
// keep within its bounds.
func FuzzScannerSplit(f *testing.F) {
	addSeeds(f, []byte{1, 7, 0, 200, 3})
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		lim := Limits{MaxHeaderBytes: 256, MaxChunkLine: 32, MaxTrailerBytes: 64}
		whole := NewScanner(lim)
		_, _ = whole.Write(in)
		checkBounds(t, whole)

		pieces := NewScanner(lim)
		p := in
		for i := 0; len(p) > 0; i++ {
			k := len(p)
			if i < len(cuts) {
				k = min(k, int(cuts[i]))
			}
			_, _ = pieces.Write(p[:k])
			checkBounds(t, pieces)
			p = p[k:]
		}
		if *pieces != *whole {
			t.Fatalf("in pieces %v: state %+v, want %+v", cuts, *pieces, *whole)
		}
	})
}

func checkBounds(t *testing.T, s *Scanner) {
	t.Helper()
	if s.pending < 0 || s.pending > ringSize || s.n < 0 || s.n > s.max || s.max > s.lim.MaxHeaderBytes+4096 {
		t.Fatalf("out of bounds: %+v", *s)
	}
	if msg, rule := s.Violation(); (msg == 0) != (rule == "") || (msg != 0) != (s.st == sStopped) {
		t.Fatalf("Violation() = %d, %q in state %d", msg, rule, s.st)
	}
}

// FuzzScannerNetHTTP checks the Scanner against the parser of net/http on
// arbitrary bytes. net/http may refuse more, but every request it reads
// that the Scanner passes must be the one the Scanner saw, with the same
// method, request-target and end. Otherwise the two would frame a stream
// differently, which is what this package exists to prevent.
func FuzzScannerNetHTTP(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		// Scan a byte at a time to learn where each message ends.
		s := NewScanner(Limits{})
		var ends []int
		for i := range in {
			msg := s.msg
			_, _ = s.Write(in[i : i+1])
			if s.msg != msg {
				ends = append(ends, i+1)
			}
		}

		src := &countingReader{r: bytes.NewReader(in)}
		br := bufio.NewReader(src)
		lastPost := false
		for k := 0; ; k++ {
			if bad, _ := s.Violation(); bad != 0 && bad <= k+1 {
				return
			}
			if lastPost { // as http.Server does after a POST
				peek, _ := br.Peek(4)
				n := 0
				for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
					n++
				}
				_, _ = br.Discard(n)
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if rule := s.Next(req.Method, req.RequestURI); rule != "" {
				if bad, _ := s.Violation(); rule == RuleDesync || bad > k+1 {
					t.Fatalf("net/http read request %d %q %q, the Scanner says %q", k+1, req.Method, req.RequestURI, rule)
				}
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			end := src.n - br.Buffered()
			if bad, _ := s.Violation(); bad == k+1 {
				return
			}
			if k >= len(ends) || ends[k] != end {
				t.Fatalf("request %d ends at %d for net/http, the Scanner ends: %v", k+1, end, ends)
			}
			lastPost = req.Method == "POST"
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

package audit

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moatgw/moat/internal/event"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  int64
		e    event.Event
		want string
	}{
		{
			name: "every field",
			seq:  42,
			e:    sampleEvent(1, t0),
			want: `{"@timestamp":"2026-03-04T05:06:07.123456Z","event.action":"request.denied","event.kind":"event","event.outcome":"failure","event.sequence":42,"event.type":["denied"],"http.request.id":"req-0001","labels":{"limit":"100/m"},"rule.name":"ratelimit.ip","source.ip":"198.51.100.7","url.path":"/api/items","user.name":"alice"}`,
		},
		{
			name: "empty fields left out",
			seq:  1,
			e:    event.Event{Time: t0.In(time.FixedZone("x", 3600)), Kind: "login", Outcome: event.Success},
			want: `{"@timestamp":"2026-03-04T05:06:07.123456Z","event.action":"login","event.kind":"event","event.outcome":"success","event.sequence":1}`,
		},
		{
			name: "labels sorted, strings escaped",
			seq:  7,
			e: event.Event{Time: t0, Kind: "waf.block", Outcome: event.Info, Principal: "a\"b\\c\n\x7f\xff<é>",
				Details: map[string]string{"z": "1", "a": "2", "m": "\t"}},
			want: `{"@timestamp":"2026-03-04T05:06:07.123456Z","event.action":"waf.block","event.kind":"event","event.outcome":"unknown","event.sequence":7,"event.type":["info"],"labels":{"a":"2","m":"\u0009","z":"1"},"user.name":"a\"b\\c\u000a\u007f` + "\uFFFD<é>" + `"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(Encode(tc.seq, tc.e))
			if got != tc.want {
				t.Fatalf("Encode =\n%s\nwant\n%s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatal("Encode made invalid JSON")
			}
		})
	}
}

func TestEncodeDeterministic(t *testing.T) {
	e := sampleEvent(3, t0)
	e.Details = map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"}
	first := string(Encode(9, e))
	for range 50 {
		if got := string(Encode(9, e)); got != first {
			t.Fatalf("Encode changed between calls:\n%s\n%s", first, got)
		}
	}
}

func TestHashChains(t *testing.T) {
	a := Hash(nil, []byte("one"))
	b := Hash(a, []byte("two"))
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("hash lengths %d and %d, want 32", len(a), len(b))
	}
	if string(Hash(Hash(nil, []byte("one!")), []byte("two"))) == string(b) {
		t.Fatal("changing the first record left the second record's hash the same")
	}
}

// FuzzEncode feeds client-controlled strings (principal, route, details)
// through Encode: the result is always valid JSON with sorted keys that
// reads back to the same strings when they were valid UTF-8.
func FuzzEncode(f *testing.F) {
	f.Add("alice", "/x", "k", "v")
	f.Add("\x00\"\\", "\xff\xfe", "", "\u2028")
	f.Fuzz(func(t *testing.T, principal, route, k, v string) {
		e := event.Event{Time: t0, Kind: "k", Outcome: event.Denied, Principal: principal, Route: route, Details: map[string]string{k: v}}
		data := Encode(1, e)
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("Encode made invalid JSON %q: %v", data, err)
		}
		keys := make([]string, 0, len(m))
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.Token()
		for dec.More() {
			tok, _ := dec.Token()
			keys = append(keys, tok.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		if !slices.IsSorted(keys) {
			t.Fatalf("keys not sorted: %q", keys)
		}
		if utf8.ValidString(principal) && principal != "" && m["user.name"] != principal {
			t.Fatalf("user.name = %q, want %q", m["user.name"], principal)
		}
	})
}

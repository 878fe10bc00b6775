package openapi

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestScanJSON(t *testing.T) {
	tests := []struct {
		name, data  string
		ptr, reason string // "" for valid
	}{
		{"object", `{"a": 1, "b": [true, false, null, "x", -1.5e+3, 0]}`, "", ""},
		{"scalar", ` "x" `, "", ""},
		{"escaped names differ", `{"a": 1, "\u0062": 2}`, "", ""},
		{"same name in sibling objects", `[{"a": 1}, {"a": 2}]`, "", ""},
		{"same name at two levels", `{"a": {"a": 1}}`, "", ""},
		{"repeated name", `{"a": 1, "b": 2, "a": 3}`, "#/a", "repeats a member name"},
		{"repeated name, escaped", `{"a": 1, "\u0061": 2}`, "#/a", "repeats a member name"},
		{"repeated name, nested", `{"x": [0, {"k": 1, "k": 2}]}`, "#/x/1/k", "repeats a member name"},
		{"repeated name in a large object", `{` + manyKeys(100) + `, "k7": 0}`, "#/k7", "repeats a member name"},
		{"trailing value", `{} {}`, "", "has data after the JSON value"},
		{"trailing garbage", `[1] x`, "", "has data after the JSON value"},
		{"empty", ``, "", "is not valid JSON"},
		{"unclosed", `{"a": 1`, "", "is not valid JSON"},
		{"trailing comma", `[1,]`, "", "is not valid JSON"},
		{"leading zero", `01`, "", "has data after the JSON value"},
		{"bare minus", `-`, "", "is not valid JSON"},
		{"bad escape", `"\x"`, "", "is not valid JSON"},
		{"control character", "\"a\x01\"", "", "is not valid JSON"},
		{"invalid utf-8", "\"\xff\"", "", "is not valid UTF-8"},
		{"single quotes", `{'a': 1}`, "", "is not valid JSON"},
		{"too deep", strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2), "", "nests deeper than 512 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ptr, reason := scanJSON([]byte(tt.data))
			if ptr != tt.ptr || reason != tt.reason {
				t.Errorf("scanJSON = %q, %q; want %q, %q", ptr, reason, tt.ptr, tt.reason)
			}
		})
	}
}

// manyKeys returns the members "k0": 0 to "k<n-1>": 0.
func manyKeys(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = `"k` + strconv.Itoa(i) + `": 0`
	}
	return strings.Join(keys, ", ")
}

// FuzzScanJSON checks scanJSON against encoding/json: what it accepts,
// encoding/json must accept too, and a valid document without repeated
// names must be accepted.
func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `"x"`, `{"a":1,"a":2}`, `[1,]`, "\"\xff\"", `{"\u0061":1,"a":2}`, `1e5`, `-0.0`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, reason := scanJSON(data)
		valid := json.Valid(data)
		if reason == "" && !valid {
			t.Fatalf("scanJSON accepts %q, which is not JSON", data)
		}
		if valid && reason == "is not valid JSON" {
			t.Fatalf("scanJSON refuses valid JSON %q", data)
		}
	})
}

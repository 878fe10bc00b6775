package portal

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

func TestParsePasskeyFinish(t *testing.T) {
	tests := []struct {
		name string
		body string
		want PasskeyFinish // zero: refused
	}{
		{"login", `{"return_to":"/app","credential":{"id":"x","response":{}},"ceremony":"c1"}`,
			PasskeyFinish{Ceremony: "c1", Credential: json.RawMessage(`{"id":"x","response":{}}`), ReturnTo: "/app"}},
		{"register", ` {"name":"Blue key","ceremony":"c1","credential":{}} `,
			PasskeyFinish{Ceremony: "c1", Credential: json.RawMessage(`{}`), Name: "Blue key"}},
		{"escaped text", `{"ceremony":"c\u0031","credential":{},"name":"caf\u00e9"}`,
			PasskeyFinish{Ceremony: "c1", Credential: json.RawMessage(`{}`), Name: "café"}},
		{"empty object", `{}`, PasskeyFinish{}},
		{"ceremony as number", `{"ceremony":1,"credential":{}}`, PasskeyFinish{}},
		{"credential as array", `{"ceremony":"c","credential":[]}`, PasskeyFinish{}},
		{"name null", `{"ceremony":"c","credential":{},"name":null}`, PasskeyFinish{}},
		{"duplicate credential", `{"ceremony":"c","credential":{},"credential":{"a":1}}`, PasskeyFinish{}},
		{"missing comma", `{"ceremony":"c" "credential":{}}`, PasskeyFinish{}},
		{"trailing comma", `{"ceremony":"c","credential":{},}`, PasskeyFinish{}},
		{"two objects", `{"ceremony":"c","credential":{}}{}`, PasskeyFinish{}},
		{"lone surrogate escape", `{"ceremony":"c","credential":{},"name":"\ud800"}`,
			PasskeyFinish{Ceremony: "c", Credential: json.RawMessage(`{}`), Name: "\ufffd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePasskeyFinish([]byte(tt.body))
			if tt.want.Ceremony == "" {
				if err == nil {
					t.Fatalf("accepted as %+v", got)
				}
				if !errors.Is(err, errPasskeyBody) {
					t.Errorf("error %v is not errPasskeyBody", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Ceremony != tt.want.Ceremony || got.Name != tt.want.Name || got.ReturnTo != tt.want.ReturnTo || !bytes.Equal(got.Credential, tt.want.Credential) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzPasskeyFinish feeds arbitrary bodies to the parsers of the passkey
// endpoints. Whatever they accept must be what encoding/json reads from the
// same bytes, must meet the limits the handlers rely on, and must survive a
// round trip; whatever they refuse must be refused with errPasskeyBody.
func FuzzPasskeyFinish(f *testing.F) {
	for _, s := range []string{
		`{"ceremony":"Zm9vYmFyYmF6cXV4cXV1eA","credential":{"id":"AQI","rawId":"AQI","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA"},"clientExtensionResults":{}},"return_to":"/app?x=1"}`,
		`{"name":"Work laptop","ceremony":"c","credential":{"response":{"attestationObject":"oA","transports":["usb"]}}}`,
		`{"return_to":"/"}`,
		`{"name":""}`,
		`{}`,
		`{"ceremony":"c","credential":{},"Ceremony":"d"}`,
		`{"ceremony":"c","credential":{},"ceremony":"d"}`,
		`{"ceremony":"c\u0000","credential":{"a":[1,2,{"b":null}]}}`,
		`{"ceremony":"c","credential":{}} x`,
		`[{"ceremony":"c"}]`,
		`null`,
		"{\"ceremony\":\"\xff\",\"credential\":{}}",
		`{"ceremony":"c","credential":{"deep":[[[[[[[[[[[]]]]]]]]]]]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fin, err := parsePasskeyFinish(data)
		if err != nil && !errors.Is(err, errPasskeyBody) {
			t.Fatalf("refused with %v, not errPasskeyBody", err)
		}
		if err == nil {
			checkFinish(t, data, fin)
		}
		st, err := parsePasskeyStart(data)
		if err != nil && !errors.Is(err, errPasskeyBody) {
			t.Fatalf("begin body refused with %v, not errPasskeyBody", err)
		}
		if err == nil {
			var std struct {
				ReturnTo string `json:"return_to"`
				Name     string `json:"name"`
			}
			if err := json.Unmarshal(data, &std); err != nil || std.ReturnTo != st.ReturnTo || std.Name != st.Name {
				t.Fatalf("begin body %q read as %+v, encoding/json reads %+v (%v)", data, st, std, err)
			}
		}
	})
}

func checkFinish(t *testing.T, data []byte, fin PasskeyFinish) {
	t.Helper()
	if !utf8.Valid(data) {
		t.Fatalf("accepted invalid UTF-8 %q", data)
	}
	if fin.Ceremony == "" || len(fin.Ceremony) > maxCeremonyBytes {
		t.Fatalf("accepted a ceremony of %d bytes", len(fin.Ceremony))
	}
	if len(fin.Credential) == 0 || fin.Credential[0] != '{' || !json.Valid(fin.Credential) {
		t.Fatalf("accepted credential %q", fin.Credential)
	}
	var std PasskeyFinish
	if err := json.Unmarshal(data, &std); err != nil {
		t.Fatalf("accepted %q, which encoding/json refuses: %v", data, err)
	}
	if std.Ceremony != fin.Ceremony || std.Name != fin.Name || std.ReturnTo != fin.ReturnTo || !sameJSON(std.Credential, fin.Credential) {
		t.Fatalf("read %q as %+v, encoding/json reads %+v", data, fin, std)
	}
	again, err := json.Marshal(fin)
	if err != nil {
		t.Fatal(err)
	}
	back, err := parsePasskeyFinish(again)
	if err != nil {
		t.Fatalf("the re-encoded body %s is refused: %v", again, err)
	}
	if back.Ceremony != fin.Ceremony || back.Name != fin.Name || back.ReturnTo != fin.ReturnTo || !sameJSON(back.Credential, fin.Credential) {
		t.Fatalf("round trip changed %+v into %+v", fin, back)
	}
}

func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

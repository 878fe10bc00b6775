package csrf

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzFormInjector checks, for any document split anywhere, that the
// injector never panics, that splitting does not change its output, that it
// only ever adds whole token inputs after a "<form" and that a document
// without one comes out unchanged.
func FuzzFormInjector(f *testing.F) {
	for _, c := range injectCases {
		f.Add([]byte(strings.ReplaceAll(c.doc, "{T}", "")), uint16(7))
	}
	for _, c := range untouchedCases {
		f.Add([]byte(c.doc), uint16(3))
	}
	p := newProtection(f, Config{})
	tok := p.Token(session) // random, so a document cannot contain the input by chance
	in := `<input type="hidden" name="moat_csrf" value="` + tok + `">`
	f.Fuzz(func(t *testing.T, doc []byte, split uint16) {
		var one, two bytes.Buffer
		if _, err := NewFormInjector(&one, page, "moat_csrf", tok).Write(doc); err != nil {
			t.Fatal(err)
		}
		i := 0
		if len(doc) > 0 {
			i = int(split) % (len(doc) + 1)
		}
		fi := NewFormInjector(&two, page, "moat_csrf", tok)
		if _, err := fi.Write(doc[:i]); err != nil {
			t.Fatal(err)
		}
		if _, err := fi.Write(doc[i:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(one.Bytes(), two.Bytes()) {
			t.Fatalf("split at %d changes the output:\n%q\n%q", i, one.Bytes(), two.Bytes())
		}
		out := one.String()
		forms := strings.Count(strings.ToLower(string(doc)), "<form")
		added := strings.Count(out, in) - strings.Count(string(doc), in)
		if added < 0 || added > forms {
			t.Fatalf("%d inputs added for %d form tags", added, forms)
		}
		if forms == 0 && out != string(doc) {
			t.Fatalf("document without a form changed:\n%q\n%q", doc, out)
		}
		if strings.ReplaceAll(out, in, "") != strings.ReplaceAll(string(doc), in, "") {
			t.Fatalf("output is more than the input plus token inputs:\n%q\n%q", doc, out)
		}
	})
}

// FuzzVerify checks the token parser on arbitrary strings: it never
// panics, accepts nothing it did not make, and accepts what it makes only
// for the same binding.
func FuzzVerify(f *testing.F) {
	p := newProtection(f, Config{})
	seed := p.tokenWithNonce([]byte("s"), [nonceSize]byte{1}) // the same in every fuzz worker
	f.Add([]byte("s"), seed)
	f.Add([]byte("s"), strings.Repeat("A", TokenLen))
	f.Add([]byte{}, "")
	f.Add([]byte("s"), strings.Repeat("=", TokenLen))
	f.Add([]byte("s"), p.Token([]byte("s"))+"A")
	f.Fuzz(func(t *testing.T, binding []byte, tok string) {
		if p.Valid(binding, tok) && (tok != seed || string(binding) != "s") {
			t.Fatalf("forged token %q accepted", tok)
		}
		if len(binding) == 0 {
			return
		}
		made := p.Token(binding)
		if !p.Valid(binding, made) {
			t.Fatal("own token refused")
		}
		if p.Valid(append(bytes.Clone(binding), 0), made) || p.Valid(binding[1:], made) {
			t.Fatal("token accepted for another binding")
		}
	})
}

// FuzzCheckBody checks that Check, whatever the form body and content
// type, never panics and leaves the upstream the very same body.
func FuzzCheckBody(f *testing.F) {
	p := newProtection(f, Config{MaxFormBytes: 1024})
	tok := p.Token(session)
	f.Add("application/x-www-form-urlencoded", []byte("moat_csrf="+tok))
	f.Add("application/x-www-form-urlencoded", []byte("a=%zz&moat_csrf=%"))
	f.Add("multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"moat_csrf\"\r\n\r\n"+tok+"\r\n--b--\r\n"))
	f.Add("multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"moat_csrf\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=3D\r\n--b"))
	f.Add("multipart/form-data", []byte("--\r\n"))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		r := httptest.NewRequest("POST", "https://"+host+"/", bytes.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		_ = p.Check(r, session)
		got, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("body changed by Check: %q, want %q", got, body)
		}
	})
}

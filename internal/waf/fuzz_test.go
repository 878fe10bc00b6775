package waf

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

var fuzzContentTypes = []string{
	"",
	"application/x-www-form-urlencoded",
	"application/json",
	"application/vnd.api+json",
	"text/xml",
	"multipart/form-data; boundary=xyz",
	"text/plain",
	"application/octet-stream",
}

// FuzzCheck sends arbitrary query strings and bodies through Check: it
// must not fail or panic on a body it can read, must close every
// transaction, and must leave the request body exactly as sent.
func FuzzCheck(f *testing.F) {
	f.Add("q=1%27%20OR%20%271%27%3D%271", []byte("a=b"), uint8(1))
	f.Add("x=<script>", []byte(`{"a":[1,{"b":"<img src=x onerror=alert(1)>"}],"c":null}`), uint8(2))
	f.Add("", []byte(`{"a":`), uint8(3))
	f.Add("%zz&&==", []byte("<?xml version=\"1.0\"?><a b=\"c\">' OR 1=1--</a>"), uint8(4))
	f.Add("a", []byte("--xyz\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.php\"\r\n\r\n<?php\r\n--xyz--\r\n"), uint8(5))
	f.Add("\xff\xfe", bytes.Repeat([]byte("a=1&"), 100), uint8(1))
	f.Add("", []byte("\x00\x01\x02' OR 1=1--"), uint8(7))

	w, err := New(Config{Mode: Detect, ParanoiaLevel: 4, BodyLimit: 256, BodyLimitAction: Partial})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = w.Close() })

	f.Fuzz(func(t *testing.T, query string, body []byte, ct uint8) {
		r := httptest.NewRequest(http.MethodPost, "/p", bytes.NewReader(body))
		r.URL.RawQuery = query
		r.RequestURI = "/p?" + query
		if c := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]; c != "" {
			r.Header.Set("Content-Type", c)
		}
		v, err := w.Check(r)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if n := w.open.Load(); n != 0 {
			t.Fatalf("%d transactions left open", n)
		}
		got, err := io.ReadAll(r.Body)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body after Check: %q (%v), sent %q", got, err, body)
		}
		if v.Interrupted {
			t.Fatal("detect mode interrupted")
		}
		for _, m := range v.Matches {
			if len(m.Message) > maxMessage {
				t.Fatalf("message of rule %d is %d bytes", m.ID, len(m.Message))
			}
		}
	})
}

package waf

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/corazawaf/coraza/v3"
)

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopCPU runs f b.N times and reports, besides wall time, the process
// CPU time per iteration (cpu-ns/op), which stays meaningful on a busy
// machine where wall time does not.
func loopCPU(b *testing.B, f func()) {
	b.Helper()
	b.ReportAllocs()
	start := cpuTime(b)
	n := 0
	for b.Loop() {
		f()
		n++
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(n), "cpu-ns/op")
}

// browserHeaders are what a current browser sends with a navigation.
func browserHeaders(h http.Header) {
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")
	h.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
	h.Set("Accept-Language", "en-US,en;q=0.9,de;q=0.8")
	h.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	h.Set("Cookie", "session=Fe26.2**a1b2c3d4e5f6; theme=dark; consent=yes")
	h.Set("Referer", "https://shop.example.com/catalog?page=2")
	h.Set("Sec-Fetch-Site", "same-origin")
	h.Set("Sec-Fetch-Mode", "navigate")
	h.Set("Sec-Fetch-Dest", "document")
	h.Set("Sec-Ch-Ua", `"Chromium";v="126", "Not.A/Brand";v="24"`)
	h.Set("Upgrade-Insecure-Requests", "1")
}

func benchWAF(b *testing.B) *WAF {
	b.Helper()
	w, err := New(Config{Mode: Block})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close() })
	return w
}

// benchCheck checks a request made by mk once per iteration, expecting it
// to pass.
func benchCheck(b *testing.B, w *WAF, mk func() *http.Request) {
	b.Helper()
	loopCPU(b, func() {
		r := mk()
		v, err := w.Check(r)
		if err != nil || v.Interrupted || len(v.Matches) > 0 {
			b.Fatalf("clean request: verdict %+v, err %v", v, err)
		}
	})
}

func BenchmarkCheckGET(b *testing.B) {
	w := benchWAF(b)
	benchCheck(b, w, func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://shop.example.com/catalog/shoes?page=3&sort=price&size=42", nil)
		browserHeaders(r.Header)
		return r
	})
}

func BenchmarkCheckFormPOST(b *testing.B) {
	w := benchWAF(b)
	body := []byte("email=anna%40example.com&name=Anna+Berg&city=Bonn&zip=53111&newsletter=on")
	benchCheck(b, w, func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://shop.example.com/account/profile", bytes.NewReader(body))
		browserHeaders(r.Header)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	})
}

func BenchmarkCheckJSON(b *testing.B) {
	w := benchWAF(b)
	body, err := os.ReadFile("testdata/order.json")
	if err != nil {
		b.Fatal(err)
	}
	benchCheck(b, w, func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://shop.example.com/api/orders", bytes.NewReader(body))
		r.Header.Set("User-Agent", "shop-app/3.1 (iOS 17.5)")
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl")
		return r
	})
}

// BenchmarkCheckBinary is an upload of a binary type: headers only.
func BenchmarkCheckBinary(b *testing.B) {
	w, err := New(Config{Variables: map[string]string{
		"allowed_request_content_type": "|application/x-www-form-urlencoded| |multipart/form-data| |application/json| |image/png|",
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	body := bytes.Repeat([]byte{0x89, 'P', 'N', 'G', '\'', '=', '&'}, 4096)
	benchCheck(b, w, func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://shop.example.com/api/avatar", bytes.NewReader(body))
		r.Header.Set("User-Agent", "shop-app/3.1 (iOS 17.5)")
		r.Header.Set("Content-Type", "image/png")
		r.Header.Set("Content-Length", "28672")
		return r
	})
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		w, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		_ = w.Close()
	}
}

// plainCoraza is the rule set as Coraza's documentation sets it up, with
// its recommended configuration, blocking: the baseline that Check is
// measured against.
func plainCoraza(b *testing.B) coraza.WAF {
	b.Helper()
	e, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(rulesFS()).WithDirectives(
		"Include @coraza.conf-recommended\nSecRuleEngine On\nInclude @crs-setup.conf.example\nInclude @owasp_crs/*.conf\n"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeEngine(e) })
	return e
}

// benchPlain runs all five phases on a request, as Coraza's net/http
// middleware does for a proxied exchange with a small JSON response.
func benchPlain(b *testing.B, e coraza.WAF, mk func() *http.Request) {
	b.Helper()
	loopCPU(b, func() {
		r := mk()
		tx := e.NewTransaction()
		tx.ProcessConnection("192.0.2.1", 40000, "", 0)
		tx.ProcessURI(r.URL.RequestURI(), r.Method, r.Proto)
		tx.AddRequestHeader("Host", r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				tx.AddRequestHeader(k, v)
			}
		}
		if r.ContentLength > 0 {
			tx.AddRequestHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		}
		if it := tx.ProcessRequestHeaders(); it == nil {
			if r.Body != nil && r.Body != http.NoBody {
				_, _, _ = tx.ReadRequestBodyFrom(r.Body)
			}
			if it, _ := tx.ProcessRequestBody(); it == nil {
				tx.AddResponseHeader("Content-Type", "application/json")
				tx.ProcessResponseHeaders(200, "HTTP/1.1")
				_, _, _ = tx.WriteResponseBody([]byte(`{"ok":true}`))
				_, _ = tx.ProcessResponseBody()
			}
		}
		if tx.IsInterrupted() {
			b.Fatalf("clean request interrupted: %+v", tx.Interruption())
		}
		tx.ProcessLogging()
		_ = tx.Close()
	})
}

func BenchmarkPlainCorazaGET(b *testing.B) {
	benchPlain(b, plainCoraza(b), func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://shop.example.com/catalog/shoes?page=3&sort=price&size=42", nil)
		browserHeaders(r.Header)
		return r
	})
}

func BenchmarkPlainCorazaJSON(b *testing.B) {
	body, err := os.ReadFile("testdata/order.json")
	if err != nil {
		b.Fatal(err)
	}
	benchPlain(b, plainCoraza(b), func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://shop.example.com/api/orders", bytes.NewReader(body))
		r.Header.Set("User-Agent", "shop-app/3.1 (iOS 17.5)")
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Content-Type", "application/json")
		return r
	})
}

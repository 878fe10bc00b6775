//go:build unix

package portal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/moatgw/moat/internal/headers"
	"github.com/moatgw/moat/internal/mfa"
	"github.com/moatgw/moat/internal/request"
)

// The browser tests load the portal in headless Chromium, served by a real
// TLS server with the pages' own CSP. They skip when Chromium cannot run,
// and fail instead when the CI environment variable is set.

// chromiumPath returns the Chromium binary once it has shown that it can
// load a page here, or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	chromiumOnce.Do(func() {
		for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
			if path, err := exec.LookPath(p); err == nil {
				chromiumBin = path
				break
			}
		}
		if chromiumBin == "" {
			chromiumErr = "chromium is not installed (apt-get install -y chromium)"
			return
		}
		dir, err := os.MkdirTemp("", "moat-chromium-")
		if err != nil {
			chromiumErr = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := chromiumCommand(ctx, chromiumBin, dir, "--dump-dom", "about:blank")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "<html") {
			chromiumErr = fmt.Sprintf("chromium cannot run here: %v\n%s", err, tail(stderr.String(), 2000))
		}
	})
	if chromiumErr != "" {
		browserUnavailable(t, chromiumErr)
	}
	return chromiumBin
}

var (
	chromiumOnce sync.Once
	chromiumBin  string
	chromiumErr  string
)

func browserUnavailable(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// chromiumCommand builds a headless Chromium command in its own process
// group, which cancelling ctx kills as a whole.
func chromiumCommand(ctx context.Context, bin, profile string, extra ...string) *exec.Cmd {
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--no-default-browser-check", "--ignore-certificate-errors",
		"--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
		"--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + profile,
	}
	cmd := exec.CommandContext(ctx, bin, append(args, extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// browserRun is what one Chromium run produced.
type browserRun struct {
	dom     *html.Node
	raw     string
	console []string // console messages: CSP violations, script errors, failed loads
}

// runChromium loads url in a fresh headless Chromium profile with the given
// extra flags and returns the DOM it dumped, if asked with --dump-dom.
func runChromium(t *testing.T, url string, extra ...string) browserRun {
	t.Helper()
	return runChromiumUntil(t, url, nil, extra...)
}

// runChromiumUntil is runChromium that also stops the browser soon after
// until is closed, for pages that navigate on and would not exit by
// themselves.
func runChromiumUntil(t *testing.T, url string, until <-chan struct{}, extra ...string) browserRun {
	t.Helper()
	bin := chromiumPath(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := chromiumCommand(ctx, bin, t.TempDir(), append(extra, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	stopped := make(chan struct{})
	if until != nil {
		go func() {
			select {
			case <-until:
				time.Sleep(500 * time.Millisecond) // let the page finish loading and log
				cancel()
			case <-stopped:
			}
		}()
	}
	err := cmd.Wait()
	close(stopped)
	if err != nil && (until == nil || ctx.Err() == context.DeadlineExceeded) {
		t.Fatalf("chromium: %v\n%s", err, tail(stderr.String(), 3000))
	}
	run := browserRun{raw: stdout.String()}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			run.console = append(run.console, line)
		}
	}
	if run.raw != "" {
		doc, err := html.Parse(strings.NewReader(run.raw))
		if err != nil {
			t.Fatalf("parsing dumped DOM: %v", err)
		}
		run.dom = doc
	}
	return run
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// rootAttr returns an attribute of the dumped <html> element.
func (b browserRun) rootAttr(name string) string {
	if b.dom == nil {
		return ""
	}
	for _, n := range find(b.dom, func(n *html.Node) bool { return n.Data == "html" }) {
		return attr(n, name)
	}
	return ""
}

// portalServer serves the portal's pages and assets over TLS the way the
// gateway will, plus test drivers and passkey endpoints that record what
// webauthn.js sends.
type portalServer struct {
	*httptest.Server
	csrf     *CSRF
	finished chan PasskeyFinish // finish bodies that passed the checks
	problems chan string        // what a passkey endpoint found wrong
	done     chan struct{}      // closed when the page after a passkey login is loaded
	doneOnce sync.Once
}

var (
	testChallenge = []byte{0xfb, 0xff, 0xbf, 0x00, 'm', 'o', 'a', 't', 0xfe, 0xfa, 0x3e, 0x3f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	b64u          = base64.RawURLEncoding
)

func newPortalServer(t *testing.T) *portalServer {
	t.Helper()
	p := testPages(t)
	s := &portalServer{csrf: testCSRF(t), finished: make(chan PasskeyFinish, 4), problems: make(chan string, 16), done: make(chan struct{})}
	qr, secret := testQR(t)
	pages := map[string]func(w http.ResponseWriter, r *http.Request) (string, any){
		PathLogin: func(w http.ResponseWriter, r *http.Request) (string, any) {
			return PageLogin, LoginData{CSRF: s.csrf.Token(w, r), ReturnTo: "/app", PasskeysEnabled: true,
				PasskeyAutofill: r.URL.Query().Has("autofill"),
				Providers:       []Provider{{Name: "Example ID", URL: "/.moat/oidc/example/start?return_to=%2Fapp"}}}
		},
		PathTOTP: func(w http.ResponseWriter, r *http.Request) (string, any) {
			return PageEnrollTOTP, EnrollTOTPData{CSRF: s.csrf.Token(w, r), QRCode: qr, Key: mfa.EncodeSecret(secret), Issuer: "Moat", Account: "alice",
				PasskeysEnabled: true, MaxNameLength: 64}
		},
		PathPasskeys: func(w http.ResponseWriter, r *http.Request) (string, any) {
			return PagePasskeys, PasskeysData{CSRF: s.csrf.Token(w, r), MaxNameLength: 64, Passkeys: []Passkey{
				{ID: "pk1", Name: "Work laptop", Created: t0, LastUsed: t1}, {ID: "pk2", Name: "Phone", Created: t1},
			}}
		},
		PathAccount: func(w http.ResponseWriter, r *http.Request) (string, any) {
			return PageAccount, AccountData{CSRF: s.csrf.Token(w, r), Username: "alice", HasPassword: true, TOTPEnabled: true, Passkeys: 2, RecoveryCodesLeft: 8,
				PasskeysEnabled: true,
				Sessions:        []Session{{Methods: "Passkey", Created: t0, LastSeen: t1, Current: true}, {Methods: "Password", Pending: true, Created: t0, LastSeen: t0}}}
		},
		"/.moat/done": func(w http.ResponseWriter, r *http.Request) (string, any) {
			s.doneOnce.Do(func() { close(s.done) })
			return PageNotice, NoticeData{Title: "Signed in", Message: "Passkey accepted."}
		},
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+StaticPrefix, StaticHandler())
	for path, page := range pages {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			name, data := page(rec, r)
			p.Render(rec, r, http.StatusOK, name, data)
			body := rec.Body.Bytes()
			if d := r.URL.Query().Get("driver"); d != "" {
				tag := `<script type="module" src="/.moat/test/` + d + `.js"></script>`
				body = bytes.Replace(body, []byte("</head>"), []byte(tag+"\n</head>"), 1)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
	// The samples of TestPagesRender: the first of a page, or the n-th.
	mux.HandleFunc("GET /sample/{page}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for _, sp := range samplePages(t) {
			if sp.page == r.PathValue("page") && n > 0 {
				n--
				continue
			}
			if sp.page == r.PathValue("page") {
				rec := httptest.NewRecorder()
				p.Render(rec, r, http.StatusOK, sp.page, sp.data)
				body := rec.Body.Bytes()
				if d := r.URL.Query().Get("driver"); d != "" {
					tag := `<script type="module" src="/.moat/test/` + d + `.js"></script>`
					body = bytes.Replace(body, []byte("</head>"), []byte(tag+"\n</head>"), 1)
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.Header().Del("Content-Length")
				w.Write(body)
				return
			}
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /.moat/test/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join("testdata", "browser", filepath.Base(r.PathValue("name"))))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(b)
	})
	// A page that breaks the CSP, to prove violations are noticed.
	mux.HandleFunc("GET /control", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", headers.OwnPagesCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><body><p style="color:red">x</p><script>document.documentElement.dataset.inline="ran"</script></body></html>`)
	})

	mux.HandleFunc("POST "+PathPasskeyLoginBegin, func(w http.ResponseWriter, r *http.Request) {
		s.expectJSONFields(r, map[string]string{FieldReturnTo: "/app"})
		s.begin(w, r, map[string]any{"publicKey": map[string]any{
			"challenge":        b64u.EncodeToString(testChallenge),
			"rpId":             "127.0.0.1",
			"timeout":          60000,
			"userVerification": "preferred",
			"allowCredentials": []map[string]any{{"type": "public-key", "id": b64u.EncodeToString([]byte("cred-1"))}},
		}})
	})
	mux.HandleFunc("POST "+PathPasskeyLoginFinish, func(w http.ResponseWriter, r *http.Request) {
		if fin, ok := s.finish(w, r); ok {
			s.finished <- fin
			json.NewEncoder(w).Encode(PasskeyReply{Redirect: "/.moat/done"})
		}
	})
	mux.HandleFunc("POST "+PathPasskeyRegisterBegin, func(w http.ResponseWriter, r *http.Request) {
		s.expectJSONFields(r, map[string]string{FieldName: "Blue key"})
		// Bare options this time, the other shape webauthn.js accepts.
		s.begin(w, r, map[string]any{
			"challenge":          b64u.EncodeToString(testChallenge),
			"rp":                 map[string]any{"name": "Moat", "id": "127.0.0.1"},
			"user":               map[string]any{"id": b64u.EncodeToString([]byte("user-1")), "name": "alice", "displayName": "alice"},
			"pubKeyCredParams":   []map[string]any{{"type": "public-key", "alg": -7}},
			"excludeCredentials": []map[string]any{{"type": "public-key", "id": b64u.EncodeToString([]byte{0xfb, 0xff})}},
		})
	})
	mux.HandleFunc("POST "+PathPasskeyRegisterFinish, func(w http.ResponseWriter, r *http.Request) {
		if fin, ok := s.finish(w, r); ok {
			s.finished <- fin
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"type":"about:blank","title":"Conflict","status":409,"detail":"Test refusal: this passkey is already registered."}`)
		}
	})
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(request.With(r.Context(), &request.Info{ID: "01JQ7ZC4R8W3N5T2V6X9Y0B1D4"}))
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *portalServer) problem(format string, args ...any) {
	select {
	case s.problems <- strings.TrimSpace(fmt.Sprintf(format, args...)):
	default:
	}
}

// expectJSONFields checks a begin request: CSRF, JSON body of form fields.
func (s *portalServer) expectJSONFields(r *http.Request, want map[string]string) {
	var got map[string]string
	if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
		s.problem("begin body: %v", err)
	}
	r.Body = io.NopCloser(strings.NewReader(""))
	for k, v := range want {
		if got[k] != v {
			s.problem("begin field %s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got[FieldCSRF]; ok {
		s.problem("begin body carries the csrf token")
	}
}

func (s *portalServer) begin(w http.ResponseWriter, r *http.Request, options any) {
	if err := s.csrf.Check(r); err != nil {
		s.problem("begin: %v (Sec-Fetch-Site %q)", err, r.Header.Get("Sec-Fetch-Site"))
		http.Error(w, `{"error":"csrf"}`, http.StatusForbidden)
		return
	}
	opts, _ := json.Marshal(options)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(PasskeyBegin{Ceremony: "ceremony-1", Options: opts})
}

func (s *portalServer) finish(w http.ResponseWriter, r *http.Request) (PasskeyFinish, bool) {
	var fin PasskeyFinish
	if err := s.csrf.Check(r); err != nil {
		s.problem("finish: %v", err)
		http.Error(w, `{"error":"csrf"}`, http.StatusForbidden)
		return fin, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.problem("finish Content-Type %q", ct)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fin); err != nil {
		s.problem("finish body: %v", err)
		http.Error(w, `{"error":"body"}`, http.StatusBadRequest)
		return fin, false
	}
	w.Header().Set("Content-Type", "application/json")
	return fin, true
}

// assertClean fails when the page logged anything to the console: a CSP
// violation, a script error, a failed load.
func assertClean(t *testing.T, run browserRun) {
	t.Helper()
	for _, line := range run.console {
		t.Errorf("browser console: %s", line)
	}
}

func (s *portalServer) noProblems(t *testing.T) {
	t.Helper()
	for {
		select {
		case p := <-s.problems:
			t.Errorf("server saw: %s", p)
		default:
			return
		}
	}
}

// TestBrowserCSPControl proves that the browser tests notice a page that
// breaks the CSP, so that a clean run means something.
func TestBrowserCSPControl(t *testing.T) {
	s := newPortalServer(t)
	run := runChromium(t, s.URL+"/control", "--dump-dom")
	if run.rootAttr("data-inline") != "" {
		t.Errorf("inline script ran despite the CSP")
	}
	var style, script bool
	for _, l := range run.console {
		style = style || strings.Contains(l, "inline style")
		script = script || strings.Contains(l, "inline script")
	}
	if !style || !script {
		t.Errorf("CSP violations not seen in the console log: %q", run.console)
	}
}

func TestBrowserLoginPage(t *testing.T) {
	s := newPortalServer(t)
	t.Run("script runs under the CSP", func(t *testing.T) {
		run := runChromium(t, s.URL+PathLogin, "--dump-dom")
		assertClean(t, run)
		if !strings.Contains(textOf(run.dom), "Request id 01JQ7ZC4R8W3N5T2V6X9Y0B1D4") {
			t.Errorf("footer does not show the request id")
		}
		if run.rootAttr("data-moat-js") != "ready" {
			t.Fatalf("webauthn.js did not run: <html> lacks data-moat-js=ready\n%s", tail(run.raw, 1500))
		}
		if got := run.rootAttr("data-moat-webauthn"); got != "yes" {
			t.Fatalf("data-moat-webauthn = %q, want yes", got)
		}
		forms := formTo(run.dom, PathPasskeyLoginBegin)
		if len(forms) != 1 || hasAttr(forms[0], "hidden") {
			t.Errorf("passkey button not revealed")
		}
	})
	t.Run("stylesheet applies", func(t *testing.T) {
		run := runChromium(t, s.URL+PathLogin+"?driver=probe", "--dump-dom", "--blink-settings=preferredColorScheme=1")
		assertClean(t, run)
		if got := run.rootAttr("data-probe-button-bg"); got != "rgb(10, 95, 106)" {
			t.Errorf("primary button background %q, want the light accent rgb(10, 95, 106)", got)
		}
		if got := run.rootAttr("data-probe-violations"); got != "0" {
			t.Errorf("%s CSP violations after load", got)
		}
	})
	t.Run("dark mode", func(t *testing.T) {
		run := runChromium(t, s.URL+PathLogin+"?driver=probe", "--dump-dom", "--blink-settings=preferredColorScheme=0")
		if got := run.rootAttr("data-probe-button-bg"); got != "rgb(108, 201, 211)" {
			t.Errorf("primary button background %q in dark mode, want rgb(108, 201, 211)", got)
		}
	})
}

// TestBrowserPagesLoadClean loads every sample of every page and checks
// that nothing was blocked or failed, and that the script and stylesheet
// ran.
func TestBrowserPagesLoadClean(t *testing.T) {
	s := newPortalServer(t)
	seen := map[string]int{}
	for _, sp := range samplePages(t) {
		n := seen[sp.page]
		seen[sp.page]++
		t.Run(sp.page+"/"+strconv.Itoa(n), func(t *testing.T) {
			run := runChromium(t, s.URL+"/sample/"+sp.page+"?driver=probe&n="+strconv.Itoa(n), "--dump-dom")
			assertClean(t, run)
			if run.rootAttr("data-moat-js") != "ready" || run.rootAttr("data-probe-violations") != "0" {
				t.Errorf("page did not load clean")
			}
			if vh := find(run.dom, func(n *html.Node) bool { return hasClass(n, "vh") }); len(vh) > 0 && run.rootAttr("data-probe-vh") != "absolute" {
				t.Errorf("screen-reader-only text is not hidden by the stylesheet")
			}
			if run.rootAttr("data-moat-webauthn") == "yes" {
				for _, n := range find(run.dom, func(n *html.Node) bool { return hasAttr(n, "data-moat-webauthn") && hasAttr(n, "hidden") }) {
					t.Errorf("<%s> for passkeys still hidden in a browser with WebAuthn", n.Data)
				}
			}
		})
	}
}

func TestBrowserPasskeyLogin(t *testing.T) {
	s := newPortalServer(t)
	// Following the redirect is a navigation, after which headless
	// Chromium's --dump-dom does not reliably exit: the browser is stopped
	// once the page the reply named has been requested.
	run := runChromiumUntil(t, s.URL+PathLogin+"?driver=get", s.done)
	assertClean(t, run)
	s.noProblems(t)
	var fin PasskeyFinish
	select {
	case fin = <-s.finished:
	default:
		t.Fatalf("no finish request reached the server\n%s", tail(run.raw, 2000))
	}
	// The stand-in authenticator echoes the challenge as clientDataJSON and
	// the allowed credential id as the signature, so both directions of
	// the base64url conversion are checked below.
	if fin.Ceremony != "ceremony-1" || fin.ReturnTo != "/app" || fin.Name != "" {
		t.Errorf("finish body %+v lacks the ceremony or return address", fin)
	}
	var cred struct {
		ID                      string         `json:"id"`
		RawID                   string         `json:"rawId"`
		Type                    string         `json:"type"`
		AuthenticatorAttachment string         `json:"authenticatorAttachment"`
		ClientExtensionResults  map[string]any `json:"clientExtensionResults"`
		Response                struct {
			ClientDataJSON    string `json:"clientDataJSON"`
			AuthenticatorData string `json:"authenticatorData"`
			Signature         string `json:"signature"`
			UserHandle        string `json:"userHandle"`
		} `json:"response"`
	}
	if err := json.Unmarshal(fin.Credential, &cred); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, got string
		want      []byte
	}{
		{"rawId", cred.RawID, []byte("cred-1")},
		{"clientDataJSON", cred.Response.ClientDataJSON, testChallenge},
		{"authenticatorData", cred.Response.AuthenticatorData, []byte{0xfb, 0xff, 0xbf, 0x00, 0x01}},
		{"signature", cred.Response.Signature, []byte("cred-1")},
		{"userHandle", cred.Response.UserHandle, []byte("user-1")},
	} {
		b, err := b64u.DecodeString(c.got) // strict: no padding, URL alphabet
		if err != nil || !bytes.Equal(b, c.want) {
			t.Errorf("%s = %q (%v), want base64url of %x", c.name, c.got, err, c.want)
		}
	}
	if cred.ID != "Y3JlZC0x" || cred.Type != "public-key" || cred.AuthenticatorAttachment != "platform" || cred.ClientExtensionResults == nil {
		t.Errorf("credential %+v", cred)
	}
	select {
	case <-s.done:
	default:
		t.Errorf("the page did not follow the reply's redirect")
	}
}

// TestBrowserHandlerLoginPage loads the login page as the real Handler
// serves it, with passkeys on, and checks that it runs clean under its CSP
// and reveals the passkey sign-in.
func TestBrowserHandlerLoginPage(t *testing.T) {
	chromiumPath(t)
	f := newFlow(t)
	run := runChromium(t, f.srv.URL+PathLogin+"?return_to=%2Fapp", "--dump-dom")
	assertClean(t, run)
	if run.rootAttr("data-moat-js") != "ready" || run.rootAttr("data-moat-webauthn") != "yes" {
		t.Fatalf("webauthn.js did not run\n%s", tail(run.raw, 1500))
	}
	pk := formTo(run.dom, PathPasskeyLoginBegin)
	if len(pk) != 1 || hasAttr(pk[0], "hidden") {
		t.Fatalf("the passkey sign-in is missing or hidden")
	}
	rt := find(pk[0], func(n *html.Node) bool { return attr(n, "name") == FieldReturnTo })
	if len(rt) != 1 || attr(rt[0], "value") != "/app" {
		t.Errorf("the passkey sign-in does not carry the return address")
	}
}

// TestBrowserPasskeyAutofill checks the conditional request webauthn.js
// starts on a login page that offers passkeys in the user name's autofill.
func TestBrowserPasskeyAutofill(t *testing.T) {
	s := newPortalServer(t)
	run := runChromiumUntil(t, s.URL+PathLogin+"?autofill&driver=autofill", s.done, "--dump-dom", "--virtual-time-budget=5000")
	s.noProblems(t)
	select {
	case fin := <-s.finished:
		if fin.ReturnTo != "/app" || fin.Ceremony != "ceremony-1" || len(fin.Credential) == 0 {
			t.Errorf("finish body %+v", fin)
		}
		assertClean(t, run)
	default:
		if run.rootAttr("data-conditional") == "no" {
			t.Skip("this Chromium offers no conditional mediation")
		}
		t.Fatalf("no autofill ceremony reached the server\n%s", tail(run.raw, 1500))
	}
}

// TestBrowserPasskeyRegisterError adds a passkey from each page that
// offers it: the passkeys page, and the authenticator app enrollment that
// a user in an MFA role must pass.
func TestBrowserPasskeyRegisterError(t *testing.T) {
	for _, page := range []string{PathPasskeys, PathTOTP} {
		t.Run(page, func(t *testing.T) { testBrowserPasskeyRegisterError(t, page) })
	}
}

func testBrowserPasskeyRegisterError(t *testing.T, page string) {
	s := newPortalServer(t)
	run := runChromium(t, s.URL+page+"?driver=create", "--dump-dom", "--virtual-time-budget=10000")
	s.noProblems(t)
	var fin PasskeyFinish
	select {
	case fin = <-s.finished:
	default:
		t.Fatalf("no finish request reached the server\n%s", tail(run.raw, 2000))
	}
	if got, want := run.rootAttr("data-seen-user-id"), hexOf([]byte("user-1")); got != want {
		t.Errorf("user.id reached the authenticator as %s, want %s", got, want)
	}
	if got, want := run.rootAttr("data-seen-exclude"), "fbff"; got != want {
		t.Errorf("excludeCredentials id reached the authenticator as %s, want %s", got, want)
	}
	if fin.Name != "Blue key" || fin.Ceremony != "ceremony-1" {
		t.Errorf("finish body %+v lacks the name or ceremony", fin)
	}
	var cred struct {
		RawID    string `json:"rawId"`
		Response struct {
			ClientDataJSON    string   `json:"clientDataJSON"`
			AttestationObject string   `json:"attestationObject"`
			Transports        []string `json:"transports"`
		} `json:"response"`
		ClientExtensionResults struct {
			CredProps struct{ RK bool } `json:"credProps"`
		} `json:"clientExtensionResults"`
	}
	if err := json.Unmarshal(fin.Credential, &cred); err != nil {
		t.Fatal(err)
	}
	if att, err := b64u.DecodeString(cred.Response.AttestationObject); err != nil || !bytes.Equal(att, []byte{0xa3, 0xfb, 0xff}) {
		t.Errorf("attestationObject %q", cred.Response.AttestationObject)
	}
	if cdj, _ := b64u.DecodeString(cred.Response.ClientDataJSON); string(cdj) != `{"type":"webauthn.create"}` {
		t.Errorf("clientDataJSON %q", cdj)
	}
	if strings.Join(cred.Response.Transports, ",") != "usb,nfc" || !cred.ClientExtensionResults.CredProps.RK {
		t.Errorf("transports %q or extension results lost", cred.Response.Transports)
	}
	// The refusal's text is shown in the form's live region.
	forms := formTo(run.dom, PathPasskeyRegisterBegin)
	if len(forms) != 1 {
		t.Fatal("no add form in the DOM")
	}
	status := find(forms[0], func(n *html.Node) bool { return hasAttr(n, "data-moat-status") })
	if len(status) != 1 || !strings.Contains(textOf(status[0]), "Test refusal: this passkey is already registered.") || !hasClass(status[0], "failed") {
		t.Errorf("error not shown in the live region\n%s", tail(run.raw, 1500))
	}
	for _, l := range run.console {
		if !strings.Contains(l, "409") { // the refused fetch itself is logged
			t.Errorf("browser console: %s", l)
		}
	}
}

// TestBrowserScreenshots takes screenshots of the login and TOTP enrollment
// pages, light and dark, wide and narrow, for a person to look at. They go
// to $MOAT_SCREENSHOT_DIR when set, else to a temporary directory.
func TestBrowserScreenshots(t *testing.T) {
	s := newPortalServer(t)
	dir := os.Getenv("MOAT_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shots := []struct {
		name, path, size, scheme string
	}{
		{"login", PathLogin, "1100,820", "1"},
		{"login-phone-dark", PathLogin, "390,844", "0"},
		{"totp", PathTOTP, "1100,1300", "1"},
		{"totp-dark", PathTOTP, "1100,1300", "0"},
		{"account", PathAccount, "1100,1500", "1"},
		{"passkeys", PathPasskeys, "1100,1300", "1"},
		{"passkeys-dark", PathPasskeys, "1100,1300", "0"},
	}
	for _, sh := range shots {
		t.Run(sh.name, func(t *testing.T) {
			file := filepath.Join(dir, sh.name+".png")
			runChromium(t, s.URL+sh.path, "--screenshot="+file, "--window-size="+sh.size,
				"--hide-scrollbars", "--blink-settings=preferredColorScheme="+sh.scheme)
			f, err := os.Open(file)
			if err != nil {
				t.Fatalf("no screenshot: %v", err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("screenshot is not a PNG: %v", err)
			}
			colors := map[[3]uint32]bool{}
			b := img.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y += 7 {
				for x := b.Min.X; x < b.Max.X; x += 7 {
					r, g, bl, _ := img.At(x, y).RGBA()
					colors[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
				}
			}
			if len(colors) < 8 {
				t.Errorf("screenshot has %d colours: the page looks blank", len(colors))
			}
			t.Logf("screenshot %s (%dx%d)", file, b.Dx(), b.Dy())
		})
	}
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

//go:build unix

package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/moatgw/moat/internal/portal"
	"github.com/moatgw/moat/internal/session"
)

// TestBrowserLoginThroughGateway signs in the way a person does: headless
// Chromium opens a protected page, is sent to the login page, the user
// name and password are typed and the button clicked, and the browser
// ends on the protected page showing what the upstream received. It skips
// when Chromium is missing, and fails instead when CI is set.
func TestBrowserLoginThroughGateway(t *testing.T) {
	bin := gatewayChromium(t)
	g := startLoginGateway(t, "", loginAccounts)
	g.addUser(t, "bea", "user")
	b := startDevtools(t, bin)

	b.navigate(g.base + "/app")
	b.waitFor(`location.pathname === "/.moat/login" && document.readyState === "complete"`)
	if rt := b.evalString(`new URLSearchParams(location.search).get("return_to")`); rt != "/app" {
		t.Errorf("login page return_to = %q, want /app", rt)
	}
	b.typeInto("#username", "bea")
	b.typeInto("#password", testPassword)
	b.click(`form[action="` + portal.PathLogin + `"] button[type="submit"]`)

	b.waitFor(`location.pathname === "/app" && document.readyState === "complete"`)
	shown := b.evalString(`(document.querySelector("pre") || document.body).innerText`)
	saw := upstreamSaw(t, shown)
	if got := saw.Get(headerUser); got != "bea" {
		t.Errorf("upstream saw %s %q, want bea", headerUser, got)
	}
	if got := saw.Get(headerRoles); got != "user" {
		t.Errorf("upstream saw %s %q, want user", headerRoles, got)
	}
	if c := b.evalString(`document.cookie`); strings.Contains(c, session.CookieName) {
		t.Errorf("page scripts can read the session cookie: %q", c)
	}
}

// gatewayChromium returns the Chromium binary, or skips the test when
// there is none (fails when the CI environment variable is set).
func gatewayChromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	chromiumUnavailable(t, "chromium is not installed (apt-get install -y chromium)")
	return ""
}

func chromiumUnavailable(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// devtools drives one page of a headless Chromium over the DevTools
// protocol (https://chromedevtools.github.io/devtools-protocol/): one
// WebSocket to the browser, with the page's commands sent in its flattened
// session.
type devtools struct {
	t       *testing.T
	ws      *websocket.Conn
	session string // the page's session id

	mu      sync.Mutex
	next    int
	waiting map[int]chan cdpMessage
	err     error // set when the connection ended
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    any             `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startDevtools starts Chromium with remote debugging on a free port and
// opens a blank page in it.
func startDevtools(t *testing.T, bin string) *devtools {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--no-default-browser-check", "--ignore-certificate-errors",
		"--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
		"--remote-debugging-port=0", "--remote-allow-origins=*",
		"--user-data-dir="+t.TempDir(), "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		chromiumUnavailable(t, fmt.Sprintf("starting chromium: %v", err))
	}
	var logMu sync.Mutex
	var log bytes.Buffer
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			log.WriteString(line + "\n")
			logMu.Unlock()
			if _, u, ok := strings.Cut(line, "DevTools listening on "); ok {
				select {
				case found <- strings.TrimSpace(u):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			logMu.Lock()
			t.Logf("chromium log (tail):\n%s", tailLines(log.String(), 40))
			logMu.Unlock()
		}
	})
	var wsURL string
	select {
	case wsURL = <-found:
	case <-time.After(30 * time.Second):
		logMu.Lock()
		msg := tailLines(log.String(), 20)
		logMu.Unlock()
		chromiumUnavailable(t, "chromium did not start its DevTools endpoint:\n"+msg)
	}
	ws, err := websocket.Dial(wsURL, "", "http://127.0.0.1/")
	if err != nil {
		t.Fatalf("connecting to chromium: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	d := &devtools{t: t, ws: ws, waiting: map[int]chan cdpMessage{}}
	go d.read()

	var target struct {
		TargetID string `json:"targetId"`
	}
	d.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	d.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	d.session = attached.SessionID
	return d
}

// read delivers replies to the calls waiting for them; events are dropped.
func (d *devtools) read() {
	for {
		var m cdpMessage
		if err := websocket.JSON.Receive(d.ws, &m); err != nil {
			d.mu.Lock()
			d.err = err
			for id, ch := range d.waiting {
				close(ch)
				delete(d.waiting, id)
			}
			d.mu.Unlock()
			return
		}
		if m.ID == 0 {
			continue
		}
		d.mu.Lock()
		ch := d.waiting[m.ID]
		delete(d.waiting, m.ID)
		d.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends a command, in the page's session unless session is "" and
// this is a browser command, and decodes its result into out.
func (d *devtools) call(session, method string, params, out any) {
	d.t.Helper()
	d.mu.Lock()
	if d.err != nil {
		d.mu.Unlock()
		d.t.Fatalf("%s: the DevTools connection ended: %v", method, d.err)
	}
	d.next++
	id := d.next
	ch := make(chan cdpMessage, 1)
	d.waiting[id] = ch
	d.mu.Unlock()
	if err := websocket.JSON.Send(d.ws, cdpMessage{ID: id, Method: method, Params: params, SessionID: session}); err != nil {
		d.t.Fatalf("%s: %v", method, err)
	}
	select {
	case m, ok := <-ch:
		switch {
		case !ok:
			d.t.Fatalf("%s: the DevTools connection ended", method)
		case m.Error != nil:
			d.t.Fatalf("%s: %s", method, m.Error.Message)
		case out != nil:
			if err := json.Unmarshal(m.Result, out); err != nil {
				d.t.Fatalf("%s: decoding %s: %v", method, m.Result, err)
			}
		}
	case <-time.After(20 * time.Second):
		d.t.Fatalf("%s: no answer from chromium", method)
	}
}

func (d *devtools) navigate(url string) {
	d.t.Helper()
	d.call(d.session, "Page.navigate", map[string]any{"url": url}, nil)
}

// eval evaluates a JavaScript expression in the page and returns its value
// as JSON.
func (d *devtools) eval(expr string) (json.RawMessage, error) {
	d.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	d.call(d.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
	if res.ExceptionDetails != nil {
		return nil, errors.New(res.ExceptionDetails.Text)
	}
	return res.Result.Value, nil
}

func (d *devtools) evalString(expr string) string {
	d.t.Helper()
	v, err := d.eval(expr)
	if err != nil {
		d.t.Fatalf("evaluating %s: %v", expr, err)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		d.t.Fatalf("evaluating %s: %s is not a string", expr, v)
	}
	return s
}

// waitFor polls until expr is true in the page. Evaluation errors while
// a navigation replaces the page are retried.
func (d *devtools) waitFor(expr string) {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v, err := d.eval(expr); err == nil && string(v) == "true" {
			return
		}
		if time.Now().After(deadline) {
			where, _ := d.eval(`location.href + " " + document.title`)
			d.t.Fatalf("page never satisfied %s (at %s)", expr, where)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// typeInto focuses the element selector names and types text into it.
func (d *devtools) typeInto(selector, text string) {
	d.t.Helper()
	sel, _ := json.Marshal(selector)
	if v, err := d.eval(`(() => { const e = document.querySelector(` + string(sel) + `); if (!e) return false; e.focus(); return document.activeElement === e; })()`); err != nil || string(v) != "true" {
		d.t.Fatalf("cannot focus %s (%v)", selector, err)
	}
	d.call(d.session, "Input.insertText", map[string]any{"text": text}, nil)
}

// click presses and releases the mouse on the middle of the element
// selector names.
func (d *devtools) click(selector string) {
	d.t.Helper()
	sel, _ := json.Marshal(selector)
	v, err := d.eval(`(() => { const r = document.querySelector(` + string(sel) + `).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
	var at [2]float64
	if err != nil || json.Unmarshal(v, &at) != nil {
		d.t.Fatalf("cannot find %s: %v", selector, err)
	}
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		d.call(d.session, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": at[0], "y": at[1], "button": "left", "clickCount": 1}, nil)
	}
}

package portal

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// pagePaths are the addresses the portal's own forms may post to.
var pagePaths = []string{
	PathLogin, PathLoginTOTP, PathLoginRecovery, PathLogout, PathLogoutEverywhere, PathStepUp,
	PathPassword, PathTOTP, PathTOTPRemove, PathRecoveryCodes, PathRecoveryCodesNew,
	PathPasskeyRename, PathPasskeyRemove,
	PathPasskeyLoginBegin, PathPasskeyVerifyBegin, PathPasskeyRegisterBegin,
}

// reporter is the part of testing.T the page checks use, so that a test
// can check the checker.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// recorder is a reporter that keeps what it is told.
type recorder struct{ msgs []string }

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.msgs = append(r.msgs, fmt.Sprintf(f, args...)) }
func (r *recorder) Fatalf(f string, args ...any) { r.msgs = append(r.msgs, fmt.Sprintf(f, args...)) }

// checkOpts say what to expect of a page.
type checkOpts struct {
	csrf string // the token every form must carry
}

// checkPage parses a rendered page and fails t for anything that would not
// render under OwnPagesCSP, or that breaks the portal's rules for forms and
// accessibility. It returns the document for further checks.
func checkPage(t reporter, body []byte, o checkOpts) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing page: %v", err)
	}
	ids := map[string]*html.Node{}
	labelFor := map[string]bool{}
	count := map[atom.Atom]int{}
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		count[n.DataAtom]++
		for _, a := range n.Attr {
			key := strings.ToLower(a.Key)
			switch {
			case key == "style":
				t.Errorf("<%s> has a style attribute: %q", n.Data, a.Val)
			case strings.HasPrefix(key, "on"):
				t.Errorf("<%s> has an event handler attribute %s", n.Data, a.Key)
			case key == "id":
				if ids[a.Val] != nil {
					t.Errorf("id %q is used twice", a.Val)
				}
				ids[a.Val] = n
			case key == "tabindex":
				if v, err := strconv.Atoi(a.Val); err != nil || v > 0 {
					t.Errorf("<%s> has tabindex=%q, which breaks the visual focus order", n.Data, a.Val)
				}
			case key == "href" || key == "src" || key == "action":
				v := strings.ToLower(strings.TrimSpace(a.Val))
				if strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "data:") || strings.HasPrefix(v, "//") || strings.Contains(v, "://") {
					t.Errorf("<%s %s=%q> does not stay on the portal's origin", n.Data, a.Key, a.Val)
				}
			}
		}
		switch n.DataAtom {
		case atom.Style:
			t.Errorf("page has a <style> element")
		case atom.Script:
			src := attr(n, "src")
			if src == "" || n.FirstChild != nil {
				t.Errorf("page has an inline <script>")
			} else if !strings.HasPrefix(src, StaticPrefix) {
				t.Errorf("script from %q, want one of the portal's assets", src)
			}
		case atom.Link:
			if href := attr(n, "href"); !strings.HasPrefix(href, StaticPrefix) {
				t.Errorf("<link href=%q> is not a portal asset", href)
			}
		case atom.Base, atom.Iframe, atom.Object, atom.Embed, atom.Frame:
			t.Errorf("page has a <%s> element", n.Data)
		case atom.Label:
			if f := attr(n, "for"); f != "" {
				labelFor[f] = true
			}
		case atom.Form:
			checkForm(t, n, o)
		case atom.Button:
			if strings.TrimSpace(textOf(n)) == "" && attr(n, "aria-label") == "" {
				t.Errorf("a button has no accessible name")
			}
		}
	})
	for _, a := range []atom.Atom{atom.Main, atom.H1, atom.Header, atom.Footer, atom.Title} {
		if count[a] != 1 {
			t.Errorf("page has %d <%s> elements, want 1", count[a], a)
		}
	}
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		for _, ref := range strings.Fields(attr(n, "aria-describedby")) {
			if ids[ref] == nil {
				t.Errorf("<%s id=%q> is described by missing id %q", n.Data, attr(n, "id"), ref)
			}
		}
		if attr(n, "aria-invalid") == "true" {
			bound := false
			for _, ref := range strings.Fields(attr(n, "aria-describedby")) {
				if el := ids[ref]; el != nil && hasClass(el, "error") && strings.TrimSpace(textOf(el)) != "" {
					bound = true
				}
			}
			if !bound {
				t.Errorf("<%s id=%q> is aria-invalid without an error text it is described by", n.Data, attr(n, "id"))
			}
		}
		if !isLabelable(n) {
			return
		}
		id := attr(n, "id")
		if !labelFor[id] && attr(n, "aria-label") == "" && attr(n, "aria-labelledby") == "" && !insideLabel(n) {
			t.Errorf("<%s name=%q id=%q> has no label", n.Data, attr(n, "name"), id)
		}
		if id != "" && labelFor[id] && ids[id] != n {
			t.Errorf("label for %q does not point at its control", id)
		}
		checkAutocomplete(t, n)
	})
	return doc
}

// checkForm checks that a form posts to a portal path and carries the
// CSRF token exactly once.
func checkForm(t reporter, form *html.Node, o checkOpts) {
	t.Helper()
	if m := attr(form, "method"); !strings.EqualFold(m, "post") {
		t.Errorf("form to %q has method %q, want post", attr(form, "action"), m)
	}
	action := attr(form, "action")
	if !slices.Contains(pagePaths, action) {
		t.Errorf("form posts to %q, not a portal path", action)
	}
	var tokens []string
	walk(form, func(n *html.Node) {
		if n.DataAtom == atom.Input && attr(n, "name") == FieldCSRF {
			if attr(n, "type") != "hidden" {
				t.Errorf("form to %q: csrf field is not hidden", action)
			}
			tokens = append(tokens, attr(n, "value"))
		}
		if n != form && n.DataAtom == atom.Form {
			t.Errorf("form to %q has a nested form", action)
		}
	})
	if len(tokens) != 1 || tokens[0] == "" || tokens[0] != o.csrf {
		t.Errorf("form to %q has csrf fields %q, want exactly [%q]", action, tokens, o.csrf)
	}
}

// checkAutocomplete checks that fields browsers and password managers fill
// say what they hold.
func checkAutocomplete(t reporter, n *html.Node) {
	t.Helper()
	ac := strings.Fields(attr(n, "autocomplete"))
	name, typ := attr(n, "name"), attr(n, "type")
	want := ""
	switch {
	case typ == "password" && name == FieldNewPassword, typ == "password" && name == FieldConfirmPassword:
		want = "new-password"
	case typ == "password":
		want = "current-password"
	case name == FieldUsername:
		want = "username"
	case name == FieldCode, name == FieldRecoveryCode:
		want = "one-time-code"
	case typ == "text":
		want = "off"
	default:
		return
	}
	if !slices.Contains(ac, want) {
		t.Errorf("<input name=%q type=%q> has autocomplete=%q, want %q", name, typ, attr(n, "autocomplete"), want)
	}
	if name == FieldCode && attr(n, "inputmode") != "numeric" {
		t.Errorf("code field has inputmode=%q, want numeric", attr(n, "inputmode"))
	}
}

func isLabelable(n *html.Node) bool {
	switch n.DataAtom {
	case atom.Select, atom.Textarea:
		return true
	case atom.Input:
		switch attr(n, "type") {
		case "hidden", "submit", "button", "reset", "image":
			return false
		}
		return true
	}
	return false
}

func insideLabel(n *html.Node) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if p.DataAtom == atom.Label {
			return true
		}
	}
	return false
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

func hasClass(n *html.Node, class string) bool {
	return slices.Contains(strings.Fields(attr(n, "class")), class)
}

func textOf(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	})
	return b.String()
}

// find returns the elements under n for which match is true.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	walk(n, func(c *html.Node) {
		if c.Type == html.ElementNode && match(c) {
			out = append(out, c)
		}
	})
	return out
}

// byID returns the element with the given id, or nil.
func byID(n *html.Node, id string) *html.Node {
	if els := find(n, func(c *html.Node) bool { return attr(c, "id") == id }); len(els) > 0 {
		return els[0]
	}
	return nil
}

// formTo returns the forms posting to action.
func formTo(n *html.Node, action string) []*html.Node {
	return find(n, func(c *html.Node) bool { return c.DataAtom == atom.Form && attr(c, "action") == action })
}

// TestCheckPageCatches makes sure the page checker fails on each thing it is
// meant to catch, and passes a page without them.
func TestCheckPageCatches(t *testing.T) {
	const page = `<!doctype html><html><head><title>x</title></head><body><header></header><main><h1>x</h1>%s</main><footer></footer></body></html>`
	form := func(inner string) string {
		return `<form method="post" action="/.moat/login"><input type="hidden" name="csrf" value="tok">` + inner + `</form>`
	}
	tests := []struct {
		name string
		body string
		want string // in the first complaint; "" for a page that passes
	}{
		{"good", form(`<label for="u">User</label><input id="u" name="username" autocomplete="username"><button>Go</button>`), ""},
		{"inline script", `<script>alert(1)</script>`, "inline <script>"},
		{"foreign script", `<script src="https://cdn.example/x.js"></script>`, "origin"},
		{"style element", `<style>p{}</style>`, "<style>"},
		{"style attribute", `<p style="color:red">x</p>`, "style attribute"},
		{"svg style attribute", `<svg><rect style="fill:red"/></svg>`, "style attribute"},
		{"event handler", `<p onclick="x()">x</p>`, "event handler"},
		{"get form", `<form method="get" action="/.moat/login"><input type="hidden" name="csrf" value="tok"></form>`, "method"},
		{"form without csrf", `<form method="post" action="/.moat/login"></form>`, "csrf"},
		{"form with wrong csrf", `<form method="post" action="/.moat/login"><input type="hidden" name="csrf" value="other"></form>`, "csrf"},
		{"form to elsewhere", `<form method="post" action="/steal"><input type="hidden" name="csrf" value="tok"></form>`, "not a portal path"},
		{"unlabelled input", form(`<input name="username" autocomplete="username">`), "no label"},
		{"label for another id", form(`<label for="a">A</label><input id="b" name="username" autocomplete="username">`), "no label"},
		{"password without autocomplete", form(`<label for="p">P</label><input id="p" name="password" type="password">`), "current-password"},
		{"new password as current", form(`<label for="p">P</label><input id="p" name="new_password" type="password" autocomplete="current-password">`), "new-password"},
		{"code without one-time-code", form(`<label for="c">C</label><input id="c" name="code" type="text" inputmode="numeric" autocomplete="off">`), "one-time-code"},
		{"code without numeric keyboard", form(`<label for="c">C</label><input id="c" name="code" type="text" autocomplete="one-time-code">`), "inputmode"},
		{"invalid without error text", form(`<label for="u">U</label><input id="u" name="username" autocomplete="username" aria-invalid="true">`), "aria-invalid"},
		{"describedby missing id", form(`<label for="u">U</label><input id="u" name="username" autocomplete="username" aria-describedby="nope">`), "missing id"},
		{"positive tabindex", `<a href="/" tabindex="2">x</a>`, "tabindex"},
		{"javascript link", `<a href="javascript:alert(1)">x</a>`, "origin"},
		{"duplicate id", `<p id="a"></p><p id="a"></p>`, "twice"},
		{"unnamed button", form(`<button type="submit"></button>`), "accessible name"},
		{"two h1", `<h1>again</h1>`, "<h1>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			checkPage(rec, []byte(fmt.Sprintf(page, tt.body)), checkOpts{csrf: "tok"})
			switch {
			case tt.want == "" && len(rec.msgs) > 0:
				t.Errorf("good page refused: %q", rec.msgs)
			case tt.want != "" && len(rec.msgs) == 0:
				t.Errorf("bad page passed")
			case tt.want != "" && !strings.Contains(rec.msgs[0], tt.want):
				t.Errorf("complaint %q does not mention %q", rec.msgs[0], tt.want)
			}
		})
	}
}

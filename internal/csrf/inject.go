package csrf

import (
	"bytes"
	"html"
	"io"
)

// maxAttrValue bounds the action, method and href values FormInjector
// keeps. A longer action or base href counts as another origin.
const maxAttrValue = 2048

// FormInjector copies an HTML document to another writer, adding a hidden
// input with a token right after each <form> start tag that posts to the
// page's own origin. It streams: each Write passes its bytes on at once,
// and it keeps a few small fields and at most maxAttrValue bytes of one
// attribute value between writes, however the document is split.
//
// It follows the WHATWG HTML tokenizer far enough to find the start tags a
// browser finds: quoted and unquoted attribute values, comments (including
// "--!>" and "<!-->"), doctypes and other bogus comments, the raw text of
// script (with its escaped and double-escaped states), style, xmp, iframe,
// noembed, noframes and noscript, the text of textarea and title, and
// plaintext. A form is given the token only when:
//
//   - its method attribute is "post" (case-insensitive, after character
//     references): any other value means GET to a browser, which would put
//     the token into a URL;
//   - its action is absent or empty (the document's own URL), an absolute
//     https URL of the page's origin, or a relative URL while no <base
//     href> seen so far points elsewhere. Everything else, including
//     scheme-relative and non-http URLs and anything the parser is unsure
//     of, counts as another origin, which must never receive the token.
//
// Where this tokenizer and a browser's could disagree (foreign content such
// as SVG, markup that the application's scripts build), it errs towards
// not adding a token. Markup injected into the page by an attacker (for
// example a button with a formaction) is outside what it can judge.
//
// A FormInjector is not safe for concurrent use.
type FormInjector struct {
	dst   io.Writer
	input []byte // the hidden input element
	page  string // the page's origin
	err   error

	st  state
	ret state // where a failed end tag match in raw text goes back to

	raw    string // the element whose end tag ends raw text, lower case
	endIdx int    // bytes of raw (or "script") matched so far
	endOK  bool   // no mismatch so far

	name     [9]byte // tag name, lower case
	nameLen  int
	nameLong bool
	isEnd    bool
	collect  bool // a form or base start tag: keep its attributes

	attr     [6]byte // attribute name, lower case
	attrLen  int
	attrLong bool
	attrOpen bool // an attribute whose name or value is being read
	val      []byte
	valLong  bool

	action, method, href   []byte
	hasAction, hasMethod   bool
	hasHref                bool
	actionLong, methodLong bool
	hrefLong               bool
	baseSeen, foreignBase  bool
}

// NewFormInjector returns a FormInjector writing to dst for a page of
// origin page (scheme://host[:port] as a browser sends it, such as
// "https://app.example.com"), adding an input named field with value token.
// field and token must be safe in a double-quoted HTML attribute, as the
// names New accepts and the tokens Token makes are.
func NewFormInjector(dst io.Writer, page, field, token string) *FormInjector {
	return &FormInjector{
		dst:   dst,
		page:  page,
		input: []byte(`<input type="hidden" name="` + field + `" value="` + token + `">`),
	}
}

type state uint8

const (
	sText state = iota
	sTagOpen
	sEndTagOpen
	sTagName
	sBeforeAttrName
	sAttrName
	sAfterAttrName
	sBeforeAttrValue
	sAttrValueDQ
	sAttrValueSQ
	sAttrValueUnq
	sAfterAttrValueQ
	sSelfClosing
	sMarkupDecl
	sMarkupDash
	sBogusComment
	sCommentStart
	sCommentStartDash
	sComment
	sCommentEndDash
	sCommentEnd
	sCommentEndBang
	sRaw
	sRawLT
	sEndName
	sScript
	sScriptLT
	sScriptEscStart
	sScriptEscStartDash
	sScriptEsc
	sScriptEscDash
	sScriptEscDashDash
	sScriptEscLT
	sScriptDblStart
	sScriptDbl
	sScriptDblDash
	sScriptDblDashDash
	sScriptDblLT
	sScriptDblEnd
	sPlaintext
)

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

func isAlpha(c byte) bool {
	return c|0x20 >= 'a' && c|0x20 <= 'z'
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Write passes p on to the destination, with the token input after every
// form start tag that qualifies. It returns len(p) unless the destination
// fails; after a failure every Write returns that error.
func (f *FormInjector) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	start := 0
	for i := 0; i < len(p); {
		switch f.st {
		case sText:
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j + 1
			f.st = sTagOpen
			continue
		case sRaw:
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j + 1
			f.st = sRawLT
			continue
		case sScript:
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j + 1
			f.st = sScriptLT
			continue
		case sPlaintext:
			i = len(p)
			continue
		}
		c := p[i]
		consumed, inject := f.step(c)
		if consumed {
			i++
		}
		if inject {
			if err := f.write(p[start:i]); err != nil {
				return 0, err
			}
			if err := f.write(f.input); err != nil {
				return 0, err
			}
			start = i
		}
	}
	if err := f.write(p[start:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *FormInjector) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := f.dst.Write(b); err != nil {
		f.err = err
		return err
	}
	return nil
}

// step moves the tokenizer on by c, in any state but the four Write
// handles itself. consumed is false when c must be looked at again in the
// new state; inject is true right after the '>' of a form start tag that
// gets the token.
func (f *FormInjector) step(c byte) (consumed, inject bool) {
	switch f.st {
	case sTagOpen:
		switch {
		case c == '!':
			f.st = sMarkupDecl
		case c == '/':
			f.st = sEndTagOpen
		case isAlpha(c):
			f.beginTag(false)
			return false, false
		case c == '?':
			f.st = sBogusComment
		default:
			f.st = sText
			return false, false
		}
	case sEndTagOpen:
		switch {
		case isAlpha(c):
			f.beginTag(true)
			return false, false
		case c == '>':
			f.st = sText
		default:
			f.st = sBogusComment
			return false, false
		}
	case sTagName:
		switch {
		case isSpace(c):
			f.endTagName()
			f.st = sBeforeAttrName
		case c == '/':
			f.endTagName()
			f.st = sSelfClosing
		case c == '>':
			f.endTagName()
			return true, f.emitTag()
		default:
			if f.nameLen < len(f.name) {
				f.name[f.nameLen] = lower(c)
				f.nameLen++
			} else {
				f.nameLong = true
			}
		}
	case sBeforeAttrName:
		switch {
		case isSpace(c):
		case c == '/' || c == '>':
			f.st = sAfterAttrName
			return false, false
		default:
			f.beginAttr()
			f.st = sAttrName
			if c != '=' {
				return false, false
			}
			f.attrByte(c)
		}
	case sAttrName:
		switch {
		case isSpace(c) || c == '/' || c == '>':
			f.st = sAfterAttrName
			return false, false
		case c == '=':
			f.st = sBeforeAttrValue
		default:
			f.attrByte(c)
		}
	case sAfterAttrName:
		switch {
		case isSpace(c):
		case c == '/':
			f.endAttr()
			f.st = sSelfClosing
		case c == '=':
			f.st = sBeforeAttrValue
		case c == '>':
			f.endAttr()
			return true, f.emitTag()
		default:
			f.endAttr()
			f.beginAttr()
			f.st = sAttrName
			return false, false
		}
	case sBeforeAttrValue:
		switch {
		case isSpace(c):
		case c == '"':
			f.st = sAttrValueDQ
		case c == '\'':
			f.st = sAttrValueSQ
		case c == '>':
			f.endAttr()
			return true, f.emitTag()
		default:
			f.st = sAttrValueUnq
			return false, false
		}
	case sAttrValueDQ, sAttrValueSQ:
		if c == '"' && f.st == sAttrValueDQ || c == '\'' && f.st == sAttrValueSQ {
			f.endAttr()
			f.st = sAfterAttrValueQ
		} else {
			f.valByte(c)
		}
	case sAttrValueUnq:
		switch {
		case isSpace(c):
			f.endAttr()
			f.st = sBeforeAttrName
		case c == '>':
			f.endAttr()
			return true, f.emitTag()
		default:
			f.valByte(c)
		}
	case sAfterAttrValueQ:
		switch {
		case isSpace(c):
			f.st = sBeforeAttrName
		case c == '/':
			f.st = sSelfClosing
		case c == '>':
			return true, f.emitTag()
		default:
			f.st = sBeforeAttrName
			return false, false
		}
	case sSelfClosing:
		if c == '>' {
			return true, f.emitTag()
		}
		f.st = sBeforeAttrName
		return false, false

	case sMarkupDecl:
		if c == '-' {
			f.st = sMarkupDash
		} else {
			f.st = sBogusComment
			return false, false
		}
	case sMarkupDash:
		if c == '-' {
			f.st = sCommentStart
		} else {
			f.st = sBogusComment
			return false, false
		}
	case sBogusComment:
		if c == '>' {
			f.st = sText
		}
	case sCommentStart:
		switch c {
		case '-':
			f.st = sCommentStartDash
		case '>':
			f.st = sText
		default:
			f.st = sComment
			return false, false
		}
	case sCommentStartDash:
		switch c {
		case '-':
			f.st = sCommentEnd
		case '>':
			f.st = sText
		default:
			f.st = sComment
			return false, false
		}
	case sComment:
		if c == '-' {
			f.st = sCommentEndDash
		}
	case sCommentEndDash:
		if c == '-' {
			f.st = sCommentEnd
		} else {
			f.st = sComment
			return false, false
		}
	case sCommentEnd:
		switch c {
		case '>':
			f.st = sText
		case '!':
			f.st = sCommentEndBang
		case '-':
		default:
			f.st = sComment
			return false, false
		}
	case sCommentEndBang:
		switch c {
		case '-':
			f.st = sCommentEndDash
		case '>':
			f.st = sText
		default:
			f.st = sComment
			return false, false
		}

	case sRawLT:
		if c == '/' {
			f.beginEndName(sRaw)
		} else {
			f.st = sRaw
			return false, false
		}
	case sEndName:
		switch {
		case isAlpha(c):
			if f.endOK && f.endIdx < len(f.raw) && lower(c) == f.raw[f.endIdx] {
				f.endIdx++
			} else {
				f.endOK = false
			}
		case (isSpace(c) || c == '/' || c == '>') && f.endOK && f.endIdx == len(f.raw):
			// The end tag of the raw text element: its attributes, if
			// any, are read as usual, and then the text is markup again.
			f.isEnd, f.collect = true, false
			switch c {
			case '>':
				f.st = sText
			case '/':
				f.st = sSelfClosing
			default:
				f.st = sBeforeAttrName
			}
		default:
			f.st = f.ret
			return false, false
		}

	case sScriptLT:
		switch c {
		case '/':
			f.beginEndName(sScript)
		case '!':
			f.st = sScriptEscStart
		default:
			f.st = sScript
			return false, false
		}
	case sScriptEscStart:
		if c == '-' {
			f.st = sScriptEscStartDash
		} else {
			f.st = sScript
			return false, false
		}
	case sScriptEscStartDash:
		if c == '-' {
			f.st = sScriptEscDashDash
		} else {
			f.st = sScript
			return false, false
		}
	case sScriptEsc, sScriptEscDash, sScriptEscDashDash:
		switch {
		case c == '-':
			if f.st == sScriptEsc {
				f.st = sScriptEscDash
			} else {
				f.st = sScriptEscDashDash
			}
		case c == '<':
			f.st = sScriptEscLT
		case c == '>' && f.st == sScriptEscDashDash:
			f.st = sScript
		default:
			f.st = sScriptEsc
		}
	case sScriptEscLT:
		switch {
		case c == '/':
			f.beginEndName(sScriptEsc)
		case isAlpha(c):
			f.st, f.endIdx, f.endOK = sScriptDblStart, 0, true
			return false, false
		default:
			f.st = sScriptEsc
			return false, false
		}
	case sScriptDblStart, sScriptDblEnd:
		switch {
		case isAlpha(c):
			f.matchScript(c)
		case isSpace(c) || c == '/' || c == '>':
			// "<script" enters the double-escaped state, "</script"
			// leaves it; any other name changes nothing.
			matched := f.endOK && f.endIdx == len("script")
			switch {
			case f.st == sScriptDblStart && matched:
				f.st = sScriptDbl
			case f.st == sScriptDblStart:
				f.st = sScriptEsc
			case matched:
				f.st = sScriptEsc
			default:
				f.st = sScriptDbl
			}
		default:
			if f.st == sScriptDblStart {
				f.st = sScriptEsc
			} else {
				f.st = sScriptDbl
			}
			return false, false
		}
	case sScriptDbl, sScriptDblDash, sScriptDblDashDash:
		switch {
		case c == '-':
			if f.st == sScriptDbl {
				f.st = sScriptDblDash
			} else {
				f.st = sScriptDblDashDash
			}
		case c == '<':
			f.st = sScriptDblLT
		case c == '>' && f.st == sScriptDblDashDash:
			f.st = sScript
		default:
			f.st = sScriptDbl
		}
	case sScriptDblLT:
		if c == '/' {
			f.st, f.endIdx, f.endOK = sScriptDblEnd, 0, true
		} else {
			f.st = sScriptDbl
			return false, false
		}
	}
	return true, false
}

func (f *FormInjector) matchScript(c byte) {
	const script = "script"
	if f.endOK && f.endIdx < len(script) && lower(c) == script[f.endIdx] {
		f.endIdx++
	} else {
		f.endOK = false
	}
}

// beginEndName starts matching the end tag of the raw text element after
// "</"; a mismatch goes back to ret.
func (f *FormInjector) beginEndName(ret state) {
	f.st, f.ret, f.endIdx, f.endOK = sEndName, ret, 0, true
}

func (f *FormInjector) beginTag(end bool) {
	f.st = sTagName
	f.isEnd = end
	f.nameLen, f.nameLong = 0, false
	f.collect = false
}

// endTagName decides, once the name is known, whether the tag's
// attributes matter.
func (f *FormInjector) endTagName() {
	if f.isEnd || f.nameLong {
		return
	}
	switch string(f.name[:f.nameLen]) {
	case "form", "base":
		f.collect = true
		f.hasAction, f.hasMethod, f.hasHref = false, false, false
		f.actionLong, f.methodLong, f.hrefLong = false, false, false
	}
}

func (f *FormInjector) beginAttr() {
	f.attrLen, f.attrLong, f.attrOpen = 0, false, true
	f.val, f.valLong = f.val[:0], false
}

func (f *FormInjector) attrByte(c byte) {
	if !f.collect {
		return
	}
	if f.attrLen < len(f.attr) {
		f.attr[f.attrLen] = lower(c)
		f.attrLen++
	} else {
		f.attrLong = true
	}
}

func (f *FormInjector) valByte(c byte) {
	if !f.collect || f.valLong {
		return
	}
	if len(f.val) >= maxAttrValue {
		f.valLong = true
		f.val = f.val[:0]
		return
	}
	if f.val == nil {
		f.val = make([]byte, 0, 64)
	}
	f.val = append(f.val, c)
}

// endAttr records the attribute just read, when it is one that matters
// and the first of its name on the tag (browsers ignore later duplicates).
func (f *FormInjector) endAttr() {
	if !f.attrOpen {
		return
	}
	f.attrOpen = false
	if !f.collect || f.attrLong {
		return
	}
	keep := func(has *bool, long *bool, dst *[]byte) {
		if *has {
			return
		}
		*has, *long = true, f.valLong
		*dst = append((*dst)[:0], f.val...)
	}
	switch string(f.attr[:f.attrLen]) {
	case "action":
		keep(&f.hasAction, &f.actionLong, &f.action)
	case "method":
		keep(&f.hasMethod, &f.methodLong, &f.method)
	case "href":
		keep(&f.hasHref, &f.hrefLong, &f.href)
	}
}

// emitTag ends a tag just after its '>', sets the state that follows it,
// and reports whether the token goes right after it.
func (f *FormInjector) emitTag() (inject bool) {
	f.st = sText
	if f.isEnd || f.nameLong {
		return false
	}
	name := f.name[:f.nameLen]
	switch string(name) {
	case "form":
		return f.formQualifies()
	case "base":
		if !f.baseSeen && f.hasHref {
			// Only the first base element with an href sets the base
			// URL; a relative href keeps the document's origin.
			f.baseSeen = true
			f.foreignBase = f.hrefLong || f.target(f.href) == targetForeign
		}
	case "script":
		f.st, f.raw = sScript, "script"
	case "plaintext":
		f.st = sPlaintext
	default:
		for _, r := range rawText {
			if string(name) == r {
				f.st, f.raw = sRaw, r
				break
			}
		}
	}
	return false
}

// rawText are the elements, besides script and plaintext, whose content is
// text up to their end tag: RAWTEXT and RCDATA in the HTML standard. A
// browser with scripting enabled reads noscript so.
var rawText = [...]string{"style", "xmp", "iframe", "noembed", "noframes", "noscript", "textarea", "title"}

func (f *FormInjector) formQualifies() bool {
	if !f.hasMethod || f.methodLong {
		return false
	}
	m := f.method
	if bytes.IndexByte(m, '&') >= 0 {
		m = []byte(html.UnescapeString(string(m)))
	}
	if !bytes.EqualFold(m, []byte("post")) {
		return false
	}
	if !f.hasAction || len(f.action) == 0 && !f.actionLong {
		return true // the document's own URL, whatever the base
	}
	if f.actionLong {
		return false
	}
	switch f.target(f.action) {
	case targetSame:
		return true
	case targetRelative:
		return !f.foreignBase
	}
	return false
}

// target classifies a URL attribute value both as written and with its
// character references decoded, and answers targetSame or targetRelative
// only when both readings agree on it: the two differ in legacy cases where
// a browser leaves a reference undecoded.
func (f *FormInjector) target(v []byte) actionTarget {
	t := classifyURL(string(v), f.page)
	if bytes.IndexByte(v, '&') >= 0 {
		if u := classifyURL(html.UnescapeString(string(v)), f.page); u != t {
			return targetForeign
		}
	}
	return t
}

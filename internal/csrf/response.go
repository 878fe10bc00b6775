package csrf

import (
	"mime"
	"net/http"
	"strings"
)

// InjectForms returns a ResponseWriter that adds a token bound to binding
// (one fresh token per response) to the same-origin POST forms of a
// text/html response written through it, as FormInjector describes, and
// passes every other response through untouched. The page's origin is
// https and r.Host.
//
// It rewrites a response only when its header, at WriteHeader, says
// Content-Type text/html with an ASCII-compatible charset (or none) and no
// Content-Encoding other than identity: it does not decompress. The gateway
// therefore asks the upstream for an uncompressed body on routes where it
// injects (by removing Accept-Encoding from the upstream request, which
// lets Go's transport ask for gzip and decompress it), or such pages get no
// token. A rewritten response loses its Content-Length, since its length
// changes, and is sent chunked (HTTP/1.1) or framed (HTTP/2) instead. It
// now carries a token of one session, so shared caches must not store it:
// its Cache-Control loses public and s-maxage and gains private (unless it
// says no-store), and a strong ETag becomes weak, since the bytes are no
// longer the upstream's.
//
// The returned writer supports Flush and Unwrap, for
// http.ResponseController. It is meant for one response and is not safe
// for concurrent use; InjectForms itself is. A nil or empty binding returns
// w unchanged.
func (p *Protection) InjectForms(w http.ResponseWriter, r *http.Request, binding []byte) http.ResponseWriter {
	if len(binding) == 0 {
		return w
	}
	page, ok := ownOrigin(r.Host)
	if !ok {
		return w
	}
	return &injectWriter{rw: w, p: p, page: page, binding: binding}
}

type injectWriter struct {
	rw          http.ResponseWriter
	p           *Protection
	page        string
	binding     []byte
	wroteHeader bool
	inj         *FormInjector // nil when the response is passed through
}

func (w *injectWriter) Header() http.Header { return w.rw.Header() }

func (w *injectWriter) WriteHeader(code int) {
	if w.wroteHeader {
		w.rw.WriteHeader(code) // let the ResponseWriter complain
		return
	}
	if code >= 100 && code < 200 {
		w.rw.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	h := w.rw.Header()
	if code != http.StatusNoContent && code != http.StatusNotModified && rewritable(h) {
		h.Del("Content-Length")
		keepPrivate(h)
		w.inj = NewFormInjector(w.rw, w.page, w.p.field, w.p.Token(w.binding))
	}
	w.rw.WriteHeader(code)
}

func (w *injectWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.inj == nil {
		return w.rw.Write(b)
	}
	return w.inj.Write(b)
}

// Flush sends what has been written so far; the injector holds nothing
// back.
func (w *injectWriter) Flush() {
	_ = http.NewResponseController(w.rw).Flush()
}

func (w *injectWriter) Unwrap() http.ResponseWriter { return w.rw }

// rewritable reports whether a response with header h is HTML that
// FormInjector can read as is.
func rewritable(h http.Header) bool {
	switch ce := h.Values("Content-Encoding"); len(ce) {
	case 0:
	case 1:
		if !strings.EqualFold(strings.TrimSpace(ce[0]), "identity") {
			return false
		}
	default:
		return false
	}
	ct := h.Values("Content-Type")
	if len(ct) != 1 {
		return false
	}
	mt, params, err := mime.ParseMediaType(ct[0])
	if err != nil || mt != "text/html" {
		return false
	}
	cs := strings.ToLower(params["charset"])
	return !strings.HasPrefix(cs, "utf-16") && !strings.HasPrefix(cs, "utf-32") && !strings.HasPrefix(cs, "ucs") && !strings.HasPrefix(cs, "unicode")
}

// keepPrivate marks a rewritten response as for one user only and weakens
// its ETag.
func keepPrivate(h http.Header) {
	var dirs []string
	private := false
	for _, line := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(line, ",") {
			d = strings.TrimSpace(d)
			name, _, qualified := strings.Cut(d, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "", "public", "s-maxage":
				continue
			case "no-store":
				private = true
			case "private":
				// private="field" only keeps fields out of shared
				// caches, not the response.
				private = private || !qualified
			}
			dirs = append(dirs, d)
		}
	}
	if !private {
		dirs = append(dirs, "private")
	}
	h.Set("Cache-Control", strings.Join(dirs, ", "))
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("ETag", "W/"+et)
	}
}

// Package problem writes HTTP error responses as RFC 9457 problem details
// (application/problem+json) or, for browsers, as a plain page, keeping the
// public message apart from the internal cause.
//
// See https://www.rfc-editor.org/rfc/rfc9457.
package problem

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"strconv"
	"strings"
)

// Error is an HTTP error with a public part (Status, Title, Detail) and an
// internal cause (Err) that is logged but never written to a response.
type Error struct {
	Status int
	Title  string // short, public; defaults to the status text
	Detail string // longer, public, optional
	Err    error  // internal cause, never sent

	// Errors lists the individual problems when there are several, such as
	// every invalid parameter of a request. Optional; sent as the "errors"
	// extension member and as a list on the HTML page.
	Errors []Item
}

// Item is one of several problems found in a request: where it is and what
// is wrong, in words that hold no request value. Name and Pointer are
// written by Moat and may quote a client-chosen name; they are escaped on
// output like every other member.
type Item struct {
	In      string `json:"in"`                // path, query, header, cookie or body
	Name    string `json:"name,omitempty"`    // the parameter, header or cookie name
	Pointer string `json:"pointer,omitempty"` // a JSON Pointer (RFC 6901) into the value, as a URI fragment
	Detail  string `json:"detail"`            // what is wrong, short
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.title(), e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.title())
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) title() string {
	if e.Title != "" {
		return e.Title
	}
	return http.StatusText(e.Status)
}

// body is the wire form of a problem document.
type body struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Errors    []Item `json:"errors,omitempty"`
}

// Write sends e to w in the form the request asks for: a plain HTML page when
// the client prefers text/html (a browser), problem+json otherwise. requestID
// is included so that users can quote it to an operator.
func Write(w http.ResponseWriter, r *http.Request, requestID string, e *Error) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r != nil && WantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(e.Status)
		_, _ = w.Write(page(e, requestID))
		return
	}
	b, _ := json.Marshal(body{
		Type:      "about:blank",
		Title:     e.title(),
		Status:    e.Status,
		Detail:    e.Detail,
		RequestID: requestID,
		Errors:    e.Errors,
	})
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(b, '\n'))
}

// WantsHTML reports whether the request comes from a browser navigation: its
// Accept header names text/html before any JSON type.
func WantsHTML(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	i := strings.Index(accept, "text/html")
	if i < 0 {
		return false
	}
	j := strings.Index(accept, "json")
	return j < 0 || i < j
}

func page(e *Error, requestID string) []byte {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>")
	b.WriteString(html.EscapeString(e.title()))
	b.WriteString("</title></head><body><h1>")
	b.WriteString(strconv.Itoa(e.Status))
	b.WriteString(" ")
	b.WriteString(html.EscapeString(e.title()))
	b.WriteString("</h1>\n")
	if e.Detail != "" {
		b.WriteString("<p>")
		b.WriteString(html.EscapeString(e.Detail))
		b.WriteString("</p>\n")
	}
	if len(e.Errors) > 0 {
		b.WriteString("<ul>\n")
		for _, it := range e.Errors {
			b.WriteString("<li><code>")
			b.WriteString(html.EscapeString(it.In))
			if it.Name != "" {
				b.WriteString(" ")
				b.WriteString(html.EscapeString(it.Name))
			}
			if it.Pointer != "" {
				b.WriteString(" ")
				b.WriteString(html.EscapeString(it.Pointer))
			}
			b.WriteString("</code>: ")
			b.WriteString(html.EscapeString(it.Detail))
			b.WriteString("</li>\n")
		}
		b.WriteString("</ul>\n")
	}
	if requestID != "" {
		b.WriteString("<p>Request id: <code>")
		b.WriteString(html.EscapeString(requestID))
		b.WriteString("</code></p>\n")
	}
	b.WriteString("</body></html>\n")
	return []byte(b.String())
}

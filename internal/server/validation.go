package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/openapi"
	"github.com/moatgw/moat/internal/request"
)

// validated puts a route's OpenAPI allowlist in front of next: a request
// that matches no documented operation, or breaks the document, is refused
// and recorded; a valid one goes on, with its operation in its context for
// the response check.
type validated struct {
	s    *Server
	v    *openapi.Validator
	next http.Handler
}

func (h validated) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := h.v.Check(r)
	info := request.From(r.Context())
	if res.OK() {
		if res.Operation != nil {
			r = r.WithContext(openapi.ContextWithOperation(r.Context(), res.Operation))
		}
		h.next.ServeHTTP(w, r)
		return
	}
	rule := openAPIRule(res.Problem.Status)
	details := map[string]string{"method": r.Method, "path": truncate(r.URL.Path, 256)}
	if res.Operation != nil {
		details["operation"] = res.Operation.String()
	}
	if n := len(res.Problem.Errors); n > 0 {
		details["violations"] = strconv.Itoa(n)
	}
	e := event.Event{Time: time.Now(), Kind: "request.denied", Outcome: event.Denied, Rule: rule, Details: details}
	if info != nil {
		e.ClientIP, e.Route, e.RequestID = info.ClientIP.String(), info.Route, info.ID
		if info.Principal != nil {
			e.Principal = info.Principal.Name
		}
	}
	h.s.events.Record(r.Context(), e)
	id := ""
	if info != nil {
		id = info.ID
	}
	res.Write(w, r, id)
}

// openAPIRule names a refusal of the OpenAPI allowlist by its status.
func openAPIRule(status int) string {
	switch status {
	case http.StatusNotFound:
		return "openapi.undocumented_path"
	case http.StatusMethodNotAllowed:
		return "openapi.undocumented_method"
	case http.StatusRequestEntityTooLarge:
		return "openapi.body_size"
	case http.StatusUnsupportedMediaType:
		return "openapi.content_type"
	}
	return "openapi.invalid"
}

// openAPIReport records what an upstream response departs from its
// document in: report-only, the response itself is passed on unchanged.
func (s *Server) openAPIReport(route string) func(openapi.Report) {
	return func(rep openapi.Report) {
		details := map[string]string{"status": strconv.Itoa(rep.Status), "findings": strconv.Itoa(len(rep.Findings))}
		if rep.Operation != nil {
			details["operation"] = rep.Operation.String()
		}
		if len(rep.Findings) > 0 {
			f := rep.Findings[0]
			details["first"] = truncate(f.In+" "+f.Name+f.Pointer+": "+f.Detail, 200)
		}
		e := event.Event{Time: time.Now(), Kind: "openapi.response", Outcome: event.Info, Route: route, Rule: "openapi.response", Details: details}
		ctx := context.Background()
		if rep.Request != nil {
			ctx = rep.Request.Context()
			if info := request.From(ctx); info != nil {
				e.ClientIP, e.RequestID = info.ClientIP.String(), info.ID
			}
		}
		s.events.Record(ctx, e)
	}
}

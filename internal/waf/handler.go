package waf

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

// Event kinds recorded by Handler.
const (
	KindBlocked  = "waf.blocked"
	KindDetected = "waf.detected"
)

// Handler returns a handler that checks each request with Check before
// passing it to next. An interrupted request is answered with its
// verdict's status (403, or 400 / 413 for a body) as problem+json, or a
// plain page for a browser, carrying the request id; a request that could
// not be checked is refused (fail closed): 413 when an outer body limit
// cut it, 400 when its body could not be read, 503 otherwise. Each request
// that a rule matched is recorded as a security event (see Event). In mode
// Off, Handler returns next itself.
func (w *WAF) Handler(next http.Handler) http.Handler {
	if w.engine == nil {
		return next
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		v, err := w.Check(r)
		if err != nil {
			w.fail(rw, r, err)
			return
		}
		if e, ok := w.Event(r, v); ok {
			w.recorder.Record(r.Context(), e)
		}
		if v.Interrupted {
			problem.Write(rw, r, requestID(r), &problem.Error{
				Status: v.Status,
				Detail: detailFor(v.Status),
			})
			return
		}
		next.ServeHTTP(rw, r)
	})
}

func (w *WAF) fail(rw http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, errBodyRead):
		status = http.StatusBadRequest
	default:
		w.logger.Error("waf check failed", "err", err, "request_id", requestID(r))
	}
	problem.Write(rw, r, requestID(r), &problem.Error{Status: status, Detail: detailFor(status), Err: err})
}

func detailFor(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "The request body is larger than this route accepts."
	case http.StatusBadRequest:
		return "The request is malformed."
	case http.StatusServiceUnavailable:
		return "The request could not be checked."
	}
	return "The request was blocked by the web application firewall."
}

func requestID(r *http.Request) string {
	if info := request.From(r.Context()); info != nil {
		return info.ID
	}
	return ""
}

// Event returns the security event for the decision v on r, and false when
// there is nothing to report: no rule matched and nothing was refused.
// Kind is KindBlocked (outcome denied) or KindDetected (outcome allowed,
// Details["would_block"] set in detect mode when block mode would have
// refused it); Rule is the ids of the detecting rules joined by commas, or
// "body-limit" for a body over the cap. It is safe for concurrent use.
func (w *WAF) Event(r *http.Request, v Verdict) (event.Event, bool) {
	ids := v.RuleIDs()
	if len(ids) == 0 && !v.WouldInterrupt {
		return event.Event{}, false
	}
	e := event.Event{
		Time:    w.now(),
		Kind:    KindDetected,
		Outcome: event.Allowed,
		Details: map[string]string{
			"mode":      string(w.cfg.Mode),
			"score":     strconv.Itoa(v.Score),
			"threshold": strconv.Itoa(w.cfg.InboundThreshold),
		},
	}
	if v.Interrupted {
		e.Kind, e.Outcome = KindBlocked, event.Denied
		e.Details["status"] = strconv.Itoa(v.Status)
	} else if v.WouldInterrupt {
		e.Details["would_block"] = "true"
	}
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(id))
	}
	e.Rule = b.String()
	if e.Rule == "" && v.BodyOverLimit {
		e.Rule = "body-limit"
	}
	if cats := v.Categories(); len(cats) > 0 {
		e.Details["categories"] = strings.Join(cats, ",")
	}
	if s := v.Severity(); s != "" {
		e.Details["severity"] = s
	}
	if info := request.From(r.Context()); info != nil {
		e.RequestID = info.ID
		e.Route = info.Route
		if info.ClientIP.IsValid() {
			e.ClientIP = info.ClientIP.String()
		}
		if info.Principal != nil {
			e.Principal = info.Principal.Subject
		}
	}
	return e, true
}

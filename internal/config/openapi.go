package config

import (
	"strings"

	"github.com/moatgw/moat/internal/openapi"
)

// Values of openapi.responses.
const (
	ResponsesOff    = "off"
	ResponsesReport = "report"
)

// OpenAPIOptions returns the validator options of the route's openapi
// section; report receives response findings.
func (r *Route) OpenAPIOptions(report func(openapi.Report)) openapi.Options {
	oa := r.OpenAPI
	o := openapi.Options{
		IgnoreServers:          oa.IgnoreServers,
		MaxBodyBytes:           int64(oa.MaxBody),
		AllowUnknownProperties: oa.AllowUnknownProperties,
		AllowUnknownQuery:      oa.AllowUnknownQuery,
	}
	if r.StripPrefix {
		// The document describes the paths the upstream sees.
		o.Prefix = r.Path
	}
	if oa.Responses == ResponsesReport {
		o.Responses, o.Report = openapi.ResponsesReport, report
	}
	return o
}

// openAPI checks a route's openapi section, loading the document so that
// a broken one is found by moat config check, not at the first request.
func (v *validator) openAPI(p string, r Route, oa *OpenAPI) {
	v.check(p+".responses", oneOf("responses", oa.Responses, ResponsesOff, ResponsesReport))
	nonNegative(v, p+".max_body", oa.MaxBody)
	if oa.Spec == "" {
		v.add(p+".spec", "required: the path of the OpenAPI document")
		return
	}
	if err := checkFile(oa.Spec); err != nil {
		v.add(p+".spec", "%q: %v", clip(oa.Spec, 120), err)
		return
	}
	if _, err := openapi.Load(oa.Spec, r.OpenAPIOptions(func(openapi.Report) {})); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			v.add(p+".spec", "%s", line)
		}
	}
}

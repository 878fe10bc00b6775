package config

import (
	"strings"

	"github.com/moatgw/moat/internal/cors"
	"github.com/moatgw/moat/internal/csrf"
	"github.com/moatgw/moat/internal/openapi"
	"github.com/moatgw/moat/internal/waf"
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

// CORSConfig returns the route's CORS policy in the form the gateway
// compiles it.
func (r *Route) CORSConfig() cors.Config {
	c := r.CORS
	return cors.Config{
		AllowedOrigins: c.AllowedOrigins, AllowedMethods: c.AllowedMethods, AllowedHeaders: c.AllowedHeaders,
		ExposedHeaders: c.ExposedHeaders, AllowCredentials: c.AllowCredentials, MaxAge: c.MaxAge.D(),
	}
}

// crossOrigin checks a route's csrf and cors sections by compiling them.
func (v *validator) crossOrigin(p string, r Route) {
	if _, err := csrf.New(make([]byte, csrf.KeySize), csrf.Config{TrustedOrigins: r.CSRF.TrustedOrigins}); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			v.add(p+".csrf", "%s", line)
		}
	}
	if r.CORS == nil {
		return
	}
	if _, err := cors.New(r.CORSConfig()); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			v.add(p+".cors", "%s", line)
		}
	}
}

// WAFConfig returns the route's WAF settings in the form the gateway
// builds them.
func (r *Route) WAFConfig() waf.Config {
	w := r.WAF
	c := waf.Config{
		Mode: waf.Mode(w.Mode), ParanoiaLevel: w.ParanoiaLevel, InboundThreshold: w.InboundThreshold,
		RemoveRules: w.RemoveRules, RemoveTags: w.RemoveTags, Variables: w.Variables,
		BodyLimit: int64(w.BodyLimit), BodyLimitAction: waf.BodyLimitAction(w.BodyLimitAction),
	}
	return c
}

// checkWAF checks a route's waf section by building it, so that a rule id
// or tag that names nothing is found by moat config check.
func (v *validator) checkWAF(p string, r Route) {
	if r.WAF == nil {
		return
	}
	cfg := r.WAFConfig()
	if err := cfg.WithDefaults().Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			v.add(p+".waf", "%s", line)
		}
		return
	}
	if cfg.Mode == waf.Off {
		return
	}
	w, err := waf.New(cfg)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			v.add(p+".waf", "%s", line)
		}
		return
	}
	_ = w.Close()
}

func (v *validator) cookies(p string, r Route) {
	c := r.Cookies
	if c.SameSite == "" {
		return
	}
	v.check(p+".cookies.same_site", oneOf("same_site", c.SameSite, "lax", "strict", "none"))
	if c.SameSite == "none" && !c.Secure {
		v.add(p+".cookies.same_site", "none needs secure: true (browsers refuse SameSite=None cookies without Secure)")
	}
}

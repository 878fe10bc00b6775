// Package waf inspects requests with Coraza and the OWASP Core Rule Set
// (CRS) v4, both embedded in the binary, and decides whether a request may
// reach the upstream.
//
// A WAF is built once per route configuration with New and is immutable
// afterwards; a reload builds a new one and closes the old one. Check is the
// pure decision on one request (request line and headers, then the body,
// read through a cap and put back on the request so the upstream receives
// exactly the bytes the client sent); Handler wraps it into an http.Handler
// that answers 403 problem+json on a block and records a security event per
// decision.
//
// Only the request side of the CRS is loaded: the REQUEST-9xx rule files,
// evaluated in phases 1 and 2. Responses are not inspected, so the
// RESPONSE-95x leakage rules, the outbound anomaly threshold and the
// RESPONSE-980 correlation rules do not apply: inspecting response bodies
// would mean buffering every proxied response, and those rules report
// leaks after the fact rather than prevent attacks.
//
// References: https://coraza.io/docs/seclang/directives/ and
// https://coreruleset.org/docs/concepts/anomaly_scoring/.
package waf

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/moatgw/moat/internal/event"
)

// Mode says what a WAF does with a request.
type Mode string

// Modes.
const (
	// Block evaluates the rules and interrupts a request whose inbound
	// anomaly score reaches the threshold, or that a disruptive rule denies.
	Block Mode = "block"
	// Detect evaluates the rules and reports what block would have done,
	// but never interrupts a request.
	Detect Mode = "detect"
	// Off runs nothing: every request passes untouched.
	Off Mode = "off"
)

// BodyLimitAction says what happens to a request body larger than
// Config.BodyLimit.
type BodyLimitAction string

// Body limit actions.
const (
	// Reject refuses the request with 413 in block mode (like
	// ModSecurity's SecRequestBodyLimitAction Reject). In detect mode the
	// first BodyLimit bytes are inspected and the verdict says the request
	// would have been refused.
	Reject BodyLimitAction = "reject"
	// Partial inspects the first BodyLimit bytes and lets the rest pass
	// uninspected (like ProcessPartial). It trades coverage for
	// availability: an attack placed after the cap is not seen.
	Partial BodyLimitAction = "partial"
)

// Defaults applied by New to zero fields of a Config.
const (
	DefaultParanoiaLevel    = 1
	DefaultInboundThreshold = 5
	DefaultBodyLimit        = 1 << 20 // 1 MiB
	DefaultBodyLimitAction  = Reject
	// MaxBodyLimit is the largest inspection cap: a whole body up to the
	// cap is held in memory for each request being checked.
	MaxBodyLimit = 64 << 20
)

// DefaultBinaryContentTypes returns the media types whose bodies are not
// inspected when Config.BinaryContentTypes is nil. A body of these types is
// neither parsed as a form, JSON or XML, nor read by the WAF at all: it
// streams to the upstream untouched, and only the request line and headers
// are inspected. Parsing such a body as a form would turn arbitrary bytes
// into arguments and raise false positives (and cost CPU) for nothing; the
// price is that a backend which parses these types anyway gets them
// uninspected.
func DefaultBinaryContentTypes() []string {
	return []string{
		"application/octet-stream",
		"application/pdf",
		"application/zip",
		"application/gzip",
		"application/x-tar",
		"application/x-7z-compressed",
		"application/wasm",
		"image/*",
		"audio/*",
		"video/*",
		"font/*",
	}
}

// Config is the settings of one WAF. The zero value, after defaults, is a
// blocking WAF at paranoia level 1 with the CRS's default threshold.
type Config struct {
	// Mode is Block, Detect or Off; empty means Block.
	Mode Mode
	// ParanoiaLevel is the CRS blocking paranoia level, 1 to 4; 0 means
	// DefaultParanoiaLevel. Rules above it add no score toward blocking.
	ParanoiaLevel int
	// DetectionParanoiaLevel, when above ParanoiaLevel, also runs the
	// rules up to it and reports their matches without letting them
	// count toward blocking. 0 means ParanoiaLevel.
	DetectionParanoiaLevel int
	// InboundThreshold is the inbound anomaly score at which a request
	// is blocked; 0 means DefaultInboundThreshold.
	InboundThreshold int
	// RemoveRules excludes rules by id ("942100") or inclusive id range
	// ("942100-942199"), like SecRuleRemoveById. Every id must name a
	// loaded rule and every range must contain one.
	RemoveRules []string
	// RemoveTags excludes every rule carrying one of these tags (exact,
	// case-sensitive), like SecRuleRemoveByTag, e.g. "attack-sqli" or
	// "paranoia-level/2". Every tag must be carried by a loaded rule.
	RemoveTags []string
	// Variables sets CRS setup variables (crs-setup.conf's tx.NAME), for
	// example "allowed_methods": "GET HEAD POST OPTIONS PUT" or
	// "max_num_args": "255". Names are lower case; the paranoia levels
	// and the threshold are set through their own fields instead.
	Variables map[string]string
	// BodyLimit caps the bytes of a request body that are inspected;
	// 0 means DefaultBodyLimit, at most MaxBodyLimit.
	BodyLimit int64
	// BodyLimitAction applies beyond BodyLimit; empty means Reject.
	BodyLimitAction BodyLimitAction
	// BinaryContentTypes lists media types ("type/subtype" or "type/*",
	// lower case) whose bodies are not inspected; nil means
	// DefaultBinaryContentTypes(), an empty non-nil slice means none.
	// Whether a type is accepted at all is the CRS policy's decision
	// (rule 920420): add accepted upload types to the variable
	// "allowed_request_content_type", e.g. "|application/json|
	// |image/png|".
	BinaryContentTypes []string
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = Block
	}
	if c.ParanoiaLevel == 0 {
		c.ParanoiaLevel = DefaultParanoiaLevel
	}
	if c.DetectionParanoiaLevel == 0 {
		c.DetectionParanoiaLevel = c.ParanoiaLevel
	}
	if c.InboundThreshold == 0 {
		c.InboundThreshold = DefaultInboundThreshold
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.BodyLimitAction == "" {
		c.BodyLimitAction = DefaultBodyLimitAction
	}
	if c.BinaryContentTypes == nil {
		c.BinaryContentTypes = DefaultBinaryContentTypes()
	}
	return c
}

// Validate reports every problem with c at once. It checks c as given;
// call it on c.WithDefaults() to accept zero fields. Whether excluded ids
// and tags exist is only known once the rules are loaded, so New checks
// that too.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case Block, Detect, Off:
	default:
		errs = append(errs, fmt.Errorf("mode %q is not one of block, detect, off", c.Mode))
	}
	if c.ParanoiaLevel < 1 || c.ParanoiaLevel > 4 {
		errs = append(errs, fmt.Errorf("paranoia level is %d, must be 1 to 4", c.ParanoiaLevel))
	}
	if c.DetectionParanoiaLevel < c.ParanoiaLevel || c.DetectionParanoiaLevel > 4 {
		errs = append(errs, fmt.Errorf("detection paranoia level is %d, must be from the paranoia level (%d) to 4",
			c.DetectionParanoiaLevel, c.ParanoiaLevel))
	}
	if c.InboundThreshold < 1 || c.InboundThreshold > 10000 {
		errs = append(errs, fmt.Errorf("inbound anomaly threshold is %d, must be 1 to 10000", c.InboundThreshold))
	}
	if c.BodyLimit < 1 || c.BodyLimit > MaxBodyLimit {
		errs = append(errs, fmt.Errorf("body limit is %d bytes, must be 1 to %d", c.BodyLimit, MaxBodyLimit))
	}
	switch c.BodyLimitAction {
	case Reject, Partial:
	default:
		errs = append(errs, fmt.Errorf("body limit action %q is not one of reject, partial", c.BodyLimitAction))
	}
	for _, s := range c.RemoveRules {
		if _, _, err := parseIDRange(s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, tag := range c.RemoveTags {
		if err := validTag(tag); err != nil {
			errs = append(errs, err)
		}
	}
	for name, value := range c.Variables {
		if err := validVariable(name, value); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ct := range c.BinaryContentTypes {
		if err := validMediaRange(ct); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("waf: %w", err)
	}
	return nil
}

// Option configures a WAF beyond its Config: the things it reports to.
type Option func(*WAF)

// WithRecorder makes Handler record a security event for each request
// that a rule matched: "waf.blocked" (denied) or "waf.detected".
func WithRecorder(r event.Recorder) Option {
	return func(w *WAF) { w.recorder = r }
}

// WithLogger sets the logger for errors that the Handler cannot report
// to the client.
func WithLogger(l *slog.Logger) Option {
	return func(w *WAF) { w.logger = l }
}

// WithClock sets the clock used for event times.
func WithClock(now func() time.Time) Option {
	return func(w *WAF) { w.now = now }
}

// WAF is a compiled rule set with its settings. It is safe for concurrent
// use by any number of goroutines until Close.
type WAF struct {
	cfg      Config
	engine   coraza.WAF // nil in mode Off
	rules    map[int]ruleInfo
	binary   mediaMatcher
	recorder event.Recorder
	logger   *slog.Logger
	now      func() time.Time

	open      atomic.Int64 // transactions created and not yet closed
	closeOnce sync.Once
}

// New compiles the embedded CRS with cfg (after cfg.WithDefaults). A
// configuration that does not validate, or that excludes a rule id or tag
// that no loaded rule has, is an error naming every such problem. Building
// takes a fraction of a second and some tens of megabytes: build once per
// configuration, not per request.
func New(cfg Config, opts ...Option) (*WAF, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &WAF{
		cfg:      cfg,
		binary:   newMediaMatcher(cfg.BinaryContentTypes),
		recorder: event.Discard{},
		logger:   slog.New(slog.DiscardHandler),
		now:      time.Now,
	}
	for _, o := range opts {
		o(w)
	}
	if cfg.Mode == Off {
		return w, nil
	}
	idx := newRuleIndex()
	wc := coraza.NewWAFConfig().
		WithRootFS(rulesFS()).
		WithDirectives(directives(cfg))
	wc = experimental.WAFConfigWithRuleObserver(wc, idx.observe)
	engine, err := coraza.NewWAF(wc)
	if err != nil {
		return nil, fmt.Errorf("waf: loading the rule set: %w", err)
	}
	if err := idx.checkExclusions(cfg); err != nil {
		closeEngine(engine)
		return nil, fmt.Errorf("waf: %w", err)
	}
	w.engine = engine
	w.rules = idx.rules
	return w, nil
}

// Config returns the settings w was built with, defaults applied.
func (w *WAF) Config() Config { return w.cfg }

// Close releases the compiled rule set's shared caches. It is idempotent.
// Checks already running finish normally; call Close once no new Check
// can start (after a reload has swapped w out).
func (w *WAF) Close() error {
	w.closeOnce.Do(func() {
		if w.engine != nil {
			closeEngine(w.engine)
		}
	})
	return nil
}

func closeEngine(e coraza.WAF) {
	if c, ok := e.(experimental.WAFCloser); ok {
		_ = c.Close()
	}
}

// newTransaction starts a transaction, counted until closeTx.
func (w *WAF) newTransaction(opts experimental.Options) types.Transaction {
	w.open.Add(1)
	if e, ok := w.engine.(experimental.WAFWithOptions); ok {
		return e.NewTransactionWithOptions(opts)
	}
	return w.engine.NewTransaction()
}

// closeTx runs the logging phase and closes tx, whatever happened before.
func (w *WAF) closeTx(tx types.Transaction) {
	defer w.open.Add(-1)
	tx.ProcessLogging()
	if err := tx.Close(); err != nil {
		w.logger.Warn("closing a waf transaction", "err", err)
	}
}

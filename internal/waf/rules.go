package waf

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3/types"
)

// rulesFS is the embedded rule set: @coraza.conf-recommended,
// @crs-setup.conf.example and @owasp_crs/*.
func rulesFS() fs.FS { return coreruleset.FS }

// setupRuleID is the id of the SecAction carrying the per-instance CRS
// settings, the one crs-setup.conf reserves for them.
const setupRuleID = 900000

// directives is the SecLang configuration for cfg: Coraza's recommended
// engine settings with Moat's overrides, the CRS setup, the request rule
// files and the exclusions, in that order (removals only apply to rules
// already loaded).
func directives(cfg Config) string {
	var b strings.Builder
	b.WriteString("Include @coraza.conf-recommended\n")
	if cfg.Mode == Detect {
		b.WriteString("SecRuleEngine DetectionOnly\n")
	} else {
		b.WriteString("SecRuleEngine On\n")
	}
	// The body is read, capped and, beyond the cap, rejected or cut by
	// Check itself; Coraza gets at most BodyLimit bytes, kept in memory,
	// so its own limit (reached at exactly its value) must lie above.
	limit := strconv.FormatInt(cfg.BodyLimit+1, 10)
	b.WriteString("SecRequestBodyAccess On\n")
	b.WriteString("SecRequestBodyLimit " + limit + "\n")
	b.WriteString("SecRequestBodyInMemoryLimit " + limit + "\n")
	b.WriteString("SecRequestBodyLimitAction ProcessPartial\n")
	b.WriteString("SecResponseBodyAccess Off\n")
	b.WriteString("SecAuditEngine Off\n")
	// The regex pre-filter (SecRxPreFilter On) would save about a third
	// of the time on bodies with many arguments, but as of Coraza 3.8 it
	// misses true matches of rules 942220 and 932311 in the CRS's own
	// regression tests, so it stays off.
	b.WriteString("SecRxPreFilter Off\n")

	fmt.Fprintf(&b, "SecAction \"id:%d,phase:1,pass,nolog,t:none", setupRuleID)
	fmt.Fprintf(&b, ",setvar:tx.blocking_paranoia_level=%d", cfg.ParanoiaLevel)
	fmt.Fprintf(&b, ",setvar:tx.detection_paranoia_level=%d", cfg.DetectionParanoiaLevel)
	fmt.Fprintf(&b, ",setvar:tx.inbound_anomaly_score_threshold=%d", cfg.InboundThreshold)
	b.WriteString(",setvar:tx.crs_skip_response_analysis=1")
	for _, name := range slices.Sorted(maps.Keys(cfg.Variables)) {
		fmt.Fprintf(&b, ",setvar:'tx.%s=%s'", name, cfg.Variables[name])
	}
	b.WriteString("\"\n")

	b.WriteString("Include @crs-setup.conf.example\n")
	b.WriteString("Include @owasp_crs/REQUEST-*.conf\n")

	// Rules above the detection paranoia level are skipped by the CRS's
	// skipAfter guards on every request; removing them once at load
	// saves walking over them (about a fifth of a plain GET's time at
	// paranoia level 1) and changes no decision.
	for pl := cfg.DetectionParanoiaLevel + 1; pl <= 4; pl++ {
		fmt.Fprintf(&b, "SecRuleRemoveByTag paranoia-level/%d\n", pl)
	}
	if len(cfg.RemoveRules) > 0 {
		b.WriteString("SecRuleRemoveById " + strings.Join(cfg.RemoveRules, " ") + "\n")
	}
	for _, tag := range cfg.RemoveTags {
		b.WriteString("SecRuleRemoveByTag " + tag + "\n")
	}
	return b.String()
}

// ruleInfo is what a verdict tells about a matched rule: only text that
// comes from the rule set, never from the request.
type ruleInfo struct {
	msg      string
	severity string
	tags     []string // the attack-* tags
	scoring  bool     // anomaly score evaluation and correlation bookkeeping
}

// ruleIndex collects every rule as it is loaded, to validate exclusions
// and to describe matches.
type ruleIndex struct {
	rules map[int]ruleInfo
	tags  map[string]struct{}
}

func newRuleIndex() *ruleIndex {
	return &ruleIndex{rules: make(map[int]ruleInfo, 1024), tags: make(map[string]struct{}, 512)}
}

func (x *ruleIndex) observe(r types.RuleMetadata) {
	id := r.ID()
	if id <= 0 {
		return
	}
	info := ruleInfo{msg: staticMessage(r.Raw()), scoring: isScoring(id)}
	if s := r.Severity(); s != types.RuleSeverityUnset {
		info.severity = s.String()
	}
	for _, t := range r.Tags() {
		x.tags[t] = struct{}{}
		if strings.HasPrefix(t, "attack-") {
			info.tags = append(info.tags, t)
		}
	}
	x.rules[id] = info
}

// checkExclusions reports each excluded id, range or tag that matches no
// loaded rule: such an exclusion is a typo that would silently leave the
// intended rule active.
func (x *ruleIndex) checkExclusions(cfg Config) error {
	var errs []error
	for _, s := range cfg.RemoveRules {
		lo, hi, _ := parseIDRange(s)
		if !x.anyInRange(lo, hi) {
			if lo == hi {
				errs = append(errs, fmt.Errorf("removed rule %d: no such rule", lo))
			} else {
				errs = append(errs, fmt.Errorf("removed rule range %d-%d: no rule in it", lo, hi))
			}
		}
	}
	for _, tag := range cfg.RemoveTags {
		if _, ok := x.tags[tag]; !ok {
			errs = append(errs, fmt.Errorf("removed tag %q: no rule has it", tag))
		}
	}
	return errors.Join(errs...)
}

func (x *ruleIndex) anyInRange(lo, hi int) bool {
	if hi-lo < len(x.rules) {
		for id := lo; id <= hi; id++ {
			if _, ok := x.rules[id]; ok {
				return true
			}
		}
		return false
	}
	for id := range x.rules {
		if lo <= id && id <= hi {
			return true
		}
	}
	return false
}

// isScoring reports the CRS rules that evaluate or report anomaly scores
// rather than detect anything themselves.
func isScoring(id int) bool {
	switch id / 1000 {
	case 949, 959, 980:
		return true
	}
	return false
}

// maxMessage bounds the length of a rule message in a verdict.
const maxMessage = 96

// staticMessage extracts the msg action from a rule's source text,
// dropping any macro (%{...}), which would expand to request data, and
// everything after it.
func staticMessage(raw string) string {
	i := strings.Index(raw, "msg:'")
	if i < 0 {
		return ""
	}
	msg := raw[i+len("msg:'"):]
	if j := strings.IndexByte(msg, '\''); j >= 0 {
		msg = msg[:j]
	}
	if j := strings.Index(msg, "%{"); j >= 0 {
		msg = strings.TrimRight(msg[:j], " (:")
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	return strings.ToValidUTF8(msg, "")
}

// parseIDRange parses "942100" or "942100-942199".
func parseIDRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = parseID(a)
	if err != nil {
		return 0, 0, fmt.Errorf("removed rule %q: %w", s, err)
	}
	hi = lo
	if isRange {
		if hi, err = parseID(b); err != nil {
			return 0, 0, fmt.Errorf("removed rule range %q: %w", s, err)
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("removed rule range %q: ends before it starts", s)
		}
	}
	return lo, hi, nil
}

func parseID(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, errors.New("a rule id is 1 to 9 digits")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("a rule id is 1 to 9 digits")
		}
	}
	id, _ := strconv.Atoi(s)
	if id == 0 {
		return 0, errors.New("rule id 0 does not exist")
	}
	return id, nil
}

// validTag accepts the characters CRS tags use, so that a tag can be
// written into a directive as is.
func validTag(tag string) error {
	if tag == "" || len(tag) > 128 {
		return fmt.Errorf("removed tag %q: must be 1 to 128 bytes", tag)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !(isAlnum(c) || strings.IndexByte("-_./:", c) >= 0) {
			return fmt.Errorf("removed tag %q: has %q, only letters, digits and - _ . / : are allowed", tag, c)
		}
	}
	return nil
}

// reservedVariable names the Config field that sets a CRS variable
// which Variables may not set.
func reservedVariable(name string) (field string, ok bool) {
	switch name {
	case "paranoia_level", "blocking_paranoia_level":
		return "ParanoiaLevel", true
	case "detection_paranoia_level", "executing_paranoia_level":
		return "DetectionParanoiaLevel", true
	case "inbound_anomaly_score_threshold":
		return "InboundThreshold", true
	case "outbound_anomaly_score_threshold", "crs_skip_response_analysis":
		return "nothing (responses are not inspected)", true
	case "crs_setup_version":
		return "the rule set", true
	}
	return "", false
}

// validVariable accepts a CRS setup variable whose name and value can be
// written into a setvar action as they are: no quotes, backslashes,
// macros or control characters.
func validVariable(name, value string) error {
	if name == "" || len(name) > 64 || !(name[0] >= 'a' && name[0] <= 'z') {
		return fmt.Errorf("variable %q: a name is 1 to 64 lower-case letters, digits and _, starting with a letter", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("variable %q: a name is 1 to 64 lower-case letters, digits and _, starting with a letter", name)
		}
	}
	if field, ok := reservedVariable(name); ok {
		return fmt.Errorf("variable %q: set by %s, not as a variable", name, field)
	}
	if len(value) > 4096 {
		return fmt.Errorf("variable %q: value longer than 4096 bytes", name)
	}
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c < 0x20 || c > 0x7e || c == '\'' || c == '"' || c == '\\' || c == '%' {
			return fmt.Errorf("variable %q: value has %q; quotes, backslashes, %% and control or non-ASCII bytes are not allowed", name, c)
		}
	}
	return nil
}

// validMediaRange accepts "type/subtype" and "type/*" in lower case.
func validMediaRange(s string) error {
	typ, sub, ok := strings.Cut(s, "/")
	if !ok || !isToken(typ) || !(sub == "*" || isToken(sub)) || strings.ToLower(s) != s {
		return fmt.Errorf("binary content type %q: must be a lower-case type/subtype or type/*", s)
	}
	return nil
}

func isToken(s string) bool {
	if s == "" || len(s) > 127 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || strings.IndexByte("!#$&-^_.+", c) >= 0) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// mediaMatcher tells whether a Content-Type names a binary media type.
type mediaMatcher struct {
	exact    map[string]struct{}
	prefixes []string // "image/" for "image/*"
}

func newMediaMatcher(ranges []string) mediaMatcher {
	m := mediaMatcher{exact: make(map[string]struct{}, len(ranges))}
	for _, r := range ranges {
		if p, ok := strings.CutSuffix(r, "*"); ok {
			m.prefixes = append(m.prefixes, p)
		} else {
			m.exact[r] = struct{}{}
		}
	}
	return m
}

// match reports whether the media type of contentType (parameters and
// surrounding white space ignored, case-insensitively) is binary. It trims
// the way Coraza does when it picks a body processor, so that both see the
// same type.
func (m mediaMatcher) match(contentType string) bool {
	if contentType == "" || (len(m.exact) == 0 && len(m.prefixes) == 0) {
		return false
	}
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if _, ok := m.exact[mt]; ok {
		return true
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(mt, p) && len(mt) > len(p) {
			return true
		}
	}
	return false
}

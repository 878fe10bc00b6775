package authz

import (
	"fmt"
	"io"
	"strings"
)

// RuleResult is what one rule made of a request.
type RuleResult struct {
	Kind    string // "allow" or "deny"
	Name    string // as in Decision.Rule
	Matched bool
	// Failed has a line per condition that failed, saying what the rule
	// needs and what the request has, such as
	// "roles: needs one of [admin]; has [user]" or "expr: false".
	Failed []string
	// Notes has what else a reader should know, such as a deny rule's
	// expression that failed at run time and so counted as a match.
	Notes []string
}

// Explanation is a decision with the result of every rule.
type Explanation struct {
	Decision Decision
	Rules    []RuleResult // the deny rules, then the allow rules, each in order
}

// Explain decides on r as Decide does, and also checks every condition of
// every rule, to say why each rule matched or not. It costs more than
// Decide and is meant for tools (moat policy test) and debugging, not for
// every request. It is safe for concurrent use.
func (c *Compiled) Explain(r *Request) Explanation {
	if c == nil || r == nil {
		return Explanation{Decision: Decision{Outcome: Denied}}
	}
	ev := evaluator{c: c, r: r}
	defer ev.release()
	var e Explanation
	decided, stepUp := false, false
	result := func(rl *rule) cond {
		failed, x := rl.matchAll(&ev)
		rr := RuleResult{Kind: rl.kind, Name: rl.name, Matched: failed == 0, Failed: rl.describe(failed, x, r)}
		if rl.deny && x.err != nil {
			rr.Notes = append(rr.Notes, fmt.Sprintf("expr: error: %v; a deny rule counts an error as a match", x.err))
		}
		e.Rules = append(e.Rules, rr)
		return failed
	}
	for i := range c.deny {
		if result(&c.deny[i]) == 0 && !decided {
			e.Decision = Decision{Outcome: Denied, Rule: c.deny[i].name}
			decided = true
		}
	}
	for i := range c.allow {
		failed := result(&c.allow[i])
		if failed == 0 && !decided {
			e.Decision = Decision{Outcome: Allowed, Rule: c.allow[i].name}
			decided = true
		}
		if failed != 0 && failed&^mfaConds == 0 {
			stepUp = true
		}
	}
	if !decided {
		switch {
		case r.Principal == nil && c.anyNonAnonymousAllow:
			e.Decision = Decision{Outcome: NeedLogin}
		case r.Principal != nil && stepUp:
			e.Decision = Decision{Outcome: NeedStepUp}
		default:
			e.Decision = Decision{Outcome: Denied}
		}
	}
	return e
}

// WriteText writes e for a person to read: the decision and the rule that
// made it, then every rule, marked ✔ when it matched and ✘ when not, with
// the conditions that failed. The text depends only on e.
func (e Explanation) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "decision: %s\n", e.Decision.Outcome)
	var deny, allow []RuleResult
	for _, rr := range e.Rules {
		if rr.Kind == "deny" {
			deny = append(deny, rr)
		} else {
			allow = append(allow, rr)
		}
	}
	if e.Decision.Rule != "" {
		fmt.Fprintf(&b, "rule: %s\n", e.ruleLabel(e.Decision.Rule, deny, allow))
	} else {
		b.WriteString("rule: none\n")
		switch e.Decision.Outcome {
		case NeedLogin:
			b.WriteString("why: no allow rule matched an anonymous request; signing in may help\n")
		case NeedStepUp:
			b.WriteString("why: an allow rule failed only for want of a second factor or a recent enough sign-in; signing in again with a second factor may help\n")
		case Denied:
			if len(allow) == 0 {
				b.WriteString("why: the policy has no allow rules, so it denies everything\n")
			} else {
				b.WriteString("why: no allow rule matched, and what is not allowed is denied\n")
			}
		}
	}
	section := func(title string, rules []RuleResult) {
		b.WriteString("\n")
		if len(rules) == 0 {
			fmt.Fprintf(&b, "%s: none\n", title)
			return
		}
		fmt.Fprintf(&b, "%s:\n", title)
		for i, rr := range rules {
			mark := "✘"
			if rr.Matched {
				mark = "✔"
			}
			fmt.Fprintf(&b, "  %s %s\n", mark, ruleLabel(rr, i))
			for _, f := range rr.Failed {
				fmt.Fprintf(&b, "      %s\n", f)
			}
			for _, n := range rr.Notes {
				fmt.Fprintf(&b, "      note: %s\n", n)
			}
		}
	}
	section("deny rules", deny)
	section("allow rules", allow)
	_, err := io.WriteString(w, b.String())
	return err
}

// ruleLabel names the rule called name with its position.
func (e Explanation) ruleLabel(name string, deny, allow []RuleResult) string {
	first := deny
	if e.Decision.Outcome == Allowed {
		first = allow
	}
	for i, rr := range first {
		if rr.Name == name {
			return ruleLabel(rr, i)
		}
	}
	return name
}

// ruleLabel writes "allow[i]" for an unnamed rule and "allow[i] name" for
// a named one.
func ruleLabel(rr RuleResult, i int) string {
	pos := fmt.Sprintf("%s[%d]", rr.Kind, i)
	if rr.Name == pos {
		return pos
	}
	return pos + " " + rr.Name
}

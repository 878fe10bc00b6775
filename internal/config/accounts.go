package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Bounds on the password settings.
const (
	minPasswordFloor   = 8
	maxPasswordFloor   = 64
	maxPasswordCeiling = 1024
	minHashMemory      = 19 << 20
	maxHashMemory      = 1 << 30
	minIterations      = 2
	maxIterations      = 10
	maxParallelism     = 16
)

func (v *validator) accounts(a Accounts) {
	const p = "accounts."
	if err := checkURL(a.PublicURL, "https"); err != nil {
		v.add(p+"public_url", "%v", err)
	} else if u, _ := url.Parse(a.PublicURL); u.Path != "" && u.Path != "/" {
		v.add(p+"public_url", "must be an origin (https://host[:port]) with no path")
	}
	for i, r := range a.MFARoles {
		v.check(indexPath(p+"mfa_roles", i), checkRole(r))
	}
	v.positive(p+"enroll_link_ttl", a.EnrollLinkTTL)

	pw := a.Password
	if pw.MinLength < minPasswordFloor {
		v.add(p+"password.min_length", "must be at least %d (NIST SP 800-63B)", minPasswordFloor)
	}
	if pw.MaxLength < maxPasswordFloor || pw.MaxLength > maxPasswordCeiling {
		v.add(p+"password.max_length", "must be between %d and %d", maxPasswordFloor, maxPasswordCeiling)
	} else if pw.MaxLength < pw.MinLength {
		v.add(p+"password.max_length", "is less than min_length (%d)", pw.MinLength)
	}
	if pw.Memory < minHashMemory || pw.Memory > maxHashMemory {
		v.add(p+"password.memory", "must be between 19MiB (the OWASP minimum for argon2id) and 1GiB")
	}
	if pw.Iterations < minIterations || pw.Iterations > maxIterations {
		v.add(p+"password.iterations", "must be between %d and %d", minIterations, maxIterations)
	}
	if pw.Parallelism < 1 || pw.Parallelism > maxParallelism {
		v.add(p+"password.parallelism", "must be between 1 and %d", maxParallelism)
	}
	if pw.HashMemoryBudget < pw.Memory {
		v.add(p+"password.hash_memory_budget", "must hold at least one hash (%s)", pw.Memory)
	}
	nonNegative(v, p+"password.hash_wait", pw.HashWait)

	lo := a.Lockout
	if lo.MaxFailures < 1 {
		v.add(p+"lockout.max_failures", "must be at least 1")
	}
	if lo.AddressMaxFailures < 1 {
		v.add(p+"lockout.address_max_failures", "must be at least 1")
	}
	v.positive(p+"lockout.window", lo.Window)
	v.positive(p+"lockout.lock_for", lo.LockFor)
	nonNegative(v, p+"lockout.back_off", lo.BackOff)
	v.check(p+"lockout.failure_mode", oneOf("failure mode", lo.FailureMode, FailOpen, FailClosed))

	se := a.Sessions
	if se.SameSite != "" {
		v.check(p+"sessions.same_site", oneOf("same_site", se.SameSite, "lax", "strict"))
	}
	v.positive(p+"sessions.idle_timeout", se.IdleTimeout)
	v.positive(p+"sessions.absolute_timeout", se.AbsoluteTimeout)
	if se.IdleTimeout > se.AbsoluteTimeout {
		v.add(p+"sessions.idle_timeout", "is longer than absolute_timeout (%s)", se.AbsoluteTimeout)
	}
	if u := se.RedisURL; u != "" && !isSecretRef(u) {
		if err := checkRedisURL(u); err != nil {
			v.add(p+"sessions.redis_url", "%v", err)
		}
	}

	pk := a.Passkeys
	if pk.Disabled {
		return
	}
	if err := checkDNSName(pk.RPID); err != nil && pk.RPID != "localhost" {
		v.add(p+"passkeys.rp_id", "%q: %v", clip(pk.RPID, 60), err)
	}
	if len(pk.Origins) == 0 {
		v.add(p+"passkeys.origins", "at least one origin is required")
	}
	for i, o := range pk.Origins {
		v.check(indexPath(p+"passkeys.origins", i), checkOrigin(o, pk.RPID))
	}
}

// checkRole accepts role names like admin, billing-viewer or ops.oncall.
func checkRole(r string) error {
	if r == "" || len(r) > 64 {
		return errors.New("a role name is 1 to 64 characters")
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return fmt.Errorf("role %q: use lower-case letters, digits, '-', '_', '.' or ':'", clip(r, 60))
		}
	}
	return nil
}

// checkOrigin accepts an https origin whose host is rpID or a subdomain of it.
func checkOrigin(o, rpID string) error {
	u, err := url.Parse(o)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q is not an https origin (https://host[:port])", clip(o, 80))
	}
	h := strings.ToLower(u.Hostname())
	if rpID != "" && h != rpID && !strings.HasSuffix(h, "."+rpID) {
		return fmt.Errorf("%q is not rp_id %q or below it: browsers refuse such a passkey ceremony", clip(o, 80), rpID)
	}
	return nil
}

func checkRedisURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return errors.New("must be a redis:// or rediss:// URL")
	}
	if _, has := u.User.Password(); has {
		return errors.New("holds a password: write it as a secret reference (env:NAME or file:PATH)")
	}
	return nil
}

package accounts

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/ratelimit"
)

// attempt is the start of every guessable sign-in step for an account (a
// password, a code): it counts the attempt as a failure before it is
// checked, so that guesses sent at once cannot all pass the check, and is
// forgiven by forgive when the step succeeds. ok is false when the account
// is in back-off or locked; the caller then refuses without checking
// anything. lockedNow tells the caller, if the step fails, to report the
// lock.
func (s *Service) attempt(ctx context.Context, name string) (l ratelimit.Lock, lockedNow bool, err error) {
	l, lockedNow, err = s.o.Failures.Attempt(ctx, s.o.AccountPolicy, accountKey(name))
	if err != nil {
		return l, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return l, lockedNow, nil
}

// forgive clears an account's failures after a correct answer. A failure
// to clear them is logged, not fatal: the count expires by itself.
func (s *Service) forgive(ctx context.Context, name string) {
	if err := s.o.Failures.Reset(ctx, s.o.AccountPolicy, accountKey(name)); err != nil {
		s.o.Logger.Warn("clearing an account's failed attempts", "user", name, "err", err)
	}
}

// checkAddress says whether the client address may make an attempt.
func (s *Service) checkAddress(ctx context.Context, ip netip.Addr) (ratelimit.Lock, error) {
	l, err := s.o.Failures.Check(ctx, s.o.AddressPolicy, addressKey(ip))
	if err != nil {
		return l, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return l, nil
}

// failAddress counts a failure against the client address, recording the
// lock it starts. Addresses count failures only, never successes, and a
// success does not forgive them: many people may share an address, and a
// sprayer must not be able to clear its count by signing in to an account
// of its own.
func (s *Service) failAddress(ctx context.Context, who string, ip netip.Addr, reason string) {
	locked, err := s.o.Failures.Fail(ctx, s.o.AddressPolicy, addressKey(ip))
	if err != nil {
		s.o.Logger.Warn("counting a failed attempt against an address", "err", err)
		return
	}
	if locked {
		s.record(ctx, "address.locked", event.Denied, who, ip, "lockout.address", map[string]string{"reason": reason})
	}
}

func accountKey(name string) string { return "u:" + name }

func addressKey(ip netip.Addr) string { return "ip:" + addrKey(ip) }

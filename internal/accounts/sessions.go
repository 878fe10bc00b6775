package accounts

import (
	"context"
	"net/netip"

	"github.com/moatgw/moat/internal/event"
	"github.com/moatgw/moat/internal/store"
)

// Sessions lists the sessions of a user that still count.
func (s *Service) Sessions(ctx context.Context, username string) ([]*store.Session, error) {
	u, err := s.user(ctx, username)
	if err != nil {
		return nil, err
	}
	return s.o.Sessions.List(ctx, u.ID)
}

// RevokeSessions ends every session of a user, on every instance, and
// returns how many were live.
func (s *Service) RevokeSessions(ctx context.Context, username string) (int, error) {
	u, err := s.user(ctx, username)
	if err != nil {
		return 0, err
	}
	n, err := s.o.Sessions.RevokeUser(ctx, u.ID)
	if err != nil {
		return 0, err
	}
	s.record(ctx, "session.revoked", event.Success, u.Username, noAddr, "admin", map[string]string{"sessions": itoa(n)})
	return n, nil
}

// LogoutEverywhere ends every session of p's user, this one included.
func (s *Service) LogoutEverywhere(ctx context.Context, p *Principal, ip netip.Addr) error {
	n, err := s.o.Sessions.RevokeUser(ctx, p.UserID)
	if err != nil {
		return err
	}
	s.record(ctx, "session.revoked", event.Success, p.Username, ip, "logout_everywhere", map[string]string{"sessions": itoa(n)})
	return nil
}

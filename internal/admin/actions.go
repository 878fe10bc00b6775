package admin

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/authn"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/store"
)

// WhoAmI is the answer of GET api/whoami.
type WhoAmI struct {
	Subject     string       `json:"subject"`          // a user id
	Name        string       `json:"name"`             // the user name, or the API key's name
	Method      string       `json:"method"`           // "session" or "apikey"
	KeyID       string       `json:"key_id,omitempty"` // the API key's id
	Roles       []string     `json:"roles"`
	Permissions []Permission `json:"permissions"` // what the roles grant through this method
	MFA         bool         `json:"mfa"`         // the sign-in used a second factor
	// MFARecent is whether the permissions that need a recent second
	// factor can be used now, and MFAUntil until when.
	MFARecent bool      `json:"mfa_recent"`
	MFAUntil  time.Time `json:"mfa_until,omitzero"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
}

// User is one user in the answer of GET api/users.
type User struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	DisplayName string         `json:"display_name,omitempty"`
	Roles       []string       `json:"roles"`
	Status      string         `json:"status"`  // active or disabled
	Factors     map[string]int `json:"factors"` // by kind: password, totp, webauthn, recovery
	MFA         bool           `json:"mfa"`     // has a second factor (an authenticator app or a passkey)
	CreatedAt   time.Time      `json:"created_at"`
	LastLoginAt time.Time      `json:"last_login_at,omitzero"`
}

// Session is one session in the answer of GET api/users/{name}/sessions.
type Session struct {
	ID        string    `json:"id"`      // the non-secret id logs and events name it by
	Methods   []string  `json:"methods"` // how the user signed in: pwd, otp, webauthn, ...
	AuthTime  time.Time `json:"auth_time"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	ExpiresAt time.Time `json:"expires_at"`
}

// APIKey is one key in the answer of GET api/apikeys. It holds nothing
// secret: the id and prefix are how the key is named, not the key.
type APIKey struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Owner      string    `json:"owner"` // a user name, or "service"
	Prefix     string    `json:"prefix"`
	Scopes     []string  `json:"scopes"`
	State      string    `json:"state"` // active, rotated (works until revoked_at), revoked or expired
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"` // zero: never
	RevokedAt  time.Time `json:"revoked_at,omitzero"` // for a rotated key, in the future
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

func (h *Handler) whoami(_ context.Context, c *call) (any, error) {
	p := c.p
	out := WhoAmI{
		Subject: p.Subject, Name: p.Name, Method: p.Method, KeyID: p.KeyID,
		Roles: nonNil(p.Roles), Permissions: []Permission{}, MFA: p.MultiFactor(), AuthTime: utc(p.AuthTime),
	}
	if p.Method == authn.MethodSession || p.Method == authn.MethodAPIKey {
		out.Permissions = Permissions(p.Roles)
	}
	if p.Method == authn.MethodSession && p.MultiFactor() && recent(p.AuthTime, h.o.Now(), h.o.MFAMaxAge) {
		out.MFARecent, out.MFAUntil = true, p.AuthTime.Add(h.o.MFAMaxAge).UTC()
	}
	return out, nil
}

func (h *Handler) listUsers(ctx context.Context, c *call) (any, error) {
	users, err := h.o.Accounts.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	out := make([]User, 0, len(users))
	for _, u := range users {
		f, err := h.o.Accounts.Factors(ctx, u.ID)
		if err != nil {
			return nil, fmt.Errorf("listing the factors of %s: %w", u.Username, err)
		}
		out = append(out, User{
			ID: u.ID, Name: u.Username, DisplayName: u.DisplayName, Roles: nonNil(u.Roles), Status: u.Status,
			Factors: f, MFA: f[accounts.KindTOTP] > 0 || f[accounts.KindWebAuthn] > 0,
			CreatedAt: u.CreatedAt.UTC(), LastLoginAt: utc(u.LastLoginAt),
		})
	}
	c.details["users"] = strconv.Itoa(len(out))
	return map[string]any{"users": out}, nil
}

func (h *Handler) listSessions(ctx context.Context, c *call) (any, error) {
	u, err := h.target(ctx, c, false)
	if err != nil {
		return nil, err
	}
	sessions, err := h.o.Accounts.Sessions(ctx, u.Username)
	if err != nil {
		return nil, fmt.Errorf("listing the sessions of %s: %w", u.Username, err)
	}
	out := make([]Session, 0, len(sessions))
	for _, s := range sessions {
		out = append(out, Session{
			ID: hex.EncodeToString(s.IDHash[:min(8, len(s.IDHash))]), Methods: nonNil(s.Methods),
			AuthTime: s.AuthTime.UTC(), CreatedAt: s.CreatedAt.UTC(), LastSeen: utc(s.LastSeen), ExpiresAt: s.ExpiresAt.UTC(),
		})
	}
	return map[string]any{"user": u.Username, "sessions": out}, nil
}

func (h *Handler) revokeSessions(ctx context.Context, c *call) (any, error) {
	u, err := h.target(ctx, c, true)
	if err != nil {
		return nil, err
	}
	n, err := h.o.Accounts.RevokeSessions(ctx, u.Username)
	if err != nil {
		return nil, fmt.Errorf("revoking the sessions of %s: %w", u.Username, err)
	}
	c.details["sessions"] = strconv.Itoa(n)
	return map[string]any{"user": u.Username, "revoked": n}, nil
}

func (h *Handler) disable(ctx context.Context, c *call) (any, error) {
	return h.setStatus(ctx, c, accounts.StatusDisabled)
}

func (h *Handler) enable(ctx context.Context, c *call) (any, error) {
	return h.setStatus(ctx, c, accounts.StatusActive)
}

func (h *Handler) setStatus(ctx context.Context, c *call, status string) (any, error) {
	u, err := h.target(ctx, c, true)
	if err != nil {
		return nil, err
	}
	if status == accounts.StatusDisabled && u.ID == c.p.Subject {
		return nil, &refusal{ReasonSelf, &problem.Error{Status: http.StatusConflict,
			Detail: "You cannot disable your own account: ask another operator or admin."}}
	}
	if err := h.o.Accounts.SetStatus(ctx, u.Username, status); err != nil {
		return nil, fmt.Errorf("setting the status of %s: %w", u.Username, err)
	}
	return map[string]any{"user": u.Username, "status": status}, nil
}

func (h *Handler) resetMFA(ctx context.Context, c *call) (any, error) {
	u, err := h.target(ctx, c, true)
	if err != nil {
		return nil, err
	}
	if err := h.o.Accounts.ResetMFA(ctx, u.Username); err != nil {
		return nil, fmt.Errorf("resetting the second factors of %s: %w", u.Username, err)
	}
	return map[string]any{"user": u.Username, "mfa_reset": true}, nil
}

func (h *Handler) resetPassword(ctx context.Context, c *call) (any, error) {
	u, err := h.target(ctx, c, true)
	if err != nil {
		return nil, err
	}
	tok, err := h.o.Accounts.EnrollmentToken(ctx, u.Username)
	if err != nil {
		return nil, fmt.Errorf("resetting the password of %s: %w", u.Username, err)
	}
	return map[string]any{"user": u.Username, "password_reset": true, "enrollment_token": tok}, nil
}

func (h *Handler) listAPIKeys(ctx context.Context, c *call) (any, error) {
	keys, err := h.o.APIKeys.List(ctx)
	if err != nil {
		return nil, err
	}
	now := h.o.Now()
	out := make([]APIKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, APIKey{
			ID: k.ID, Name: k.Name, Owner: k.Owner, Prefix: k.Prefix, Scopes: nonNil(k.Scopes), State: keyState(k, now),
			CreatedAt: k.CreatedAt.UTC(), ExpiresAt: utc(k.ExpiresAt), RevokedAt: utc(k.RevokedAt), LastUsedAt: utc(k.LastUsedAt),
		})
	}
	c.details["apikeys"] = strconv.Itoa(len(out))
	return map[string]any{"apikeys": out}, nil
}

func (h *Handler) revokeAPIKey(ctx context.Context, c *call) (any, error) {
	notFound := &problem.Error{Status: http.StatusNotFound, Detail: "There is no API key with this id."}
	if !validKeyID(c.arg) {
		return nil, notFound
	}
	k, err := h.findKey(ctx, c.arg)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, notFound
	}
	c.details["owner"] = k.Owner
	if err := h.o.APIKeys.Revoke(ctx, k.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound
		}
		// A rotated key may keep its later revocation time.
		if again, _ := h.findKey(ctx, k.ID); again != nil && again.RevokedAt.After(h.o.Now()) {
			return nil, &problem.Error{Status: http.StatusConflict, Err: err,
				Detail: "This key was rotated and keeps working until " + again.RevokedAt.UTC().Format(time.RFC3339) + "; it cannot be revoked earlier."}
		}
		return nil, err
	}
	return map[string]any{"id": k.ID, "revoked": true}, nil
}

// target returns the user the path names, or a 404 problem. For a change
// (change true), a user holding any permission the caller lacks is
// refused: an operator cannot disable an admin, nor revoke an admin's
// sessions.
func (h *Handler) target(ctx context.Context, c *call, change bool) (*store.User, error) {
	notFound := &problem.Error{Status: http.StatusNotFound, Detail: "There is no such user."}
	name, err := accounts.NormalizeUsername(c.arg)
	if err != nil {
		return nil, notFound
	}
	c.details["target"] = name
	users, err := h.o.Accounts.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("finding user %s: %w", name, err)
	}
	i := slices.IndexFunc(users, func(u *store.User) bool { return u.Username == name })
	if i < 0 {
		return nil, notFound
	}
	u := users[i]
	if change {
		mine := Permissions(c.p.Roles)
		for _, p := range Permissions(u.Roles) {
			if !slices.Contains(mine, p) {
				return nil, &refusal{ReasonTarget, &problem.Error{Status: http.StatusForbidden,
					Detail: "This user holds administration permissions that you do not: ask someone with the admin role."}}
			}
		}
	}
	return u, nil
}

func (h *Handler) findKey(ctx context.Context, id string) (*store.APIKey, error) {
	keys, err := h.o.APIKeys.List(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(keys, func(k *store.APIKey) bool { return k.ID == id })
	if i < 0 {
		return nil, nil
	}
	return keys[i], nil
}

// validKeyID reports whether id could be a key id: short, and of letters,
// digits, '-' and '_' only.
func validKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func keyState(k *store.APIKey, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):
		return "revoked"
	case !k.RevokedAt.IsZero():
		return "rotated"
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return "expired"
	}
	return "active"
}

// utc returns t in UTC, keeping the zero time (and a store's zero-like
// Unix epoch) zero so that it is left out of the answer.
func utc(t time.Time) time.Time {
	if t.IsZero() || t.Unix() <= 0 {
		return time.Time{}
	}
	return t.UTC()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

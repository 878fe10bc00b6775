package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moatgw/moat/internal/store"
)

// Redis keeps sessions in Redis, for Moat instances that share them. It is
// safe for concurrent use.
//
// Layout, under a prefix P:
//
//	P<hex(id hash)>   hash: uid, methods (JSON), auth, created, seen, exp,
//	                  rev (unix microseconds; rev 0 while not revoked).
//	                  TTL: until the idle or the absolute expiry, whichever
//	                  is first, refreshed by Touch.
//	Puser:<user id>   set of the user's session hashes (hex), cleaned of
//	                  members whose hash has expired; TTL: the latest
//	                  absolute expiry of its members.
//	Prevoked          pub/sub channel: "s:<hex>" for one session revoked,
//	                  "u:<user id>" for all of a user's.
//
// A revoked session keeps its hash, marked, until it would have expired,
// so a revocation is never lost by deleting: a stale copy checked against
// Redis is refused. Get is one HGETALL; Create, Touch, Revoke, RevokeUser
// and ListByUser are each one Lua script, atomic in Redis. The scripts
// reach a user's session keys from the user's set, so they need a single
// Redis node (standalone, or a primary behind Sentinel), not Cluster.
//
// Every Redis failure is returned as an error: a caller refuses the
// request rather than guess.
type Redis struct {
	c       *redis.Client
	prefix  string
	channel string
	idleUS  atomic.Int64 // idle timeout in microseconds; 0: TTL is the absolute expiry
}

// NewRedis returns a Redis backend using client, with every key and the
// revocation channel under prefix (such as "moat:session:"). Instances that
// share sessions use the same prefix.
func NewRedis(client *redis.Client, prefix string) *Redis {
	return &Redis{c: client, prefix: prefix, channel: prefix + "revoked"}
}

var _ Backend = (*Redis)(nil)

// setIdleTimeout is called by New: key TTLs follow the Manager's idle
// timeout.
func (r *Redis) setIdleTimeout(d time.Duration) { r.idleUS.Store(d.Microseconds()) }

func (r *Redis) key(idHash []byte) string { return r.prefix + hex.EncodeToString(idHash) }
func (r *Redis) userKey(userID string) string {
	return r.prefix + "user:" + userID
}

// ttlMillis is how long a session last active at seen should live, in
// milliseconds, at least 1.
func ttlMillis(seenUS, expUS, idleUS int64) int64 {
	end := expUS
	if idleUS > 0 {
		end = min(end, seenUS+idleUS)
	}
	return max((end-seenUS)/1000, 1)
}

// createScript stores a new session unless its key is taken (returns 0),
// adds it to the user's set, and drops members of that set whose session
// has expired.
// KEYS: session, user set. ARGV: uid, methods, auth, created, seen, exp,
// rev, ttl ms, user set ttl ms, hex id, prefix.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'methods', ARGV[2], 'auth', ARGV[3],
  'created', ARGV[4], 'seen', ARGV[5], 'exp', ARGV[6], 'rev', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[11] .. m) == 0 then redis.call('SREM', KEYS[2], m) end
end
redis.call('SADD', KEYS[2], ARGV[10])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[9]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
return 1
`)

// Create stores s. It does not check that the user exists.
func (r *Redis) Create(ctx context.Context, s *store.Session) error {
	if len(s.IDHash) != sha256.Size || s.ExpiresAt.IsZero() || s.UserID == "" {
		return errors.New("creating session: id hash, user and expiry are required")
	}
	created := s.CreatedAt
	if created.IsZero() {
		created = time.Now().UTC().Truncate(time.Microsecond)
	}
	auth, seen := s.AuthTime, s.LastSeen
	if auth.IsZero() {
		auth = created
	}
	if seen.IsZero() {
		seen = created
	}
	if !s.ExpiresAt.After(seen) {
		return errors.New("creating session: already expired")
	}
	methods, err := json.Marshal(nonNil(s.Methods))
	if err != nil {
		return fmt.Errorf("creating session: %w", err)
	}
	exp := s.ExpiresAt.UnixMicro()
	ttl := ttlMillis(seen.UnixMicro(), exp, r.idleUS.Load())
	userTTL := max((exp-seen.UnixMicro())/1000, 1)
	n, err := createScript.Run(ctx, r.c, []string{r.key(s.IDHash), r.userKey(s.UserID)},
		s.UserID, methods, auth.UnixMicro(), created.UnixMicro(), seen.UnixMicro(), exp,
		microsOrZero(s.RevokedAt), ttl, userTTL,
		hex.EncodeToString(s.IDHash), r.prefix).Int()
	if err != nil {
		return fmt.Errorf("creating session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("creating session: %w", store.ErrConflict)
	}
	s.CreatedAt, s.AuthTime = created, auth
	return nil
}

func microsOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// Get reads the session in one round trip (HGETALL).
func (r *Redis) Get(ctx context.Context, idHash []byte) (*store.Session, error) {
	f, err := r.c.HGetAll(ctx, r.key(idHash)).Result()
	if err != nil {
		return nil, fmt.Errorf("getting session: %w", err)
	}
	if len(f) == 0 {
		return nil, fmt.Errorf("getting session: %w", store.ErrNotFound)
	}
	s, err := decodeSession(idHash, f)
	if err != nil {
		return nil, fmt.Errorf("getting session: %w", err)
	}
	return s, nil
}

// decodeSession reads a session hash. A hash that lacks a field or holds a
// malformed one is an error (not "no session"): something else wrote it.
func decodeSession(idHash []byte, f map[string]string) (*store.Session, error) {
	s := &store.Session{IDHash: slices.Clone(idHash), UserID: f["uid"]}
	if s.UserID == "" {
		return nil, errors.New("malformed session record: no user")
	}
	if err := json.Unmarshal([]byte(f["methods"]), &s.Methods); err != nil {
		return nil, errors.New("malformed session record: methods")
	}
	for _, t := range []struct {
		field    string
		dst      *time.Time
		zeroIsOK bool
	}{
		{"auth", &s.AuthTime, false},
		{"created", &s.CreatedAt, false},
		{"seen", &s.LastSeen, false},
		{"exp", &s.ExpiresAt, false},
		{"rev", &s.RevokedAt, true},
	} {
		v, err := strconv.ParseInt(f[t.field], 10, 64)
		if err != nil || v < 0 || v == 0 && !t.zeroIsOK {
			return nil, fmt.Errorf("malformed session record: %s", t.field)
		}
		if v != 0 {
			*t.dst = time.UnixMicro(v).UTC()
		}
	}
	return s, nil
}

// touchScript records activity at ARGV[1] (never moving it back) and
// refreshes the TTL; it returns 0 for a missing session and leaves a
// revoked one as it is.
// KEYS: session. ARGV: at, idle µs.
var touchScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'seen', 'exp', 'rev')
if not v[1] or not v[2] then return 0 end
if v[3] ~= '0' then return 1 end
local seen = math.max(tonumber(v[1]), tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'seen', string.format('%d', seen))
local finish = tonumber(v[2])
local idle = tonumber(ARGV[2])
if idle > 0 and seen + idle < finish then finish = seen + idle end
redis.call('PEXPIRE', KEYS[1], math.max(math.floor((finish - seen) / 1000), 1))
return 1
`)

// Touch records activity at at and pushes the idle expiry forward.
func (r *Redis) Touch(ctx context.Context, idHash []byte, at time.Time) error {
	n, err := touchScript.Run(ctx, r.c, []string{r.key(idHash)}, at.UnixMicro(), r.idleUS.Load()).Int()
	if err != nil {
		return fmt.Errorf("touching session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touching session: %w", store.ErrNotFound)
	}
	return nil
}

// revokeScript marks a session revoked (keeping the first time) and
// publishes the revocation; it returns 0 for a missing session.
// KEYS: session. ARGV: at, channel, message.
var revokeScript = redis.NewScript(`
local rev = redis.call('HGET', KEYS[1], 'rev')
redis.call('PUBLISH', ARGV[2], ARGV[3])
if not rev then return 0 end
if rev == '0' then redis.call('HSET', KEYS[1], 'rev', ARGV[1]) end
return 1
`)

// Revoke marks the session revoked and tells every subscribed instance.
func (r *Redis) Revoke(ctx context.Context, idHash []byte, at time.Time) error {
	hexID := hex.EncodeToString(idHash)
	n, err := revokeScript.Run(ctx, r.c, []string{r.prefix + hexID}, at.UnixMicro(), r.channel, "s:"+hexID).Int()
	if err != nil {
		return fmt.Errorf("revoking session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("revoking session: %w", store.ErrNotFound)
	}
	return nil
}

// revokeUserScript marks every live session of a user revoked, drops
// expired members from the set, publishes, and returns how many it marked.
// KEYS: user set. ARGV: at, prefix, channel, message.
var revokeUserScript = redis.NewScript(`
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[2] .. m
  local rev = redis.call('HGET', k, 'rev')
  if not rev then
    redis.call('SREM', KEYS[1], m)
  elseif rev == '0' then
    redis.call('HSET', k, 'rev', ARGV[1])
    n = n + 1
  end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return n
`)

// RevokeUser revokes every session of the user and tells every subscribed
// instance.
func (r *Redis) RevokeUser(ctx context.Context, userID string, at time.Time) (int, error) {
	n, err := revokeUserScript.Run(ctx, r.c, []string{r.userKey(userID)},
		at.UnixMicro(), r.prefix, r.channel, "u:"+userID).Int()
	if err != nil {
		return 0, fmt.Errorf("revoking sessions: %w", err)
	}
	return n, nil
}

// listScript returns {hex id, HGETALL} pairs for the user's sessions,
// dropping expired members from the set.
// KEYS: user set. ARGV: prefix.
var listScript = redis.NewScript(`
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HGETALL', ARGV[1] .. m)
  if #h == 0 then
    redis.call('SREM', KEYS[1], m)
  else
    out[#out + 1] = m
    out[#out + 1] = h
  end
end
return out
`)

// ListByUser returns the user's sessions, revoked ones included, oldest
// first.
func (r *Redis) ListByUser(ctx context.Context, userID string) ([]*store.Session, error) {
	res, err := listScript.Run(ctx, r.c, []string{r.userKey(userID)}, r.prefix).Slice()
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	var out []*store.Session
	for i := 0; i+1 < len(res); i += 2 {
		hexID, _ := res[i].(string)
		idHash, err := hex.DecodeString(hexID)
		if err != nil || len(idHash) != sha256.Size {
			return nil, errors.New("listing sessions: malformed member of the user's set")
		}
		fields, ok := res[i+1].([]any)
		if !ok || len(fields)%2 != 0 {
			return nil, errors.New("listing sessions: malformed session record")
		}
		f := make(map[string]string, len(fields)/2)
		for j := 0; j < len(fields); j += 2 {
			k, _ := fields[j].(string)
			v, _ := fields[j+1].(string)
			f[k] = v
		}
		s, err := decodeSession(idHash, f)
		if err != nil {
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *store.Session) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(string(a.IDHash), string(b.IDHash))
	})
	return out, nil
}

// sweepScript deletes a user's sessions whose absolute expiry is before
// ARGV[2], drops members whose hash is gone, and returns how many hashes
// it deleted.
// KEYS: user set. ARGV: prefix, before.
var sweepScript = redis.NewScript(`
local n = 0
local before = tonumber(ARGV[2])
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. m
  local exp = redis.call('HGET', k, 'exp')
  if not exp then
    redis.call('SREM', KEYS[1], m)
  elseif tonumber(exp) < before then
    redis.call('DEL', k)
    redis.call('SREM', KEYS[1], m)
    n = n + 1
  end
end
return n
`)

// DeleteExpired walks the user sets (SCAN, in batches) and deletes the
// sessions whose absolute expiry is before before. Redis expires idle and
// absolute sessions by itself; this only tidies the user sets and catches
// sessions whose TTL a clock difference left longer.
func (r *Redis) DeleteExpired(ctx context.Context, before time.Time) (int, error) {
	total := 0
	iter := r.c.Scan(ctx, 0, escapeGlob(r.prefix)+"user:*", 200).Iterator()
	for iter.Next(ctx) {
		n, err := sweepScript.Run(ctx, r.c, []string{iter.Val()}, r.prefix, before.UnixMicro()).Int()
		if err != nil {
			return total, fmt.Errorf("deleting expired sessions: %w", err)
		}
		total += n
	}
	if err := iter.Err(); err != nil {
		return total, fmt.Errorf("deleting expired sessions: %w", err)
	}
	return total, nil
}

// escapeGlob quotes the characters SCAN MATCH treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\^`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Revocation feed.

// Liveness of the subscription: with no message for feedPing, the watcher
// pings; with no answer within feedDead of the ping, it gives the
// connection up and subscribes again.
const (
	feedPing       = 5 * time.Second
	feedDead       = 3 * time.Second
	feedMaxBackoff = 2 * time.Second
)

// watchRevocations subscribes to the revocation channel and reports to w,
// subscribing again after any failure, until stop is called. stop returns
// once the watcher is gone.
func (r *Redis) watchRevocations(w revocationWatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu      sync.Mutex
		current *redis.PubSub
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		backoff := 50 * time.Millisecond
		for {
			ps := r.c.Subscribe(ctx, r.channel)
			mu.Lock()
			current = ps
			mu.Unlock()
			// stop cancels before closing current: if it ran before current
			// was set, ctx is done now.
			if ctx.Err() != nil {
				ps.Close()
				return
			}
			heard, err := r.receive(ctx, ps, w)
			ps.Close()
			if ctx.Err() != nil {
				return
			}
			w.feedDown(err)
			if heard {
				backoff = 50 * time.Millisecond
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, feedMaxBackoff)
		}
	}()
	return func() {
		cancel()
		mu.Lock()
		if current != nil {
			current.Close()
		}
		mu.Unlock()
		<-done
	}
}

// receive reads the subscription until it fails. heard says whether the
// subscription was confirmed.
func (r *Redis) receive(ctx context.Context, ps *redis.PubSub, w revocationWatcher) (heard bool, err error) {
	var pinged time.Time
	for {
		wait := feedPing
		if !pinged.IsZero() {
			wait = feedDead
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return heard, err
			}
			if !pinged.IsZero() {
				return heard, errors.New("redis did not answer a ping on the revocation channel")
			}
			if err := ps.Ping(ctx); err != nil {
				return heard, err
			}
			pinged = time.Now()
			continue
		}
		pinged = time.Time{}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == r.channel {
				heard = true
				w.feedUp()
			}
		case *redis.Message:
			if m.Channel == r.channel {
				dispatchRevocation(m.Payload, w)
			}
		case *redis.Pong:
		}
	}
}

// dispatchRevocation reads one message of the revocation channel.
func dispatchRevocation(p string, w revocationWatcher) {
	switch {
	case strings.HasPrefix(p, "s:"):
		var h [sha256.Size]byte
		if len(p) == 2+2*sha256.Size {
			if _, err := hex.Decode(h[:], []byte(p[2:])); err == nil {
				w.revokedSession(h)
				return
			}
		}
	case strings.HasPrefix(p, "u:") && len(p) > 2:
		w.revokedUser(p[2:])
		return
	}
	w.revokedUnknown()
}

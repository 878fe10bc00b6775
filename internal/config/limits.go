package config

import (
	"time"

	"github.com/moatgw/moat/internal/authz"
)

func (v *validator) rateLimits(c *Config) {
	rl := c.RateLimits
	v.check("rate_limits.store", oneOf("store", rl.Store, StoreMemory, StoreRedis))
	v.check("rate_limits.failure_mode", oneOf("failure mode", rl.FailureMode, FailOpen, FailClosed))
	switch {
	case rl.Store == StoreRedis && rl.RedisURL == "":
		v.add("rate_limits.redis_url", "required with store redis")
	case rl.RedisURL != "" && !isSecretRef(rl.RedisURL):
		if err := checkRedisURL(rl.RedisURL); err != nil {
			v.add("rate_limits.redis_url", "%v", err)
		}
	}
	if rl.MaxKeys < 1000 {
		v.add("rate_limits.max_keys", "must be at least 1000")
	}
	if rl.IPv6Prefix < 32 || rl.IPv6Prefix > 128 {
		v.add("rate_limits.ipv6_prefix", "must be between 32 and 128")
	}
	v.rateLimitList("rate_limits.global", rl.Global, true)
	for i, r := range c.Routes {
		v.rateLimitList(indexPath("routes", i)+".rate_limits", r.RateLimits, false)
		nonNegative(v, indexPath("routes", i)+".max_in_flight", r.MaxInFlight)
	}
	ls := c.LoadShedding
	nonNegative(v, "load_shedding.max_in_flight", ls.MaxInFlight)
	nonNegative(v, "load_shedding.max_queue", ls.MaxQueue)
	nonNegative(v, "load_shedding.queue_wait", ls.QueueWait)
}

func (v *validator) rateLimitList(path string, ls []RateLimit, global bool) {
	names := map[string]bool{}
	for i, l := range ls {
		p := indexPath(path, i)
		if !isShortName(l.Name, 32) {
			v.add(p+".name", "%q: want 1 to 32 lower-case letters, digits or -", clip(l.Name, 40))
		} else if names[l.Name] {
			v.add(p+".name", "duplicate limit name %q", l.Name)
		}
		names[l.Name] = true
		if err := oneOf("key", l.Key, KeyIP, KeyPrincipal, KeyAPIKey, KeyRoute, KeyExpr); err != nil {
			v.add(p+".key", "%v", err)
		} else if global && l.Key != KeyIP && l.Key != KeyRoute {
			v.add(p+".key", "global limits apply before authentication: use ip or route, and put %s limits on routes", l.Key)
		}
		switch {
		case l.Key == KeyExpr && l.Expr == "":
			v.add(p+".expr", "is required with key expr")
		case l.Key != KeyExpr && l.Expr != "":
			v.add(p+".expr", "is only used with key expr")
		case l.Expr != "":
			if _, err := authz.CompileKey(l.Expr); err != nil {
				v.add(p+".expr", "%v", err)
			}
		}
		if l.Rate < 1 {
			v.add(p+".rate", "must be at least 1")
		}
		v.positive(p+".per", l.Per)
		if l.Rate > 0 && l.Per > 0 && l.Per.D()/time.Duration(l.Rate) < time.Microsecond {
			v.add(p+".rate", "%d per %s is more than one request per microsecond: use a longer per or a lower rate", l.Rate, l.Per)
		}
		if l.Burst < 1 {
			v.add(p+".burst", "must be at least 1")
		}
		v.check(p+".failure_mode", oneOf("failure mode", l.FailureMode, FailOpen, FailClosed))
	}
}

package dbcheck

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// transport is how one connection attempt reaches its server, from the
// weakest (plaintext) to the only acceptable one for a remote host.
type transport int

const (
	plaintext    transport = iota // no TLS
	maybePlain                    // TLS tried first, plaintext as a fallback (prefer, allow)
	unverified                    // TLS without any certificate check (require)
	chainOnly                     // certificate chain checked, host name not (verify-ca)
	verifiedFull                  // chain and host name checked (verify-full)
)

func (t transport) String() string {
	switch t {
	case plaintext:
		return "sends everything without TLS (sslmode=disable)"
	case maybePlain:
		return "falls back to plaintext when TLS fails (sslmode=prefer, the default, or allow)"
	case unverified:
		return "uses TLS without checking the server's certificate (sslmode=require)"
	case chainOnly:
		return "checks the server's certificate chain but not its host name (sslmode=verify-ca)"
	default:
		return "uses verified TLS"
	}
}

func tlsTransport(c *tls.Config) transport {
	switch {
	case c == nil:
		return plaintext
	case !c.InsecureSkipVerify && c.ServerName != "":
		return verifiedFull
	case c.VerifyPeerCertificate != nil:
		return chainOnly
	default:
		return unverified
	}
}

// transportFindings reports every server of a parsed connection config that
// is not on this machine and is reached without verify-full TLS. It looks
// only at the config and never connects. pgx expands sslmode (and
// sslrootcert, and the PG* environment variables) into one TLS config per
// connection attempt; an attempt is verified when its TLS config checks the
// certificate (InsecureSkipVerify false) against the host name (ServerName
// set). sslmode=prefer and allow add a plaintext attempt for the same host.
func transportFindings(c *pgconn.Config) []Finding {
	type attempt struct {
		host string
		port uint16
		tls  *tls.Config
	}
	attempts := []attempt{{c.Host, c.Port, c.TLSConfig}}
	for _, f := range c.Fallbacks {
		attempts = append(attempts, attempt{f.Host, f.Port, f.TLSConfig})
	}
	// The weakest way each remote server is reached, in the order given.
	var order []string
	worst := map[string]transport{}
	sawTLS := map[string]bool{}
	for _, a := range attempts {
		if isLocal(a.host, a.port) {
			continue
		}
		addr := net.JoinHostPort(a.host, strconv.Itoa(int(a.port)))
		t := tlsTransport(a.tls)
		if t != plaintext {
			sawTLS[addr] = true
		}
		w, seen := worst[addr]
		if !seen {
			order = append(order, addr)
			worst[addr] = t
		} else if t < w {
			worst[addr] = t
		}
	}
	var out []Finding
	for _, addr := range order {
		t := worst[addr]
		if t == plaintext && sawTLS[addr] {
			t = maybePlain
		}
		if t == verifiedFull {
			continue
		}
		out = append(out, errorf("pg.tls",
			"the connection to %s %s: someone on the network path could read or change Moat's queries and results; "+
				"set sslmode=verify-full and sslrootcert=/path/to/ca.crt in the database URL", addr, t))
	}
	return out
}

// parseTransport parses a connection string as pgx does and returns its
// transport findings, without connecting.
func parseTransport(connString string) ([]Finding, error) {
	c, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	return transportFindings(c), nil
}

// isLocal reports whether host is on this machine: a unix socket directory,
// "localhost", or a loopback address (127.0.0.0/8, ::1). Host names other
// than localhost are remote, whatever they resolve to.
func isLocal(host string, port uint16) bool {
	if network, _ := pgconn.NetworkAddress(host, port); network == "unix" {
		return true
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

package dbcheck

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
)

// clearPGEnv keeps the PG* environment variables that pgx reads from
// changing what a connection string means.
func clearPGEnv(t *testing.T) {
	for _, k := range []string{"PGHOST", "PGPORT", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY",
		"PGSSLSNI", "PGSSLNEGOTIATION", "PGSERVICE", "PGSERVICEFILE", "PGTARGETSESSIONATTRS"} {
		t.Setenv(k, "")
	}
}

// TestTransport parses connection strings and never connects: the remote
// addresses here are never dialled.
func TestTransport(t *testing.T) {
	clearPGEnv(t)
	tests := []struct {
		name string
		url  string
		want []string // the host:port of each pg.tls finding
		says string   // text the finding must contain
	}{
		{name: "loopback without tls", url: "postgres://moat@127.0.0.1:5432/moat?sslmode=disable"},
		{name: "other loopback address", url: "postgres://moat@127.8.9.10/moat?sslmode=disable"},
		{name: "localhost", url: "postgres://moat@localhost/moat?sslmode=disable"},
		{name: "localhost upper case", url: "postgres://moat@LOCALHOST/moat"},
		{name: "ipv6 loopback", url: "postgres://moat@[::1]:5432/moat?sslmode=disable"},
		{name: "unix socket", url: "postgres:///moat?host=/var/run/postgresql&sslmode=disable"},
		{name: "unix socket keyword form", url: "host=/tmp dbname=moat user=moat"},
		{name: "remote verify-full", url: "postgres://moat@db.example.com/moat?sslmode=verify-full"},
		{name: "remote ip verify-full", url: "postgres://moat@10.1.2.3/moat?sslmode=verify-full"},
		{
			name: "remote require", url: "postgres://moat:pw@10.1.2.3:5432/moat?sslmode=require",
			want: []string{"10.1.2.3:5432"}, says: "without checking the server's certificate",
		},
		{
			name: "remote require keyword form", url: "host=10.1.2.3 dbname=moat sslmode=require",
			want: []string{"10.1.2.3:5432"}, says: "sslmode=verify-full",
		},
		{
			name: "remote disable", url: "postgres://moat@10.1.2.3/moat?sslmode=disable",
			want: []string{"10.1.2.3:5432"}, says: "without TLS",
		},
		{
			name: "remote default prefer", url: "postgres://moat@db.example.com:6432/moat",
			want: []string{"db.example.com:6432"}, says: "falls back to plaintext",
		},
		{
			name: "remote allow", url: "postgres://moat@db.example.com/moat?sslmode=allow",
			want: []string{"db.example.com:5432"}, says: "falls back to plaintext",
		},
		{
			name: "remote verify-ca", url: "postgres://moat@db.example.com/moat?sslmode=verify-ca",
			want: []string{"db.example.com:5432"}, says: "not its host name",
		},
		{
			name: "remote ipv6", url: "postgres://moat@[2001:db8::1]/moat?sslmode=require",
			want: []string{"[2001:db8::1]:5432"},
		},
		{
			name: "name that merely starts with localhost", url: "postgres://moat@localhost.example.com/moat?sslmode=require",
			want: []string{"localhost.example.com:5432"},
		},
		{
			name: "ipv4-mapped loopback", url: "postgres://moat@[::ffff:127.0.0.1]/moat?sslmode=disable",
		},
		{
			name: "several hosts, one remote", url: "postgres://moat@127.0.0.1,10.1.2.3/moat?sslmode=require",
			want: []string{"10.1.2.3:5432"},
		},
		{
			name: "several remote hosts", url: "postgres://moat@10.1.2.3:5432,10.1.2.4:5433/moat?sslmode=disable",
			want: []string{"10.1.2.3:5432", "10.1.2.4:5433"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTransport(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			var hosts []string
			for _, f := range got {
				if f.Check != "pg.tls" || f.Severity != SeverityError {
					t.Errorf("unexpected finding %v", f)
				}
				hosts = append(hosts, strings.SplitN(f.Message, " ", 5)[3])
			}
			if !slices.Equal(hosts, tt.want) {
				t.Fatalf("findings for %q, want %q:\n%v", hosts, tt.want, got)
			}
			if tt.says != "" && !strings.Contains(got[0].Message, tt.says) {
				t.Errorf("message does not say %q: %s", tt.says, got[0].Message)
			}
			for _, f := range got {
				if strings.Contains(f.Message, "pw") {
					t.Errorf("message contains the password: %s", f.Message)
				}
			}
		})
	}
}

func TestTransportBadURL(t *testing.T) {
	clearPGEnv(t)
	for _, url := range []string{
		"postgres://moat@10.1.2.3/moat?sslmode=sometimes",
		"postgres://moat:hunter2secret@127.0.0.1:notaport/moat",
	} {
		_, err := parseTransport(url)
		if err == nil {
			t.Errorf("parseTransport(%q): no error", url)
			continue
		}
		if strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("error contains the password: %v", err)
		}
	}
}

// TestPostgresErrorsHideThePassword: a URL that does not parse, and a
// server that cannot be reached (a closed loopback port), give errors
// without the password.
func TestPostgresErrorsHideThePassword(t *testing.T) {
	clearPGEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, url := range []string{
		"postgres://moat:hunter2secret@127.0.0.1:notaport/moat",
		"postgres://moat:hunter2secret@" + addr + "/moat?sslmode=disable&connect_timeout=5",
	} {
		got, err := Postgres(context.Background(), url)
		if err == nil {
			t.Errorf("Postgres: %v, no error", got)
			continue
		}
		if strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("error contains the password: %v", err)
		}
	}
}

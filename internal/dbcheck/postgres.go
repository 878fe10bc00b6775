package dbcheck

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Catalog queries. Each is a constant: the role is always current_user and
// nothing is built from input. System schemas (pg_catalog, pg_toast,
// temporary schemas, information_schema) are left out. Ownership counts when
// the role owns an object or is a member of a role that does: a member can
// SET ROLE to the owner and drop the object all the same.
const (
	roleQuery = `
SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user`

	// The roles current_user can become, other than itself.
	memberOfQuery = `
SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication
FROM pg_catalog.pg_roles r
WHERE r.rolname <> current_user
  AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')
ORDER BY r.rolname`

	databaseQuery = `
SELECT d.datname, o.rolname,
       pg_catalog.pg_has_role(current_user, d.datdba, 'MEMBER'),
       pg_catalog.has_database_privilege(current_user, d.oid, 'CREATE')
FROM pg_catalog.pg_database d
JOIN pg_catalog.pg_roles o ON o.oid = d.datdba
WHERE d.datname = pg_catalog.current_database()`

	ownedSchemasQuery = `
SELECT n.nspname, o.rolname
FROM pg_catalog.pg_namespace n
JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
WHERE left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')
ORDER BY n.nspname`

	ownedTablesQuery = `
SELECT n.nspname || '.' || c.relname, o.rolname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
WHERE c.relkind IN ('r', 'p')
  AND left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')
ORDER BY n.nspname, c.relname`

	// Schemas the role does not own but may create objects in.
	createSchemasQuery = `
SELECT n.nspname
FROM pg_catalog.pg_namespace n
WHERE left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'
  AND NOT pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')
  AND pg_catalog.has_schema_privilege(current_user, n.oid, 'CREATE')
ORDER BY n.nspname`
)

// dangerousRoles are predefined roles whose members can read or write files
// on the database server or run programs there.
var dangerousRoles = []string{"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"}

// maxNames is how many tables or schemas a message names before "...".
const maxNames = 5

// role holds the attributes of a role that matter here.
type role struct {
	name                                           string
	super, createRole, createDB, bypassRLS, replic bool
}

func (r *role) scan(row pgx.Row) error {
	return row.Scan(&r.name, &r.super, &r.createRole, &r.createDB, &r.bypassRLS, &r.replic)
}

// elevated lists the role's attributes that Moat's runtime role must not have.
func (r role) elevated() []string {
	var a []string
	for _, x := range []struct {
		on   bool
		name string
	}{{r.super, "SUPERUSER"}, {r.createRole, "CREATEROLE"}, {r.createDB, "CREATEDB"}, {r.bypassRLS, "BYPASSRLS"}, {r.replic, "REPLICATION"}} {
		if x.on {
			a = append(a, x.name)
		}
	}
	return a
}

// Postgres connects with url (a PostgreSQL URL or keyword/value string, as
// pgx reads it, including the PG* environment variables) and checks the role
// it connects as, taken to be Moat's runtime role, and the transport the URL
// asks for. The transport is judged from the URL alone, before connecting.
// ctx bounds the whole check, connecting included. It returns an error when
// the URL does not parse, the server cannot be reached or a catalog query
// fails; the error never contains the password.
func Postgres(ctx context.Context, url string) ([]Finding, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	findings := transportFindings(&cfg.Config)

	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgresql: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()

	rf, err := roleFindings(ctx, conn)
	if err != nil {
		return nil, err
	}
	return append(findings, rf...), nil
}

// roleFindings runs the catalog checks on an open connection.
func roleFindings(ctx context.Context, conn *pgx.Conn) ([]Finding, error) {
	var me role
	if err := me.scan(conn.QueryRow(ctx, roleQuery)); err != nil {
		return nil, fmt.Errorf("reading the current role: %w", err)
	}
	name := ident(me.name)
	var out []Finding
	if me.super {
		out = append(out, errorf("pg.superuser",
			"the role %s is a superuser: it can read and change every database on the server, and run programs on it; "+
				"connect Moat as a role without SUPERUSER that has only SELECT, INSERT, UPDATE and DELETE on Moat's tables",
			name))
	}
	if me.createRole {
		out = append(out, errorf("pg.createrole",
			"the role %s can create roles (CREATEROLE): a compromised gateway could make itself new, more privileged roles; "+
				"ALTER ROLE %s NOCREATEROLE", name, name))
	}
	if me.createDB {
		out = append(out, errorf("pg.createdb",
			"the role %s can create databases (CREATEDB), which Moat never needs; ALTER ROLE %s NOCREATEDB", name, name))
	}
	if me.bypassRLS {
		out = append(out, errorf("pg.bypassrls",
			"the role %s bypasses row-level security (BYPASSRLS); ALTER ROLE %s NOBYPASSRLS", name, name))
	}
	if me.replic {
		out = append(out, errorf("pg.replication",
			"the role %s can stream a copy of every database on the server (REPLICATION); ALTER ROLE %s NOREPLICATION",
			name, name))
	}
	if me.super {
		// A superuser is a member of every role and owns in effect
		// everything: the checks below would only repeat that.
		return out, nil
	}

	more, err := membershipFindings(ctx, conn, me)
	if err != nil {
		return nil, err
	}
	out = append(out, more...)
	if more, err = ownershipFindings(ctx, conn, me); err != nil {
		return nil, err
	}
	out = append(out, more...)
	if more, err = createFindings(ctx, conn, me); err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

func membershipFindings(ctx context.Context, conn *pgx.Conn, me role) ([]Finding, error) {
	rows, err := conn.Query(ctx, memberOfQuery)
	if err != nil {
		return nil, fmt.Errorf("reading role memberships: %w", err)
	}
	parents, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (role, error) {
		var r role
		err := r.scan(row)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading role memberships: %w", err)
	}
	var out []Finding
	for _, p := range parents {
		what := strings.Join(p.elevated(), ", ")
		if slices.Contains(dangerousRoles, p.name) {
			what = "reads or writes the server's files or runs programs on it"
		}
		if what == "" {
			continue
		}
		out = append(out, errorf("pg.member",
			"the role %s is a member of %s (%s) and can take on its rights with SET ROLE; REVOKE %s FROM %s",
			ident(me.name), ident(p.name), what, ident(p.name), ident(me.name)))
	}
	return out, nil
}

// owned reads rows of name and owner pairs and says, in a message fragment,
// how the role comes to own them.
func owned(rows pgx.Rows, myName string) (names []string, through string, err error) {
	var owners []string
	var name, owner string
	direct := false
	_, err = pgx.ForEachRow(rows, []any{&name, &owner}, func() error {
		names = append(names, name)
		if owner == myName {
			direct = true
		} else if !slices.Contains(owners, owner) {
			owners = append(owners, owner)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(owners) > 0 {
		for i, o := range owners {
			owners[i] = ident(o)
		}
		through = ", through membership in " + strings.Join(owners, ", ")
		if direct {
			through = ", some" + through
		}
	}
	return names, through, nil
}

func ownershipFindings(ctx context.Context, conn *pgx.Conn, me role) ([]Finding, error) {
	var out []Finding
	name := ident(me.name)

	var db, dbOwner string
	var ownsDB, createDB bool
	if err := conn.QueryRow(ctx, databaseQuery).Scan(&db, &dbOwner, &ownsDB, &createDB); err != nil {
		return nil, fmt.Errorf("reading the database owner: %w", err)
	}
	if ownsDB {
		through := ""
		if dbOwner != me.name {
			through = ", through membership in " + ident(dbOwner)
		}
		out = append(out, errorf("pg.owns_database",
			"the role %s owns the database %s%s: a compromised gateway could create schemas, change the database's "+
				"settings and grant rights on it; make the migration role its owner (ALTER DATABASE %s OWNER TO moat_migrate)",
			name, ident(db), through, ident(db)))
	} else if createDB {
		out = append(out, warningf("pg.database_create",
			"the role %s can create schemas in the database %s; REVOKE CREATE ON DATABASE %s FROM %s (and from PUBLIC)",
			name, ident(db), ident(db), name))
	}

	rows, err := conn.Query(ctx, ownedSchemasQuery)
	if err != nil {
		return nil, fmt.Errorf("reading schema owners: %w", err)
	}
	schemas, through, err := owned(rows, me.name)
	if err != nil {
		return nil, fmt.Errorf("reading schema owners: %w", err)
	}
	if len(schemas) > 0 {
		out = append(out, errorf("pg.owns_schemas",
			"the role %s owns %d %s (%s)%s: a compromised gateway could drop %s with every object in %s; "+
				"give ownership to a migration role (ALTER SCHEMA %s OWNER TO moat_migrate)",
			name, len(schemas), plural(len(schemas), "schema", "schemas"), list(schemas, maxNames), through,
			plural(len(schemas), "it", "them"), plural(len(schemas), "it", "them"), ident(schemas[0])))
	}

	if rows, err = conn.Query(ctx, ownedTablesQuery); err != nil {
		return nil, fmt.Errorf("reading table owners: %w", err)
	}
	tables, through, err := owned(rows, me.name)
	if err != nil {
		return nil, fmt.Errorf("reading table owners: %w", err)
	}
	if len(tables) > 0 {
		out = append(out, errorf("pg.owns_tables",
			"the role %s owns %d %s (%s)%s: a compromised gateway could drop or alter %s; "+
				"give ownership to a migration role and grant this role only SELECT, INSERT, UPDATE and DELETE",
			name, len(tables), plural(len(tables), "table", "tables"), list(tables, maxNames), through,
			plural(len(tables), "it", "them")))
	}
	return out, nil
}

func createFindings(ctx context.Context, conn *pgx.Conn, me role) ([]Finding, error) {
	rows, err := conn.Query(ctx, createSchemasQuery)
	if err != nil {
		return nil, fmt.Errorf("reading schema privileges: %w", err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading schema privileges: %w", err)
	}
	var out []Finding
	name := ident(me.name)
	if i := slices.Index(schemas, "public"); i >= 0 {
		schemas = slices.Delete(schemas, i, i+1)
		out = append(out, warningf("pg.public_create",
			"the role %s can create objects in the public schema (the default before PostgreSQL 15), where they can "+
				"shadow the ones Moat means to use; REVOKE CREATE ON SCHEMA public FROM PUBLIC, %s", name, name))
	}
	if len(schemas) > 0 {
		out = append(out, warningf("pg.schema_create",
			"the role %s can create objects in %d %s (%s), which Moat's runtime role never needs; "+
				"REVOKE CREATE ON SCHEMA %s FROM %s",
			name, len(schemas), plural(len(schemas), "schema", "schemas"), list(schemas, maxNames),
			ident(schemas[0]), name))
	}
	return out, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

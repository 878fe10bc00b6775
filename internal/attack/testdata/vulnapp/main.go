// Command vulnapp is a deliberately vulnerable web application that the
// attack tests aim real attack tools at, directly and through Moat. It
// listens on loopback only and keeps its data in an in-memory SQLite
// database. Never run it anywhere else.
//
//	GET /items?id=N   SQL injection: id is pasted into the query text
//	GET /search?q=S   reflected XSS: q is written into the page unescaped
//
// It prints "vulnapp listening on http://ADDR" once it accepts connections.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	_ "modernc.org/sqlite"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vulnapp:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vulnapp", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "loopback `address` to listen on (port 0 picks a free one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("parsing -addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("refusing to listen on a non-loopback address")
	}
	db, err := openDB(context.Background())
	if err != nil {
		return err
	}
	defer db.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", items(db))
	mux.HandleFunc("GET /search", search)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<html><body><h1>vulnapp</h1></body></html>\n")
	})
	fmt.Fprintf(stdout, "vulnapp listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(ln)
}

// openDB creates the items table in a private in-memory database. One
// connection holds it: an in-memory database lives as long as its
// connection does.
func openDB(ctx context.Context) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:vulnapp?mode=memory")
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	const schema = `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL);
CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT NOT NULL, password TEXT NOT NULL);
INSERT INTO items (id, name, price) VALUES (1, 'widget', 250), (2, 'gadget', 1200), (3, 'sprocket', 75), (4, 'gizmo', 999);
INSERT INTO users (id, login, password) VALUES (1, 'admin', 'correct horse battery staple');`
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating tables: %w", err)
	}
	return db, nil
}

// items looks an item up by id. The id is concatenated into the query text
// on purpose: this is the injection the tests look for.
func items(db *sql.DB) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		rows, err := db.QueryContext(r.Context(), "SELECT name FROM items WHERE id = "+id)
		if err != nil {
			// The database's own message, as careless applications show it.
			http.Error(w, "database error: "+err.Error(), http.StatusInternalServerError)
			return
		}
		defer rows.Close()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<html><body><h1>Items</h1><ul>\n")
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				fmt.Fprintf(w, "<li>database error: %v</li>\n", err)
				break
			}
			fmt.Fprintf(w, "<li>%s</li>\n", name)
		}
		if err := rows.Err(); err != nil {
			fmt.Fprintf(w, "<li>database error: %v</li>\n", err)
		}
		_, _ = io.WriteString(w, "</ul></body></html>\n")
	}
}

// search echoes the query into the page without escaping it: reflected XSS.
func search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<html><body><h1>Search</h1><p>Results for: %s</p><p>No results.</p></body></html>\n", q)
}

package dbcheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// summary lists findings as "severity check" strings, in order.
func summary(fs []Finding) []string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Severity+" "+f.Check)
	}
	return s
}

func TestSQLite(t *testing.T) {
	tests := []struct {
		name     string
		dirMode  os.FileMode
		files    map[string]os.FileMode // suffix ("" for the database) to mode
		want     []string
		mentions string // a path suffix some finding must name
	}{
		{name: "private", dirMode: 0o700, files: map[string]os.FileMode{"": 0o600, "-wal": 0o600, "-shm": 0o600}},
		{name: "no database yet", dirMode: 0o700},
		{name: "group may search the directory", dirMode: 0o750, files: map[string]os.FileMode{"": 0o600}},
		{name: "read-only for the owner", dirMode: 0o700, files: map[string]os.FileMode{"": 0o400}},
		{
			name: "database readable by others", dirMode: 0o700, files: map[string]os.FileMode{"": 0o644},
			want: []string{"error sqlite.file_mode"}, mentions: "moat.db",
		},
		{
			name: "database writable by group", dirMode: 0o700, files: map[string]os.FileMode{"": 0o620},
			want: []string{"error sqlite.file_mode"}, mentions: "moat.db",
		},
		{
			name: "database readable by group", dirMode: 0o700, files: map[string]os.FileMode{"": 0o640},
			want: []string{"error sqlite.file_mode"}, mentions: "chmod 600",
		},
		{
			name: "wal readable by others", dirMode: 0o700, files: map[string]os.FileMode{"": 0o600, "-wal": 0o604},
			want: []string{"error sqlite.file_mode"}, mentions: "moat.db-wal",
		},
		{
			name: "shm writable by everyone", dirMode: 0o700, files: map[string]os.FileMode{"": 0o600, "-shm": 0o666},
			want: []string{"error sqlite.file_mode"}, mentions: "moat.db-shm",
		},
		{
			name: "journal readable by group", dirMode: 0o700, files: map[string]os.FileMode{"": 0o600, "-journal": 0o640},
			want: []string{"error sqlite.file_mode"}, mentions: "moat.db-journal",
		},
		{
			name: "directory writable by group", dirMode: 0o770, files: map[string]os.FileMode{"": 0o600},
			want: []string{"error sqlite.dir_mode"}, mentions: "chmod 700",
		},
		{
			name: "directory writable by others", dirMode: 0o703, files: map[string]os.FileMode{"": 0o600},
			want: []string{"error sqlite.dir_mode"},
		},
		{
			name: "directory listable by others", dirMode: 0o755, files: map[string]os.FileMode{"": 0o600},
			want: []string{"warning sqlite.dir_readable"},
		},
		{
			name: "everything open", dirMode: 0o777,
			files: map[string]os.FileMode{"": 0o666, "-wal": 0o644, "-shm": 0o644},
			want:  []string{"error sqlite.dir_mode", "error sqlite.file_mode", "error sqlite.file_mode", "error sqlite.file_mode"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(dir, "moat.db")
			for suffix, mode := range tt.files {
				if err := os.WriteFile(db+suffix, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(db+suffix, mode); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })

			got, err := SQLite(db)
			if err != nil {
				t.Fatalf("SQLite: %v", err)
			}
			if !slices.Equal(summary(got), tt.want) {
				t.Fatalf("findings = %q, want %q\n%v", summary(got), tt.want, got)
			}
			if tt.mentions != "" && !slices.ContainsFunc(got, func(f Finding) bool { return strings.Contains(f.Message, tt.mentions) }) {
				t.Errorf("no finding mentions %q: %v", tt.mentions, got)
			}
		})
	}
}

func TestSQLiteOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "moat.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(db, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	got, err := SQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"warning sqlite.owner"}; !slices.Equal(summary(got), want) {
		t.Fatalf("findings = %q, want %q\n%v", summary(got), want, got)
	}
	if !strings.Contains(got[0].Message, "uid 65534") {
		t.Errorf("message does not name the owner: %s", got[0].Message)
	}
}

func TestSQLiteErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
	}{
		{"empty path", ""},
		{"missing directory", filepath.Join(dir, "missing", "moat.db")},
		{"directory is a file", filepath.Join(notDir, "moat.db")},
		{"database is a directory", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := SQLite(tt.path); err == nil {
				t.Fatalf("SQLite(%q) = %v, nil; want an error", tt.path, got)
			}
		})
	}
}

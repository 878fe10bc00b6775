package dbcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// sidecars are the files SQLite keeps beside the database: the write-ahead
// log and its shared-memory index in WAL mode, the rollback journal
// otherwise. They hold the same data as the database file.
var sidecars = []string{"-wal", "-shm", "-journal"}

// SQLite checks the modes of the SQLite database at path, of its sidecar
// files (-wal, -shm, -journal) and of its directory:
//
//   - the database and each sidecar must not be readable or writable by
//     group or others (error);
//   - the directory must not be writable by group or others (error), who
//     could delete or replace the database, nor readable by others
//     (warning), who could list it;
//   - the database should be owned by the user running the check (warning).
//
// A database file that does not exist yet is no finding: Moat creates it
// with mode 0600. SQLite returns an error when the directory cannot be
// read, or when path or its directory is not what it should be (a directory
// where the file should be, a file where the directory should be).
func SQLite(path string) ([]Finding, error) {
	if path == "" {
		return nil, errors.New("checking sqlite database: empty path")
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("checking sqlite database directory: %w", err)
	}
	if !di.IsDir() {
		return nil, fmt.Errorf("checking sqlite database directory: %s is not a directory", dir)
	}

	var out []Finding
	if m := di.Mode().Perm(); m&0o022 != 0 {
		out = append(out, errorf("sqlite.dir_mode",
			"the database directory %s is writable by group or others (mode %04o): they could delete or replace the "+
				"database; chmod 700 %s", dir, m, dir))
	} else if m&0o004 != 0 {
		out = append(out, warningf("sqlite.dir_readable",
			"the database directory %s can be listed by others (mode %04o); chmod 700 %s", dir, m, dir))
	}

	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("checking sqlite database: %w", err)
	case fi.IsDir():
		return nil, fmt.Errorf("checking sqlite database: %s is a directory", path)
	}
	out = append(out, fileModeFindings(path, "database file", fi)...)
	if uid, ok := fileOwner(fi); ok && uid != os.Getuid() {
		out = append(out, warningf("sqlite.owner",
			"the database file %s is owned by uid %d, not by the user running this check (uid %d): run Moat as the "+
				"user that owns its data directory", path, uid, os.Getuid()))
	}

	for _, suffix := range sidecars {
		p := path + suffix
		si, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("checking sqlite database: %w", err)
		}
		out = append(out, fileModeFindings(p, "database "+suffix[1:]+" file", si)...)
	}
	return out, nil
}

func fileModeFindings(path, what string, fi fs.FileInfo) []Finding {
	m := fi.Mode().Perm()
	if m&0o066 == 0 {
		return nil
	}
	return []Finding{errorf("sqlite.file_mode",
		"the %s %s is readable or writable by group or others (mode %04o): it holds Moat's accounts, credentials "+
			"and keys; chmod 600 %s", what, path, m, path)}
}

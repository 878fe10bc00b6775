package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// secretValue is the secret in every test: no error may contain it.
const secretValue = "s3cr3t-Value-42"

func writeSecretFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResolveSecret(t *testing.T) {
	t.Setenv("MOAT_TEST_SECRET", secretValue)
	t.Setenv("MOAT_TEST_EMPTY", "")
	good := writeSecretFile(t, "good", secretValue+"\n", 0o600)
	crlf := writeSecretFile(t, "crlf", secretValue+"\r\n", 0o400)
	noNewline := writeSecretFile(t, "plain", secretValue, 0o600)
	twoNewlines := writeSecretFile(t, "two", secretValue+"\n\n", 0o600)
	empty := writeSecretFile(t, "empty", "\n", 0o600)

	tests := []struct {
		name    string
		ref     string
		want    string
		wantErr string // part of the error; empty when none is expected
	}{
		{"environment variable", "env:MOAT_TEST_SECRET", secretValue, ""},
		{"unset variable", "env:MOAT_TEST_UNSET_X", "", "environment variable MOAT_TEST_UNSET_X is not set"},
		{"empty variable", "env:MOAT_TEST_EMPTY", "", "environment variable MOAT_TEST_EMPTY is empty"},
		{"env without a name", "env:", "", "names no environment variable"},
		{"file less one newline", "file:" + good, secretValue, ""},
		{"file less CRLF", "file:" + crlf, secretValue, ""},
		{"file without newline", "file:" + noNewline, secretValue, ""},
		{"only one newline is trimmed", "file:" + twoNewlines, secretValue + "\n", ""},
		{"empty file", "file:" + empty, "", "file is empty"},
		{"missing file", "file:" + filepath.Join(t.TempDir(), "absent"), "", "no such file"},
		{"file without a path", "file:", "", "names no file"},
		{"inline value", secretValue, "", "secrets must be references (env:NAME or file:PATH), never written inline"},
		{"unknown scheme", "vault:" + secretValue, "", "never written inline"},
		{"empty reference", "", "", "never written inline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveSecret(tt.ref)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error containing %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
			if got != "" {
				t.Errorf("got value %q along with an error", got)
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestResolveSecretFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes")
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o610} {
		t.Run(mode.String(), func(t *testing.T) {
			path := writeSecretFile(t, "key", secretValue, mode)
			_, err := Secret("file:" + path).Resolve()
			if err == nil {
				t.Fatal("a file open to group or others was accepted")
			}
			want := fmt.Sprintf("group or others may access the file (mode %04o): run chmod 600 %s", uint32(mode), path)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q, want it to contain %q", err, want)
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestResolveSecretUnreadableFile(t *testing.T) {
	if runtime.GOOS == "windows" || os.Getuid() == 0 {
		t.Skip("needs Unix modes and a user that file modes apply to")
	}
	path := writeSecretFile(t, "key", secretValue, 0o200)
	_, err := ResolveSecret("file:" + path)
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("got %v, want a permission error", err)
	}
}

func TestSecretResolve(t *testing.T) {
	t.Setenv("MOAT_TEST_SECRET", secretValue)
	got, err := Secret("env:MOAT_TEST_SECRET").Resolve()
	if err != nil || got != secretValue {
		t.Errorf("got %q, %v", got, err)
	}
}

// withKeys appends a master key reference to a test document, after its
// last line so that the positions of earlier lines stay as they are.
func withKeys(doc string) []byte {
	if strings.Contains(doc, "master_key") {
		return []byte(doc)
	}
	if doc != "" && !strings.HasSuffix(doc, "\n") {
		doc += "\n"
	}
	return []byte(doc + "keys: {master_key: env:MOAT_TEST_MASTER_KEY}\n")
}

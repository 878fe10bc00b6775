package config

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Secret is a reference to a secret held outside the configuration file:
// "env:NAME" names an environment variable and "file:PATH" a file. The
// configuration never holds a secret itself, so it can be shared, diffed
// and logged. Resolve reads the value when it is needed.
type Secret string

// Resolve reads the secret s refers to. See ResolveSecret.
func (s Secret) Resolve() (string, error) { return ResolveSecret(string(s)) }

// errInlineSecret is the answer to a value that is not a reference. It
// must never quote the value: it may be the secret itself.
var errInlineSecret = errors.New("secrets must be references (env:NAME or file:PATH), never written inline")

// isSecretRef reports whether ref has the form of a secret reference.
func isSecretRef(ref string) bool {
	name, ok := strings.CutPrefix(ref, "env:")
	if !ok {
		name, ok = strings.CutPrefix(ref, "file:")
	}
	return ok && name != ""
}

// ResolveSecret reads the secret that ref refers to:
//
//   - "env:NAME" is the value of environment variable NAME, which must be
//     set and not empty;
//   - "file:PATH" is the content of file PATH less one trailing newline;
//     the file must not be empty, and neither group nor others may have
//     any access to it.
//
// Anything else is refused: secrets are never written inline. Error
// messages name the variable or file but never include the secret.
func ResolveSecret(ref string) (string, error) {
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		if name == "" {
			return "", errors.New(`secret reference "env:" names no environment variable`)
		}
		v, set := os.LookupEnv(name)
		switch {
		case !set:
			return "", fmt.Errorf("secret reference env:%s: environment variable %s is not set", name, name)
		case v == "":
			return "", fmt.Errorf("secret reference env:%s: environment variable %s is empty", name, name)
		}
		return v, nil
	}
	if path, ok := strings.CutPrefix(ref, "file:"); ok {
		if path == "" {
			return "", errors.New(`secret reference "file:" names no file`)
		}
		if err := checkPrivateFile(path); err != nil {
			return "", fmt.Errorf("secret reference file:%s: %w", path, err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("secret reference file:%s: %w", path, fileError(err))
		}
		v := string(b)
		if t, ok := strings.CutSuffix(v, "\n"); ok {
			v = strings.TrimSuffix(t, "\r")
		}
		if v == "" {
			return "", fmt.Errorf("secret reference file:%s: file is empty", path)
		}
		return v, nil
	}
	return "", errInlineSecret
}

// checkPrivateFile reports an error unless path is a regular file that
// neither group nor others can read or write. Windows has no such mode
// bits, so there only the file's existence is checked.
func checkPrivateFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fileError(err)
	}
	if !info.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("group or others may access the file (mode %04o): run chmod 600 %s", perm, path)
	}
	return nil
}

// checkFile reports an error unless path is an existing regular file.
func checkFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fileError(err)
	}
	if !info.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	return nil
}

// fileError drops the path from an error of the os package, whose message
// repeats it, keeping the cause (still matched by errors.Is).
func fileError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

package portal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/session"
)

// The passkey endpoints (PathPasskey*) answer JSON, as described on
// PasskeyBegin, PasskeyFinish and PasskeyReply.

const (
	// maxPasskeyBody bounds the body of a begin or finish request. A
	// credential with an attestation certificate chain is a few KiB.
	maxPasskeyBody = 64 << 10
	// maxCeremonyBytes bounds a ceremony id; the passkey package's are 22
	// characters.
	maxCeremonyBytes = 128
	// busyRetry is the Retry-After, in seconds, of a 503 answer.
	busyRetry = "5"
)

// Texts the passkey endpoints answer with.
const (
	msgPasskeyLogin     = "Moat did not accept this passkey. Try again, or sign in with your password."
	msgPasskeyRejected  = "Moat did not accept this passkey. Try again, or use another way to confirm it is you."
	msgPasskeyExpired   = "This sign-in has expired. Sign in again."
	msgPasskeysOff      = "This site does not offer passkeys."
	msgPasskeyBusy      = "Moat is busy. Wait a few seconds and try again."
	msgPasskeyFailed    = "Moat could not finish this passkey request. Try again in a moment."
	msgPasskeyBody      = "Moat could not read this request. Reload the page and try again."
	msgPasskeyForbidden = "Moat did not accept this request. Reload the page and try again."
	msgNoPasskeys       = "Your account has no passkey. Use another way to confirm it is you."
	msgRegisterRefused  = "Moat could not add this passkey. Try again."
)

// refusalTexts say why a passkey registration was refused, by reason. A
// reason that is not listed gets msgRegisterRefused; no error text of the
// passkey package reaches the browser.
var refusalTexts = []struct {
	err    error
	status int
	text   string
}{
	{passkey.ErrNoCeremony, http.StatusBadRequest, "This request took too long or was already used. Try again."},
	{passkey.ErrCeremonyExpired, http.StatusBadRequest, "This request took too long. Try again."},
	{passkey.ErrCeremonyMismatch, http.StatusBadRequest, "This request belongs to another sign-in. Reload the page and try again."},
	{passkey.ErrBadResponse, http.StatusBadRequest, "Your browser's answer could not be read. Try again, or use another passkey."},
	{passkey.ErrVerification, http.StatusBadRequest, "Your browser's answer did not check out. Try again, or use another passkey."},
	{passkey.ErrAlreadyExists, http.StatusConflict, "This passkey is already registered."},
	{passkey.ErrTooManyPasskeys, http.StatusConflict, "Your account has as many passkeys as it may have. Remove one before adding another."},
	{passkey.ErrBadName, http.StatusBadRequest, msgBadName},
	{passkey.ErrUserInactive, http.StatusForbidden, "Your account is not active."},
	{passkey.ErrNoPasskeys, http.StatusBadRequest, msgNoPasskeys},
}

// errPasskeyBody is a begin or finish body that is not what webauthn.js
// sends.
var errPasskeyBody = errors.New("passkey request body")

// passkeyStart is the body of a begin request: the form's fields.
type passkeyStart struct {
	ReturnTo string
	Name     string
}

// jsonCSRF runs next only for requests that carry the X-Moat-CSRF header
// and that CSRF.Check accepts; the others get a 403 PasskeyReply.
func (h *Handler) jsonCSRF(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h.o.CSRF.Check(r)
		if err == nil && len(r.Header.Values(CSRFHeader)) == 0 {
			err = fmt.Errorf("%w: no %s header", ErrCSRFToken, CSRFHeader)
		}
		if err != nil {
			h.log.Info("portal passkey request refused", "request_id", requestID(r), "err", err)
			writeJSON(w, http.StatusForbidden, PasskeyReply{Error: msgPasskeyForbidden})
			return
		}
		next(w, r)
	}
}

// ---- passwordless login ----

func (h *Handler) passkeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.readStart(w, r); !ok {
		return
	}
	opts, cer, err := h.o.Accounts.BeginPasskeyLogin(r.Context(), clientIP(r))
	if errors.Is(err, accounts.ErrLoginFailed) {
		// The client address is locked out: the same answer as a
		// refused passkey.
		writeJSON(w, http.StatusUnauthorized, PasskeyReply{Error: msgPasskeyLogin})
		return
	}
	h.begun(w, r, "beginning a passkey login", opts, cer, err)
}

func (h *Handler) passkeyLoginFinish(w http.ResponseWriter, r *http.Request) {
	fin, ok := h.readFinish(w, r)
	if !ok {
		return
	}
	res, err := h.o.Accounts.FinishPasskeyLogin(r.Context(), fin.Ceremony, fin.Credential, clientIP(r))
	if errors.Is(err, accounts.ErrLoginFailed) {
		writeJSON(w, http.StatusUnauthorized, PasskeyReply{Error: msgPasskeyLogin})
		return
	}
	if err != nil {
		h.passkeyError(w, r, "finishing a passkey login", err)
		return
	}
	// As after a password: a session cookie the browser already had,
	// perhaps planted, is ended rather than left valid.
	if old := session.TokenFromRequest(r); old != "" && old != res.Token {
		if err := h.o.Accounts.Logout(r.Context(), old, clientIP(r)); err != nil {
			h.log.Warn("ending the previous session at login", "request_id", requestID(r), "err", err)
		}
	}
	h.o.Cookies.Set(w, res.Token, res.Session)
	writeJSON(w, http.StatusOK, PasskeyReply{Redirect: SafeReturn(fin.ReturnTo)})
}

// ---- passkey as the second factor ----

func (h *Handler) passkeyVerifyBegin(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.readStart(w, r); !ok {
		return
	}
	tok := session.TokenFromRequest(r)
	if tok == "" {
		writeJSON(w, http.StatusUnauthorized, PasskeyReply{Error: msgPasskeyExpired})
		return
	}
	opts, cer, err := h.o.Accounts.BeginPasskeyVerify(r.Context(), tok)
	h.begun(w, r, "beginning a passkey check", opts, cer, err)
}

func (h *Handler) passkeyVerifyFinish(w http.ResponseWriter, r *http.Request) {
	fin, ok := h.readFinish(w, r)
	if !ok {
		return
	}
	tok := session.TokenFromRequest(r)
	if tok == "" {
		writeJSON(w, http.StatusUnauthorized, PasskeyReply{Error: msgPasskeyExpired})
		return
	}
	res, err := h.o.Accounts.FinishPasskeyVerify(r.Context(), tok, fin.Ceremony, fin.Credential, clientIP(r))
	switch {
	case errors.Is(err, accounts.ErrCodeRejected):
		writeJSON(w, http.StatusUnauthorized, PasskeyReply{Error: msgPasskeyRejected})
		return
	case errors.Is(err, accounts.ErrLoginFailed):
		writeJSON(w, http.StatusTooManyRequests, PasskeyReply{Error: msgTooMany})
		return
	case err != nil:
		h.passkeyError(w, r, "finishing a passkey check", err)
		return
	}
	h.o.Cookies.Set(w, res.Token, res.Session)
	writeJSON(w, http.StatusOK, PasskeyReply{Redirect: SafeReturn(fin.ReturnTo)})
}

// ---- adding a passkey ----

// registrant returns the principal that may add a passkey: a full login,
// or one that must enroll a second factor. ok is false when it answered.
func (h *Handler) registrant(w http.ResponseWriter, r *http.Request) (*accounts.Principal, string, bool) {
	tok := session.TokenFromRequest(r)
	if tok == "" {
		writeJSON(w, http.StatusUnauthorized, PasskeyReply{Error: msgPasskeyExpired})
		return nil, "", false
	}
	p, err := h.o.Accounts.Authenticate(r.Context(), tok)
	if err == nil && p.Pending != "" && p.Pending != accounts.PendingEnrollMFA {
		err = session.ErrNoSession
	}
	if err != nil {
		h.passkeyError(w, r, "reading the session", err)
		return nil, "", false
	}
	return p, tok, true
}

func (h *Handler) passkeyRegisterBegin(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.readStart(w, r); !ok {
		return
	}
	p, _, ok := h.registrant(w, r)
	if !ok {
		return
	}
	opts, cer, err := h.o.Accounts.BeginPasskeyRegistration(r.Context(), p)
	h.begun(w, r, "beginning a passkey registration", opts, cer, err)
}

func (h *Handler) passkeyRegisterFinish(w http.ResponseWriter, r *http.Request) {
	fin, ok := h.readFinish(w, r)
	if !ok {
		return
	}
	p, tok, ok := h.registrant(w, r)
	if !ok {
		return
	}
	newTok, codes, err := h.o.Accounts.FinishPasskeyRegistration(r.Context(), tok, p, fin.Ceremony, fin.Name, fin.Credential, clientIP(r))
	if err != nil {
		h.passkeyError(w, r, "finishing a passkey registration", err)
		return
	}
	if newTok != "" {
		// The login that had to enroll is now a full one, under a new
		// token.
		s, err := h.o.Sessions.Lookup(r.Context(), newTok)
		if err != nil {
			h.passkeyError(w, r, "reading a new session", err)
			return
		}
		h.o.Cookies.Set(w, newTok, s)
		tok = newTok
	}
	switch {
	case len(codes) > 0:
		if !h.setFlash(w, r, tok, codes) {
			return
		}
		writeJSON(w, http.StatusOK, PasskeyReply{Redirect: PathRecoveryCodes})
	case newTok != "":
		writeJSON(w, http.StatusOK, PasskeyReply{Redirect: PathAccount})
	default:
		writeJSON(w, http.StatusOK, PasskeyReply{Redirect: PathPasskeys + "?notice=added"})
	}
}

// ---- shared ----

// begun answers a begin request with the options and ceremony a begin
// method returned, or with its error.
func (h *Handler) begun(w http.ResponseWriter, r *http.Request, what string, opts []byte, cer string, err error) {
	if err != nil {
		h.passkeyError(w, r, what, err)
		return
	}
	if !json.Valid(opts) {
		h.passkeyError(w, r, what, errors.New("the options are not JSON"))
		return
	}
	writeJSON(w, http.StatusOK, PasskeyBegin{Ceremony: cer, Options: opts})
}

// passkeyError answers an error of the accounts service on a passkey
// endpoint. Refusals get a fixed text by reason; an error that is not a
// refusal means the check could not be made, and is answered 503.
func (h *Handler) passkeyError(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, session.ErrNoSession):
		writeJSON(w, http.StatusUnauthorized, PasskeyReply{Error: msgPasskeyExpired})
	case errors.Is(err, accounts.ErrPasskeysOff):
		writeJSON(w, http.StatusNotFound, PasskeyReply{Error: msgPasskeysOff})
	case errors.Is(err, passkey.ErrTooManyCeremonies):
		w.Header().Set("Retry-After", busyRetry)
		writeJSON(w, http.StatusServiceUnavailable, PasskeyReply{Error: msgPasskeyBusy})
	case errors.Is(err, passkey.ErrRefused):
		h.log.Info("portal: passkey refused", "what", what, "request_id", requestID(r), "reason", passkey.Reason(err))
		for _, t := range refusalTexts {
			if errors.Is(err, t.err) {
				writeJSON(w, t.status, PasskeyReply{Error: t.text})
				return
			}
		}
		writeJSON(w, http.StatusBadRequest, PasskeyReply{Error: msgRegisterRefused})
	default:
		h.log.Error("portal: "+what, "request_id", requestID(r), "err", err)
		writeJSON(w, http.StatusServiceUnavailable, PasskeyReply{Error: msgPasskeyFailed})
	}
}

// readStart reads a begin request's body; ok is false when it answered.
func (h *Handler) readStart(w http.ResponseWriter, r *http.Request) (passkeyStart, bool) {
	data, ok := h.readJSON(w, r)
	if !ok {
		return passkeyStart{}, false
	}
	st, err := parsePasskeyStart(data)
	if err != nil {
		h.badBody(w, r, err)
		return passkeyStart{}, false
	}
	return st, true
}

// readFinish reads a finish request's body; ok is false when it answered.
func (h *Handler) readFinish(w http.ResponseWriter, r *http.Request) (PasskeyFinish, bool) {
	data, ok := h.readJSON(w, r)
	if !ok {
		return PasskeyFinish{}, false
	}
	fin, err := parsePasskeyFinish(data)
	if err != nil {
		h.badBody(w, r, err)
		return PasskeyFinish{}, false
	}
	return fin, true
}

// readJSON checks that the request carries JSON and reads at most
// maxPasskeyBody of it; ok is false when it answered 400.
func (h *Handler) readJSON(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	ct := r.Header.Values("Content-Type")
	if len(ct) != 1 || !isJSONType(ct[0]) {
		h.badBody(w, r, fmt.Errorf("%w: Content-Type %q", errPasskeyBody, ct))
		return nil, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPasskeyBody))
	if err != nil {
		h.badBody(w, r, fmt.Errorf("%w: %v", errPasskeyBody, err))
		return nil, false
	}
	return data, true
}

func (h *Handler) badBody(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Info("portal: passkey request body refused", "request_id", requestID(r), "err", err)
	writeJSON(w, http.StatusBadRequest, PasskeyReply{Error: msgPasskeyBody})
}

// isJSONType reports whether a Content-Type names JSON in UTF-8.
func isJSONType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// parsePasskeyStart decodes a begin body: a JSON object with at most the
// string members return_to and name.
func parsePasskeyStart(data []byte) (passkeyStart, error) {
	m, err := decodeObject(data, FieldReturnTo, FieldName)
	if err != nil {
		return passkeyStart{}, err
	}
	var st passkeyStart
	if st.ReturnTo, err = stringMember(m, FieldReturnTo); err != nil {
		return passkeyStart{}, err
	}
	if st.Name, err = stringMember(m, FieldName); err != nil {
		return passkeyStart{}, err
	}
	return st, nil
}

// parsePasskeyFinish decodes a finish body strictly: one JSON object, in
// valid UTF-8, whose members are among those of PasskeyFinish, each once
// and with its exact name; ceremony a non-empty string of at most
// maxCeremonyBytes, credential an object, name and return_to strings.
func parsePasskeyFinish(data []byte) (PasskeyFinish, error) {
	m, err := decodeObject(data, "ceremony", "credential", FieldName, FieldReturnTo)
	if err != nil {
		return PasskeyFinish{}, err
	}
	var fin PasskeyFinish
	if fin.Ceremony, err = stringMember(m, "ceremony"); err != nil {
		return PasskeyFinish{}, err
	}
	if fin.Ceremony == "" || len(fin.Ceremony) > maxCeremonyBytes {
		return PasskeyFinish{}, fmt.Errorf("%w: ceremony of %d bytes", errPasskeyBody, len(fin.Ceremony))
	}
	if fin.Name, err = stringMember(m, FieldName); err != nil {
		return PasskeyFinish{}, err
	}
	if fin.ReturnTo, err = stringMember(m, FieldReturnTo); err != nil {
		return PasskeyFinish{}, err
	}
	cred := m["credential"]
	if len(cred) == 0 || cred[0] != '{' {
		return PasskeyFinish{}, fmt.Errorf("%w: credential is not an object", errPasskeyBody)
	}
	fin.Credential = cred
	return fin, nil
}

// decodeObject reads data as exactly one JSON object whose member names
// are among names, each at most once, and returns each member's value as
// it was sent (without surrounding space). Unlike encoding/json's struct
// decoding it matches names exactly, refuses duplicates, and refuses
// invalid UTF-8 rather than replacing it.
func decodeObject(data []byte, names ...string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", errPasskeyBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: not a JSON object", errPasskeyBody)
	}
	m := make(map[string]json.RawMessage, len(names))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errPasskeyBody, err)
		}
		name, _ := tok.(string)
		known := false
		for _, n := range names {
			known = known || n == name
		}
		if !known {
			return nil, fmt.Errorf("%w: unknown member %s", errPasskeyBody, strconv.QuoteToASCII(truncate(name, 40)))
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%w: member %s given twice", errPasskeyBody, name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: member %s: %v", errPasskeyBody, name, err)
		}
		m[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("%w: unterminated object", errPasskeyBody)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", errPasskeyBody)
	}
	return m, nil
}

// stringMember returns member name of m, which must be a JSON string when
// present; "" when absent.
func stringMember(m map[string]json.RawMessage, name string) (string, error) {
	v, ok := m[name]
	if !ok {
		return "", nil
	}
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", fmt.Errorf("%w: member %s is not a string", errPasskeyBody, name)
	}
	return s, nil
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeJSON answers v as JSON with status; never cached, never sniffed.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the package's own reply types are written.
		status, body = http.StatusInternalServerError, []byte(`{"error":"`+msgPasskeyFailed+`"}`)
	}
	body = append(body, '\n')
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

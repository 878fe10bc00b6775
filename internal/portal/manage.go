package portal

import (
	"bytes"
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/session"
	"github.com/moatgw/moat/internal/store"
)

// maxSessionsShown bounds the sessions the account page lists, the most
// recently active first.
const maxSessionsShown = 20

// Texts of the account pages.
const (
	msgLastFactor    = "This is your only second factor, and your role requires one. Add another, such as a passkey or an authenticator app, before you remove this one."
	msgBadName       = "A passkey name can be at most 64 characters long, with no control characters."
	msgNoSuchPasskey = "That passkey is not on your account. It may have been removed already."
	msgNoSecondStep  = "Recovery codes come with a second factor. Set up an authenticator app or a passkey first."
)

// accountNotices and passkeyNotices are the notices the account and
// passkey pages show, chosen by the "notice" query parameter: only these
// fixed texts, never text from the address.
var (
	accountNotices = map[string]string{
		"totp_removed":     "The authenticator app is turned off.",
		"password_changed": "Your password is changed. Every other session of yours has ended.",
	}
	passkeyNotices = map[string]string{
		"added":   "Passkey added.",
		"renamed": "Passkey renamed.",
		"removed": "Passkey removed.",
	}
)

// methodNames name session methods on the account page, in this order.
var methodNames = []struct{ method, name string }{
	{accounts.MethodPassword, "password"},
	{accounts.MethodWebAuthn, "passkey"},
	{accounts.MethodTOTP, "authenticator app"},
	{accounts.MethodRecovery, "recovery code"},
	{accounts.MethodOIDC, "identity provider"},
	{accounts.MethodMFA, "the provider's second factor"},
}

// fullLogin returns the principal of a finished login and its token,
// after redirecting any other request; back is the page a login should
// return to. ok is false when it answered.
func (h *Handler) fullLogin(w http.ResponseWriter, r *http.Request, back string) (*accounts.Principal, string, bool) {
	p, tok, ok := h.principal(w, r)
	switch {
	case !ok:
	case p == nil:
		redirect(w, withReturn(PathLogin, back))
	case p.Pending == accounts.PendingMFA:
		redirect(w, withReturn(PathLoginTOTP, back))
	case p.Pending != "":
		redirect(w, PathTOTP)
	default:
		return p, tok, true
	}
	return nil, "", false
}

// ---- account overview ----

func (h *Handler) accountPage(w http.ResponseWriter, r *http.Request) {
	p, tok, ok := h.fullLogin(w, r, PathAccount)
	if !ok {
		return
	}
	h.renderAccount(w, r, http.StatusOK, p, tok, AccountData{Notice: accountNotices[r.URL.Query().Get("notice")]})
}

func (h *Handler) renderAccount(w http.ResponseWriter, r *http.Request, status int, p *accounts.Principal, tok string, d AccountData) {
	factors, err := h.o.Accounts.Factors(r.Context(), p.UserID)
	if err != nil {
		h.internal(w, r, "listing factors", err)
		return
	}
	if d.Sessions, err = h.sessions(r, p, tok); err != nil {
		h.internal(w, r, "listing sessions", err)
		return
	}
	d.Username = p.Username
	d.CSRF = h.o.CSRF.Token(w, r)
	d.HasPassword = factors[accounts.KindPassword] > 0
	d.TOTPEnabled = factors[accounts.KindTOTP] > 0
	d.PasskeysEnabled = h.o.Accounts.PasskeysEnabled()
	d.Passkeys = factors[accounts.KindWebAuthn]
	d.RecoveryCodesLeft = factors[accounts.KindRecovery]
	h.o.Pages.Render(w, r, status, PageAccount, &d)
}

// sessions lists the live sessions of p's user for the account page, the
// most recently active first.
func (h *Handler) sessions(r *http.Request, p *accounts.Principal, tok string) ([]Session, error) {
	cur, err := h.o.Sessions.Lookup(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	all, err := h.o.Sessions.List(r.Context(), p.UserID)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b *store.Session) int { return b.LastSeen.Compare(a.LastSeen) })
	out := make([]Session, 0, min(len(all), maxSessionsShown))
	for _, s := range all[:min(len(all), maxSessionsShown)] {
		out = append(out, Session{
			Methods:  describeMethods(s.Methods),
			Pending:  slices.ContainsFunc(s.Methods, func(m string) bool { return strings.HasPrefix(m, "pending:") }),
			Created:  s.CreatedAt,
			LastSeen: s.LastSeen,
			Current:  bytes.Equal(s.IDHash, cur.IDHash),
		})
	}
	// The current session goes first, whatever its activity.
	slices.SortStableFunc(out, func(a, b Session) int { return cmp.Compare(btoi(b.Current), btoi(a.Current)) })
	return out, nil
}

// describeMethods names how a session signed in, such as "Password and
// authenticator app".
func describeMethods(methods []string) string {
	var names []string
	for _, m := range methodNames {
		if slices.Contains(methods, m.method) {
			names = append(names, m.name)
		}
	}
	if len(names) == 0 {
		return "Another way"
	}
	return sentenceCase(strings.Join(names, " and "))
}

func sentenceCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---- authenticator app ----

func (h *Handler) totpRemove(w http.ResponseWriter, r *http.Request) {
	p, tok, ok := h.fullLogin(w, r, PathAccount)
	if !ok {
		return
	}
	err := h.o.Accounts.RemoveTOTP(r.Context(), p, clientIP(r))
	switch {
	case errors.Is(err, accounts.ErrLastFactor):
		h.renderAccount(w, r, http.StatusBadRequest, p, tok, AccountData{Error: msgLastFactor})
	case err != nil:
		h.internal(w, r, "removing the authenticator app", err)
	default:
		redirect(w, PathAccount+"?notice=totp_removed")
	}
}

// ---- recovery codes ----

// recoveryCodesNew replaces the user's recovery codes, then shows the new
// ones through the flash cookie, so that reloading the page they are shown
// on does not replace them again.
func (h *Handler) recoveryCodesNew(w http.ResponseWriter, r *http.Request) {
	p, tok, ok := h.fullLogin(w, r, PathAccount)
	if !ok {
		return
	}
	factors, err := h.o.Accounts.Factors(r.Context(), p.UserID)
	if err != nil {
		h.internal(w, r, "listing factors", err)
		return
	}
	if factors[accounts.KindTOTP]+factors[accounts.KindWebAuthn] == 0 {
		h.renderAccount(w, r, http.StatusBadRequest, p, tok, AccountData{Error: msgNoSecondStep})
		return
	}
	codes, err := h.o.Accounts.RegenerateRecoveryCodes(r.Context(), p, clientIP(r))
	if err != nil {
		h.internal(w, r, "making new recovery codes", err)
		return
	}
	if !h.setFlash(w, r, tok, codes) {
		return
	}
	redirect(w, PathRecoveryCodes)
}

// setFlash seals codes for the session tok into the flash cookie; ok is
// false when it failed and answered.
func (h *Handler) setFlash(w http.ResponseWriter, r *http.Request, tok string, codes []string) bool {
	v, err := h.flash.seal(tok, codes, h.o.Now())
	if err != nil {
		// The codes are lost: they are stored only as hashes. The user
		// can make new ones from the account page.
		h.internal(w, r, "sealing recovery codes", err)
		return false
	}
	setFlashCookie(w, v)
	return true
}

// recoveryCodesPage shows the codes in the flash cookie once, and drops the
// cookie. Without one that opens for this session, it goes to the account
// page.
func (h *Handler) recoveryCodesPage(w http.ResponseWriter, r *http.Request) {
	v := flashFromRequest(r)
	if v != "" {
		clearFlashCookie(w)
	}
	p, tok, ok := h.principal(w, r)
	if !ok {
		return
	}
	if v == "" || p == nil || p.Pending != "" {
		redirect(w, PathAccount)
		return
	}
	codes, ok := h.flash.open(v, tok, h.o.Now())
	if !ok {
		h.log.Info("portal: recovery codes cookie did not open", "request_id", requestID(r))
		redirect(w, PathAccount)
		return
	}
	h.o.Pages.Render(w, r, http.StatusOK, PageRecoveryCodes, &RecoveryCodesData{CSRF: h.o.CSRF.Token(w, r), Codes: codes})
}

// ---- passkeys ----

func (h *Handler) passkeysPage(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.fullLogin(w, r, PathPasskeys)
	if !ok {
		return
	}
	if !h.o.Accounts.PasskeysEnabled() {
		redirect(w, PathAccount)
		return
	}
	h.renderPasskeys(w, r, http.StatusOK, p, PasskeysData{Notice: passkeyNotices[r.URL.Query().Get("notice")]})
}

func (h *Handler) renderPasskeys(w http.ResponseWriter, r *http.Request, status int, p *accounts.Principal, d PasskeysData) {
	list, err := h.o.Accounts.Passkeys(r.Context(), p.UserID)
	if err != nil {
		h.internal(w, r, "listing passkeys", err)
		return
	}
	found := false
	for _, pk := range list {
		d.Passkeys = append(d.Passkeys, Passkey{ID: pk.ID, Name: pk.Name, Created: pk.CreatedAt, LastUsed: pk.LastUsedAt})
		found = found || pk.ID == d.ErrorPasskey
	}
	if !found {
		// The error is about a passkey not on the list: show it for the
		// page, not for a form that is not there.
		d.ErrorPasskey = ""
	}
	d.CSRF = h.o.CSRF.Token(w, r)
	d.MaxNameLength = passkey.MaxNameRunes
	h.o.Pages.Render(w, r, status, PagePasskeys, &d)
}

func (h *Handler) passkeyRename(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.fullLogin(w, r, PathPasskeys)
	if !ok {
		return
	}
	id := r.PostFormValue(FieldID)
	err := h.o.Accounts.RenamePasskey(r.Context(), p, id, r.PostFormValue(FieldName))
	switch {
	case errors.Is(err, passkey.ErrBadName):
		h.renderPasskeys(w, r, http.StatusBadRequest, p, PasskeysData{Error: msgBadName, ErrorPasskey: id})
	case errors.Is(err, passkey.ErrNotFound):
		h.renderPasskeys(w, r, http.StatusNotFound, p, PasskeysData{Error: msgNoSuchPasskey})
	case errors.Is(err, accounts.ErrPasskeysOff):
		redirect(w, PathAccount)
	case err != nil:
		h.internal(w, r, "renaming a passkey", err)
	default:
		redirect(w, PathPasskeys+"?notice=renamed")
	}
}

func (h *Handler) passkeyRemove(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.fullLogin(w, r, PathPasskeys)
	if !ok {
		return
	}
	err := h.o.Accounts.RemovePasskey(r.Context(), p, r.PostFormValue(FieldID), clientIP(r))
	switch {
	case errors.Is(err, accounts.ErrLastFactor):
		h.renderPasskeys(w, r, http.StatusBadRequest, p, PasskeysData{Error: msgLastFactor})
	case errors.Is(err, passkey.ErrNotFound):
		h.renderPasskeys(w, r, http.StatusNotFound, p, PasskeysData{Error: msgNoSuchPasskey})
	case errors.Is(err, accounts.ErrPasskeysOff):
		redirect(w, PathAccount)
	case err != nil:
		h.internal(w, r, "removing a passkey", err)
	default:
		redirect(w, PathPasskeys+"?notice=removed")
	}
}

// ---- logout everywhere ----

func (h *Handler) logoutEverywhere(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.fullLogin(w, r, PathAccount)
	if !ok {
		return
	}
	if err := h.o.Accounts.LogoutEverywhere(r.Context(), p, clientIP(r)); err != nil {
		h.internal(w, r, "ending every session", err)
		return
	}
	session.ClearCookie(w)
	h.o.Pages.Render(w, r, http.StatusOK, PageLoggedOut, &LoggedOutData{Everywhere: true})
}

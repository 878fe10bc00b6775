package portal

import (
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/passkey"
	"github.com/moatgw/moat/internal/password"
	"github.com/moatgw/moat/internal/request"
	"github.com/moatgw/moat/internal/session"
)

// EnrollCookie carries an enrollment link's token from the link to the
// form that redeems it, so that the token leaves the address bar (and the
// browser history) after the first request. Like the session cookie it is
// Secure, HttpOnly, host-only and Path=/.
const EnrollCookie = "__Host-moat_enroll"

// enrollCookieAge bounds how long an opened enrollment link stays usable in
// the browser; the link itself expires on the server's own schedule.
const enrollCookieAge = 3600

// maxEchoBytes bounds a user name echoed back into the login form.
const maxEchoBytes = 256

// Texts shown to people.
const (
	msgLoginFailed  = "The user name or password is not correct."
	msgCodeRejected = "The code is not correct."
	msgTooMany      = "Too many attempts. Wait a few minutes and try again."
	msgEnrollRetry  = "The code is not correct. Scan this new code, or type the new key, and try again."
	msgMismatch     = "The two passwords are not the same."
	msgPasswordSet  = "Your password is set. Sign in with it."
	msgCurrentWrong = "The current password is not correct. After a few wrong tries the account is locked for a while."
)

// loginNotices are the notices the login page shows, chosen by the
// "notice" query parameter: only these fixed texts, never text from the
// address.
var loginNotices = map[string]string{
	"password_set": msgPasswordSet,
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	// Cookies writes the session cookie; the zero value uses SameSite=Lax.
	Cookies  session.Cookies
	Accounts *accounts.Service
	// Sessions is the manager Accounts uses; the handler reads the expiry
	// of a session Accounts replaced, to give its cookie the right
	// lifetime, and lists the user's sessions on the account page.
	Sessions *session.Manager
	Pages    *Pages
	CSRF     *CSRF
	// FlashKey seals the recovery codes carried from the request that
	// made them to the page that shows them (see FlashCookie): 32 bytes
	// from a cryptographic source, the same on every instance serving the
	// portal, and used for nothing else. NewHandler keeps no reference to
	// the slice.
	FlashKey []byte
	// PasswordPolicyMin and PasswordPolicyMax are the password policy's
	// bounds, shown on the set-password page (Max 0 leaves it unsaid).
	PasswordPolicyMin, PasswordPolicyMax int
	// Providers are the external identity providers the login page
	// offers; their URL is the path that starts a login, to which the
	// page adds the return address.
	Providers []Provider
	// PasskeyAutofill also offers passkeys in the login page's user name
	// autofill, when passkeys are on. It begins a ceremony on every view
	// of the login page.
	PasskeyAutofill bool
	// Now is the clock for the expiry of sealed recovery codes; time.Now
	// when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// Handler serves the portal: login with a password or a passkey and a
// second factor, TOTP and passkey enrollment, setting a password from an
// enrollment link, logout, and the account pages (passkeys, recovery
// codes, ending every session). It writes no security events itself: the
// accounts service does. It is safe for concurrent use.
type Handler struct {
	o     HandlerOptions
	log   *slog.Logger
	mux   *http.ServeMux
	flash *flasher
}

// NewHandler returns a Handler; Accounts, Sessions, Pages, CSRF and a
// 32-byte FlashKey are required.
func NewHandler(o HandlerOptions) (*Handler, error) {
	if o.Accounts == nil || o.Sessions == nil || o.Pages == nil || o.CSRF == nil {
		return nil, errors.New("portal handler: accounts, sessions, pages and csrf are required")
	}
	fl, err := newFlasher(o.FlashKey)
	if err != nil {
		return nil, fmt.Errorf("portal handler: %w", err)
	}
	o.FlashKey = nil
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, log: o.Logger.With("component", "portal"), mux: http.NewServeMux(), flash: fl}
	h.mux.HandleFunc("GET "+PathLogin, h.loginPage)
	h.mux.HandleFunc("POST "+PathLogin, h.csrf(h.loginSubmit))
	h.mux.HandleFunc("GET "+PathLoginTOTP, h.secondFactorPage)
	h.mux.HandleFunc("POST "+PathLoginTOTP, h.csrf(h.secondFactorSubmit(false)))
	h.mux.HandleFunc("POST "+PathLoginRecovery, h.csrf(h.secondFactorSubmit(true)))
	h.mux.HandleFunc("GET "+PathTOTP, h.enrollPage)
	h.mux.HandleFunc("POST "+PathTOTP, h.csrf(h.enrollSubmit))
	h.mux.HandleFunc("GET "+PathRecoveryCodes, h.recoveryCodesPage)
	h.mux.HandleFunc("POST "+PathRecoveryCodes, h.csrf(h.recoveryCodesSaved))
	h.mux.HandleFunc("POST "+PathRecoveryCodesNew, h.csrf(h.recoveryCodesNew))
	h.mux.HandleFunc("GET "+PathPassword, h.passwordPage)
	h.mux.HandleFunc("POST "+PathPassword, h.csrf(h.passwordSubmit))
	h.mux.HandleFunc("GET "+PathStepUp, h.stepUpPage)
	h.mux.HandleFunc("POST "+PathStepUp, h.csrf(h.stepUpSubmit))
	h.mux.HandleFunc("POST "+PathLogout, h.csrf(h.logout))
	h.mux.HandleFunc("POST "+PathLogoutEverywhere, h.csrf(h.logoutEverywhere))
	h.mux.HandleFunc("GET "+PathAccount, h.accountPage)
	h.mux.HandleFunc("POST "+PathTOTPRemove, h.csrf(h.totpRemove))
	h.mux.HandleFunc("GET "+PathPasskeys, h.passkeysPage)
	h.mux.HandleFunc("POST "+PathPasskeyRename, h.csrf(h.passkeyRename))
	h.mux.HandleFunc("POST "+PathPasskeyRemove, h.csrf(h.passkeyRemove))
	h.mux.HandleFunc("POST "+PathPasskeyLoginBegin, h.jsonCSRF(h.passkeyLoginBegin))
	h.mux.HandleFunc("POST "+PathPasskeyLoginFinish, h.jsonCSRF(h.passkeyLoginFinish))
	h.mux.HandleFunc("POST "+PathPasskeyVerifyBegin, h.jsonCSRF(h.passkeyVerifyBegin))
	h.mux.HandleFunc("POST "+PathPasskeyVerifyFinish, h.jsonCSRF(h.passkeyVerifyFinish))
	h.mux.HandleFunc("POST "+PathPasskeyRegisterBegin, h.jsonCSRF(h.passkeyRegisterBegin))
	h.mux.HandleFunc("POST "+PathPasskeyRegisterFinish, h.jsonCSRF(h.passkeyRegisterFinish))
	return h, nil
}

// ServeHTTP routes a portal request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// csrf runs next only for requests CSRF.Check accepts; the others get a
// 403 notice page.
func (h *Handler) csrf(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.o.CSRF.Check(r); err != nil {
			h.log.Info("portal form refused", "request_id", requestID(r), "err", err)
			h.notice(w, r, http.StatusForbidden, NoticeData{
				Title:    "Form expired or sent from another site",
				Message:  "Moat did not accept this form. Go back, reload the page and try again.",
				Error:    true,
				Link:     PathLogin,
				LinkText: "Go to the sign-in page",
			})
			return
		}
		next(w, r)
	}
}

// ---- login ----

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.renderLogin(w, r, http.StatusOK, LoginData{
		ReturnTo: returnTo(r.URL.Query().Get(FieldReturnTo)),
		Notice:   loginNotices[r.URL.Query().Get("notice")],
	})
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, status int, d LoginData) {
	d.CSRF = h.o.CSRF.Token(w, r)
	for _, p := range h.o.Providers {
		if d.ReturnTo != "" {
			p.URL += "?" + FieldReturnTo + "=" + url.QueryEscape(d.ReturnTo)
		}
		d.Providers = append(d.Providers, p)
	}
	d.PasskeysEnabled = h.o.Accounts.PasskeysEnabled()
	d.PasskeyAutofill = d.PasskeysEnabled && h.o.PasskeyAutofill
	h.o.Pages.Render(w, r, status, PageLogin, &d)
}

func (h *Handler) loginSubmit(w http.ResponseWriter, r *http.Request) {
	rt := SafeReturn(r.PostFormValue(FieldReturnTo))
	username := r.PostFormValue(FieldUsername)
	res, err := h.o.Accounts.PasswordLogin(r.Context(), username, r.PostFormValue(FieldPassword), clientIP(r))
	switch {
	case errors.Is(err, accounts.ErrLoginFailed):
		if len(username) > maxEchoBytes {
			username = ""
		}
		h.renderLogin(w, r, http.StatusUnauthorized, LoginData{Username: username, Error: msgLoginFailed, ReturnTo: returnTo(rt)})
		return
	case errors.Is(err, accounts.ErrBusy):
		h.busy(w, r)
		return
	case err != nil:
		h.internal(w, r, "password login", err)
		return
	}
	// The login made a new session; a session cookie the browser already
	// had, perhaps planted, is ended rather than left valid.
	if old := session.TokenFromRequest(r); old != "" && old != res.Token {
		if err := h.o.Accounts.Logout(r.Context(), old, clientIP(r)); err != nil {
			h.log.Warn("ending the previous session at login", "request_id", requestID(r), "err", err)
		}
	}
	h.o.Cookies.Set(w, res.Token, res.Session)
	switch res.Outcome {
	case accounts.NeedSecondFactor:
		redirect(w, withReturn(PathLoginTOTP, rt))
	case accounts.MustEnroll:
		redirect(w, PathTOTP)
	default:
		redirect(w, rt)
	}
}

// ---- second factor ----

func (h *Handler) secondFactorPage(w http.ResponseWriter, r *http.Request) {
	rt := SafeReturn(r.URL.Query().Get(FieldReturnTo))
	p, _, ok := h.principal(w, r)
	if !ok {
		return
	}
	switch {
	case p == nil:
		redirect(w, withReturn(PathLogin, rt))
	case p.Pending == accounts.PendingEnrollMFA:
		redirect(w, PathTOTP)
	case p.Pending != accounts.PendingMFA:
		redirect(w, rt)
	default:
		h.renderSecondFactor(w, r, http.StatusOK, p, SecondFactorData{ReturnTo: returnTo(rt)})
	}
}

func (h *Handler) renderSecondFactor(w http.ResponseWriter, r *http.Request, status int, p *accounts.Principal, d SecondFactorData) {
	factors, err := h.o.Accounts.Factors(r.Context(), p.UserID)
	if err != nil {
		h.internal(w, r, "listing second factors", err)
		return
	}
	d.HasTOTP = factors[accounts.KindTOTP] > 0
	d.HasPasskey = factors[accounts.KindWebAuthn] > 0 && h.o.Accounts.PasskeysEnabled()
	d.CSRF = h.o.CSRF.Token(w, r)
	h.o.Pages.Render(w, r, status, PageSecondFactor, &d)
}

func (h *Handler) secondFactorSubmit(recovery bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rt := SafeReturn(r.PostFormValue(FieldReturnTo))
		tok := session.TokenFromRequest(r)
		p, err := h.o.Accounts.Authenticate(r.Context(), tok)
		if errors.Is(err, session.ErrNoSession) || err == nil && p.Pending != accounts.PendingMFA {
			redirect(w, withReturn(PathLogin, rt))
			return
		}
		if err != nil {
			h.internal(w, r, "reading the session", err)
			return
		}
		var res accounts.Result
		if recovery {
			res, err = h.o.Accounts.VerifyRecoveryCode(r.Context(), tok, r.PostFormValue(FieldRecoveryCode), clientIP(r))
		} else {
			res, err = h.o.Accounts.VerifyTOTP(r.Context(), tok, r.PostFormValue(FieldCode), clientIP(r))
		}
		d := SecondFactorData{ReturnTo: returnTo(rt)}
		switch {
		case errors.Is(err, accounts.ErrCodeRejected):
			if recovery {
				d.RecoveryError = msgCodeRejected
			} else {
				d.CodeError = msgCodeRejected
			}
			h.renderSecondFactor(w, r, http.StatusUnauthorized, p, d)
			return
		case errors.Is(err, accounts.ErrLoginFailed):
			d.Error = msgTooMany
			h.renderSecondFactor(w, r, http.StatusTooManyRequests, p, d)
			return
		case errors.Is(err, session.ErrNoSession):
			redirect(w, withReturn(PathLogin, rt))
			return
		case err != nil:
			h.internal(w, r, "verifying a second factor", err)
			return
		}
		h.o.Cookies.Set(w, res.Token, res.Session)
		redirect(w, rt)
	}
}

// ---- TOTP enrollment ----

// enrollPrincipal returns the principal of a session that may enroll a
// second factor (a full login, or one that must enroll first), after
// redirecting any other request; ok is false when it answered.
func (h *Handler) enrollPrincipal(w http.ResponseWriter, r *http.Request) (*accounts.Principal, string, bool) {
	p, tok, ok := h.principal(w, r)
	switch {
	case !ok:
		return nil, "", false
	case p == nil:
		redirect(w, withReturn(PathLogin, PathTOTP))
		return nil, "", false
	case p.Pending == accounts.PendingMFA:
		redirect(w, PathLoginTOTP)
		return nil, "", false
	case p.Pending != "" && p.Pending != accounts.PendingEnrollMFA:
		redirect(w, PathLogin)
		return nil, "", false
	}
	return p, tok, true
}

func (h *Handler) enrollPage(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.enrollPrincipal(w, r)
	if !ok {
		return
	}
	h.renderEnroll(w, r, http.StatusOK, p, "")
}

// renderEnroll starts an enrollment with a new key and shows it.
func (h *Handler) renderEnroll(w http.ResponseWriter, r *http.Request, status int, p *accounts.Principal, msg string) {
	en, err := h.o.Accounts.BeginTOTP(r.Context(), p)
	if err != nil {
		h.internal(w, r, "starting a TOTP enrollment", err)
		return
	}
	issuer := ""
	if u, err := url.Parse(en.URI); err == nil {
		issuer = u.Query().Get("issuer")
	}
	h.o.Pages.Render(w, r, status, PageEnrollTOTP, &EnrollTOTPData{
		CSRF: h.o.CSRF.Token(w, r),
		// QRSVG is mfa.QRCodeSVG's output, the only markup the page takes.
		QRCode:  template.HTML(en.QRSVG),
		Key:     en.Manual,
		Issuer:  issuer,
		Account: p.Username,
		Error:   msg,
		// The passkey form there goes to PathPasskeyRegisterBegin, which
		// accepts a session that must enroll.
		PasskeysEnabled: h.o.Accounts.PasskeysEnabled(),
		MaxNameLength:   passkey.MaxNameRunes,
	})
}

func (h *Handler) enrollSubmit(w http.ResponseWriter, r *http.Request) {
	p, tok, ok := h.enrollPrincipal(w, r)
	if !ok {
		return
	}
	newTok, codes, err := h.o.Accounts.ConfirmTOTP(r.Context(), tok, p, r.PostFormValue(FieldName), r.PostFormValue(FieldCode), clientIP(r))
	switch {
	case errors.Is(err, accounts.ErrCodeRejected):
		// The key waiting for confirmation cannot be shown again: start
		// over with a new one, and say so.
		h.renderEnroll(w, r, http.StatusBadRequest, p, msgEnrollRetry)
		return
	case errors.Is(err, session.ErrNoSession):
		redirect(w, PathLogin)
		return
	case err != nil:
		h.internal(w, r, "confirming a TOTP enrollment", err)
		return
	}
	if !h.setCookie(w, r, newTok) {
		return
	}
	if len(codes) == 0 {
		redirect(w, PathAccount)
		return
	}
	h.o.Pages.Render(w, r, http.StatusOK, PageRecoveryCodes, &RecoveryCodesData{CSRF: h.o.CSRF.Token(w, r), Codes: codes})
}

// recoveryCodesSaved follows the recovery codes page: the codes are not
// kept, so there is nothing to show again.
func (h *Handler) recoveryCodesSaved(w http.ResponseWriter, r *http.Request) {
	redirect(w, PathAccount)
}

// ---- setting a password from an enrollment link ----

func (h *Handler) passwordPage(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query(); q.Has("token") {
		tok := q.Get("token")
		if !tokenShaped(tok) {
			h.invalidLink(w, r)
			return
		}
		// Move the token out of the address: into a cookie, then back to
		// the same page without it.
		http.SetCookie(w, &http.Cookie{
			Name: EnrollCookie, Value: tok, Path: "/", MaxAge: enrollCookieAge,
			Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
		redirect(w, PathPassword)
		return
	}
	if enrollToken(r) == "" {
		if p, _, ok := h.principal(w, r); !ok {
			return
		} else if p != nil && p.Pending == "" {
			h.renderChangePassword(w, r, http.StatusOK, p, SetPasswordData{})
			return
		}
		h.notice(w, r, http.StatusBadRequest, NoticeData{
			Title:   "Open the link you were sent",
			Message: "To choose a password, open the link you were given for it.",
			Error:   true,
		})
		return
	}
	h.renderPassword(w, r, http.StatusOK, SetPasswordData{})
}

func (h *Handler) renderPassword(w http.ResponseWriter, r *http.Request, status int, d SetPasswordData) {
	d.CSRF = h.o.CSRF.Token(w, r)
	d.MinLength, d.MaxLength = h.o.PasswordPolicyMin, h.o.PasswordPolicyMax
	h.o.Pages.Render(w, r, status, PageSetPassword, &d)
}

// renderChangePassword shows the password form to a signed-in user, who
// must give the current password when there is one.
func (h *Handler) renderChangePassword(w http.ResponseWriter, r *http.Request, status int, p *accounts.Principal, d SetPasswordData) {
	factors, err := h.o.Accounts.Factors(r.Context(), p.UserID)
	if err != nil {
		h.internal(w, r, "listing factors", err)
		return
	}
	d.RequireCurrent = factors[accounts.KindPassword] > 0
	h.renderPassword(w, r, status, d)
}

func (h *Handler) passwordSubmit(w http.ResponseWriter, r *http.Request) {
	tok := enrollToken(r)
	if tok == "" {
		p, sessTok, ok := h.principal(w, r)
		switch {
		case !ok:
		case p != nil && p.Pending == "":
			h.changePassword(w, r, p, sessTok)
		default:
			h.invalidLink(w, r)
		}
		return
	}
	pw := r.PostFormValue(FieldNewPassword)
	if pw != r.PostFormValue(FieldConfirmPassword) {
		h.renderPassword(w, r, http.StatusBadRequest, SetPasswordData{ConfirmError: msgMismatch})
		return
	}
	_, err := h.o.Accounts.SetPasswordWithToken(r.Context(), tok, pw)
	var pe *password.PolicyError
	switch {
	case errors.As(err, &pe):
		h.renderPassword(w, r, http.StatusBadRequest, SetPasswordData{NewError: sentence(pe.Error())})
		return
	case errors.Is(err, accounts.ErrInvalidToken):
		h.invalidLink(w, r)
		return
	case errors.Is(err, accounts.ErrBusy):
		h.busy(w, r)
		return
	case err != nil:
		h.internal(w, r, "setting a password", err)
		return
	}
	clearEnrollCookie(w)
	redirect(w, PathLogin+"?notice=password_set")
}

// changePassword is the password form of a signed-in user.
func (h *Handler) changePassword(w http.ResponseWriter, r *http.Request, p *accounts.Principal, sessTok string) {
	pw := r.PostFormValue(FieldNewPassword)
	if pw != r.PostFormValue(FieldConfirmPassword) {
		h.renderChangePassword(w, r, http.StatusBadRequest, p, SetPasswordData{ConfirmError: msgMismatch})
		return
	}
	newTok, err := h.o.Accounts.ChangePassword(r.Context(), sessTok, p, r.PostFormValue(FieldCurrentPassword), pw, clientIP(r))
	var pe *password.PolicyError
	switch {
	case errors.As(err, &pe):
		h.renderChangePassword(w, r, http.StatusBadRequest, p, SetPasswordData{NewError: sentence(pe.Error())})
		return
	case errors.Is(err, accounts.ErrLoginFailed):
		h.renderChangePassword(w, r, http.StatusUnauthorized, p, SetPasswordData{CurrentError: msgCurrentWrong})
		return
	case errors.Is(err, accounts.ErrBusy):
		h.busy(w, r)
		return
	case errors.Is(err, session.ErrNoSession):
		redirect(w, withReturn(PathLogin, PathPassword))
		return
	case err != nil:
		h.internal(w, r, "changing a password", err)
		return
	}
	if !h.setCookie(w, r, newTok) {
		return
	}
	redirect(w, PathAccount+"?notice=password_changed")
}

func (h *Handler) invalidLink(w http.ResponseWriter, r *http.Request) {
	clearEnrollCookie(w)
	h.notice(w, r, http.StatusBadRequest, NoticeData{
		Title:    "This link does not work",
		Message:  "This link is not valid: it may have been used already or expired. Ask your administrator for a new one.",
		Error:    true,
		Link:     PathLogin,
		LinkText: "Go to the sign-in page",
	})
}

// enrollToken returns the enrollment token the browser carries, or "".
func enrollToken(r *http.Request) string {
	ck, err := r.Cookie(EnrollCookie)
	if err != nil || !tokenShaped(ck.Value) {
		return ""
	}
	return ck.Value
}

func clearEnrollCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: EnrollCookie, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// tokenShaped reports whether s could be an enrollment token: short, and
// only characters a cookie carries as they are.
func tokenShaped(s string) bool {
	if s == "" || len(s) > 160 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ---- logout ----

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if tok := session.TokenFromRequest(r); tok != "" {
		if err := h.o.Accounts.Logout(r.Context(), tok, clientIP(r)); err != nil {
			h.internal(w, r, "ending a session", err)
			return
		}
	}
	session.ClearCookie(w)
	h.o.Pages.Render(w, r, http.StatusOK, PageLoggedOut, &LoggedOutData{})
}

// ---- helpers ----

// principal returns who the request's session cookie authenticates, nil
// when nobody, and the token. ok is false when it failed and answered.
func (h *Handler) principal(w http.ResponseWriter, r *http.Request) (*accounts.Principal, string, bool) {
	tok := session.TokenFromRequest(r)
	if tok == "" {
		return nil, "", true
	}
	p, err := h.o.Accounts.Authenticate(r.Context(), tok)
	if errors.Is(err, session.ErrNoSession) {
		return nil, "", true
	}
	if err != nil {
		h.internal(w, r, "reading the session", err)
		return nil, "", false
	}
	return p, tok, true
}

// setCookie sets the cookie of a session accounts made without returning
// it; ok is false when it failed and answered.
func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, tok string) bool {
	s, err := h.o.Sessions.Lookup(r.Context(), tok)
	if err != nil {
		h.internal(w, r, "reading a new session", err)
		return false
	}
	h.o.Cookies.Set(w, tok, s)
	return true
}

func (h *Handler) notice(w http.ResponseWriter, r *http.Request, status int, d NoticeData) {
	h.o.Pages.Render(w, r, status, PageNotice, &d)
}

func (h *Handler) busy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	h.notice(w, r, http.StatusServiceUnavailable, NoticeData{
		Title:   "Moat is busy",
		Message: "Too many sign-ins are being checked right now. Wait a few seconds and try again.",
		Error:   true,
	})
}

func (h *Handler) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, accounts.ErrUnavailable) {
		// Failed attempts cannot be counted: no attempt is made.
		h.log.Warn("portal: "+what, "request_id", requestID(r), "err", err)
		w.Header().Set("Retry-After", "5")
		h.notice(w, r, http.StatusServiceUnavailable, NoticeData{
			Title:   "Sign-in is unavailable",
			Message: "Moat cannot sign anyone in for a moment. Wait a few seconds and try again.",
			Error:   true,
		})
		return
	}
	h.log.Error("portal: "+what, "request_id", requestID(r), "err", err)
	h.notice(w, r, http.StatusInternalServerError, NoticeData{
		Title:   "Something went wrong",
		Message: "Moat could not finish this request. Try again in a moment.",
		Error:   true,
	})
}

// redirect answers 303 See Other to a same-site path.
func redirect(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}

// withReturn adds a return address to a portal path, unless it is "/".
func withReturn(path, rt string) string {
	if rt == "/" || rt == "" {
		return path
	}
	return path + "?" + FieldReturnTo + "=" + url.QueryEscape(rt)
}

// returnTo is the return address a form carries: SafeReturn's, left out
// when it is the default.
func returnTo(raw string) string {
	if rt := SafeReturn(raw); rt != "/" {
		return rt
	}
	return ""
}

// sentence turns an error message into a sentence to show.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func requestID(r *http.Request) string {
	if info := request.From(r.Context()); info != nil {
		return info.ID
	}
	return ""
}

// clientIP is the client address established for the request, or the TCP
// peer when the handler runs without the rest of the chain.
func clientIP(r *http.Request) netip.Addr {
	if info := request.From(r.Context()); info != nil && info.ClientIP.IsValid() {
		return info.ClientIP
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}

package portal

import (
	"errors"
	"net/http"

	"github.com/moatgw/moat/internal/accounts"
	"github.com/moatgw/moat/internal/session"
)

// stepUpPage asks a signed-in user to confirm their second factor again.
// The gateway sends a browser here when a route's rule wants a recent
// second factor (mfa_max_age). The page only offers a form: starting the
// confirmation changes the session, so it takes a POST.
func (h *Handler) stepUpPage(w http.ResponseWriter, r *http.Request) {
	rt := SafeReturn(r.URL.Query().Get(FieldReturnTo))
	p, _, ok := h.principal(w, r)
	switch {
	case !ok:
		return
	case p == nil:
		redirect(w, withReturn(PathLogin, rt))
		return
	case p.Pending == accounts.PendingMFA:
		redirect(w, withReturn(PathLoginTOTP, rt))
		return
	case p.Pending != "":
		redirect(w, PathTOTP)
		return
	}
	h.o.Pages.Render(w, r, http.StatusOK, PageStepUp, &StepUpData{
		CSRF: h.o.CSRF.Token(w, r), Username: p.Username, ReturnTo: returnTo(rt),
	})
}

// stepUpSubmit turns the session into one that waits for the second
// factor, and sends the user to confirm it.
func (h *Handler) stepUpSubmit(w http.ResponseWriter, r *http.Request) {
	rt := SafeReturn(r.PostFormValue(FieldReturnTo))
	p, tok, ok := h.principal(w, r)
	switch {
	case !ok:
		return
	case p == nil || p.Pending != "":
		redirect(w, withReturn(PathLogin, rt))
		return
	}
	newTok, err := h.o.Accounts.StepUp(r.Context(), tok, p, clientIP(r))
	switch {
	case errors.Is(err, accounts.ErrNoSecondFactor):
		h.o.Pages.Render(w, r, http.StatusBadRequest, PageStepUp, &StepUpData{
			CSRF: h.o.CSRF.Token(w, r), Username: p.Username, ReturnTo: returnTo(rt),
			Error: "This page needs a second factor, and your account has none yet. Add an authenticator app or a passkey on your account page first.",
		})
		return
	case errors.Is(err, session.ErrNoSession):
		redirect(w, withReturn(PathLogin, rt))
		return
	case err != nil:
		h.internal(w, r, "starting a step-up", err)
		return
	}
	if !h.setCookie(w, r, newTok) {
		return
	}
	redirect(w, withReturn(PathLoginTOTP, rt))
}

package portal

import (
	"html/template"
	"time"
)

// Every page's data carries the CSRF token its forms send: the value of
// CSRF.Token for the request being answered. Text fields are escaped when
// rendered; only EnrollTOTPData.QRCode is inserted as markup.

// LoginData is the data of PageLogin.
type LoginData struct {
	Username string // prefilled after a failed attempt
	Error    string // why the last attempt failed, shown above the form
	Notice   string // information shown above the form, such as "Your session has ended"
	ReturnTo string // where to go after login, already passed through SafeReturn
	CSRF     string
	// Providers are external identity providers to offer; may be empty.
	Providers []Provider
	// PasskeysEnabled shows "Sign in with a passkey" in browsers that
	// support WebAuthn.
	PasskeysEnabled bool
	// PasskeyAutofill also offers passkeys in the user name field's
	// autofill (WebAuthn conditional mediation), in browsers that can.
	// It starts a ceremony on each page view.
	PasskeyAutofill bool
}

// Provider is an external identity provider offered on the login page.
//
// Its button is a link, not a form: starting a login sends the browser on
// to the provider with a redirect, and OwnPagesCSP's form-action 'self'
// would block a form submission that redirects to another origin. A GET
// that only starts a login changes nothing a forger could use; the state
// checked on the way back is what protects the login.
type Provider struct {
	Name string // shown as "Sign in with <Name>"
	// URL starts the login: a same-origin path, carrying the return
	// address if there is one.
	URL string
}

// SecondFactorData is the data of PageSecondFactor, shown after a correct
// password when the account has a second factor.
type SecondFactorData struct {
	ReturnTo      string
	CSRF          string
	Error         string // about the whole step, such as too many attempts
	CodeError     string // about the authenticator code
	RecoveryError string // about the recovery code
	HasTOTP       bool   // offer the authenticator code form
	HasPasskey    bool   // offer "Use a passkey"
}

// SetPasswordData is the data of PageSetPassword: setting a first password,
// or changing one when RequireCurrent is set.
type SetPasswordData struct {
	Username       string // shown read-only, and offered to password managers
	CSRF           string
	RequireCurrent bool // ask for the current password too
	MinLength      int  // the policy's minimum, in characters
	MaxLength      int  // the policy's maximum, in characters; 0 to leave it unsaid
	Error          string
	CurrentError   string // about the current password
	NewError       string // about the new password: too short, breached
	ConfirmError   string // the confirmation does not match
}

// EnrollTOTPData is the data of PageEnrollTOTP.
type EnrollTOTPData struct {
	CSRF string
	// QRCode is the SVG from mfa.QRCodeSVG, inserted into the page as is.
	// Only ever put that function's output here.
	QRCode template.HTML
	// Key is the secret in base32 (mfa.EncodeSecret or mfa.FormatSecret);
	// the page shows it in groups of four characters.
	Key     string
	Issuer  string // as in the key URI, shown for manual entry
	Account string // as in the key URI, shown for manual entry
	Error   string // about the confirmation code
	// PasskeysEnabled also offers adding a passkey instead of the app, in
	// browsers that support WebAuthn.
	PasskeysEnabled bool
	// MaxNameLength bounds the passkey name field, in characters; 0 for no
	// bound in the page.
	MaxNameLength int
}

// RecoveryCodesData is the data of PageRecoveryCodes, shown once after
// recovery codes are generated.
type RecoveryCodesData struct {
	CSRF  string
	Codes []string
	Error string // the user did not confirm saving them
}

// PasskeysData is the data of PagePasskeys.
type PasskeysData struct {
	CSRF     string
	Passkeys []Passkey
	Notice   string // the outcome of the last change, such as "Passkey removed"
	Error    string // about the last change
	// ErrorPasskey is the ID of the passkey whose rename Error is about;
	// empty when Error is about the page as a whole.
	ErrorPasskey string
	// MaxNameLength bounds names in the rename and add forms, in
	// characters; 0 for no bound in the page.
	MaxNameLength int
}

// Passkey is one registered passkey.
type Passkey struct {
	ID       string
	Name     string
	Created  time.Time
	LastUsed time.Time // zero when never used
}

// AccountData is the data of PageAccount.
type AccountData struct {
	Username          string
	CSRF              string
	Notice            string
	Error             string
	HasPassword       bool
	TOTPEnabled       bool
	PasskeysEnabled   bool // the site offers passkeys
	Passkeys          int  // how many are registered
	RecoveryCodesLeft int
	Sessions          []Session
}

// Session is one of the user's sessions, shown so that the user notices
// one they did not start. The whole list ends with "Sign out everywhere".
type Session struct {
	// Methods says how the session signed in, as a phrase such as
	// "Password and authenticator app".
	Methods  string
	Pending  bool // the sign-in waits for its second step
	Created  time.Time
	LastSeen time.Time
	Current  bool // the session of this request
}

// LoggedOutData is the data of PageLoggedOut.
type LoggedOutData struct {
	Everywhere bool   // every session of the user ended, not only this one
	LoginURL   string // where "Sign in again" goes; PathLogin when empty
}

// NoticeData is the data of PageNotice, a page for errors and other notices.
type NoticeData struct {
	Title    string
	Message  string
	Error    bool   // show Message as an error
	Link     string // an address to go on to; none when empty
	LinkText string
}

// StepUpData is the data of PageStepUp: a signed-in user is asked to
// confirm their second factor again for a page whose rule wants a recent
// one.
type StepUpData struct {
	CSRF     string
	Username string
	ReturnTo string // where to go afterwards; empty for "/"
	Error    string
}

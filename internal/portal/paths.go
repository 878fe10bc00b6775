package portal

// Paths of the portal. Every form on a portal page posts to one of them, so
// handlers are registered on exactly these.
const (
	// Prefix is reserved for the portal on every host Moat serves.
	Prefix = "/.moat/"
	// StaticPrefix serves StaticHandler.
	StaticPrefix = "/.moat/static/"

	PathLogin         = "/.moat/login"          // GET: the login page; POST: username and password
	PathLoginTOTP     = "/.moat/login/totp"     // POST: second factor, an authenticator code
	PathLoginRecovery = "/.moat/login/recovery" // POST: second factor, a recovery code

	PathStepUp = "/.moat/step-up" // GET: ask to confirm the second factor again; POST: start it

	PathLogout           = "/.moat/logout"            // POST: end this session
	PathLogoutEverywhere = "/.moat/logout/everywhere" // POST: end every session of the user

	PathAccount          = "/.moat/account"            // GET: the account overview
	PathPassword         = "/.moat/password"           // GET: form; POST: set or change the password
	PathTOTP             = "/.moat/totp"               // GET: enrollment; POST: confirm with a code
	PathTOTPRemove       = "/.moat/totp/remove"        // POST: remove the authenticator app
	PathRecoveryCodes    = "/.moat/recovery-codes"     // GET: show new codes once; POST: the user saved them
	PathRecoveryCodesNew = "/.moat/recovery-codes/new" // POST: replace the recovery codes
	PathPasskeys         = "/.moat/passkeys"           // GET: the passkey list
	PathPasskeyRename    = "/.moat/passkeys/rename"    // POST: fields id, name
	PathPasskeyRemove    = "/.moat/passkeys/remove"    // POST: field id

	// The WebAuthn ceremonies webauthn.js runs, in begin/finish pairs (see
	// PasskeyBegin and PasskeyFinish for the bodies).
	PathPasskeyLoginBegin     = "/.moat/passkey/login/begin"     // first factor, no user name
	PathPasskeyLoginFinish    = "/.moat/passkey/login/finish"    //
	PathPasskeyVerifyBegin    = "/.moat/passkey/verify/begin"    // second factor, the user is known
	PathPasskeyVerifyFinish   = "/.moat/passkey/verify/finish"   //
	PathPasskeyRegisterBegin  = "/.moat/passkey/register/begin"  // add a passkey to the account
	PathPasskeyRegisterFinish = "/.moat/passkey/register/finish" //
)

// Names of the form fields the portal's pages send.
const (
	FieldCSRF            = "csrf"             // every form: the token of CSRF.Token
	FieldReturnTo        = "return_to"        // where to go after login; pass it through SafeReturn
	FieldUsername        = "username"         //
	FieldPassword        = "password"         // current password, on the login page
	FieldCurrentPassword = "current_password" // on a password change
	FieldNewPassword     = "new_password"     //
	FieldConfirmPassword = "confirm_password" //
	FieldCode            = "code"             // a TOTP code
	FieldRecoveryCode    = "recovery_code"    //
	FieldSaved           = "saved"            // "yes" when the user confirms saving recovery codes
	FieldID              = "id"               // a passkey's id
	FieldName            = "name"             // a passkey's name
)

package portal

import "encoding/json"

// The JSON that webauthn.js exchanges with the passkey endpoints
// (PathPasskey*). Each ceremony is two POSTs with a JSON body, the
// X-Moat-CSRF header carrying the page's CSRF token, and credentials
// included:
//
//  1. begin: the body is a JSON object of the form's fields other than the
//     CSRF token (return_to on login, name when adding a passkey). The reply
//     is a PasskeyBegin.
//  2. finish: after the browser's navigator.credentials.create or get, the
//     body is a PasskeyFinish. The reply is a PasskeyReply.
//
// A reply with a non-2xx status carries a PasskeyReply with Error set, or a
// problem+json document, whose text the page shows in a live region.

// PasskeyBegin is the reply to a begin request.
type PasskeyBegin struct {
	// Ceremony identifies the ceremony on the server, when the server does
	// not keep it in a cookie; it comes back in PasskeyFinish.Ceremony.
	Ceremony string `json:"ceremony,omitempty"`
	// Options are the credential creation or request options, as the
	// passkey package's Begin methods return them: either the
	// PublicKeyCredentialCreationOptions or RequestOptions themselves, or
	// an object carrying them as "publicKey". Binary members (challenge,
	// user.id, excludeCredentials[].id, allowCredentials[].id) are
	// unpadded base64url strings.
	Options json.RawMessage `json:"options"`
}

// PasskeyFinish is the body of a finish request.
type PasskeyFinish struct {
	Ceremony string `json:"ceremony,omitempty"`
	// Credential is the PublicKeyCredential in the shape of WebAuthn Level
	// 3 toJSON(): id, rawId, type, authenticatorAttachment,
	// clientExtensionResults and response, whose binary members
	// (clientDataJSON, attestationObject, authenticatorData, signature,
	// userHandle) are unpadded base64url strings. It is what the passkey
	// package's Finish methods take.
	Credential json.RawMessage `json:"credential"`
	// Name is the label for a new passkey; empty on login.
	Name string `json:"name,omitempty"`
	// ReturnTo is the login page's return address; pass it through
	// SafeReturn.
	ReturnTo string `json:"return_to,omitempty"`
}

// PasskeyReply ends a ceremony: the page goes to Redirect (a same-origin
// path), or shows Error.
type PasskeyReply struct {
	Redirect string `json:"redirect,omitempty"`
	Error    string `json:"error,omitempty"`
}

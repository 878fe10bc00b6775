// Package passkeytest is a software WebAuthn authenticator for tests: one
// ECDSA P-256 passkey with the browser side folded in. It answers the
// registration and login options a relying party sends (as
// passkey.Service.BeginRegistration and BeginLogin return them) with the
// JSON a browser's PublicKeyCredential.toJSON() would give, so that tests of
// any layer (the passkey service, the accounts service, the login portal,
// the real binary) can register passkeys and log in with them. Tweaks bend
// one answer (another origin, no user verification, a replayed sign count,
// a foreign signature) to test that the relying party refuses it.
//
// Registration answers carry a "none" attestation; login answers are signed
// with the credential's key over the authenticator data and the hash of the
// client data, as WebAuthn Level 3 §6.3.3 says.
//
// Specification: https://www.w3.org/TR/webauthn-3/
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator data flags (WebAuthn §6.1).
const (
	FlagUP byte = 0x01 // user present
	FlagUV byte = 0x04 // user verified
	FlagBE byte = 0x08 // backup eligible
	FlagBS byte = 0x10 // backed up
	FlagAT byte = 0x40 // attested credential data included
)

var b64 = base64.RawURLEncoding

// Authenticator is a software passkey: one ECDSA P-256 credential, with
// the client (browser) side folded in. Create makes the credential known to
// a relying party; Get logs in with it, counting one more use each time.
// Its methods are safe for concurrent use, though a failure calls the
// testing.TB's Fatal, which must happen on the test's goroutine.
type Authenticator struct {
	t      testing.TB
	key    *ecdsa.PrivateKey
	credID []byte
	rpID   string
	origin string

	mu         sync.Mutex
	userHandle []byte // learnt at Create
	signCount  uint32 // last count sent
}

// New returns an Authenticator with a new key and a random 32-byte
// credential id, for the relying party rpID ("localhost",
// "login.example.com"), as a browser at origin ("https://localhost:8443")
// would use it.
func New(t testing.TB, rpID, origin string) *Authenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating a passkey: %v", err)
	}
	id := make([]byte, 32)
	rand.Read(id)
	return &Authenticator{t: t, key: key, credID: id, rpID: rpID, origin: origin}
}

// CredentialID returns the WebAuthn credential id (the raw bytes, not
// base64url).
func (a *Authenticator) CredentialID() []byte { return append([]byte(nil), a.credID...) }

// SignCount returns the signature count of the last answer: the one Create
// registered, then the one each Get sent.
func (a *Authenticator) SignCount() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.signCount
}

// Params is what one answer is built from. Create and Get fill it from the
// options and the authenticator's state, then apply the tweaks in order.
type Params struct {
	// Type is the client data type: "webauthn.create" or "webauthn.get".
	Type string
	// Challenge is the client data challenge, base64url as in the options.
	Challenge string
	// Origin is the client data origin.
	Origin string
	// RPID is hashed into the authenticator data.
	RPID string
	// Flags are the authenticator data flags; Create adds FlagAT.
	Flags byte
	// SignCount is the signature count in the authenticator data. Get
	// starts from one more than the last count; the authenticator keeps
	// whatever count an answer is sent with.
	SignCount uint32
	// UserHandle is sent by Get; nil sends none. Create ignores it.
	UserHandle []byte
	// Signer signs a Get answer. Create ignores it: its public key is
	// always the credential's.
	Signer *ecdsa.PrivateKey
	// CredentialID is the id and rawId of the answer, and the credential
	// id in Create's attested credential data.
	CredentialID []byte
}

// Tweak changes one answer, to make it one a relying party must refuse (or
// one it must accept despite an unusual value).
type Tweak func(*Params)

// WithOrigin sets the origin the client data reports.
func WithOrigin(origin string) Tweak { return func(p *Params) { p.Origin = origin } }

// WithRPID sets the RP ID whose hash starts the authenticator data.
func WithRPID(rpID string) Tweak { return func(p *Params) { p.RPID = rpID } }

// WithFlags sets the authenticator data flags, replacing the default
// FlagUP|FlagUV.
func WithFlags(flags byte) Tweak { return func(p *Params) { p.Flags = flags } }

// WithSignCount sets the signature count.
func WithSignCount(n uint32) Tweak { return func(p *Params) { p.SignCount = n } }

// WithType sets the client data type.
func WithType(typ string) Tweak { return func(p *Params) { p.Type = typ } }

// WithChallenge sets the client data challenge (base64url).
func WithChallenge(challenge string) Tweak { return func(p *Params) { p.Challenge = challenge } }

// WithUserHandle sets the user handle Get sends; nil sends none.
func WithUserHandle(handle []byte) Tweak { return func(p *Params) { p.UserHandle = handle } }

// WithSigner signs a Get answer with another key.
func WithSigner(key *ecdsa.PrivateKey) Tweak { return func(p *Params) { p.Signer = key } }

// creationOptions is the part of PublicKeyCredentialCreationOptionsJSON
// an authenticator uses.
type creationOptions struct {
	Challenge string `json:"challenge"`
	User      struct {
		ID string `json:"id"`
	} `json:"user"`
	Extensions struct {
		CredProps bool `json:"credProps"`
	} `json:"extensions"`
}

// requestOptions is the part of PublicKeyCredentialRequestOptionsJSON an
// authenticator uses.
type requestOptions struct {
	Challenge string `json:"challenge"`
}

// decodeOptions decodes options given either as {"publicKey": {...}} or
// as the bare options object.
func decodeOptions[T any](t testing.TB, raw []byte) T {
	t.Helper()
	var wrapped struct {
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		t.Fatalf("decoding WebAuthn options %q: %v", raw, err)
	}
	inner := raw
	if len(wrapped.PublicKey) > 0 && string(wrapped.PublicKey) != "null" {
		inner = wrapped.PublicKey
	}
	var v T
	if err := json.Unmarshal(inner, &v); err != nil {
		t.Fatalf("decoding WebAuthn options %q: %v", raw, err)
	}
	return v
}

// Create answers registration options (navigator.credentials.create) with
// a "none" attestation and returns the JSON of the PublicKeyCredential
// (with the credProps extension output when the options ask for it). It
// learns the user handle (user.id) for Get. options is the JSON
// {"publicKey": {...}} that passkey.Service.BeginRegistration returns, or
// the bare PublicKeyCredentialCreationOptionsJSON. Without tweaks the flags
// are FlagUP|FlagUV and the sign count is the authenticator's current one
// (zero for a new one).
func (a *Authenticator) Create(options []byte, tweaks ...Tweak) []byte {
	a.t.Helper()
	o := decodeOptions[creationOptions](a.t, options)
	if o.Challenge == "" {
		a.t.Fatalf("creation options %q carry no challenge", options)
	}
	handle, err := b64.DecodeString(o.User.ID)
	if err != nil || len(handle) == 0 {
		a.t.Fatalf("creation options: user.id %q is not non-empty base64url", o.User.ID)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	a.userHandle = handle
	p := Params{
		Type:         "webauthn.create",
		Challenge:    o.Challenge,
		Origin:       a.origin,
		RPID:         a.rpID,
		Flags:        FlagUP | FlagUV,
		SignCount:    a.signCount,
		Signer:       a.key,
		CredentialID: a.credID,
	}
	for _, f := range tweaks {
		f(&p)
	}
	a.signCount = p.SignCount
	cdj := a.clientData(p)

	point, err := a.key.PublicKey.Bytes() // 0x04, X, Y
	if err != nil {
		a.t.Fatalf("encoding the public key: %v", err)
	}
	cose, err := cbor.Marshal(map[int]any{
		1:  2,  // kty: EC2
		3:  -7, // alg: ES256
		-1: 1,  // crv: P-256
		-2: point[1:33],
		-3: point[33:65],
	})
	if err != nil {
		a.t.Fatalf("encoding the COSE key: %v", err)
	}
	authData := authenticatorData(p.RPID, p.Flags|FlagAT, p.SignCount)
	authData = append(authData, make([]byte, 16)...) // AAGUID: zeros
	authData = binary.BigEndian.AppendUint16(authData, uint16(len(p.CredentialID)))
	authData = append(authData, p.CredentialID...)
	authData = append(authData, cose...)
	attObj, err := cbor.Marshal(map[string]any{
		"fmt":      "none",
		"attStmt":  map[string]any{},
		"authData": authData,
	})
	if err != nil {
		a.t.Fatalf("encoding the attestation object: %v", err)
	}
	// A browser reports the credProps extension only when asked; the
	// credential is always discoverable.
	ext := map[string]any{}
	if o.Extensions.CredProps {
		ext["credProps"] = map[string]any{"rk": true}
	}
	return a.json(map[string]any{
		"id":    b64.EncodeToString(p.CredentialID),
		"rawId": b64.EncodeToString(p.CredentialID),
		"type":  "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cdj),
			"attestationObject": b64.EncodeToString(attObj),
			"transports":        []string{"internal", "hybrid"},
		},
		"clientExtensionResults":  ext,
		"authenticatorAttachment": "platform",
	})
}

// Get answers login options (navigator.credentials.get) and returns the
// JSON of the PublicKeyCredential, counting one more use. Like a
// discoverable credential it sends the user handle learnt at Create (none
// if Create was not called). options is the JSON {"publicKey": {...}} that
// passkey.Service.BeginLogin returns, or the bare
// PublicKeyCredentialRequestOptionsJSON. It answers whatever the options'
// allowCredentials say, as a tampering client could. Without tweaks the
// flags are FlagUP|FlagUV.
func (a *Authenticator) Get(options []byte, tweaks ...Tweak) []byte {
	a.t.Helper()
	o := decodeOptions[requestOptions](a.t, options)
	if o.Challenge == "" {
		a.t.Fatalf("request options %q carry no challenge", options)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	p := Params{
		Type:         "webauthn.get",
		Challenge:    o.Challenge,
		Origin:       a.origin,
		RPID:         a.rpID,
		Flags:        FlagUP | FlagUV,
		SignCount:    a.signCount + 1,
		UserHandle:   a.userHandle,
		Signer:       a.key,
		CredentialID: a.credID,
	}
	for _, f := range tweaks {
		f(&p)
	}
	if p.Signer == nil {
		a.t.Fatal("no key to sign the login answer with")
	}
	a.signCount = p.SignCount
	cdj := a.clientData(p)
	authData := authenticatorData(p.RPID, p.Flags, p.SignCount)
	cdHash := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, authData...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, p.Signer, digest[:])
	if err != nil {
		a.t.Fatalf("signing the login answer: %v", err)
	}
	resp := map[string]any{
		"clientDataJSON":    b64.EncodeToString(cdj),
		"authenticatorData": b64.EncodeToString(authData),
		"signature":         b64.EncodeToString(sig),
	}
	if p.UserHandle != nil {
		resp["userHandle"] = b64.EncodeToString(p.UserHandle)
	}
	return a.json(map[string]any{
		"id":                      b64.EncodeToString(p.CredentialID),
		"rawId":                   b64.EncodeToString(p.CredentialID),
		"type":                    "public-key",
		"response":                resp,
		"clientExtensionResults":  map[string]any{},
		"authenticatorAttachment": "platform",
	})
}

// clientData is the CollectedClientData JSON (WebAuthn §5.8.1).
func (a *Authenticator) clientData(p Params) []byte {
	a.t.Helper()
	return a.json(map[string]any{
		"type":        p.Type,
		"challenge":   p.Challenge,
		"origin":      p.Origin,
		"crossOrigin": false,
	})
}

// authenticatorData is rpIdHash, flags and sign count (WebAuthn §6.1).
func authenticatorData(rpID string, flags byte, signCount uint32) []byte {
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	return binary.BigEndian.AppendUint32(out, signCount)
}

func (a *Authenticator) json(v any) []byte {
	a.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		a.t.Fatalf("encoding JSON: %v", err)
	}
	return b
}

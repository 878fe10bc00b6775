package passkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator data flags (WebAuthn §6.1).
const (
	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
	flagBE = 0x08 // backup eligible
	flagBS = 0x10 // backed up
	flagAT = 0x40 // attested credential data included
)

var b64 = base64.RawURLEncoding

// authenticator is a software passkey: one ECDSA P-256 credential, with the
// client (browser) side folded in. It answers creation and request options
// as a browser's PublicKeyCredential.toJSON() would.
type authenticator struct {
	t          testing.TB
	key        *ecdsa.PrivateKey
	credID     []byte
	userHandle []byte // learnt at creation
	rpID       string
	origin     string
	signCount  uint32 // last count used; get adds one unless told otherwise
	flags      byte   // extra flags (BE, BS) on every response
}

func newAuthenticator(t testing.TB) *authenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 32)
	rand.Read(id)
	return &authenticator{t: t, key: key, credID: id, rpID: testRPID, origin: testOrigin}
}

// ceremonyParams is what one answer is built from; tweaks change it to make
// a bad answer.
type ceremonyParams struct {
	clientType string // webauthn.create or webauthn.get
	challenge  string
	origin     string
	rpID       string // hashed into the authenticator data
	flags      byte
	signCount  uint32
	userHandle []byte // get only; nil sends none
	signer     *ecdsa.PrivateKey
	credID     []byte
}

type tweak func(*ceremonyParams)

func withOrigin(o string) tweak            { return func(p *ceremonyParams) { p.origin = o } }
func withRPID(id string) tweak             { return func(p *ceremonyParams) { p.rpID = id } }
func withFlags(f byte) tweak               { return func(p *ceremonyParams) { p.flags = f } }
func withSignCount(n uint32) tweak         { return func(p *ceremonyParams) { p.signCount = n } }
func withType(typ string) tweak            { return func(p *ceremonyParams) { p.clientType = typ } }
func withChallenge(c string) tweak         { return func(p *ceremonyParams) { p.challenge = c } }
func withUserHandle(h []byte) tweak        { return func(p *ceremonyParams) { p.userHandle = h } }
func withSigner(k *ecdsa.PrivateKey) tweak { return func(p *ceremonyParams) { p.signer = k } }

// creationOptions is the part of the registration options the tests read.
type creationOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"rp"`
		User struct {
			ID          string `json:"id"`
			Name        string `json:"name"`
			DisplayName string `json:"displayName"`
		} `json:"user"`
		ExcludeCredentials     []descriptor `json:"excludeCredentials"`
		AuthenticatorSelection struct {
			ResidentKey        string `json:"residentKey"`
			RequireResidentKey bool   `json:"requireResidentKey"`
			UserVerification   string `json:"userVerification"`
		} `json:"authenticatorSelection"`
		Attestation string `json:"attestation"`
		Timeout     int    `json:"timeout"`
	} `json:"publicKey"`
}

// requestOptions is the part of the login options the tests read.
type requestOptions struct {
	PublicKey struct {
		Challenge        string       `json:"challenge"`
		RPID             string       `json:"rpId"`
		AllowCredentials []descriptor `json:"allowCredentials"`
		UserVerification string       `json:"userVerification"`
		Timeout          int          `json:"timeout"`
	} `json:"publicKey"`
}

type descriptor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

func decodeOptions[T any](t testing.TB, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding options %s: %v", raw, err)
	}
	return v
}

// create answers registration options with a "none" attestation.
func (a *authenticator) create(options []byte, tweaks ...tweak) []byte {
	a.t.Helper()
	o := decodeOptions[creationOptions](a.t, options)
	handle, err := b64.DecodeString(o.PublicKey.User.ID)
	if err != nil {
		a.t.Fatalf("user.id %q is not base64url: %v", o.PublicKey.User.ID, err)
	}
	a.userHandle = handle
	p := ceremonyParams{
		clientType: "webauthn.create",
		challenge:  o.PublicKey.Challenge,
		origin:     a.origin,
		rpID:       a.rpID,
		flags:      flagUP | flagUV | a.flags,
		signCount:  a.signCount,
		credID:     a.credID,
	}
	for _, f := range tweaks {
		f(&p)
	}
	cdj := clientData(a.t, p)

	point, err := a.key.PublicKey.Bytes() // 0x04, X, Y
	if err != nil {
		a.t.Fatal(err)
	}
	cose, err := cbor.Marshal(map[int]any{
		1:  2,  // kty: EC2
		3:  -7, // alg: ES256
		-1: 1,  // crv: P-256
		-2: point[1:33],
		-3: point[33:65],
	})
	if err != nil {
		a.t.Fatal(err)
	}
	authData := authenticatorData(p.rpID, p.flags|flagAT, p.signCount)
	authData = append(authData, make([]byte, 16)...) // AAGUID: zeros
	authData = binary.BigEndian.AppendUint16(authData, uint16(len(p.credID)))
	authData = append(authData, p.credID...)
	authData = append(authData, cose...)
	attObj, err := cbor.Marshal(map[string]any{
		"fmt":      "none",
		"attStmt":  map[string]any{},
		"authData": authData,
	})
	if err != nil {
		a.t.Fatal(err)
	}
	return mustJSON(a.t, map[string]any{
		"id":    b64.EncodeToString(p.credID),
		"rawId": b64.EncodeToString(p.credID),
		"type":  "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cdj),
			"attestationObject": b64.EncodeToString(attObj),
			"transports":        []string{"internal", "hybrid"},
		},
		"clientExtensionResults":  map[string]any{"credProps": map[string]any{"rk": true}},
		"authenticatorAttachment": "platform",
	})
}

// get answers login options, counting one more use, and returns the user
// handle learnt at creation as a discoverable credential does.
func (a *authenticator) get(options []byte, tweaks ...tweak) []byte {
	a.t.Helper()
	o := decodeOptions[requestOptions](a.t, options)
	p := ceremonyParams{
		clientType: "webauthn.get",
		challenge:  o.PublicKey.Challenge,
		origin:     a.origin,
		rpID:       a.rpID,
		flags:      flagUP | flagUV | a.flags,
		signCount:  a.signCount + 1,
		userHandle: a.userHandle,
		signer:     a.key,
		credID:     a.credID,
	}
	for _, f := range tweaks {
		f(&p)
	}
	a.signCount = p.signCount
	cdj := clientData(a.t, p)
	authData := authenticatorData(p.rpID, p.flags, p.signCount)
	cdHash := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, authData...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, p.signer, digest[:])
	if err != nil {
		a.t.Fatal(err)
	}
	resp := map[string]any{
		"clientDataJSON":    b64.EncodeToString(cdj),
		"authenticatorData": b64.EncodeToString(authData),
		"signature":         b64.EncodeToString(sig),
	}
	if p.userHandle != nil {
		resp["userHandle"] = b64.EncodeToString(p.userHandle)
	}
	return mustJSON(a.t, map[string]any{
		"id":                      b64.EncodeToString(p.credID),
		"rawId":                   b64.EncodeToString(p.credID),
		"type":                    "public-key",
		"response":                resp,
		"clientExtensionResults":  map[string]any{},
		"authenticatorAttachment": "platform",
	})
}

func clientData(t testing.TB, p ceremonyParams) []byte {
	return mustJSON(t, map[string]any{
		"type":        p.clientType,
		"challenge":   p.challenge,
		"origin":      p.origin,
		"crossOrigin": false,
	})
}

// authenticatorData is rpIdHash, flags and sign count (WebAuthn §6.1).
func authenticatorData(rpID string, flags byte, signCount uint32) []byte {
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	return binary.BigEndian.AppendUint32(out, signCount)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

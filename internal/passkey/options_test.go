package passkey

import (
	"encoding/base64"
	"encoding/json"
	"testing"
)

var b64 = base64.RawURLEncoding

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

package csrf

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
)

const (
	nonceSize = 16
	rawSize   = nonceSize + sha256.Size
)

// TokenLen is the length of a token in base64url characters: 16 bytes of
// nonce and 32 of MAC.
const TokenLen = (rawSize*8 + 5) / 6

// b64 encodes tokens. Decoding is strict, so each token has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// Token returns a new token bound to the session binding identifies, with a
// fresh nonce, so that two pages never carry the same string (which keeps
// compression side channels such as BREACH from recovering it). It is safe
// for concurrent use.
func (p *Protection) Token(binding []byte) string {
	var nonce [nonceSize]byte
	_, _ = rand.Read(nonce[:]) // never fails
	return p.tokenWithNonce(binding, nonce)
}

func (p *Protection) tokenWithNonce(binding []byte, nonce [nonceSize]byte) string {
	var raw [rawSize]byte
	copy(raw[:], nonce[:])
	p.mac(raw[nonceSize:nonceSize], binding, raw[:nonceSize])
	return b64.EncodeToString(raw[:])
}

// mac appends HMAC-SHA-256(k, binding || nonce) to dst. The nonce has a
// fixed size and comes last, so the input is unambiguous.
func (p *Protection) mac(dst, binding, nonce []byte) []byte {
	m := hmac.New(sha256.New, p.macKey[:])
	m.Write(binding)
	m.Write(nonce)
	return m.Sum(dst)
}

// verify checks that tok is a token bound to binding, in constant time with
// respect to the token's MAC.
func (p *Protection) verify(binding []byte, tok string) error {
	if len(binding) == 0 {
		return refuse(RuleTokenInvalid, "no session binding")
	}
	if len(tok) != TokenLen {
		return refuse(RuleTokenInvalid, "token is %d bytes, want %d", len(tok), TokenLen)
	}
	var raw [rawSize]byte
	if n, err := b64.Decode(raw[:], []byte(tok)); err != nil || n != rawSize {
		return refuse(RuleTokenInvalid, "token is not base64url")
	}
	var want [sha256.Size]byte
	p.mac(want[:0], binding, raw[:nonceSize])
	if !hmac.Equal(raw[nonceSize:], want[:]) {
		return refuse(RuleTokenInvalid, "token does not match the session")
	}
	return nil
}

// Valid reports whether tok is a token bound to binding. It is safe for
// concurrent use.
func (p *Protection) Valid(binding []byte, tok string) bool {
	return p.verify(binding, tok) == nil
}

// SetCookie makes sure the browser holds a token for the session binding
// identifies in the readable token cookie: unless r already carries one
// bound to that session, it adds a Set-Cookie for a new one to w. Call it
// on responses to requests authenticated by the session cookie, before the
// response's header is written. The cookie is Secure, Path=/, SameSite=Lax
// and, on purpose, not HttpOnly: the application's scripts read it and send
// the token back in the header. A script that can read it runs in the
// application's origin and could read any form token as well. It is safe
// for concurrent use.
func (p *Protection) SetCookie(w http.ResponseWriter, r *http.Request, binding []byte) {
	if len(binding) == 0 {
		return
	}
	if ck, err := r.Cookie(p.cookie); err == nil && p.Valid(binding, ck.Value) {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     p.cookie,
		Value:    p.Token(binding),
		Path:     "/",
		Secure:   true,
		SameSite: http.SameSiteLaxMode,
	})
}

// DeleteCookie adds a Set-Cookie to w that removes the token cookie, for
// responses that end the session. It is safe for concurrent use.
func (p *Protection) DeleteCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     p.cookie,
		Value:    "",
		Path:     "/",
		Secure:   true,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   -1,
	})
}

// requestToken finds the token of r: in the header, or else in the form
// field of a form body.
func (p *Protection) requestToken(r *http.Request) (string, error) {
	switch vals := r.Header.Values(p.header); len(vals) {
	case 0:
	case 1:
		if vals[0] != "" {
			return vals[0], nil
		}
		return "", refuse(RuleTokenMissing, "empty %s header", p.header)
	default:
		return "", refuse(RuleTokenInvalid, "%d %s headers", len(vals), p.header)
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" || r.Body == nil || r.Body == http.NoBody {
		return "", refuse(RuleTokenMissing, "no Sec-Fetch-Site, Origin or token")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/x-www-form-urlencoded" && mt != "multipart/form-data" {
		return "", refuse(RuleTokenMissing, "no Sec-Fetch-Site, Origin or token")
	}
	buf, complete, err := peekBody(r, p.maxForm)
	if err != nil {
		return "", &Error{Rule: RuleTokenMissing, Detail: "reading form", Err: err}
	}
	var tok string
	var found bool
	if mt == "multipart/form-data" {
		tok, found = multipartField(buf, params["boundary"], p.field)
	} else {
		tok, found = urlencodedField(buf, complete, p.field)
	}
	if !found {
		return "", refuse(RuleTokenMissing, "no %s field in the first %d bytes of the form", p.field, len(buf))
	}
	return tok, nil
}

// peekBody reads up to max bytes of r's body and puts them back in front
// of the rest, so that later readers see the whole body. complete reports
// that the whole body was read.
func peekBody(r *http.Request, max int64) (buf []byte, complete bool, err error) {
	body := r.Body
	buf, err = io.ReadAll(io.LimitReader(body, max+1))
	complete = int64(len(buf)) <= max
	if complete {
		// The body is buf: nothing more to read from it.
		r.Body = &prefixBody{Reader: bytes.NewReader(buf), closer: body}
	} else {
		r.Body = &prefixBody{Reader: io.MultiReader(bytes.NewReader(buf), body), closer: body}
		buf = buf[:max] // the parsers see max bytes; the upstream all of them
	}
	if err != nil {
		return nil, false, err
	}
	return buf, complete, nil
}

// prefixBody is a request body of which a prefix has been read already.
type prefixBody struct {
	io.Reader
	closer io.Closer
}

func (b *prefixBody) Close() error { return b.closer.Close() }

// urlencodedField returns the first value of field in an
// application/x-www-form-urlencoded body, or in its first complete pairs
// when body is only a prefix of it.
func urlencodedField(body []byte, complete bool, field string) (string, bool) {
	for len(body) > 0 {
		pair := body
		i := bytes.IndexByte(body, '&')
		if i >= 0 {
			pair, body = body[:i], body[i+1:]
		} else {
			if !complete {
				return "", false // the last pair may be cut short
			}
			body = nil
		}
		k, v, _ := bytes.Cut(pair, []byte{'='})
		key, err := url.QueryUnescape(string(k))
		if err != nil || key != field {
			continue
		}
		val, err := url.QueryUnescape(string(v))
		if err != nil {
			return "", false
		}
		return val, true
	}
	return "", false
}

// multipartField returns the first value of field in a multipart/form-data
// body, or a prefix of it; a part cut short by the end of the prefix is not
// a value.
func multipartField(body []byte, boundary, field string) (string, bool) {
	if boundary == "" {
		return "", false
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if err != nil {
			return "", false
		}
		if part.FormName() != field || part.FileName() != "" {
			continue
		}
		// A part cut short by the end of the prefix fails to read; one
		// longer than a token is returned as is, for verify to refuse.
		v, err := io.ReadAll(io.LimitReader(part, TokenLen+1))
		if err != nil {
			return "", false
		}
		return string(v), true
	}
}

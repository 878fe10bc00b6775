// Package portal is the presentation layer of Moat's login portal: the pages
// a person sees when signing in, enrolling second factors and managing an
// account, their static assets, the CSRF protection of their forms, and the
// check of the address a login returns to.
//
// The gateway serves the portal itself, under the reserved path prefix
// "/.moat/", so it shares its origin with the protected application. Every
// page is rendered from an html/template embedded in the binary, and runs
// under headers.OwnPagesCSP: no inline script or style, nothing loaded from
// another origin, no framing. Every form posts, carries a CSRF token, goes
// to one of this package's Path constants and works without JavaScript;
// only the passkey buttons need the one script, webauthn.js, which reveals
// them when the browser supports WebAuthn.
//
// The account logic (password checks, TOTP, passkeys, sessions) lives
// elsewhere; its handlers fill in this package's page data types and call
// Pages.Render.
package portal

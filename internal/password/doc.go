// Package password hashes, verifies and vets the passwords of Moat's local
// accounts.
//
// # Hashing
//
// Passwords are hashed with Argon2id ([RFC 9106]) and stored in the PHC
// string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with salt and hash in standard base64 without padding. [DefaultParams] is
// the minimum that the OWASP Password Storage Cheat Sheet recommends for
// Argon2id: 19 MiB of memory, 2 passes, 1 lane, a 16-byte salt and a 32-byte
// key. [Params.Validate] refuses anything weaker, dimension by dimension, so
// a configuration can raise the cost but never lower it.
//
// Stored hashes are parsed strictly: one exact layout, decimal numbers with
// no sign or leading zero, canonical base64, and bounded lengths and costs
// (at most 1 GiB of memory, 10 passes, 16 lanes), so a tampered row in the
// store cannot make a login allocate gigabytes or spin for minutes. Hashes
// made with older, cheaper parameters still verify, and [Hasher.Verify]
// reports that they need a rehash, which the caller does at login while it
// holds the plain password.
//
// # Bounded concurrency
//
// Each Argon2id computation holds its memory cost for its whole run, so a
// burst of logins could exhaust memory. A [Hasher] therefore admits
// computations through a weighted semaphore whose capacity is a memory
// budget in bytes: with the defaults, a 256 MiB budget lets 13 hashes run at
// once. A computation that cannot start within the Hasher's maximum wait
// fails with [ErrBusy], which the caller answers with 503 Service
// Unavailable: Moat fails closed rather than queueing without bound.
//
// # Unknown users
//
// [Hasher.VerifyUnknownUser] runs a full verification against a dummy hash
// made once at construction with the Hasher's parameters, so that a login
// for an account that does not exist costs the same as a wrong password for
// one that does, and the two can be given the same answer.
//
// # Normalisation
//
// Every password is NFKC-normalised ([Unicode UAX #15]) before it is hashed,
// verified or checked, so that the same password typed on different
// keyboards or input methods (a ligature, full-width digits, a precomposed
// or combining accent) is the same password.
//
// # Policy
//
// [Policy] follows NIST SP 800-63B section 3.1.1.2: a minimum length (12 by
// default, never under 8), a maximum of at least 64 (128 by default),
// lengths counted in Unicode code points after normalisation, every
// character allowed including spaces and emoji, no composition rules (no
// "one digit, one symbol"), and a check against a list of passwords known
// from breaches, plus two context checks: the password must not contain the
// user name and must not be a single repeated character.
//
// The breached list is embedded in the binary (see data/SOURCE.md for its
// sources and licences) and loaded on first use.
//
// [RFC 9106]: https://www.rfc-editor.org/rfc/rfc9106
// [Unicode UAX #15]: https://unicode.org/reports/tr15/
package password

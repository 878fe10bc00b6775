-- A credential's counter: the last TOTP time step accepted (so a code is
-- never accepted twice) or a WebAuthn signature count; and an expiry, for
-- one-time enrollment tokens.
ALTER TABLE credentials ADD COLUMN counter {{int}} NOT NULL DEFAULT 0;
ALTER TABLE credentials ADD COLUMN expires_at {{int}};

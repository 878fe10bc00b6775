-- The initial schema: one table per aggregate of the store.
--
-- Written once for both backends. Four tokens are replaced before it runs:
-- {{int}} is INTEGER on SQLite and BIGINT on PostgreSQL, {{bytes}} is BLOB or
-- BYTEA, {{strict}} makes SQLite tables STRICT (typed) and is empty on
-- PostgreSQL, and {{binary}} gives text keys byte order on PostgreSQL (SQLite's
-- default), so both backends list and export rows in the same order. The
-- checksum is taken over this text, before substitution.
--
-- Times are unix microseconds; a NULL time is the zero time. Lists are JSON
-- arrays. Encrypted values are sealed by the key ring; each has a companion
-- *_kid column naming the data key that sealed it, a hint that lets key
-- rotation find stale rows without opening every value.

CREATE TABLE users (
	id            TEXT {{binary}} NOT NULL PRIMARY KEY,
	username      TEXT NOT NULL UNIQUE CHECK (username <> ''),
	email         {{bytes}},
	email_kid     TEXT,
	display_name  TEXT NOT NULL DEFAULT '',
	roles         TEXT NOT NULL DEFAULT '[]',
	status        TEXT NOT NULL,
	created_at    {{int}} NOT NULL,
	last_login_at {{int}}
){{strict}};

CREATE TABLE credentials (
	id           TEXT {{binary}} NOT NULL PRIMARY KEY,
	user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	kind         TEXT NOT NULL,
	name         TEXT NOT NULL DEFAULT '',
	secret       {{bytes}},
	secret_kid   TEXT,
	hash         TEXT NOT NULL DEFAULT '',
	created_at   {{int}} NOT NULL,
	last_used_at {{int}}
){{strict}};

CREATE INDEX credentials_user_id ON credentials (user_id);

CREATE TABLE identities (
	id                TEXT {{binary}} NOT NULL PRIMARY KEY,
	user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	issuer            TEXT NOT NULL,
	subject           TEXT NOT NULL,
	refresh_token     {{bytes}},
	refresh_token_kid TEXT,
	created_at        {{int}} NOT NULL,
	UNIQUE (issuer, subject)
){{strict}};

CREATE INDEX identities_user_id ON identities (user_id);

CREATE TABLE sessions (
	id_hash    {{bytes}} NOT NULL PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	methods    TEXT NOT NULL DEFAULT '[]',
	auth_time  {{int}} NOT NULL,
	created_at {{int}} NOT NULL,
	last_seen  {{int}},
	expires_at {{int}} NOT NULL,
	revoked_at {{int}}
){{strict}};

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE api_keys (
	id           TEXT {{binary}} NOT NULL PRIMARY KEY,
	name         TEXT NOT NULL DEFAULT '',
	owner        TEXT NOT NULL,
	prefix       TEXT NOT NULL UNIQUE CHECK (prefix <> ''),
	hash         {{bytes}} NOT NULL,
	scopes       TEXT NOT NULL DEFAULT '[]',
	created_at   {{int}} NOT NULL,
	expires_at   {{int}},
	revoked_at   {{int}},
	last_used_at {{int}}
){{strict}};

CREATE INDEX api_keys_owner ON api_keys (owner);

CREATE TABLE signing_keys (
	id              TEXT {{binary}} NOT NULL PRIMARY KEY,
	key_use         TEXT NOT NULL,
	alg             TEXT NOT NULL,
	private_key     {{bytes}},
	private_key_kid TEXT,
	public_key      {{bytes}},
	created_at      {{int}} NOT NULL,
	not_after       {{int}}
){{strict}};

CREATE INDEX signing_keys_use ON signing_keys (key_use, created_at);

CREATE TABLE secrets (
	name       TEXT {{binary}} NOT NULL PRIMARY KEY,
	value      {{bytes}},
	value_kid  TEXT,
	updated_at {{int}} NOT NULL
){{strict}};

CREATE TABLE audit_log (
	seq       {{int}} NOT NULL PRIMARY KEY CHECK (seq > 0),
	at        {{int}} NOT NULL,
	kind      TEXT NOT NULL,
	data      {{bytes}},
	prev_hash {{bytes}},
	hash      {{bytes}}
){{strict}};

CREATE TABLE backups (
	id          TEXT {{binary}} NOT NULL PRIMARY KEY,
	created_at  {{int}} NOT NULL,
	file        TEXT NOT NULL,
	size        {{int}} NOT NULL,
	sha256      TEXT NOT NULL DEFAULT '',
	verified_at {{int}},
	verify_ok   {{int}} NOT NULL DEFAULT 0 CHECK (verify_ok IN (0, 1)),
	error       TEXT NOT NULL DEFAULT ''
){{strict}};

CREATE INDEX backups_created_at ON backups (created_at);

CREATE TABLE data_keys (
	id         TEXT {{binary}} NOT NULL PRIMARY KEY,
	wrapped    {{bytes}} NOT NULL,
	kek_id     TEXT NOT NULL,
	created_at {{int}} NOT NULL,
	state      TEXT NOT NULL
){{strict}};

-- Retention finds the first audit record at or after a time: index the
-- record time so pruning does not read the whole log.
CREATE INDEX audit_log_at ON audit_log (at);

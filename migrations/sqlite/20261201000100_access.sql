-- API tokens and the audit log (docs/adr/0010-stored-tokens-and-the-audit-log.md).
-- Ids are TEXT and times INTEGER unix microseconds on both backends, so one set of queries
-- serves both.

-- A token's secret is never stored: `hash` is the lowercase hex SHA-256 of it.
CREATE TABLE api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;

-- One token that is not revoked per name.
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE audit_log (
    id        TEXT    NOT NULL PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    remote    TEXT,
    action    TEXT    NOT NULL,
    ticket_id TEXT,
    target    TEXT,
    details   TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_log_ticket ON audit_log (ticket_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_at ON audit_log (at);

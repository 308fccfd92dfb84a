-- Heron's initial schema (SQLite). Forward-only: later changes go in new files.
--
-- Conventions: ids are UUID v7 as lowercase hyphenated TEXT (sorts by creation time);
-- timestamps are INTEGER unix microseconds (UTC), so comparisons and ORDER BY are exact;
-- JSON documents are TEXT. STRICT tables reject values of the wrong type.

-- Events are the webhook deliveries, stored verbatim, and the pipeline's work queue.
CREATE TABLE events (
    id               TEXT    NOT NULL PRIMARY KEY,
    schema           TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    body_sha256      TEXT    NOT NULL,
    metadata         TEXT    NOT NULL,
    idempotency_key  TEXT,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    received_at      INTEGER NOT NULL,
    processed_at     INTEGER,
    -- When a pending event is due (kept while it is processing: its place in the queue).
    next_attempt_at  INTEGER,
    lease_token      TEXT,
    lease_expires_at INTEGER
) STRICT;

-- One event per idempotency key and schema, forever.
CREATE UNIQUE INDEX events_idempotency ON events (schema, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Leasing: due pending events, oldest first; expired leases.
CREATE INDEX events_due ON events (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX events_leased ON events (lease_expires_at) WHERE state = 'processing';
-- The failed list and `retry_failed_events` without scanning processed history.
CREATE INDEX events_failed ON events (id) WHERE state = 'failed';

CREATE TABLE tickets (
    id          TEXT    NOT NULL PRIMARY KEY,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    schema      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    conclusion  TEXT,
    reason      TEXT,
    assignee    TEXT,
    tags        TEXT    NOT NULL,
    attributes  TEXT    NOT NULL,
    channel     TEXT,
    fingerprint TEXT    NOT NULL,
    finding     TEXT,
    alert_count INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    acked_at    INTEGER,
    resolved_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    -- The fingerprint while this ticket is its deduplication target, else NULL. The unique
    -- index makes a second target for one fingerprint impossible.
    dedup_key   TEXT UNIQUE,
    CHECK (dedup_key IS NULL OR (dedup_key = fingerprint AND status IN ('open', 'acknowledged')))
) STRICT;

CREATE INDEX tickets_status ON tickets (status, id);
CREATE INDEX tickets_fingerprint ON tickets (fingerprint);

CREATE TABLE alerts (
    id          TEXT    NOT NULL PRIMARY KEY,
    event_id    TEXT    NOT NULL REFERENCES events (id),
    schema      TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    attributes  TEXT    NOT NULL,
    tags        TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    channel     TEXT,
    data        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    ticket_id   TEXT REFERENCES tickets (id),
    -- Deferred: an alert and its notice reference each other and are inserted together.
    notice_id   TEXT REFERENCES notices (id) DEFERRABLE INITIALLY DEFERRED,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX alerts_ticket ON alerts (ticket_id);
CREATE INDEX alerts_schema ON alerts (schema, id);
CREATE INDEX alerts_event ON alerts (event_id);

CREATE TABLE notices (
    id         TEXT    NOT NULL PRIMARY KEY,
    alert_id   TEXT    NOT NULL REFERENCES alerts (id) DEFERRABLE INITIALLY DEFERRED,
    schema     TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    channel    TEXT,
    created_at INTEGER NOT NULL,
    ticket_id  TEXT REFERENCES tickets (id)
) STRICT;

CREATE INDEX notices_alert ON notices (alert_id);

CREATE TABLE comments (
    id         TEXT    NOT NULL PRIMARY KEY,
    ticket_id  TEXT    NOT NULL REFERENCES tickets (id),
    source     TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX comments_ticket ON comments (ticket_id, created_at, id);

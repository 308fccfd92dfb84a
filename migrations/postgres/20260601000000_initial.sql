-- Heron's initial schema (PostgreSQL). Forward-only: later changes go in new files.
--
-- Same logical schema as migrations/sqlite: ids are UUID v7 (sorting by id sorts by creation
-- time), timestamps timestamptz (microseconds), JSON documents jsonb.

-- Later migrations add embedding columns (pgvector).
CREATE EXTENSION IF NOT EXISTS vector;

-- Events are the webhook deliveries, stored verbatim, and the pipeline's work queue.
CREATE TABLE events (
    id               uuid        NOT NULL PRIMARY KEY,
    schema           text        NOT NULL,
    source           text        NOT NULL,
    -- text, not jsonb: the body is kept byte for byte.
    body             text        NOT NULL,
    body_sha256      text        NOT NULL,
    metadata         jsonb       NOT NULL,
    idempotency_key  text,
    state            text        NOT NULL,
    attempts         bigint      NOT NULL DEFAULT 0,
    last_error       text,
    received_at      timestamptz NOT NULL,
    processed_at     timestamptz,
    -- When a pending event is due (kept while it is processing: its place in the queue).
    next_attempt_at  timestamptz,
    lease_token      uuid,
    lease_expires_at timestamptz
);

-- One event per idempotency key and schema, forever.
CREATE UNIQUE INDEX events_idempotency ON events (schema, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Leasing: due pending events, oldest first; expired leases.
CREATE INDEX events_due ON events (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX events_leased ON events (lease_expires_at) WHERE state = 'processing';
-- The failed list and `retry_failed_events` without scanning processed history.
CREATE INDEX events_failed ON events (id) WHERE state = 'failed';

CREATE TABLE tickets (
    id          uuid        NOT NULL PRIMARY KEY,
    title       text        NOT NULL,
    description text        NOT NULL,
    schema      text        NOT NULL,
    status      text        NOT NULL,
    severity    text        NOT NULL,
    conclusion  text,
    reason      text,
    assignee    text,
    tags        jsonb       NOT NULL,
    attributes  jsonb       NOT NULL,
    channel     text,
    fingerprint text        NOT NULL,
    finding     jsonb,
    alert_count bigint      NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    acked_at    timestamptz,
    resolved_at timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint      NOT NULL,
    -- The fingerprint while this ticket is its deduplication target, else NULL. The unique
    -- constraint makes a second target for one fingerprint impossible, and is the arbiter of
    -- the `INSERT … ON CONFLICT (dedup_key)` upsert that opens tickets.
    dedup_key   text UNIQUE,
    CHECK (dedup_key IS NULL OR (dedup_key = fingerprint AND status IN ('open', 'acknowledged')))
);

CREATE INDEX tickets_status ON tickets (status, id);
CREATE INDEX tickets_fingerprint ON tickets (fingerprint);

CREATE TABLE alerts (
    id          uuid        NOT NULL PRIMARY KEY,
    event_id    uuid        NOT NULL REFERENCES events (id),
    schema      text        NOT NULL,
    title       text        NOT NULL,
    description text        NOT NULL,
    attributes  jsonb       NOT NULL,
    tags        jsonb       NOT NULL,
    severity    text        NOT NULL,
    fingerprint text        NOT NULL,
    channel     text,
    data        jsonb       NOT NULL,
    status      text        NOT NULL,
    ticket_id   uuid REFERENCES tickets (id),
    notice_id   uuid,
    created_at  timestamptz NOT NULL
);

CREATE INDEX alerts_ticket ON alerts (ticket_id);
CREATE INDEX alerts_schema ON alerts (schema, id);
CREATE INDEX alerts_event ON alerts (event_id);

CREATE TABLE notices (
    id         uuid        NOT NULL PRIMARY KEY,
    alert_id   uuid        NOT NULL REFERENCES alerts (id),
    schema     text        NOT NULL,
    title      text        NOT NULL,
    severity   text        NOT NULL,
    channel    text,
    created_at timestamptz NOT NULL,
    ticket_id  uuid REFERENCES tickets (id)
);

CREATE INDEX notices_alert ON notices (alert_id);

-- Deferred: an alert and its notice reference each other and are inserted together.
ALTER TABLE alerts ADD CONSTRAINT alerts_notice_fk
    FOREIGN KEY (notice_id) REFERENCES notices (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE comments (
    id         uuid        NOT NULL PRIMARY KEY,
    ticket_id  uuid        NOT NULL REFERENCES tickets (id),
    source     text        NOT NULL,
    author     text        NOT NULL,
    text       text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX comments_ticket ON comments (ticket_id, created_at, id);

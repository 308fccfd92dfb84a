-- Slack: each ticket's (or notice's) thread and its sync state, the links between Slack
-- messages and comments, and the inbox of verified deliveries (docs/slack.md, ADR 0009).
-- Ids are TEXT and times BIGINT unix microseconds on both backends, so one set of queries serves
-- both.

-- One row per subject posted (or to be posted) to Slack; the row is also the sync job.
CREATE TABLE slack_threads (
    subject_id       TEXT    NOT NULL PRIMARY KEY,
    kind             TEXT    NOT NULL,
    channel          TEXT,
    ts               TEXT,
    thread_ts        TEXT,
    state            TEXT    NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  BIGINT,
    generation       BIGINT NOT NULL DEFAULT 1,
    lease_token      TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE UNIQUE INDEX slack_threads_thread ON slack_threads (channel, thread_ts);
CREATE INDEX slack_threads_due ON slack_threads (next_attempt_at) WHERE state = 'pending';
CREATE INDEX slack_threads_leased ON slack_threads (lease_expires_at) WHERE state = 'syncing';

-- A Slack message that is, or made, a comment: one each way.
CREATE TABLE slack_messages (
    channel    TEXT NOT NULL,
    ts         TEXT NOT NULL,
    ticket_id  TEXT NOT NULL,
    comment_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (channel, ts)
);

CREATE INDEX slack_messages_ticket ON slack_messages (ticket_id);

-- Verified deliveries, keyed by Slack's event_id (or a digest of an interaction): a retried
-- delivery finds its id taken and is acted on once.
CREATE TABLE slack_deliveries (
    id               TEXT    NOT NULL PRIMARY KEY,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  BIGINT NOT NULL,
    lease_token      TEXT,
    lease_expires_at BIGINT,
    received_at      BIGINT NOT NULL
);

CREATE INDEX slack_deliveries_due ON slack_deliveries (next_attempt_at) WHERE state = 'pending';

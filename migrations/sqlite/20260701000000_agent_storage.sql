-- The agent's storage (SQLite): the triage queue, agent runs, ticket embeddings and the tool
-- cache. Same conventions as the initial migration (TEXT ids, INTEGER unix microseconds,
-- JSON as TEXT, STRICT tables).

-- One triage job per opened ticket, leased like an event. Tickets opened before this
-- migration get none: turning the agent on must not triage the whole history at once (an
-- analyst can still queue one with `requeue_triage`).
CREATE TABLE triage_jobs (
    ticket_id        TEXT    NOT NULL PRIMARY KEY REFERENCES tickets (id),
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    -- When a pending job is due (kept while it is processing: its place in the queue).
    next_attempt_at  INTEGER,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

-- Leasing, as for events: due pending jobs oldest first; expired leases; the failed count.
CREATE INDEX triage_jobs_due ON triage_jobs (next_attempt_at, ticket_id) WHERE state = 'pending';
CREATE INDEX triage_jobs_leased ON triage_jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX triage_jobs_failed ON triage_jobs (ticket_id) WHERE state = 'failed';

-- A run is stored whole and replaced whole: its steps are one JSON array, never edited in
-- place.
CREATE TABLE agent_runs (
    id                TEXT    NOT NULL PRIMARY KEY,
    ticket_id         TEXT    NOT NULL REFERENCES tickets (id),
    purpose           TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    finding           TEXT,
    answer            TEXT,
    budget            TEXT,
    error             TEXT,
    steps             TEXT    NOT NULL
) STRICT;

CREATE INDEX agent_runs_ticket ON agent_runs (ticket_id, started_at, id);
-- The daily token budget sums a day of runs from this index alone.
CREATE INDEX agent_runs_started ON agent_runs (started_at, total_tokens);

-- One embedding per ticket and model. The vector is `dims` little-endian f32s; searches are
-- exact, in Rust, over the rows of one (model, dims).
CREATE TABLE ticket_embeddings (
    ticket_id TEXT    NOT NULL REFERENCES tickets (id),
    model     TEXT    NOT NULL,
    dims      INTEGER NOT NULL,
    embedding BLOB    NOT NULL,
    PRIMARY KEY (ticket_id, model),
    CHECK (dims > 0 AND length(embedding) = 4 * dims)
) STRICT;

CREATE INDEX ticket_embeddings_model ON ticket_embeddings (model, dims);

-- Answers of external lookups, served until they expire.
CREATE TABLE tool_cache (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- The agent's storage (PostgreSQL): the triage queue, agent runs, ticket embeddings and the
-- tool cache. Same logical schema as migrations/sqlite.

-- One triage job per opened ticket, leased like an event. Tickets opened before this
-- migration get none: turning the agent on must not triage the whole history at once (an
-- analyst can still queue one with `requeue_triage`).
CREATE TABLE triage_jobs (
    ticket_id        uuid        NOT NULL PRIMARY KEY REFERENCES tickets (id),
    state            text        NOT NULL,
    attempts         bigint      NOT NULL DEFAULT 0,
    last_error       text,
    -- When a pending job is due (kept while it is processing: its place in the queue).
    next_attempt_at  timestamptz,
    lease_token      uuid,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Leasing, as for events: due pending jobs oldest first; expired leases; the failed count.
CREATE INDEX triage_jobs_due ON triage_jobs (next_attempt_at, ticket_id) WHERE state = 'pending';
CREATE INDEX triage_jobs_leased ON triage_jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX triage_jobs_failed ON triage_jobs (ticket_id) WHERE state = 'failed';

-- A run is stored whole and replaced whole: its steps are one JSON array, never edited in
-- place.
CREATE TABLE agent_runs (
    id                uuid        NOT NULL PRIMARY KEY,
    ticket_id         uuid        NOT NULL REFERENCES tickets (id),
    purpose           text        NOT NULL,
    status            text        NOT NULL,
    model             text        NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    prompt_tokens     bigint      NOT NULL,
    completion_tokens bigint      NOT NULL,
    total_tokens      bigint      NOT NULL,
    finding           jsonb,
    answer            text,
    budget            text,
    error             text,
    steps             jsonb       NOT NULL
);

CREATE INDEX agent_runs_ticket ON agent_runs (ticket_id, started_at, id);
-- The daily token budget sums a day of runs from this index alone.
CREATE INDEX agent_runs_started ON agent_runs (started_at) INCLUDE (total_tokens);

-- One embedding per ticket and model. `embedding` has no fixed dimension, so that models of
-- any size share the table; HNSW needs one, so the store creates a partial expression index
-- per dimension it meets (`ticket_embeddings_hnsw_<dims>`, on `embedding::vector(<dims>)`
-- where `dims = <dims>`), and searches are written to match it.
CREATE TABLE ticket_embeddings (
    ticket_id uuid    NOT NULL REFERENCES tickets (id),
    model     text    NOT NULL,
    dims      integer NOT NULL,
    embedding vector  NOT NULL,
    PRIMARY KEY (ticket_id, model),
    CHECK (dims = vector_dims(embedding))
);

CREATE INDEX ticket_embeddings_model ON ticket_embeddings (model, dims);

-- Answers of external lookups, served until they expire.
CREATE TABLE tool_cache (
    key        text        NOT NULL PRIMARY KEY,
    value      text        NOT NULL,
    expires_at timestamptz NOT NULL
);

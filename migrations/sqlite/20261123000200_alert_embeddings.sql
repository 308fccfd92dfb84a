-- Alert embeddings, for finding the tickets an alert resembles (binding suggestions).
--
-- `embedding_pending` marks alerts still waiting for their vector; Heron's embedding
-- loop reads them oldest first through the partial index. Alerts stored before this
-- migration are not queued: turning embeddings on must not embed the whole history at once.
ALTER TABLE alerts ADD COLUMN embedding_pending INTEGER NOT NULL DEFAULT 1;
UPDATE alerts SET embedding_pending = 0;
CREATE INDEX alerts_embedding_pending ON alerts (created_at, id) WHERE embedding_pending;

-- One vector per alert and model. Alerts are compared with tickets, not with each other, so
-- there is no vector index here (a storm must not pay for one on every insert).
CREATE TABLE alert_embeddings (
    alert_id  TEXT NOT NULL REFERENCES alerts (id),
    model     TEXT NOT NULL,
    dims      INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (alert_id, model),
    CHECK (dims > 0 AND length(embedding) = 4 * dims)
) STRICT;

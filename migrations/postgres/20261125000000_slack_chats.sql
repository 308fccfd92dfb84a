-- One agent chat per Slack thread, across processes (docs/slack.md, ADR 0009): the running
-- chat's process renews its claim every second and stops when `abort_requested` is set or
-- its claim was taken over; a claim not renewed for a while belongs to a dead process.
CREATE TABLE slack_chats (
    channel         TEXT    NOT NULL,
    thread_ts       TEXT    NOT NULL,
    holder          TEXT    NOT NULL,
    renewed_at      BIGINT  NOT NULL,
    abort_requested BOOLEAN NOT NULL,
    PRIMARY KEY (channel, thread_ts)
);

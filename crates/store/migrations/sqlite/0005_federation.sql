-- Federation: the durable outbox of signed events waiting for delivery to a peer domain.
-- One row per event; delivery order is outbox_id order within (peer, channel_id).

CREATE TABLE federation_outbox (
    outbox_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    peer        TEXT    NOT NULL,
    channel_id  INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    enqueued_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    last_attempt_at INTEGER
) STRICT;

CREATE INDEX federation_outbox_peer ON federation_outbox (peer, outbox_id);
CREATE INDEX federation_outbox_expires_at ON federation_outbox (expires_at);

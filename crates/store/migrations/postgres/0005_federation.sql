-- Federation: the durable outbox of signed events waiting for delivery to a peer domain.
-- One row per event; delivery order is outbox_id order within (peer, channel_id).

CREATE TABLE federation_outbox (
    outbox_id   BIGSERIAL PRIMARY KEY,
    peer        TEXT    NOT NULL,
    channel_id  BIGINT  NOT NULL,
    event_id    TEXT    NOT NULL,
    body        BYTEA   NOT NULL,
    enqueued_at BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    last_error  TEXT,
    last_attempt_at BIGINT
);

CREATE INDEX federation_outbox_peer ON federation_outbox (peer, outbox_id);
CREATE INDEX federation_outbox_expires_at ON federation_outbox (expires_at);

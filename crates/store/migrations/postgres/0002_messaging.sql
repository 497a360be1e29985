-- Messaging: group rosters, the offline relay queue, inbox offsets and idempotency keys.
-- Device ids here are opaque references (a roster or a queue may name a device that has not
-- registered yet), so they carry no foreign key to devices.

CREATE TABLE chat_group (
    group_id     TEXT    NOT NULL PRIMARY KEY,
    owner_device TEXT    NOT NULL,
    name         TEXT,
    relay        BOOLEAN NOT NULL,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE group_member (
    group_id  TEXT   NOT NULL REFERENCES chat_group (group_id) ON DELETE CASCADE,
    device_id TEXT   NOT NULL,
    role      TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);

-- "groups of a device"
CREATE INDEX group_member_device_id ON group_member (device_id);

-- One row per stored frame; the queue rows of its recipients reference it, so a frame for
-- many offline recipients is stored once.
CREATE TABLE relay_payload (
    payload_id  BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  BIGINT NOT NULL CHECK (channel_id BETWEEN 0 AND 4294967295),
    sender      TEXT   NOT NULL,
    order_key   BIGINT NOT NULL,
    frame       BYTEA  NOT NULL,
    enqueued_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX relay_payload_expires_at ON relay_payload (expires_at);

-- An identity column: envelope ids only grow and are never reused, so inbox offsets stay
-- meaningful after delivered rows are deleted.
CREATE TABLE relay_queue (
    envelope_id BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient   TEXT   NOT NULL,
    payload_id  BIGINT NOT NULL REFERENCES relay_payload (payload_id) ON DELETE CASCADE,
    UNIQUE (recipient, payload_id)
);

CREATE INDEX relay_queue_payload_id ON relay_queue (payload_id);

CREATE TABLE inbox_offset (
    device_id        TEXT   NOT NULL,
    channel_id       BIGINT NOT NULL,
    last_envelope_id BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (device_id, channel_id)
);

CREATE TABLE idempotency (
    scope      TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_expires_at ON idempotency (expires_at);

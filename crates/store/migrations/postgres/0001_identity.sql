-- Identity: users, their devices, the device key log and REST/handshake sessions.
-- Times are unix seconds (BIGINT). Ids are opaque TEXT (64-hex in practice).
-- The same tables as the SQLite migrations, in PostgreSQL types.

CREATE TABLE users (
    user_id      TEXT   NOT NULL PRIMARY KEY,
    handle       TEXT   NOT NULL,
    display_name TEXT,
    avatar_url   TEXT,
    created_at   BIGINT NOT NULL
);

CREATE UNIQUE INDEX users_handle ON users (handle);

CREATE TABLE devices (
    device_id  TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    public_key BYTEA  NOT NULL CHECK (length(public_key) = 32),
    status     TEXT   NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at BIGINT NOT NULL,
    -- target of the sessions (device_id, user_id) foreign key
    UNIQUE (device_id, user_id)
);

-- serves "devices of user" (in created_at order) and the active-device count
CREATE INDEX devices_user_id ON devices (user_id, created_at);

CREATE TABLE device_key_events (
    -- insertion order, for ties of recorded_at (SQLite uses its rowid)
    seq         BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY,
    event_id    TEXT   NOT NULL PRIMARY KEY,
    device_id   TEXT   NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    public_key  BYTEA  NOT NULL CHECK (length(public_key) = 32),
    recorded_at BIGINT NOT NULL,
    action      TEXT   NOT NULL
);

CREATE INDEX device_key_events_device_id ON device_key_events (device_id, recorded_at, seq);

CREATE TABLE sessions (
    session_id TEXT   NOT NULL PRIMARY KEY,
    device_id  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- the session's device must belong to the session's user
    FOREIGN KEY (device_id, user_id) REFERENCES devices (device_id, user_id) ON DELETE CASCADE
);

CREATE INDEX sessions_device_id ON sessions (device_id);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

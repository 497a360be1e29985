-- REST resources: pairing codes and per-user friend lists.

-- A pairing code lets a new device join the issuer's account (POST /api/pair, /api/pair/claim).
CREATE TABLE pairing_codes (
    code               TEXT   NOT NULL PRIMARY KEY,
    user_id            TEXT   NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    issuer_device_id   TEXT   NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    -- failed claims of this code
    attempts           BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    redeemed_at        BIGINT,
    redeemed_device_id TEXT
);

CREATE INDEX pairing_codes_expires_at ON pairing_codes (expires_at);

-- A user's friend list as the client last pushed it (PUT /api/friends), in that order.
CREATE TABLE friends (
    user_id        TEXT   NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    friend_user_id TEXT   NOT NULL,
    handle         TEXT,
    alias          TEXT,
    position       BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_user_id)
);

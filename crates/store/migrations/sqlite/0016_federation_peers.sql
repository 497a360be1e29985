-- Federation: the peer registry. Operators add, block and unblock peers here
-- (`commucat federation peers`); the server merges these rows with the static
-- [[federation.peers]] of its configuration (a row overrides the entry of the same domain).

CREATE TABLE federation_peer (
    domain     TEXT    PRIMARY KEY,
    endpoint   TEXT    NOT NULL,
    public_key TEXT,
    status     TEXT    NOT NULL CHECK (status IN ('active', 'pending', 'blocked')),
    ca_file    TEXT,
    updated_at INTEGER NOT NULL
) STRICT;

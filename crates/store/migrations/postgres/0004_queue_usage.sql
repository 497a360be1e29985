-- Offline queue quotas: entries and bytes per recipient, per sender and in total, kept in the
-- same transaction as every write to relay_queue (see src/quota.rs), so a quota check reads one
-- row instead of counting the queue. Rows of recipients and senders with nothing queued are
-- deleted; the total row stays.

CREATE TABLE queue_usage (
    kind   TEXT   NOT NULL CHECK (kind IN ('recipient', 'sender', 'total')),
    id     TEXT   NOT NULL,
    frames BIGINT NOT NULL CHECK (frames >= 0),
    bytes  BIGINT NOT NULL CHECK (bytes >= 0),
    PRIMARY KEY (kind, id)
);

INSERT INTO queue_usage (kind, id, frames, bytes)
SELECT 'recipient', q.recipient, COUNT(*), SUM(octet_length(p.frame))
FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
GROUP BY q.recipient;

INSERT INTO queue_usage (kind, id, frames, bytes)
SELECT 'sender', p.sender, COUNT(*), SUM(octet_length(p.frame))
FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
GROUP BY p.sender;

INSERT INTO queue_usage (kind, id, frames, bytes)
SELECT 'total', '', COUNT(*), COALESCE(SUM(octet_length(p.frame)), 0)
FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id;

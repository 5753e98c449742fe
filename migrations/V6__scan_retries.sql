-- clerk-audit schema, version 6: the retries the worker handed to a broker delay queue, so that a delayed job
-- the broker never returns is sent again (src/outbox/resend.rs). The delay queues are quorum queues whose
-- messages expire and are dead-lettered back to the jobs queue, and RabbitMQ has open bugs on that path:
-- messages that do not expire, or a dead-letter worker that does not come back after a restart (a chaos run
-- lost 51 delayed jobs). The worker no longer trusts it alone.
--
-- One row per scan with a retry outstanding: written when the job is delayed, replaced by the next delay,
-- deleted once the sweep finds the retry began (scans.attempts moved past begun_attempts, or the scan
-- finished) or after it sent the job again. The job message is kept as delivered: it holds ids and names
-- only, never a secret (the key is referenced by key_ref).
CREATE TABLE IF NOT EXISTS scan_retries (
    scan_id        uuid PRIMARY KEY,
    attempt        integer NOT NULL,      -- the attempt number the delayed copy carries
    due_at         timestamptz NOT NULL,  -- when the delay queue should have returned it
    begun_attempts integer NOT NULL,      -- scans.attempts when the retry was scheduled (0: no scan row yet)
    body           bytea NOT NULL,        -- the job message as delivered
    traceparent    text,
    scheduled_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scan_retries_due ON scan_retries (due_at);

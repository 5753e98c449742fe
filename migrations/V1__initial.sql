-- clerk-audit schema, version 1.
--
-- Ownership contract: in production two of these tables belong to other services and this worker only
-- reads them; the worker's migrations create them so one database is enough to run it anywhere.
--   clerk_credentials    written by the platform's settings service (or `clerk-audit credentials put`).
--   repo_scan_artifacts  written by the platform's repo scanner (or `clerk-audit repo-scan --store`).
-- The other tables (scans, check_results, findings, outbox) are the worker's own.

CREATE TABLE IF NOT EXISTS clerk_credentials (
    id            uuid PRIMARY KEY,                 -- the job's key_ref
    project_id    text NOT NULL,
    instance_name text NOT NULL,
    -- KMS ciphertext of the secret key, encrypted under the encryption context
    -- {"project_id": project_id, "key_ref": id}: a ciphertext moved to another row cannot be decrypted.
    ciphertext    bytea NOT NULL,
    kms_key_id    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS clerk_credentials_project ON clerk_credentials (project_id);

CREATE TABLE IF NOT EXISTS repo_scan_artifacts (
    project_id    text NOT NULL,
    repo_scan_id  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    artifact      jsonb NOT NULL,                   -- clerk-repo-artifact/v1; never a raw secret
    PRIMARY KEY (project_id, repo_scan_id)
);
CREATE INDEX IF NOT EXISTS repo_scan_artifacts_latest ON repo_scan_artifacts (project_id, created_at DESC);

CREATE TABLE IF NOT EXISTS scans (
    id                uuid PRIMARY KEY,             -- the job's scan_id
    project_id        text NOT NULL,
    instance_name     text NOT NULL,
    key_ref           uuid NOT NULL,
    repo_scan_id      text,
    status            text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    requested_at      timestamptz NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    duration_ms       bigint,
    error_code        text,
    error_message     text,
    instance_summary  jsonb,
    calls             jsonb
);
CREATE INDEX IF NOT EXISTS scans_project_finished ON scans (project_id, finished_at DESC) WHERE status = 'completed';

CREATE TABLE IF NOT EXISTS check_results (
    scan_id   uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    check_id  text NOT NULL,
    status    text NOT NULL CHECK (status IN ('pass', 'fail', 'skipped', 'error')),
    reason    text,
    PRIMARY KEY (scan_id, check_id)
);

CREATE TABLE IF NOT EXISTS findings (
    scan_id       uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    fingerprint   text NOT NULL,
    check_id      text NOT NULL,
    severity      text NOT NULL,
    pillar        text NOT NULL,
    title         text NOT NULL,
    evidence      jsonb NOT NULL,
    why           text NOT NULL,
    fix           text NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (scan_id, fingerprint)
);
CREATE INDEX IF NOT EXISTS findings_fingerprint ON findings (fingerprint);

-- Events waiting to be published; the relay marks them sent after the broker confirms.
CREATE TABLE IF NOT EXISTS outbox (
    id           uuid PRIMARY KEY,                  -- the CloudEvent id (stable per scan)
    scan_id      uuid NOT NULL,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    -- After a failed publish (nack, unroutable, broker down) the row waits until then.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error   text
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (next_attempt_at) WHERE sent_at IS NULL;

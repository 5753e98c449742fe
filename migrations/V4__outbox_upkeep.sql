-- clerk-audit schema, version 4: keeping the outbox cheap.
--
-- Retention: published rows are deleted after `events.outbox_retention_hours`, oldest first, in small
-- batches (src/outbox/retention.rs). This index finds them without reading the unsent ones or the table.
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Compression: a completed event is a few KiB of JSON, above PostgreSQL's 2 KiB TOAST threshold, so every
-- stored event is compressed. lz4 instead of the default pglz: the benchmark's profile showed pglz as the
-- database's largest single function while storing results. Rows written from now on use it; a server
-- built without lz4 keeps pglz (skipped with a notice; the schema is otherwise the same).
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server: the outbox payload stays compressed with pglz';
END
$$;

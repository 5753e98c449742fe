-- clerk-audit schema, version 5: the two envelope attributes the relay repeats as AMQP properties (the
-- CloudEvent `type` and `traceparent`) are stored beside the payload, so the relay sets them without reading
-- the whole event text again. Rows stored before this version have NULL here; the relay then reads them from
-- the payload, as it did before. Nullable columns without a default: adding them rewrites nothing.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS event_type text, ADD COLUMN IF NOT EXISTS traceparent text;

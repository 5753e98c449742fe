-- clerk-audit schema, version 2: each stored finding says whether it is new, persisting or resolved since the
-- previous completed scan of the same project and instance. A completed scan also stores the previous
-- scan's findings that are gone, as rows with lifecycle 'resolved', so a project's history can be listed
-- from this table alone. Rows written before this version count as 'new'.

ALTER TABLE findings
    ADD COLUMN IF NOT EXISTS lifecycle text NOT NULL DEFAULT 'new'
        CHECK (lifecycle IN ('new', 'persisting', 'resolved'));

-- The previous completed scan of one project and instance.
CREATE INDEX IF NOT EXISTS scans_project_instance_finished
    ON scans (project_id, instance_name, finished_at DESC) WHERE status = 'completed';

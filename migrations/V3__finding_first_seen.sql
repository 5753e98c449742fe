-- clerk-audit schema, version 3: when each finding was first seen, one row per project, instance and
-- fingerprint. Completing a scan used to take the minimum `first_seen_at` over every stored row of each
-- fingerprint, a read that grew with every scan of the project (each scan stores its findings again); this
-- table answers it with one index lookup per fingerprint. Filled from the findings already stored.

CREATE TABLE IF NOT EXISTS finding_first_seen (
    project_id    text NOT NULL,
    instance_name text NOT NULL,
    fingerprint   text NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, instance_name, fingerprint)
);

INSERT INTO finding_first_seen (project_id, instance_name, fingerprint, first_seen_at)
SELECT s.project_id, s.instance_name, f.fingerprint, min(f.first_seen_at)
  FROM findings f JOIN scans s ON s.id = f.scan_id
 WHERE s.status = 'completed'
 GROUP BY s.project_id, s.instance_name, f.fingerprint
ON CONFLICT DO NOTHING;

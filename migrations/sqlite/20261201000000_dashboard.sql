-- The dashboard: its metrics page counts alerts and tickets by creation time over a window,
-- and its queue sorts by the last edit or by severity (keyset paging on (value, id)). The
-- severity expression is the one the stores order by (heron_store::SEVERITY_RANK_SQL).
CREATE INDEX alerts_created ON alerts (created_at);
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_updated ON tickets (updated_at, id);
CREATE INDEX tickets_severity_rank ON tickets ((CASE severity WHEN 'info' THEN 0 WHEN 'low' THEN 1
    WHEN 'medium' THEN 2 WHEN 'high' THEN 3 WHEN 'critical' THEN 4 END), id);

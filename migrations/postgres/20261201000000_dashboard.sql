-- The dashboard: its metrics page counts alerts and tickets by creation time over a window,
-- and its queue sorts by the last edit (keyset paging on (updated_at, id)).
CREATE INDEX alerts_created ON alerts (created_at);
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_updated ON tickets (updated_at, id);

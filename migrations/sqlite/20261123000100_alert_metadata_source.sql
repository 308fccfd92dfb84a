-- Where an alert's title and description came from: 'policy' (the ingest policy, or triage
-- overriding it), 'default' (Heron's fallback: "Alert from <schema>", an empty description)
-- or 'llm' (filled by the metadata stage). Alerts stored before this migration had their
-- title and description from a policy or the fallback; they are recorded as 'policy'.
ALTER TABLE alerts ADD COLUMN title_source TEXT NOT NULL DEFAULT 'policy';
ALTER TABLE alerts ADD COLUMN description_source TEXT NOT NULL DEFAULT 'policy';

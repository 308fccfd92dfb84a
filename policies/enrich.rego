# Enrich: prompt tasks the agent runs, with its tools, before triage; only for an alert that
# will be triaged (the first of its fingerprint, no active ticket), never for one that joins
# a ticket. Each result reaches `data.triage` as `input.enrich[_]` = {"id", "prompt",
# "result"}: a string for "format": "text", the parsed answer for "json", or {"error": "..."}
# when the task failed (no model configured: no tasks run and `enrich` is empty).
#
# Input: the alert, its metadata flattened as in warren:
#   {"id", "ticket_id": null, "schema", "title", "description", "title_source",
#    "description_source", "attributes", "tags", "channel", "severity", "data", "created_at"}
#
# Tasks: {"id", "inline": "<prompt>"} or {"id", "template": "<file under prompts/>",
# "params": {...}}, with "format": "text" (default) or "json". Without an id, a stable
# `task_xxxxxxxx` is derived from the task.
#
#   1. ioc_verdict (json) - high/critical alerts of schemas with network or file indicators:
#      the indicators' reputation, as {"verdict": "malicious" | "suspicious" | "benign" |
#      "unknown", ...}; triage.rego raises high to critical on "malicious";
#   2. summary (text)     - critical alerts: a three-sentence brief for the analyst.
package enrich

# Schemas whose alerts carry indicators the threat-intelligence tools can look up.
ioc_schemas := {"guardduty", "suricata", "falco", "crowdstrike", "scc", "securityhub"}

# Attribute keys holding indicators (IP addresses, domains, hashes, URLs).
indicator_keys := {"src_ip", "dst_ip", "remote_ip", "client_ip", "domain", "hostname", "sha256", "md5", "url"}

severity := object.get(input, "severity", "medium")

indicators := [a.value |
	some a in object.get(input, "attributes", [])
	object.get(a, "key", "") in indicator_keys
	is_string(a.value)
]

prompts contains {
	"id": "ioc_verdict",
	"template": "ioc_verdict.md",
	"params": {"indicators": indicators},
	"format": "json",
} if {
	input.schema in ioc_schemas
	severity in {"high", "critical"}
	count(indicators) > 0
}

prompts contains {
	"id": "summary",
	"inline": "In three sentences: what this alert means, what was affected, and what an analyst should check first.",
	"format": "text",
} if {
	severity == "critical"
}

package enrich_test

alert(schema, severity, attributes) := {
	"id": "01JNQ8ZK4B6S5T0EXAMPLE0002",
	"schema": schema,
	"title": "GuardDuty: Backdoor:EC2/C&CActivity.B!DNS in ap-northeast-1",
	"description": "",
	"severity": severity,
	"attributes": attributes,
	"data": {},
}

indicators := [
	{"key": "src_ip", "value": "198.51.100.23", "link": ""},
	{"key": "domain", "value": "c2.example.net", "link": ""},
	{"key": "user", "value": "alice", "link": ""},
]

tasks(doc) := t if {
	t := data.enrich.prompts with input as doc
}

ids(doc) := {t.id | some t in tasks(doc)}

test_high_alert_with_indicators_asks_for_an_ioc_verdict if {
	some t in tasks(alert("guardduty", "high", indicators))
	t.id == "ioc_verdict"
	t.template == "ioc_verdict.md"
	t.format == "json"
	t.params.indicators == ["198.51.100.23", "c2.example.net"]
}

test_medium_and_low_alerts_get_no_task if {
	count(tasks(alert("guardduty", "medium", indicators))) == 0
	count(tasks(alert("suricata", "low", indicators))) == 0
}

test_no_ioc_task_without_indicators if {
	ids(alert("guardduty", "high", [{"key": "user", "value": "alice", "link": ""}])) == set()
}

test_no_ioc_task_for_schemas_without_indicators if {
	ids(alert("okta", "high", indicators)) == set()
}

test_critical_alert_also_gets_a_summary if {
	ids(alert("crowdstrike", "critical", indicators)) == {"ioc_verdict", "summary"}
	some t in tasks(alert("okta", "critical", []))
	t.id == "summary"
	t.format == "text"
}

test_missing_severity_counts_as_medium if {
	count(tasks({"schema": "guardduty", "attributes": indicators})) == 0
}

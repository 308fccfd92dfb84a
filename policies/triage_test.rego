package triage_test

alert(severity, tags, attributes) := {
	"alert": {
		"id": "01JNQ8ZK4B6S5T0EXAMPLE0001",
		"schema": "suricata",
		"metadata": {
			"title": "Suricata: ET SCAN Potential SSH Scan (198.51.100.23 -> 10.10.20.8:22)",
			"description": "ET SCAN Potential SSH Scan",
			"attributes": attributes,
			"tags": tags,
			"channel": "",
			"severity": severity,
		},
		"data": {"event_type": "alert"},
	},
	"enrich": [],
}

src(ip) := [{"key": "src_ip", "value": ip, "link": ""}, {"key": "dst_ip", "value": "10.10.20.8", "link": ""}]

publish_for(input_doc) := p if {
	p := data.triage.publish with input as input_doc
}

test_medium_alert_is_published_as_alert if {
	publish_for(alert("medium", ["suricata"], src("198.51.100.23"))) == "alert"
}

test_high_and_critical_are_alerts if {
	publish_for(alert("high", ["suricata"], src("198.51.100.23"))) == "alert"
	publish_for(alert("critical", ["suricata"], src("198.51.100.23"))) == "alert"
}

test_low_and_info_become_notices if {
	publish_for(alert("low", ["suricata"], src("198.51.100.23"))) == "notice"
	publish_for(alert("info", ["suricata"], src("198.51.100.23"))) == "notice"
}

test_test_tag_is_discarded if {
	publish_for(alert("critical", ["falco", "test"], src("198.51.100.23"))) == "discard"
	publish_for(alert("low", ["Test"], src("198.51.100.23"))) == "discard"
}

test_authorized_scanner_is_discarded if {
	publish_for(alert("high", ["suricata"], src("192.0.2.241"))) == "discard"
	publish_for(alert("high", ["okta"], [{"key": "client_ip", "value": "192.0.2.250", "link": ""}, {"key": "actor", "value": "x", "link": ""}])) == "discard"
}

test_scanner_address_as_destination_is_not_discarded if {
	attrs := [{"key": "src_ip", "value": "198.51.100.23", "link": ""}, {"key": "dst_ip", "value": "192.0.2.241", "link": ""}]
	publish_for(alert("high", ["suricata"], attrs)) == "alert"
}

test_non_ip_and_ipv6_values_are_safe if {
	attrs := [{"key": "src_ip", "value": "2001:db8::1", "link": ""}, {"key": "remote_ip", "value": 42, "link": ""}]
	publish_for(alert("medium", ["suricata"], attrs)) == "alert"
}

test_missing_metadata_defaults_to_alert if {
	publish_for({"alert": {"id": "x", "schema": "custom", "data": {}}, "enrich": []}) == "alert"
}

test_malicious_verdict_raises_high_to_critical if {
	doc := object.union(alert("high", ["crowdstrike"], src("198.51.100.23")), {"enrich": [
		{"id": "vt", "prompt": "Is the file hash known malicious?", "result": {"verdict": "malicious"}},
	]})
	sev := data.triage.severity with input as doc
	sev == "critical"
}

test_severity_unchanged_without_verdict if {
	doc := object.union(alert("high", ["crowdstrike"], src("198.51.100.23")), {"enrich": [
		{"id": "summary", "prompt": "Summarise the alert", "result": "A scan from a VPS."},
	]})
	not data.triage.severity with input as doc
}

test_runbook_attribute_added if {
	attrs := data.triage.attr with input as alert("medium", ["suricata"], src("198.51.100.23"))
	attrs == [{
		"key": "runbook",
		"value": "https://wiki.example.com/security/runbooks/suricata",
		"link": "https://wiki.example.com/security/runbooks/suricata",
	}]
}

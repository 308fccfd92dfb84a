package ingest.suricata_test

log4j := {
	"timestamp": "2025-03-05T13:27:41.552318+0000",
	"flow_id": 1387724561093751,
	"in_iface": "ens5",
	"event_type": "alert",
	"host": "ids-edge-01",
	"src_ip": "203.0.113.77",
	"src_port": 53122,
	"dest_ip": "10.10.20.15",
	"dest_port": 8080,
	"proto": "TCP",
	"app_proto": "http",
	"alert": {
		"action": "allowed",
		"gid": 1,
		"signature_id": 2034647,
		"rev": 3,
		"signature": "ET EXPLOIT Apache log4j RCE Attempt (http ldap) (CVE-2021-44228)",
		"category": "Attempted Administrator Privilege Gain",
		"severity": 1,
		"metadata": {"mitre_tactic_name": ["Initial_Access"], "mitre_technique_id": ["T1190"]},
	},
	"http": {"hostname": "shop.example.com", "url": "/api/search", "http_user_agent": "exploit-scanner"},
}

alerts_for(evt) := alerts if {
	alerts := data.ingest.suricata.alerts with input as evt
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

test_alert_event if {
	alerts := alerts_for(log4j)
	count(alerts) == 1
	some a in alerts
	a.title == "Suricata: ET EXPLOIT Apache log4j RCE Attempt (http ldap) (CVE-2021-44228) (203.0.113.77 -> 10.10.20.15:8080)"
	a.severity == "high"
	has_attr(a, "src_ip", "203.0.113.77")
	has_attr(a, "dst_ip", "10.10.20.15")
	has_attr(a, "dst_port", 8080)
	has_attr(a, "signature_id", 2034647)
	has_attr(a, "http_host", "shop.example.com")
	has_attr(a, "mitre_technique", "T1190")
	"Initial_Access" in a.tags
	a.fingerprint == {"gid": 1, "signature_id": 2034647, "src_ip": "203.0.113.77", "dest_ip": "10.10.20.15"}
}

severity_for(n) := a.severity if {
	some a in alerts_for(object.union(log4j, {"alert": {"severity": n}}))
}

test_severity_mapping if {
	severity_for(1) == "high"
	severity_for(2) == "medium"
	severity_for(3) == "low"
	severity_for(4) == "info"
}

test_other_event_types_ignored if {
	every t in ["flow", "dns", "http", "tls", "fileinfo", "anomaly", "stats", "netflow"] {
		count(alerts_for(object.union(log4j, {"event_type": t}))) == 0
	}
}

test_stream_engine_events_ignored if {
	evt := object.union(log4j, {"alert": {"signature_id": 2210020, "signature": "SURICATA STREAM ESTABLISHED packet out of window", "severity": 3}})
	count(alerts_for(evt)) == 0
}

test_other_decoder_events_still_alert if {
	evt := object.union(log4j, {"alert": {"signature_id": 2221014, "signature": "SURICATA HTTP missing Host header", "severity": 3}})
	some a in alerts_for(evt)
	a.severity == "low"
}

test_fingerprint_ignores_ports_flow_and_time if {
	later := object.union(log4j, {"timestamp": "2025-03-09T00:00:00.000000+0000", "flow_id": 42, "src_port": 61000})
	some a in alerts_for(log4j)
	some b in alerts_for(later)
	a.fingerprint == b.fingerprint
}

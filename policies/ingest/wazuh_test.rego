package ingest.wazuh_test

brute_force := {
	"timestamp": "2025-03-05T07:44:21.317+0000",
	"rule": {
		"level": 10,
		"description": "sshd: brute force trying to get access to the system. Non existent user.",
		"id": "5712",
		"mitre": {"id": ["T1110"], "tactic": ["Credential Access"], "technique": ["Brute Force"]},
		"groups": ["syslog", "sshd", "authentication_failures"],
	},
	"agent": {"id": "004", "name": "web-01", "ip": "10.10.20.15"},
	"manager": {"name": "wazuh-manager-01"},
	"id": "1741160661.4418219",
	"full_log": "Mar  5 07:44:21 web-01 sshd[33121]: Invalid user oracle from 203.0.113.51 port 40112",
	"decoder": {"parent": "sshd", "name": "sshd"},
	"data": {"srcip": "203.0.113.51", "srcport": "40112", "srcuser": "oracle"},
	"location": "/var/log/auth.log",
}

alerts_for(evt) := alerts if {
	alerts := data.ingest.wazuh.alerts with input as evt
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

test_brute_force_alert if {
	alerts := alerts_for(brute_force)
	count(alerts) == 1
	some a in alerts
	a.title == "Wazuh: sshd: brute force trying to get access to the system. Non existent user on web-01 (rule 5712, level 10)"
	a.severity == "medium"
	has_attr(a, "src_ip", "203.0.113.51")
	has_attr(a, "src_user", "oracle")
	has_attr(a, "agent", "web-01")
	has_attr(a, "rule_id", "5712")
	has_attr(a, "mitre_technique", "T1110 Brute Force")
	"authentication_failures" in a.tags
	"Credential Access" in a.tags
	a.fingerprint == {"rule": "5712", "agent": "web-01"}
}

level(n) := object.union(brute_force, {"rule": {"level": n}})

severity_for(n) := a.severity if {
	some a in alerts_for(level(n))
}

test_level_threshold_and_mapping if {
	count(alerts_for(level(0))) == 0
	count(alerts_for(level(6))) == 0
	severity_for(7) == "medium"
	severity_for(11) == "medium"
	severity_for(12) == "high"
	severity_for(14) == "high"
	severity_for(15) == "critical"
}

test_successful_login_ignored if {
	evt := object.union(brute_force, {"rule": {"level": 3, "id": "5715", "description": "sshd: authentication success.", "groups": ["syslog", "sshd", "authentication_success"]}})
	count(alerts_for(evt)) == 0
}

test_payload_without_rule_ignored if {
	count(alerts_for({"agent": {"name": "web-01"}, "full_log": "x"})) == 0
}

test_fim_alert_has_file_pivots if {
	evt := {
		"rule": {"level": 7, "description": "Integrity checksum changed.", "id": "550", "groups": ["ossec", "syscheck"]},
		"agent": {"id": "007", "name": "db-02"},
		"syscheck": {"path": "/etc/ssh/sshd_config", "sha256_after": "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"},
	}
	some a in alerts_for(evt)
	a.title == "Wazuh: Integrity checksum changed on db-02 (rule 550, level 7)"
	has_attr(a, "file", "/etc/ssh/sshd_config")
	has_attr(a, "sha256", "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c")
}

test_fingerprint_ignores_time_ip_and_ids if {
	later := object.union(brute_force, {
		"timestamp": "2025-03-09T00:00:00.000+0000",
		"id": "1741478400.1",
		"full_log": "Mar  9 00:00:00 web-01 sshd[1]: Invalid user test from 198.51.100.9 port 1",
		"data": {"srcip": "198.51.100.9", "srcport": "1", "srcuser": "test"},
	})
	some a in alerts_for(brute_force)
	some b in alerts_for(later)
	a.fingerprint == b.fingerprint
}

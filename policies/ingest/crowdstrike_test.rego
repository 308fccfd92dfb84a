package ingest.crowdstrike_test

detection := {
	"metadata": {
		"customerIDString": "0123456789abcdef0123456789abcdef",
		"offset": 21833012,
		"eventType": "DetectionSummaryEvent",
		"eventCreationTime": 1741181423000,
		"version": "1.0",
	},
	"event": {
		"ProcessStartTime": 1741181420,
		"ProcessId": 87234987123,
		"ComputerName": "FIN-WS-0042",
		"UserName": "j.smith",
		"DetectName": "Credential Theft",
		"DetectDescription": "A process attempted to dump the memory of lsass.exe.",
		"Severity": 4,
		"SeverityName": "High",
		"FileName": "procdump64.exe",
		"FilePath": "\\Device\\HarddiskVolume3\\Users\\j.smith\\AppData\\Local\\Temp",
		"CommandLine": "procdump64.exe -accepteula -ma lsass.exe C:\\Users\\Public\\ls.dmp",
		"SHA256String": "2c2c1d7bb7a5a3f1e8c4b6d9e0a1f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3",
		"MD5String": "6f5902ac237024bdd0c176cb93063dc4",
		"FalconHostLink": "https://falcon.crowdstrike.com/activity/detections/detail/4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091/87234987123?_cid=0123456789abcdef0123456789abcdef",
		"SensorId": "4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091",
		"DetectId": "ldt:4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091:87234987123",
		"LocalIP": "10.30.4.57",
		"Tactic": "Credential Access",
		"Technique": "OS Credential Dumping",
		"Objective": "Gain Access",
		"PatternDispositionDescription": "Prevention, process killed.",
	},
}

alerts_for(evt) := alerts if {
	alerts := data.ingest.crowdstrike.alerts with input as evt
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

test_detection_alert if {
	alerts := alerts_for(detection)
	count(alerts) == 1
	some a in alerts
	a.title == "CrowdStrike: Credential Access via OS Credential Dumping on FIN-WS-0042 (procdump64.exe)"
	a.severity == "high"
	a.description == "A process attempted to dump the memory of lsass.exe.\n\nAction taken: Prevention, process killed."
	has_attr(a, "host", "FIN-WS-0042")
	has_attr(a, "user", "j.smith")
	has_attr(a, "sha256", "2c2c1d7bb7a5a3f1e8c4b6d9e0a1f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3")
	has_attr(a, "command_line", "procdump64.exe -accepteula -ma lsass.exe C:\\Users\\Public\\ls.dmp")
	has_attr(a, "local_ip", "10.30.4.57")
	"Credential Access" in a.tags
	a.fingerprint == {
		"sensor": "4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091",
		"tactic": "Credential Access",
		"technique": "OS Credential Dumping",
		"sha256": "2c2c1d7bb7a5a3f1e8c4b6d9e0a1f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3",
	}
}

test_detect_id_links_to_falcon if {
	some a in alerts_for(detection)
	some at in a.attributes
	at.key == "detect_id"
	at.link == detection.event.FalconHostLink
}

with_event(patch) := object.union(detection, {"event": patch})

severity_for(patch) := a.severity if {
	some a in alerts_for(with_event(patch))
}

test_severity_name_mapping if {
	severity_for({"SeverityName": "Critical", "Severity": 5}) == "critical"
	severity_for({"SeverityName": "High", "Severity": 4}) == "high"
	severity_for({"SeverityName": "Medium", "Severity": 3}) == "medium"
	severity_for({"SeverityName": "Low", "Severity": 2}) == "low"
	severity_for({"SeverityName": "Informational", "Severity": 1}) == "info"
}

test_numeric_severity_without_name if {
	no_name := {"metadata": detection.metadata, "event": object.remove(detection.event, ["SeverityName"])}
	some a in alerts_for(object.union(no_name, {"event": {"Severity": 5}}))
	a.severity == "critical"
	some b in alerts_for(object.union(no_name, {"event": {"Severity": 2}}))
	b.severity == "low"
	some c in alerts_for(object.union(no_name, {"event": {"Severity": 70}}))
	c.severity == "high"
}

test_other_event_types_ignored if {
	every t in ["AuthActivityAuditEvent", "UserActivityAuditEvent", "RemoteResponseSessionStartEvent", "IncidentSummaryEvent"] {
		count(alerts_for(object.union(detection, {"metadata": {"eventType": t}}))) == 0
	}
}

test_fingerprint_ignores_ids_and_time if {
	later := object.union(detection, {
		"metadata": {"offset": 99999999, "eventCreationTime": 1741999999000},
		"event": {
			"ProcessId": 1,
			"ProcessStartTime": 1741999990,
			"DetectId": "ldt:4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091:1",
			"CommandLine": "procdump64.exe -ma lsass.exe C:\\Windows\\Temp\\x.dmp",
		},
	})
	some a in alerts_for(detection)
	some b in alerts_for(later)
	a.fingerprint == b.fingerprint
}

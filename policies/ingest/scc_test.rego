package ingest.scc_test

bucket_finding := {
	"notificationConfigName": "organizations/123456789012/notificationConfigs/heron-active-findings",
	"finding": {
		"name": "organizations/123456789012/sources/9988776655443322110/findings/a1b2c3d4e5f60718293a4b5c6d7e8f90",
		"parent": "organizations/123456789012/sources/9988776655443322110",
		"resourceName": "//storage.googleapis.com/acme-shared-exports",
		"state": "ACTIVE",
		"category": "PUBLIC_BUCKET_ACL",
		"externalUri": "https://console.cloud.google.com/storage/browser/acme-shared-exports",
		"sourceProperties": {"ScannerName": "STORAGE_SCANNER", "Explanation": "This bucket is public."},
		"securityMarks": {"name": "organizations/123456789012/sources/9988776655443322110/findings/a1b2c3d4e5f60718293a4b5c6d7e8f90/securityMarks"},
		"eventTime": "2025-03-06T02:10:44.301Z",
		"createTime": "2025-03-06T02:10:46.950Z",
		"severity": "HIGH",
		"findingClass": "MISCONFIGURATION",
		"mute": "UNMUTED",
	},
	"resource": {
		"name": "//storage.googleapis.com/acme-shared-exports",
		"displayName": "acme-shared-exports",
		"projectDisplayName": "acme-prod",
		"type": "google.cloud.storage.Bucket",
	},
}

threat_finding := {
	"notificationConfigName": "organizations/123456789012/notificationConfigs/heron-active-findings",
	"finding": {
		"name": "organizations/123456789012/sources/1122334455667788990/findings/6f1e2d3c4b5a6978",
		"parent": "organizations/123456789012/sources/1122334455667788990",
		"resourceName": "//cloudresourcemanager.googleapis.com/projects/481516234200",
		"state": "ACTIVE",
		"category": "Persistence: IAM Anomalous Grant",
		"eventTime": "2025-03-05T14:22:07.118Z",
		"severity": "HIGH",
		"findingClass": "THREAT",
		"mitreAttack": {"primaryTactic": "PERSISTENCE", "primaryTechniques": ["ACCOUNT_MANIPULATION"]},
		"access": {"principalEmail": "dev.contractor@example.com", "callerIp": "203.0.113.88", "methodName": "SetIamPolicy"},
	},
	"resource": {"name": "//cloudresourcemanager.googleapis.com/projects/481516234200", "projectDisplayName": "acme-prod"},
}

with_finding(msg, patch) := object.union(msg, {"finding": patch})

alerts_for(msg) := alerts if {
	alerts := data.ingest.scc.alerts with input as msg
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

test_misconfiguration_alert if {
	alerts := alerts_for(bucket_finding)
	count(alerts) == 1
	some a in alerts
	a.title == "SCC: PUBLIC_BUCKET_ACL on acme-shared-exports in project acme-prod"
	a.severity == "high"
	a.description == "This bucket is public."
	has_attr(a, "resource", "//storage.googleapis.com/acme-shared-exports")
	has_attr(a, "project", "acme-prod")
	has_attr(a, "finding_class", "MISCONFIGURATION")
	a.fingerprint == {
		"category": "PUBLIC_BUCKET_ACL",
		"resource": "//storage.googleapis.com/acme-shared-exports",
		"source": "organizations/123456789012/sources/9988776655443322110",
	}
}

test_threat_alert_has_access_pivots if {
	some a in alerts_for(threat_finding)
	a.title == "SCC: Persistence: IAM Anomalous Grant on 481516234200 in project acme-prod"
	has_attr(a, "principal", "dev.contractor@example.com")
	has_attr(a, "caller_ip", "203.0.113.88")
	has_attr(a, "mitre_technique", "ACCOUNT_MANIPULATION")
	"PERSISTENCE" in a.tags
	"THREAT" in a.tags
}

test_resource_link_is_external_uri if {
	some a in alerts_for(bucket_finding)
	some at in a.attributes
	at.key == "resource"
	at.link == "https://console.cloud.google.com/storage/browser/acme-shared-exports"
}

severity_for(msg, sev) := a.severity if {
	some a in alerts_for(with_finding(msg, {"severity": sev}))
}

test_severity_mapping if {
	severity_for(bucket_finding, "CRITICAL") == "critical"
	severity_for(bucket_finding, "HIGH") == "high"
	severity_for(bucket_finding, "MEDIUM") == "medium"
	severity_for(bucket_finding, "LOW") == "low"
	severity_for(bucket_finding, "SEVERITY_UNSPECIFIED") == "low"
	severity_for(threat_finding, "SEVERITY_UNSPECIFIED") == "medium"
}

test_inactive_ignored if {
	count(alerts_for(with_finding(bucket_finding, {"state": "INACTIVE"}))) == 0
}

test_muted_ignored if {
	count(alerts_for(with_finding(bucket_finding, {"mute": "MUTED"}))) == 0
}

test_message_without_finding_ignored if {
	count(alerts_for({"notificationConfigName": "organizations/123456789012/notificationConfigs/x", "resource": {"name": "//x"}})) == 0
}

test_fingerprint_ignores_time_and_ids if {
	later := with_finding(bucket_finding, {
		"name": "organizations/123456789012/sources/9988776655443322110/findings/ffff0000ffff0000",
		"eventTime": "2025-04-01T00:00:00Z",
		"createTime": "2025-04-01T00:00:02Z",
	})
	some a in alerts_for(bucket_finding)
	some b in alerts_for(later)
	a.fingerprint == b.fingerprint
}

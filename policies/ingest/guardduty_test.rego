package ingest.guardduty_test

finding := {
	"schemaVersion": "2.0",
	"accountId": "111122223333",
	"region": "us-east-1",
	"partition": "aws",
	"id": "a4c6e1f0b2d84e7f9a1b3c5d7e9f0a12",
	"arn": "arn:aws:guardduty:us-east-1:111122223333:detector/5cb2a1b9/finding/a4c6e1f0b2d84e7f9a1b3c5d7e9f0a12",
	"type": "UnauthorizedAccess:IAMUser/MaliciousIPCaller",
	"resource": {
		"resourceType": "AccessKey",
		"accessKeyDetails": {
			"accessKeyId": "AKIAIOSFODNN7EXAMPLE",
			"principalId": "AIDACKCEVSQ6C2EXAMPLE",
			"userType": "IAMUser",
			"userName": "ci-deployer",
		},
	},
	"service": {
		"serviceName": "guardduty",
		"action": {
			"actionType": "AWS_API_CALL",
			"awsApiCallAction": {
				"api": "ListBuckets",
				"serviceName": "s3.amazonaws.com",
				"callerType": "Remote IP",
				"remoteIpDetails": {
					"ipAddressV4": "203.0.113.45",
					"organization": {"asn": "64500", "asnOrg": "EXAMPLE-TRANSIT"},
					"country": {"countryName": "Netherlands"},
				},
			},
		},
		"resourceRole": "TARGET",
		"additionalInfo": {"type": "default", "value": "{}"},
		"eventFirstSeen": "2025-03-04T09:12:40.000Z",
		"eventLastSeen": "2025-03-04T09:31:02.000Z",
		"archived": false,
		"count": 3,
	},
	"severity": 5,
	"createdAt": "2025-03-04T09:12:40.000Z",
	"updatedAt": "2025-03-04T09:31:02.000Z",
	"title": "API ListBuckets was invoked from a known malicious IP address.",
	"description": "API ListBuckets was invoked from a known malicious IP address 203.0.113.45.",
}

event(detail) := {
	"version": "0",
	"id": "7f3e9a0c-2b1d-4c5e-8f6a-9b0c1d2e3f40",
	"detail-type": "GuardDuty Finding",
	"source": "aws.guardduty",
	"account": "111122223333",
	"time": "2025-03-04T09:31:05Z",
	"region": "us-east-1",
	"resources": [],
	"detail": detail,
}

with_detail(patch) := event(object.union(finding, patch))

alerts_for(evt) := alerts if {
	alerts := data.ingest.guardduty.alerts with input as evt
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

test_malicious_ip_caller_alert if {
	alerts := alerts_for(event(finding))
	count(alerts) == 1
	some a in alerts
	a.title == "GuardDuty: UnauthorizedAccess:IAMUser/MaliciousIPCaller on AccessKey AKIAIOSFODNN7EXAMPLE (ci-deployer) in us-east-1"
	a.severity == "medium"
	has_attr(a, "remote_ip", "203.0.113.45")
	has_attr(a, "user", "ci-deployer")
	has_attr(a, "access_key_id", "AKIAIOSFODNN7EXAMPLE")
	has_attr(a, "account", "111122223333")
	has_attr(a, "country", "Netherlands")
	has_attr(a, "api", "ListBuckets")
	"UnauthorizedAccess" in a.tags
	a.fingerprint == {
		"type": "UnauthorizedAccess:IAMUser/MaliciousIPCaller",
		"account": "111122223333",
		"region": "us-east-1",
		"resource": "AccessKey AKIAIOSFODNN7EXAMPLE (ci-deployer)",
	}
}

test_finding_link_points_at_console if {
	some a in alerts_for(event(finding))
	some at in a.attributes
	at.key == "finding_type"
	at.link == "https://us-east-1.console.aws.amazon.com/guardduty/home?region=us-east-1#/findings?macros=current&fId=a4c6e1f0b2d84e7f9a1b3c5d7e9f0a12"
}

test_instance_finding_title if {
	evt := with_detail({
		"type": "Backdoor:EC2/C&CActivity.B!DNS",
		"severity": 8,
		"resource": {
			"resourceType": "Instance",
			"instanceDetails": {"instanceId": "i-0123456789abcdef0", "networkInterfaces": [{"privateIpAddress": "10.20.3.17"}]},
		},
		"service": {"action": {"actionType": "DNS_REQUEST", "dnsRequestAction": {"domain": "c2.example.net"}}},
	})
	some a in alerts_for(evt)
	a.title == "GuardDuty: Backdoor:EC2/C&CActivity.B!DNS on Instance i-0123456789abcdef0 in us-east-1"
	a.severity == "high"
	has_attr(a, "domain", "c2.example.net")
	has_attr(a, "private_ip", "10.20.3.17")
}

severity_of(n) := a.severity if {
	some a in alerts_for(with_detail({"severity": n}))
}

test_severity_bands if {
	severity_of(0.1) == "low"
	severity_of(3.9) == "low"
	severity_of(4) == "medium"
	severity_of(6.9) == "medium"
	severity_of(7) == "high"
	severity_of(8.9) == "high"
	severity_of(9) == "critical"
	severity_of(10) == "critical"
}

test_archived_finding_ignored if {
	count(alerts_for(with_detail({"service": {"archived": true}}))) == 0
}

test_sample_finding_ignored if {
	count(alerts_for(with_detail({"service": {"additionalInfo": {"sample": true}}}))) == 0
}

test_canary_finding_ignored if {
	count(alerts_for(with_detail({"type": "Canary:EC2/Stateless.IntegTest"}))) == 0
}

test_other_eventbridge_events_ignored if {
	count(alerts_for(object.union(event(finding), {"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"}))) == 0
}

test_fingerprint_ignores_time_and_ids if {
	first := event(finding)
	later := object.union(with_detail({
		"id": "0000aaaabbbbccccddddeeeeffff0000",
		"updatedAt": "2025-03-09T10:00:00.000Z",
		"service": {"count": 40, "eventLastSeen": "2025-03-09T10:00:00.000Z"},
	}), {"id": "11111111-2222-4333-8444-555555555555", "time": "2025-03-09T10:00:03Z"})
	some a in alerts_for(first)
	some b in alerts_for(later)
	a.fingerprint == b.fingerprint
}

test_fingerprint_differs_per_resource if {
	other := with_detail({"resource": {"accessKeyDetails": {"accessKeyId": "AKIAI44QH8DHBEXAMPLE", "userName": "backup"}}})
	some a in alerts_for(event(finding))
	some b in alerts_for(other)
	a.fingerprint != b.fingerprint
}

test_minimal_finding_still_alerts if {
	evt := event({"type": "Recon:EC2/PortProbeUnprotectedPort", "severity": 2, "region": "us-east-1", "accountId": "111122223333"})
	alerts := alerts_for(evt)
	count(alerts) == 1
	some a in alerts
	a.title == "GuardDuty: Recon:EC2/PortProbeUnprotectedPort on Unknown in us-east-1"
	a.severity == "low"
}

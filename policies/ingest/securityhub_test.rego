package ingest.securityhub_test

control_finding := {
	"SchemaVersion": "2018-10-08",
	"Id": "arn:aws:securityhub:us-east-1:111122223333:security-control/S3.8/finding/3f2e1d0c-9b8a-4765-8432-10fedcba9876",
	"ProductArn": "arn:aws:securityhub:us-east-1::product/aws/securityhub",
	"ProductName": "Security Hub",
	"CompanyName": "AWS",
	"Region": "us-east-1",
	"GeneratorId": "security-control/S3.8",
	"AwsAccountId": "111122223333",
	"Types": ["Software and Configuration Checks/Industry and Regulatory Standards"],
	"CreatedAt": "2025-03-02T11:20:31.412Z",
	"UpdatedAt": "2025-03-06T11:20:59.118Z",
	"Severity": {"Label": "HIGH", "Normalized": 70, "Original": "HIGH"},
	"Title": "S3 general purpose buckets should block public access",
	"Description": "This control checks whether an Amazon S3 general purpose bucket blocks public access at the bucket level.",
	"Remediation": {"Recommendation": {
		"Text": "For information on how to correct this issue, consult the AWS Security Hub controls documentation.",
		"Url": "https://docs.aws.amazon.com/console/securityhub/S3.8/remediation",
	}},
	"Resources": [{"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::acme-public-assets", "Partition": "aws", "Region": "us-east-1"}],
	"Compliance": {"Status": "FAILED", "SecurityControlId": "S3.8"},
	"WorkflowState": "NEW",
	"Workflow": {"Status": "NEW"},
	"RecordState": "ACTIVE",
}

guardduty_finding := {
	"SchemaVersion": "2018-10-08",
	"Id": "arn:aws:guardduty:us-east-1:111122223333:detector/5cb2a1b9/finding/0e9d8c7b6a5f",
	"ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
	"ProductName": "GuardDuty",
	"Region": "us-east-1",
	"GeneratorId": "arn:aws:guardduty:us-east-1:111122223333:detector/5cb2a1b9",
	"AwsAccountId": "111122223333",
	"Types": ["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS"],
	"Severity": {"Label": "HIGH", "Normalized": 80},
	"Title": "Command and Control server domain name queried by EC2 instance i-0123456789abcdef0.",
	"Description": "EC2 instance i-0123456789abcdef0 is querying a domain name associated with a known Command & Control server.",
	"Resources": [{"Type": "AwsEc2Instance", "Id": "arn:aws:ec2:us-east-1:111122223333:instance/i-0123456789abcdef0"}],
	"Workflow": {"Status": "NEW"},
	"RecordState": "ACTIVE",
}

event(findings) := {
	"version": "0",
	"id": "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f",
	"detail-type": "Security Hub Findings - Imported",
	"source": "aws.securityhub",
	"account": "111122223333",
	"time": "2025-03-06T11:21:08Z",
	"region": "us-east-1",
	"resources": [],
	"detail": {"findings": findings},
}

alerts_for(evt) := alerts if {
	alerts := data.ingest.securityhub.alerts with input as evt
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

test_failed_control_alert if {
	alerts := alerts_for(event([control_finding]))
	count(alerts) == 1
	some a in alerts
	a.title == "Security Hub: S3 general purpose buckets should block public access on AwsS3Bucket arn:aws:s3:::acme-public-assets"
	a.severity == "high"
	has_attr(a, "account", "111122223333")
	has_attr(a, "resource", "arn:aws:s3:::acme-public-assets")
	has_attr(a, "control", "S3.8")
	"Software and Configuration Checks/Industry and Regulatory Standards" in a.tags
	a.fingerprint == {
		"generator": "security-control/S3.8",
		"account": "111122223333",
		"resources": ["arn:aws:s3:::acme-public-assets"],
	}
}

test_control_links_to_remediation if {
	some a in alerts_for(event([control_finding]))
	some at in a.attributes
	at.key == "control"
	at.link == "https://docs.aws.amazon.com/console/securityhub/S3.8/remediation"
}

test_one_alert_per_finding if {
	alerts := alerts_for(event([control_finding, guardduty_finding]))
	count(alerts) == 2
	some a in alerts
	a.title == "Security Hub (GuardDuty): Command and Control server domain name queried by EC2 instance i-0123456789abcdef0. on AwsEc2Instance arn:aws:ec2:us-east-1:111122223333:instance/i-0123456789abcdef0"
}

severity_for(sev) := a.severity if {
	some a in alerts_for(event([object.union(control_finding, {"Severity": sev})]))
}

test_severity_label_mapping if {
	severity_for({"Label": "INFORMATIONAL"}) == "info"
	severity_for({"Label": "LOW"}) == "low"
	severity_for({"Label": "MEDIUM"}) == "medium"
	severity_for({"Label": "HIGH"}) == "high"
	severity_for({"Label": "CRITICAL"}) == "critical"
}

test_severity_normalized_fallback if {
	no_label := object.remove(control_finding, ["Severity"])
	some a in alerts_for(event([object.union(no_label, {"Severity": {"Normalized": 39}})]))
	a.severity == "low"
	some b in alerts_for(event([object.union(no_label, {"Severity": {"Normalized": 40}})]))
	b.severity == "medium"
	some c in alerts_for(event([object.union(no_label, {"Severity": {"Normalized": 90}})]))
	c.severity == "critical"
	some d in alerts_for(event([no_label]))
	d.severity == "medium"
}

test_suppressed_resolved_archived_passed_ignored if {
	count(alerts_for(event([object.union(control_finding, {"Workflow": {"Status": "SUPPRESSED"}})]))) == 0
	count(alerts_for(event([object.union(control_finding, {"Workflow": {"Status": "RESOLVED"}})]))) == 0
	count(alerts_for(event([object.union(control_finding, {"RecordState": "ARCHIVED"})]))) == 0
	count(alerts_for(event([object.union(control_finding, {"Compliance": {"Status": "PASSED"}})]))) == 0
}

test_notified_workflow_still_alerts if {
	count(alerts_for(event([object.union(control_finding, {"Workflow": {"Status": "NOTIFIED"}})]))) == 1
}

test_mixed_event_keeps_active_finding_only if {
	alerts := alerts_for(event([object.union(control_finding, {"RecordState": "ARCHIVED"}), guardduty_finding]))
	count(alerts) == 1
	some a in alerts
	a.severity == "high"
	startswith(a.title, "Security Hub (GuardDuty): ")
}

test_other_sources_ignored if {
	count(alerts_for(object.union(event([control_finding]), {"source": "aws.config", "detail-type": "Config Rules Compliance Change"}))) == 0
}

test_fingerprint_ignores_time_and_ids if {
	later := object.union(control_finding, {
		"Id": "arn:aws:securityhub:us-east-1:111122223333:security-control/S3.8/finding/99999999-0000-4000-8000-000000000000",
		"UpdatedAt": "2025-04-01T00:00:00.000Z",
		"CreatedAt": "2025-04-01T00:00:00.000Z",
	})
	later_event := object.union(event([later]), {"id": "ffffffff-0000-4000-8000-000000000000", "time": "2025-04-01T00:00:01Z"})
	some a in alerts_for(event([control_finding]))
	some b in alerts_for(later_event)
	a.fingerprint == b.fingerprint
}

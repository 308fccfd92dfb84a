# Amazon GuardDuty findings, as delivered by Amazon EventBridge:
#   {"version", "id", "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
#    "account", "time", "region", "resources", "detail": {<GuardDuty finding>}}
#
# Alerts on: every active GuardDuty finding (one alert per event).
#
# Ignored (no alert):
#   - events that are not GuardDuty findings (other sources or detail-types);
#   - archived findings (detail.service.archived == true): a suppression rule or an
#     analyst has already closed them;
#   - sample findings made by the CreateSampleFindings API
#     (detail.service.additionalInfo.sample == true), and "Canary:" integration-test
#     finding types, which never describe real activity.
#
# Severity: GuardDuty's numeric detail.severity, using GuardDuty's own bands:
#   0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0-10.0 critical (missing: medium).
#
# Fingerprint: finding type + account + region + affected resource. GuardDuty keeps
# updating a finding as activity repeats (count, eventLastSeen, updatedAt change), and
# the same activity can be reported again under a new finding id; none of those
# volatile fields is part of the fingerprint.
package ingest.guardduty

finding := object.get(input, "detail", {})

region := object.get(finding, "region", object.get(input, "region", ""))

account := object.get(finding, "accountId", object.get(input, "account", ""))

finding_type := object.get(finding, "type", "")

resource := object.get(finding, "resource", {})

resource_type := object.get(resource, "resourceType", "Unknown")

is_finding if {
	input.source == "aws.guardduty"
	input["detail-type"] == "GuardDuty Finding"
	finding_type != ""
}

noise if object.get(finding, ["service", "archived"], false) == true

noise if object.get(finding, ["service", "additionalInfo", "sample"], false) == true

noise if startswith(finding_type, "Canary:")

alerts contains {
	"title": title,
	"description": description,
	"attributes": attributes,
	"tags": tags,
	"severity": severity,
	"fingerprint": fingerprint,
} if {
	is_finding
	not noise
}

# --- title, description ---------------------------------------------------

title := sprintf("GuardDuty: %s on %s in %s", [finding_type, resource_label, region])

description := sprintf("%s (GuardDuty severity %v, seen %v time(s), last %s)", [
	object.get(finding, "description", object.get(finding, "title", finding_type)),
	raw_severity,
	object.get(finding, ["service", "count"], 1),
	object.get(finding, ["service", "eventLastSeen"], object.get(finding, "updatedAt", "unknown")),
])

# --- the affected resource --------------------------------------------------

access_key := object.get(resource, "accessKeyDetails", {})

instance_id := object.get(resource, ["instanceDetails", "instanceId"], "")

resource_label := sprintf("AccessKey %s (%s)", [
	object.get(access_key, "accessKeyId", "unknown"),
	object.get(access_key, "userName", "unknown"),
]) if {
	resource_type == "AccessKey"
} else := sprintf("Instance %s", [instance_id]) if {
	resource_type == "Instance"
	instance_id != ""
} else := sprintf("S3Bucket %s", [resource.s3BucketDetails[0].name]) if {
	resource_type == "S3Bucket"
} else := sprintf("EKS cluster %s", [resource.eksClusterDetails.name]) if {
	resource.eksClusterDetails.name
} else := sprintf("ECS cluster %s", [resource.ecsClusterDetails.name]) if {
	resource.ecsClusterDetails.name
} else := sprintf("RDS instance %s", [resource.rdsDbInstanceDetails.dbInstanceIdentifier]) if {
	resource.rdsDbInstanceDetails.dbInstanceIdentifier
} else := sprintf("Lambda %s", [resource.lambdaDetails.functionName]) if {
	resource.lambdaDetails.functionName
} else := resource_type

# --- severity ---------------------------------------------------------------

raw_severity := object.get(finding, "severity", 5)

severity := "critical" if {
	raw_severity >= 9
} else := "high" if {
	raw_severity >= 7
} else := "medium" if {
	raw_severity >= 4
} else := "low"

# --- fingerprint ------------------------------------------------------------

fingerprint := {
	"type": finding_type,
	"account": account,
	"region": region,
	"resource": resource_label,
}

# --- tags -------------------------------------------------------------------

# Finding types read ThreatPurpose:ResourceTypeAffected/ThreatFamilyName...
threat_purpose := split(finding_type, ":")[0]

tags := ["aws", "guardduty", threat_purpose]

# --- attributes -------------------------------------------------------------

console_link := sprintf(
	"https://%s.console.aws.amazon.com/guardduty/home?region=%s#/findings?macros=current&fId=%s",
	[region, region, object.get(finding, "id", "")],
)

iam_user_link(user) := sprintf("https://console.aws.amazon.com/iam/home#/users/details/%s", [user]) if {
	object.get(access_key, "userType", "") == "IAMUser"
} else := ""

action := object.get(finding, ["service", "action"], {})

# The remote party, wherever the action type puts it.
remote_ip_details contains d if {
	some kind in ["awsApiCallAction", "networkConnectionAction", "kubernetesApiCallAction", "rdsLoginAttemptAction"]
	d := action[kind].remoteIpDetails
}

remote_ip_details contains d if {
	some probe in action.portProbeAction.portProbeDetails
	d := probe.remoteIpDetails
}

base_attributes := [
	{"key": "finding_type", "value": finding_type, "link": console_link},
	{"key": "account", "value": account, "link": ""},
	{"key": "region", "value": region, "link": ""},
	{"key": "resource_type", "value": resource_type, "link": ""},
	{"key": "access_key_id", "value": object.get(access_key, "accessKeyId", ""), "link": ""},
	{"key": "user", "value": object.get(access_key, "userName", ""), "link": iam_user_link(object.get(access_key, "userName", ""))},
	{
		"key": "instance_id", "value": instance_id,
		"link": sprintf("https://%s.console.aws.amazon.com/ec2/home?region=%s#InstanceDetails:instanceId=%s", [region, region, instance_id]),
	},
	{"key": "api", "value": object.get(action, ["awsApiCallAction", "api"], ""), "link": ""},
	{"key": "domain", "value": object.get(action, ["dnsRequestAction", "domain"], ""), "link": ""},
	{"key": "action_type", "value": object.get(action, "actionType", ""), "link": ""},
]

ip_attributes := [a |
	some d in remote_ip_details
	some a in [
		{"key": "remote_ip", "value": object.get(d, "ipAddressV4", ""), "link": ""},
		{"key": "country", "value": object.get(d, ["country", "countryName"], ""), "link": ""},
		{"key": "asn_org", "value": object.get(d, ["organization", "asnOrg"], ""), "link": ""},
	]
]

private_ip_attributes := [a |
	some nic in object.get(resource, ["instanceDetails", "networkInterfaces"], [])
	some a in [
		{"key": "private_ip", "value": object.get(nic, "privateIpAddress", ""), "link": ""},
		{"key": "public_ip", "value": object.get(nic, "publicIp", ""), "link": ""},
	]
]

instance_tag_attributes := [a |
	some t in object.get(resource, ["instanceDetails", "tags"], [])
	lower(object.get(t, "key", "")) in {"name", "environment", "team", "owner"}
	a := {"key": sprintf("tag:%s", [t.key]), "value": object.get(t, "value", ""), "link": ""}
]

threat_attributes := [a |
	some ti in object.get(finding, ["service", "evidence", "threatIntelligenceDetails"], [])
	some name in object.get(ti, "threatNames", [])
	a := {"key": "threat", "value": name, "link": ""}
]

attributes := [a |
	some a in array.concat(
		array.concat(base_attributes, ip_attributes),
		array.concat(private_ip_attributes, array.concat(instance_tag_attributes, threat_attributes)),
	)
	usable(a.value)
]

usable(v) if {
	is_string(v)
	v != ""
}

usable(v) if is_number(v)

usable(v) if is_boolean(v)

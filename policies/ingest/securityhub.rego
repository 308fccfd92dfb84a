# AWS Security Hub findings in the AWS Security Finding Format (ASFF), as delivered by
# Amazon EventBridge:
#   {"version", "id", "detail-type": "Security Hub Findings - Imported",
#    "source": "aws.securityhub", "account", "time", "region", "resources",
#    "detail": {"findings": [<ASFF finding>, ...]}}
# "Security Hub Findings - Custom Action" events (an analyst sent findings on purpose)
# carry the same detail.findings array and are accepted too.
#
# Alerts on: each finding in detail.findings (one alert per finding).
#
# Ignored (no alert for that finding):
#   - Workflow.Status SUPPRESSED or RESOLVED: someone already decided about it;
#   - RecordState ARCHIVED: the provider says the finding is no longer current;
#   - Compliance.Status PASSED: a control check that passed is not a problem
#     (Security Hub sends them as INFORMATIONAL updates after a fix);
#   - events from other sources or detail-types.
#
# Severity: Severity.Label as is (INFORMATIONAL info, LOW low, MEDIUM medium, HIGH high,
#   CRITICAL critical); without a label, Severity.Normalized with the ASFF bands
#   (0 info, 1-39 low, 40-69 medium, 70-89 high, 90-100 critical); otherwise medium.
#
# Fingerprint: GeneratorId (the rule or control that fired) + account + the sorted ids of
# the affected resources. Timestamps, finding ids and workflow state are left out, so the
# same control failing again on the same resource joins the same ticket.
package ingest.securityhub

accepted_detail_types := {"Security Hub Findings - Imported", "Security Hub Findings - Custom Action"}

is_event if {
	input.source == "aws.securityhub"
	input["detail-type"] in accepted_detail_types
}

noise(f) if object.get(f, ["Workflow", "Status"], "NEW") in {"SUPPRESSED", "RESOLVED"}

noise(f) if object.get(f, "RecordState", "ACTIVE") == "ARCHIVED"

noise(f) if object.get(f, ["Compliance", "Status"], "") == "PASSED"

alerts contains {
	"title": title(f),
	"description": description(f),
	"attributes": attributes(f),
	"tags": tags(f),
	"severity": severity(f),
	"fingerprint": fingerprint(f),
} if {
	is_event
	some f in object.get(input, ["detail", "findings"], [])
	is_object(f)
	not noise(f)
}

# --- title, description -----------------------------------------------------

product(f) := object.get(f, "ProductName", object.get(f, ["ProductFields", "aws/securityhub/ProductName"], "Security Hub"))

first_resource(f) := object.get(f, "Resources", [{}])[0]

resource_label(f) := sprintf("%s %s", [
	object.get(first_resource(f), "Type", "resource"),
	object.get(first_resource(f), "Id", "unknown"),
])

finding_title(f) := object.get(f, "Title", object.get(f, "GeneratorId", "finding"))

title(f) := sprintf("Security Hub: %s on %s", [finding_title(f), resource_label(f)]) if {
	product(f) == "Security Hub"
} else := sprintf("Security Hub (%s): %s on %s", [product(f), finding_title(f), resource_label(f)])

description(f) := d if {
	rec := object.get(f, ["Remediation", "Recommendation", "Text"], "")
	rec != ""
	d := sprintf("%s\n\nRemediation: %s", [object.get(f, "Description", ""), rec])
} else := object.get(f, "Description", finding_title(f))

# --- severity ---------------------------------------------------------------

label_severity := {
	"INFORMATIONAL": "info",
	"LOW": "low",
	"MEDIUM": "medium",
	"HIGH": "high",
	"CRITICAL": "critical",
}

severity(f) := s if {
	s := label_severity[upper(object.get(f, ["Severity", "Label"], ""))]
} else := normalized_severity(f.Severity.Normalized) if {
	is_number(f.Severity.Normalized)
} else := "medium"

normalized_severity(n) := "critical" if {
	n >= 90
} else := "high" if {
	n >= 70
} else := "medium" if {
	n >= 40
} else := "low" if {
	n >= 1
} else := "info"

# --- fingerprint ------------------------------------------------------------

fingerprint(f) := {
	"generator": object.get(f, "GeneratorId", ""),
	"account": object.get(f, "AwsAccountId", ""),
	"resources": sort([id | some r in object.get(f, "Resources", []); id := object.get(r, "Id", "")]),
}

# --- tags -------------------------------------------------------------------

# Types read namespace/category/classifier; the first two parts are the useful tag
# (e.g. "TTPs/Initial Access", "Software and Configuration Checks/Vulnerabilities").
type_tags(f) := {t |
	some typ in object.get(f, "Types", [])
	parts := split(typ, "/")
	count(parts) >= 2
	t := concat("/", [parts[0], parts[1]])
}

tags(f) := array.concat(["aws", "securityhub", product(f)], sort([t | some t in type_tags(f)]))

# --- attributes -------------------------------------------------------------

region(f) := object.get(f, "Region", object.get(input, "region", ""))

control_id(f) := object.get(f, ["Compliance", "SecurityControlId"], object.get(f, ["ProductFields", "ControlId"], ""))

base_attributes(f) := [
	{"key": "account", "value": object.get(f, "AwsAccountId", ""), "link": ""},
	{"key": "region", "value": region(f), "link": ""},
	{"key": "product", "value": product(f), "link": ""},
	{"key": "generator_id", "value": object.get(f, "GeneratorId", ""), "link": ""},
	{"key": "control", "value": control_id(f), "link": object.get(f, ["Remediation", "Recommendation", "Url"], "")},
	{"key": "compliance_status", "value": object.get(f, ["Compliance", "Status"], ""), "link": ""},
	{"key": "workflow_status", "value": object.get(f, ["Workflow", "Status"], ""), "link": ""},
	{"key": "finding_id", "value": object.get(f, "Id", ""), "link": ""},
	{"key": "src_ip", "value": object.get(f, ["Network", "SourceIpV4"], ""), "link": ""},
	{"key": "dst_ip", "value": object.get(f, ["Network", "DestinationIpV4"], ""), "link": ""},
	{
		"key": "remote_ip",
		"value": object.get(f, ["Action", "AwsApiCallAction", "RemoteIpDetails", "IpAddressV4"], ""),
		"link": "",
	},
]

resource_attributes(f) := [a |
	some r in object.get(f, "Resources", [])
	some a in [
		{"key": "resource", "value": object.get(r, "Id", ""), "link": ""},
		{"key": "resource_type", "value": object.get(r, "Type", ""), "link": ""},
	]
]

cve_attributes(f) := [a |
	some v in object.get(f, "Vulnerabilities", [])
	a := {"key": "cve", "value": object.get(v, "Id", ""), "link": sprintf("https://nvd.nist.gov/vuln/detail/%s", [object.get(v, "Id", "")])}
]

attributes(f) := [a |
	some a in array.concat(base_attributes(f), array.concat(resource_attributes(f), cve_attributes(f)))
	usable(a.value)
]

usable(v) if {
	is_string(v)
	v != ""
}

usable(v) if is_number(v)

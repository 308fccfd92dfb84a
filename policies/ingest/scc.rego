# Google Cloud Security Command Center (SCC) finding notifications, as published to
# Pub/Sub by a NotificationConfig / continuous export. Input is the decoded message data:
#   {"notificationConfigName", "finding": {name, parent, resourceName, state, category,
#    externalUri, sourceProperties, securityMarks, eventTime, createTime, severity,
#    findingClass, mute, mitreAttack, access, indicator, vulnerability, ...},
#    "resource": {name, displayName, project, projectDisplayName, type, ...}}
#
# Alerts on: every ACTIVE, unmuted finding.
#
# Ignored (no alert):
#   - state INACTIVE (or anything but ACTIVE): the finding was fixed or went away,
#     SCC sends that as an update of the same finding;
#   - mute MUTED: someone (or a mute rule) silenced that finding on purpose;
#   - messages without a finding (e.g. resource-only notifications).
#
# Severity: finding.severity as is (CRITICAL critical, HIGH high, MEDIUM medium, LOW low).
#   SEVERITY_UNSPECIFIED or missing: medium for findingClass THREAT, low otherwise.
#
# Fingerprint: category + resourceName + source (finding.parent). eventTime, createTime
# and the finding id are left out, so the same detector firing again on the same
# resource joins the same ticket.
package ingest.scc

finding := object.get(input, "finding", {})

resource := object.get(input, "resource", {})

category := object.get(finding, "category", "")

resource_name := object.get(finding, "resourceName", object.get(resource, "name", ""))

finding_class := object.get(finding, "findingClass", "")

noise if object.get(finding, "state", "") != "ACTIVE"

noise if object.get(finding, "mute", "") == "MUTED"

alerts contains {
	"title": title,
	"description": description,
	"attributes": attributes,
	"tags": tags,
	"severity": severity,
	"fingerprint": fingerprint,
} if {
	category != ""
	not noise
}

# --- title, description -----------------------------------------------------

# The last path segment of a full resource name, e.g. "web-frontend-1" for
# //compute.googleapis.com/projects/p/zones/z/instances/web-frontend-1.
short_resource := n if {
	n := object.get(resource, "displayName", "")
	n != ""
} else := n if {
	parts := split(resource_name, "/")
	n := parts[count(parts) - 1]
	n != ""
} else := "unknown resource"

project := p if {
	p := object.get(resource, "projectDisplayName", "")
	p != ""
} else := p if {
	p := object.get(finding, ["sourceProperties", "properties_project_id"], "")
	p != ""
} else := ""

title := sprintf("SCC: %s on project %s", [category, project]) if {
	project == short_resource
} else := sprintf("SCC: %s on %s in project %s", [category, short_resource, project]) if {
	project != ""
} else := sprintf("SCC: %s on %s", [category, short_resource])

description := d if {
	d := object.get(finding, "description", "")
	d != ""
} else := d if {
	d := object.get(finding, ["sourceProperties", "Explanation"], "")
	d != ""
} else := sprintf("%s finding (%s) on %s", [category, finding_class, resource_name])

# --- severity ---------------------------------------------------------------

scc_severity := {"CRITICAL": "critical", "HIGH": "high", "MEDIUM": "medium", "LOW": "low"}

severity := s if {
	s := scc_severity[object.get(finding, "severity", "")]
} else := "medium" if {
	finding_class == "THREAT"
} else := "low"

# --- fingerprint ------------------------------------------------------------

fingerprint := {
	"category": category,
	"resource": resource_name,
	"source": object.get(finding, "parent", ""),
}

# --- tags -------------------------------------------------------------------

mitre := object.get(finding, "mitreAttack", {})

tags := array.concat(
	["gcp", "scc"],
	[t |
		some t in array.concat(
			[finding_class, object.get(mitre, "primaryTactic", "")],
			object.get(mitre, "additionalTactics", []),
		)
		t != ""
	],
)

# --- attributes -------------------------------------------------------------

external_uri := object.get(finding, "externalUri", "")

access := object.get(finding, "access", {})

base_attributes := [
	{"key": "category", "value": category, "link": ""},
	{"key": "finding_class", "value": finding_class, "link": ""},
	{"key": "resource", "value": resource_name, "link": external_uri},
	{"key": "resource_type", "value": object.get(resource, "type", ""), "link": ""},
	{"key": "project", "value": project, "link": ""},
	{"key": "source", "value": object.get(resource, "parentDisplayName", ""), "link": ""},
	{"key": "finding", "value": object.get(finding, "name", ""), "link": ""},
	{"key": "principal", "value": object.get(access, "principalEmail", ""), "link": ""},
	{"key": "caller_ip", "value": object.get(access, "callerIp", ""), "link": ""},
	{"key": "caller_country", "value": object.get(access, ["callerIpGeo", "regionCode"], ""), "link": ""},
	{"key": "method", "value": object.get(access, "methodName", ""), "link": ""},
	{"key": "cve", "value": object.get(finding, ["vulnerability", "cve", "id"], ""), "link": ""},
]

indicator_attributes := array.concat(
	[{"key": "indicator_ip", "value": ip, "link": ""} | some ip in object.get(finding, ["indicator", "ipAddresses"], [])],
	[{"key": "indicator_domain", "value": d, "link": ""} | some d in object.get(finding, ["indicator", "domains"], [])],
)

technique_attributes := [{"key": "mitre_technique", "value": t, "link": ""} |
	some t in array.concat(object.get(mitre, "primaryTechniques", []), object.get(mitre, "additionalTechniques", []))
]

attributes := [a |
	some a in array.concat(base_attributes, array.concat(indicator_attributes, technique_attributes))
	is_string(a.value)
	a.value != ""
]

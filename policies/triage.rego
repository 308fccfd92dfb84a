# Triage: decides what happens to an alert after the ingest policy made it and the
# enrichment prompts ran.
#
# Input:
#   {"alert": {"id", "schema", "metadata": {"title", "description", "attributes", "tags",
#              "channel", "severity"}, "data": <raw payload>},
#    "enrich": [{"id", "prompt", "result"}, ...]}
#
# Decisions (first match wins; `publish` has exactly one value for every input):
#   1. discard - alerts tagged "test" (products' own test events, synthetic checks);
#   2. discard - alerts whose source/remote IP is one of our authorised vulnerability
#                scanners (`authorized_scanners`), which trip IDS and brute-force rules
#                on every scheduled scan;
#   3. notice  - severity "info" or "low": worth a line in the channel, not a ticket;
#   4. alert   - everything else (the default).
#
# Also:
#   - severity is raised to "critical" when an enrichment prompt answered with
#     {"verdict": "malicious"} for a high-severity alert;
#   - a "runbook" attribute pointing at the schema's runbook is added to every alert.
package triage

# Authorised scanners (documentation range: replace with your own scanner addresses).
authorized_scanners := ["192.0.2.240/28"]

# Attribute keys that hold the party initiating the traffic or the call.
source_ip_keys := {"src_ip", "remote_ip", "client_ip", "caller_ip", "aws_source_ip"}

runbook_base := "https://wiki.example.com/security/runbooks"

metadata := object.get(input, ["alert", "metadata"], {})

schema := object.get(input, ["alert", "schema"], "unknown")

alert_severity := object.get(metadata, "severity", "medium")

# --- publish ----------------------------------------------------------------

default publish := "alert"

publish := "discard" if {
	is_test
} else := "discard" if {
	from_authorized_scanner
} else := "notice" if {
	alert_severity in {"info", "low"}
}

is_test if {
	some tag in object.get(metadata, "tags", [])
	is_string(tag)
	lower(tag) == "test"
}

from_authorized_scanner if {
	some a in object.get(metadata, "attributes", [])
	object.get(a, "key", "") in source_ip_keys
	ip := object.get(a, "value", "")
	is_string(ip)
	regex.match(`^[0-9]{1,3}(\.[0-9]{1,3}){3}$`, ip)
	some cidr in authorized_scanners
	net.cidr_contains(cidr, ip)
}

# --- severity ---------------------------------------------------------------

severity := "critical" if {
	alert_severity == "high"
	some e in object.get(input, "enrich", [])
	is_object(e.result)
	lower(object.get(e.result, "verdict", "")) == "malicious"
}

# --- extra attributes -------------------------------------------------------

attr := [{
	"key": "runbook",
	"value": sprintf("%s/%s", [runbook_base, schema]),
	"link": sprintf("%s/%s", [runbook_base, schema]),
}]

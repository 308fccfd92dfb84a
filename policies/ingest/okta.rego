# Okta System Log events (System Log API / event hook / log stream, one LogEvent each):
#   {"uuid", "published", "eventType", "version", "severity", "displayMessage",
#    "actor": {"id", "type", "alternateId", "displayName"},
#    "client": {"ipAddress", "userAgent": {...}, "geographicalContext": {...}, "zone"},
#    "outcome": {"result", "reason"}, "target": [{...}], "securityContext": {...},
#    "debugContext": {"debugData": {...}}, "transaction": {...}, ...}
#
# Alerts on (see `watched` below for the full list and severities):
#   - ThreatInsight and blocked requests (security.threat.detected, security.request.blocked);
#   - account lockouts and end-user reports of suspicious activity;
#   - MFA factor deactivation / reset / bypass attempts;
#   - admin privilege grants to users and groups, Okta support impersonation;
#   - sign-on / password / MFA policy and policy-rule changes, API token creation;
#   - failed or denied sign-ins that Okta flags as suspicious
#     (debugData.threatSuspected "true", or a HIGH risk level).
#
# Ignored (no alert): every other event type, and in particular routine successful
#   sign-ins (user.session.start SUCCESS), plain failed passwords that Okta does not
#   flag as suspicious (the lockout event covers repeated failures), and all
#   lifecycle/app-assignment noise.
#
# Severity: fixed per event type in `watched` (Okta's own "severity" field is INFO or
#   WARN for almost all of these, so it cannot rank them); suspicious sign-ins are
#   high when Okta's risk level is HIGH, medium otherwise.
#
# Fingerprint: event type + actor + targets (+ client IP for ThreatInsight events, whose
# actor is usually unknown). Event uuids, transaction ids and timestamps are left out, so
# e.g. repeated lockouts of one user join one ticket.
package ingest.okta

watched := {
	"security.threat.detected": {"severity": "high", "summary": "ThreatInsight detected a threat"},
	"security.request.blocked": {"severity": "medium", "summary": "Request blocked by Okta"},
	"user.account.lock": {"severity": "medium", "summary": "Account locked out"},
	"user.account.report_suspicious_activity_by_enduser": {"severity": "high", "summary": "User reported suspicious activity"},
	"user.mfa.factor.deactivate": {"severity": "medium", "summary": "MFA factor deactivated"},
	"user.mfa.factor.reset_all": {"severity": "high", "summary": "All MFA factors reset"},
	"user.mfa.attempt_bypass": {"severity": "high", "summary": "MFA bypass attempted"},
	"user.account.privilege.grant": {"severity": "high", "summary": "Admin privilege granted"},
	"group.privilege.grant": {"severity": "high", "summary": "Admin privilege granted to group"},
	"user.session.impersonation.initiate": {"severity": "high", "summary": "Okta support impersonation started"},
	"system.api_token.create": {"severity": "medium", "summary": "API token created"},
	"policy.lifecycle.update": {"severity": "medium", "summary": "Policy updated"},
	"policy.lifecycle.deactivate": {"severity": "medium", "summary": "Policy deactivated"},
	"policy.lifecycle.delete": {"severity": "medium", "summary": "Policy deleted"},
	"policy.rule.update": {"severity": "medium", "summary": "Policy rule updated"},
	"policy.rule.deactivate": {"severity": "medium", "summary": "Policy rule deactivated"},
	"policy.rule.delete": {"severity": "medium", "summary": "Policy rule deleted"},
}

sign_in_events := {
	"user.session.start",
	"user.authentication.sso",
	"user.authentication.auth_via_mfa",
	"user.authentication.verify",
}

event_type := object.get(input, "eventType", "")

outcome := object.get(input, ["outcome", "result"], "UNKNOWN")

debug_data := object.get(input, ["debugContext", "debugData"], {})

risk := r if {
	r := debug_data.risk
	is_string(r)
} else := ""

suspicious if object.get(debug_data, "threatSuspected", "false") in {"true", true}

suspicious if contains(risk, "level=HIGH")

# One detection per event: the watched list and the sign-in rule never overlap.
detection := watched[event_type]

detection := {"severity": s, "summary": "Suspicious sign-in failed"} if {
	event_type in sign_in_events
	outcome in {"FAILURE", "DENY"}
	suspicious
	s := sign_in_severity
}

sign_in_severity := "high" if {
	contains(risk, "level=HIGH")
} else := "medium"

alerts contains {
	"title": title,
	"description": description,
	"attributes": attributes,
	"tags": tags,
	"severity": detection.severity,
	"fingerprint": fingerprint,
} if {
	detection
}

# --- title, description -----------------------------------------------------

actor := object.get(input, "actor", {})

actor_id := object.get(actor, "alternateId", object.get(actor, "displayName", "unknown"))

targets := [t | some t in object.get(input, "target", []); is_object(t)]

user_targets := [u |
	some t in targets
	t.type == "User"
	u := object.get(t, "alternateId", object.get(t, "displayName", ""))
	u != ""
]

known(x) if {
	is_string(x)
	not lower(x) in {"", "unknown"}
}

# Who the event is about: the target user when there is one, else the actor.
subject := user_targets[0] if {
	count(user_targets) > 0
} else := actor_id

client_ip := object.get(input, ["client", "ipAddress"], "")

suffix := sprintf("(%s, %s)", [event_type, outcome])

title := sprintf("Okta: %s for %s by %s %s", [detection.summary, subject, actor_id, suffix]) if {
	subject != actor_id
	known(actor_id)
} else := sprintf("Okta: %s for %s from %s %s", [detection.summary, subject, client_ip, suffix]) if {
	known(subject)
	client_ip != ""
} else := sprintf("Okta: %s for %s %s", [detection.summary, subject, suffix]) if {
	known(subject)
} else := sprintf("Okta: %s from %s %s", [detection.summary, client_ip, suffix]) if {
	client_ip != ""
} else := sprintf("Okta: %s %s", [detection.summary, suffix])

description := sprintf("%s. Actor: %s. Outcome: %s%s.", [
	object.get(input, "displayMessage", detection.summary),
	actor_id,
	outcome,
	reason_text,
])

reason_text := sprintf(" (%s)", [r]) if {
	r := object.get(input, ["outcome", "reason"], "")
	is_string(r)
	r != ""
} else := ""

# --- fingerprint ------------------------------------------------------------

fingerprint := {
	"event_type": event_type,
	"actor": actor_id,
	"targets": sort([object.get(t, "alternateId", object.get(t, "id", "")) | some t in targets]),
	"client_ip": fingerprint_ip,
}

fingerprint_ip := client_ip if {
	startswith(event_type, "security.")
} else := ""

# --- tags -------------------------------------------------------------------

tags := ["okta", split(event_type, ".")[0]]

# --- attributes -------------------------------------------------------------

geo := object.get(input, ["client", "geographicalContext"], {})

base_attributes := [
	{"key": "event_type", "value": event_type, "link": ""},
	{"key": "actor", "value": actor_id, "link": ""},
	{"key": "actor_name", "value": object.get(actor, "displayName", ""), "link": ""},
	{"key": "client_ip", "value": client_ip, "link": ""},
	{"key": "country", "value": object.get(geo, "country", ""), "link": ""},
	{"key": "city", "value": object.get(geo, "city", ""), "link": ""},
	{"key": "user_agent", "value": object.get(input, ["client", "userAgent", "rawUserAgent"], ""), "link": ""},
	{"key": "outcome", "value": outcome, "link": ""},
	{"key": "reason", "value": object.get(input, ["outcome", "reason"], ""), "link": ""},
	{"key": "as_org", "value": object.get(input, ["securityContext", "asOrg"], ""), "link": ""},
	{"key": "risk", "value": risk, "link": ""},
	{"key": "threat_detections", "value": object.get(debug_data, "threatDetections", ""), "link": ""},
]

target_attributes := [a |
	some t in targets
	a := {
		"key": sprintf("target_%s", [lower(object.get(t, "type", "object"))]),
		"value": object.get(t, "alternateId", object.get(t, "displayName", "")),
		"link": "",
	}
]

attributes := [a |
	some a in array.concat(base_attributes, target_attributes)
	is_string(a.value)
	a.value != ""
]

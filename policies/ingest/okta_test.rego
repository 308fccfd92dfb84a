package ingest.okta_test

jane := {"id": "00u1a2b3c4d5e6f7g8h9", "type": "User", "alternateId": "jane.doe@example.com", "displayName": "Jane Doe"}

admin := {"id": "00u9z8y7x6w5v4u3t2s1", "type": "User", "alternateId": "it.admin@example.com", "displayName": "IT Admin"}

base := {
	"uuid": "b1c2d3e4-f5a6-11ef-9a1b-0123456789ab",
	"published": "2025-03-05T08:12:44.901Z",
	"version": "0",
	"severity": "INFO",
	"actor": jane,
	"client": {
		"ipAddress": "203.0.113.201",
		"userAgent": {"rawUserAgent": "Mozilla/5.0", "os": "Mac OS X", "browser": "CHROME"},
		"geographicalContext": {"city": "Sao Paulo", "country": "Brazil"},
	},
	"outcome": {"result": "SUCCESS"},
	"target": [],
	"debugContext": {"debugData": {"requestUri": "/idp/idx/identify"}},
	"transaction": {"type": "WEB", "id": "Z8exampleTransaction0001AAAA"},
}

event(patch) := object.union(base, patch)

alerts_for(evt) := alerts if {
	alerts := data.ingest.okta.alerts with input as evt
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

lockout := event({
	"eventType": "user.account.lock",
	"displayMessage": "Max sign in attempts exceeded",
	"outcome": {"result": "FAILURE", "reason": "LOCKED_OUT"},
})

test_lockout_alert if {
	alerts := alerts_for(lockout)
	count(alerts) == 1
	some a in alerts
	a.title == "Okta: Account locked out for jane.doe@example.com from 203.0.113.201 (user.account.lock, FAILURE)"
	a.severity == "medium"
	a.description == "Max sign in attempts exceeded. Actor: jane.doe@example.com. Outcome: FAILURE (LOCKED_OUT)."
	has_attr(a, "actor", "jane.doe@example.com")
	has_attr(a, "client_ip", "203.0.113.201")
	has_attr(a, "country", "Brazil")
	"okta" in a.tags
	a.fingerprint == {"event_type": "user.account.lock", "actor": "jane.doe@example.com", "targets": [], "client_ip": ""}
}

test_privilege_grant_names_target_and_actor if {
	evt := event({
		"eventType": "user.account.privilege.grant",
		"displayMessage": "Grant user privilege",
		"actor": admin,
		"target": [
			{"id": "00u5k6l7m8n9o0p1q2r3", "type": "User", "alternateId": "temp.contractor@example.com", "displayName": "Temp Contractor"},
			{"id": "ra1b2c3d4e5f6g7h8i9", "type": "ROLE", "alternateId": "unknown", "displayName": "Super Administrator"},
		],
	})
	some a in alerts_for(evt)
	a.title == "Okta: Admin privilege granted for temp.contractor@example.com by it.admin@example.com (user.account.privilege.grant, SUCCESS)"
	a.severity == "high"
	has_attr(a, "target_user", "temp.contractor@example.com")
}

test_threat_detected_without_known_actor if {
	evt := event({
		"eventType": "security.threat.detected",
		"displayMessage": "Request from suspicious actor",
		"actor": {"id": "unknown", "type": "User", "alternateId": "unknown", "displayName": "unknown"},
		"outcome": {"result": "DENY", "reason": "Password Spray"},
	})
	some a in alerts_for(evt)
	a.title == "Okta: ThreatInsight detected a threat from 203.0.113.201 (security.threat.detected, DENY)"
	a.severity == "high"
	a.fingerprint.client_ip == "203.0.113.201"
}

sign_in(result, debug) := event({
	"eventType": "user.session.start",
	"displayMessage": "User login to Okta",
	"outcome": {"result": result, "reason": "INVALID_CREDENTIALS"},
	"debugContext": {"debugData": debug},
})

test_suspicious_failed_sign_in if {
	some a in alerts_for(sign_in("FAILURE", {"threatSuspected": "true"}))
	a.severity == "medium"
	a.title == "Okta: Suspicious sign-in failed for jane.doe@example.com from 203.0.113.201 (user.session.start, FAILURE)"
	some b in alerts_for(sign_in("FAILURE", {"threatSuspected": "false", "risk": "{reasons=New Device, New IP, level=HIGH}"}))
	b.severity == "high"
}

test_routine_sign_ins_ignored if {
	count(alerts_for(sign_in("SUCCESS", {"threatSuspected": "false"}))) == 0
	count(alerts_for(sign_in("FAILURE", {"threatSuspected": "false"}))) == 0
	count(alerts_for(sign_in("FAILURE", {"risk": "{reasons=New Device, level=LOW}"}))) == 0
}

test_successful_sign_in_even_if_flagged_ignored if {
	count(alerts_for(sign_in("SUCCESS", {"threatSuspected": "true"}))) == 0
}

test_unwatched_event_types_ignored if {
	every t in ["application.user_membership.add", "user.lifecycle.create", "user.authentication.sso", "group.user_membership.add"] {
		count(alerts_for(event({"eventType": t}))) == 0
	}
}

test_watched_event_severities if {
	expected := {
		"security.request.blocked": "medium",
		"user.mfa.factor.deactivate": "medium",
		"user.mfa.factor.reset_all": "high",
		"user.mfa.attempt_bypass": "high",
		"group.privilege.grant": "high",
		"user.session.impersonation.initiate": "high",
		"system.api_token.create": "medium",
		"policy.lifecycle.update": "medium",
		"policy.rule.deactivate": "medium",
		"user.account.report_suspicious_activity_by_enduser": "high",
	}
	every t, sev in expected {
		alerts := alerts_for(event({"eventType": t}))
		count(alerts) == 1
		some a in alerts
		a.severity == sev
	}
}

test_fingerprint_ignores_uuid_time_and_transaction if {
	later := object.union(lockout, {
		"uuid": "00000000-0000-4000-8000-000000000000",
		"published": "2025-03-09T00:00:00.000Z",
		"transaction": {"id": "Z9otherTransaction"},
		"client": {"ipAddress": "198.51.100.44"},
	})
	some a in alerts_for(lockout)
	some b in alerts_for(later)
	a.fingerprint == b.fingerprint
}

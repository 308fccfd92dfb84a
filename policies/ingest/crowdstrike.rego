# CrowdStrike Falcon Streaming API events (as written by the Falcon SIEM Connector or
# forwarded by a streaming client):
#   {"metadata": {"customerIDString", "offset", "eventType", "eventCreationTime", "version"},
#    "event": {"ComputerName", "UserName", "DetectId", "DetectName", "DetectDescription",
#              "Severity", "SeverityName", "Tactic", "Technique", "Objective",
#              "FileName", "FilePath", "CommandLine", "SHA256String", "MD5String",
#              "FalconHostLink", "SensorId", "LocalIP", "MachineDomain",
#              "PatternDispositionDescription", ...}}
#
# Alerts on: metadata.eventType "DetectionSummaryEvent" (one alert per detection).
#
# Ignored (no alert): every other event type (AuthActivityAuditEvent,
#   UserActivityAuditEvent, RemoteResponseSessionStartEvent/EndEvent, HashSpreadingEvent,
#   IncidentSummaryEvent, FirewallMatchEvent, ...): console audit and telemetry, not
#   detections. Detection status updates arrive as UserActivityAuditEvent and are
#   ignored with them.
#
# Severity: SeverityName (Critical, High, Medium, Low, Informational) as is; without it,
#   the numeric Severity 5 critical, 4 high, 3 medium, 2 low, 1 info (values above 5 are
#   read on the 0-100 scale: 90+ critical, 70+ high, 40+ medium, 20+ low, else info).
#
# Fingerprint: sensor (or host name) + tactic + technique + file SHA256. DetectId,
# process ids, command lines and timestamps change with every detection; the same
# behaviour by the same file on the same host joins the same ticket.
package ingest.crowdstrike

event := object.get(input, "event", {})

ev(name) := v if {
	v := event[name]
	v != null
} else := ""

alerts contains {
	"title": title,
	"description": description,
	"attributes": attributes,
	"tags": tags,
	"severity": severity,
	"fingerprint": fingerprint,
} if {
	input.metadata.eventType == "DetectionSummaryEvent"
}

# --- title, description -----------------------------------------------------

host := h if {
	h := ev("ComputerName")
	h != ""
} else := "unknown host"

behaviour := sprintf("%s via %s", [ev("Tactic"), ev("Technique")]) if {
	ev("Tactic") != ""
	ev("Technique") != ""
} else := n if {
	n := ev("DetectName")
	n != ""
} else := "Detection"

title := sprintf("CrowdStrike: %s on %s (%s)", [behaviour, host, ev("FileName")]) if {
	ev("FileName") != ""
} else := sprintf("CrowdStrike: %s on %s", [behaviour, host])

description := sprintf("%s\n\nAction taken: %s", [ev("DetectDescription"), ev("PatternDispositionDescription")]) if {
	ev("DetectDescription") != ""
	ev("PatternDispositionDescription") != ""
} else := d if {
	d := ev("DetectDescription")
	d != ""
} else := behaviour

# --- severity ---------------------------------------------------------------

name_severity := {
	"critical": "critical",
	"high": "high",
	"medium": "medium",
	"low": "low",
	"informational": "info",
	"info": "info",
}

number_severity := {5: "critical", 4: "high", 3: "medium", 2: "low", 1: "info"}

severity := s if {
	is_string(ev("SeverityName"))
	s := name_severity[lower(ev("SeverityName"))]
} else := s if {
	s := number_severity[ev("Severity")]
} else := scaled_severity(ev("Severity")) if {
	is_number(ev("Severity"))
	ev("Severity") > 5
} else := "medium"

scaled_severity(n) := "critical" if {
	n >= 90
} else := "high" if {
	n >= 70
} else := "medium" if {
	n >= 40
} else := "low" if {
	n >= 20
} else := "info"

# --- fingerprint ------------------------------------------------------------

fingerprint := {
	"sensor": s,
	"tactic": ev("Tactic"),
	"technique": ev("Technique"),
	"sha256": ev("SHA256String"),
} if {
	s := ev("SensorId")
	s != ""
} else := {
	"sensor": host,
	"tactic": ev("Tactic"),
	"technique": ev("Technique"),
	"sha256": ev("SHA256String"),
}

# --- tags -------------------------------------------------------------------

tags := [t | some t in ["crowdstrike", ev("Tactic"), ev("Technique"), ev("Objective")]; is_string(t); t != ""]

# --- attributes -------------------------------------------------------------

# FalconHostLink is a plain console URL in the streaming API.
console_link := l if {
	l := ev("FalconHostLink")
	is_string(l)
	startswith(l, "https://")
} else := ""

sha256 := ev("SHA256String")

attributes := [a |
	some a in [
		{"key": "detect_id", "value": ev("DetectId"), "link": console_link},
		{"key": "host", "value": host, "link": console_link},
		{"key": "user", "value": ev("UserName"), "link": ""},
		{"key": "local_ip", "value": ev("LocalIP"), "link": ""},
		{"key": "domain", "value": ev("MachineDomain"), "link": ""},
		{"key": "sensor_id", "value": ev("SensorId"), "link": ""},
		{"key": "tactic", "value": ev("Tactic"), "link": ""},
		{"key": "technique", "value": ev("Technique"), "link": ""},
		{"key": "file_name", "value": ev("FileName"), "link": ""},
		{"key": "file_path", "value": ev("FilePath"), "link": ""},
		{"key": "command_line", "value": ev("CommandLine"), "link": ""},
		{"key": "parent_command_line", "value": ev("ParentCommandLine"), "link": ""},
		{"key": "sha256", "value": sha256, "link": vt_link(sha256)},
		{"key": "md5", "value": ev("MD5String"), "link": ""},
		{"key": "disposition", "value": ev("PatternDispositionDescription"), "link": ""},
		{"key": "ioc", "value": ev("IOCValue"), "link": ""},
	]
	usable(a.value)
]

vt_link(h) := sprintf("https://www.virustotal.com/gui/file/%s", [h]) if {
	is_string(h)
	h != ""
} else := ""

usable(v) if {
	is_string(v)
	v != ""
}

usable(v) if is_number(v)

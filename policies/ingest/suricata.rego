# Suricata EVE JSON records (eve.json, one record per event):
#   {"timestamp", "flow_id", "in_iface", "event_type", "src_ip", "src_port", "dest_ip",
#    "dest_port", "proto", "app_proto", "host",
#    "alert": {"action", "gid", "signature_id", "rev", "signature", "category",
#              "severity", "metadata": {...}},
#    "http" / "tls" / "dns" / "flow": {...}}
#
# Alerts on: records with event_type "alert".
#
# Ignored (no alert):
#   - every other event_type (flow, dns, http, tls, fileinfo, stats, anomaly, ...):
#     they are telemetry, not detections;
#   - Suricata's own stream-engine events (signatures starting "SURICATA STREAM ",
#     sids 2210000-2210999 in stream-events.rules): TCP reassembly anomalies that fire
#     constantly on busy links and almost never mean an attack.
#
# Severity: alert.severity, 1 (highest) -> high, 2 -> medium, 3 -> low, 4 and above -> info.
#
# Fingerprint: gid + signature id + source and destination address. Ports, flow ids and
# timestamps differ on every connection; the same signature between the same two hosts
# joins the same ticket.
package ingest.suricata

alert := object.get(input, "alert", {})

signature := object.get(alert, "signature", "")

noise if startswith(signature, "SURICATA STREAM ")

alerts contains {
	"title": title,
	"description": description,
	"attributes": attributes,
	"tags": tags,
	"severity": severity,
	"fingerprint": fingerprint,
} if {
	input.event_type == "alert"
	signature != ""
	not noise
}

src_ip := object.get(input, "src_ip", "")

dest_ip := object.get(input, "dest_ip", "")

# --- title, description -----------------------------------------------------

title := sprintf("Suricata: %s (%s -> %s:%v)", [signature, src_ip, dest_ip, object.get(input, "dest_port", "?")])

description := sprintf("%s. Category: %s. Action: %s. %s %s:%v -> %s:%v on %s (sid %v rev %v).", [
	signature,
	object.get(alert, "category", "unknown"),
	object.get(alert, "action", "unknown"),
	object.get(input, "proto", ""),
	src_ip, object.get(input, "src_port", "?"),
	dest_ip, object.get(input, "dest_port", "?"),
	object.get(input, "host", object.get(input, "in_iface", "unknown sensor")),
	object.get(alert, "signature_id", "?"),
	object.get(alert, "rev", "?"),
])

# --- severity ---------------------------------------------------------------

raw_severity := object.get(alert, "severity", 3)

severity := "high" if {
	raw_severity <= 1
} else := "medium" if {
	raw_severity == 2
} else := "low" if {
	raw_severity == 3
} else := "info"

# --- fingerprint ------------------------------------------------------------

fingerprint := {
	"gid": object.get(alert, "gid", 1),
	"signature_id": object.get(alert, "signature_id", 0),
	"src_ip": src_ip,
	"dest_ip": dest_ip,
}

# --- tags -------------------------------------------------------------------

meta := object.get(alert, "metadata", {})

tags := array.concat(
	["suricata", object.get(alert, "category", "uncategorized")],
	[t | some t in object.get(meta, "mitre_tactic_name", []); is_string(t)],
)

# --- attributes -------------------------------------------------------------

sid := object.get(alert, "signature_id", "")

base_attributes := [
	{"key": "signature", "value": signature, "link": ""},
	{"key": "signature_id", "value": sid, "link": ""},
	{"key": "src_ip", "value": src_ip, "link": ""},
	{"key": "src_port", "value": object.get(input, "src_port", ""), "link": ""},
	{"key": "dst_ip", "value": dest_ip, "link": ""},
	{"key": "dst_port", "value": object.get(input, "dest_port", ""), "link": ""},
	{"key": "proto", "value": object.get(input, "proto", ""), "link": ""},
	{"key": "app_proto", "value": object.get(input, "app_proto", ""), "link": ""},
	{"key": "action", "value": object.get(alert, "action", ""), "link": ""},
	{"key": "sensor", "value": object.get(input, "host", ""), "link": ""},
	{"key": "interface", "value": object.get(input, "in_iface", ""), "link": ""},
	{"key": "http_host", "value": object.get(input, ["http", "hostname"], ""), "link": ""},
	{"key": "http_url", "value": object.get(input, ["http", "url"], ""), "link": ""},
	{"key": "user_agent", "value": object.get(input, ["http", "http_user_agent"], ""), "link": ""},
	{"key": "tls_sni", "value": object.get(input, ["tls", "sni"], ""), "link": ""},
	{"key": "dns_query", "value": object.get(input, ["dns", "rrname"], ""), "link": ""},
	{"key": "file_sha256", "value": object.get(input, ["fileinfo", "sha256"], ""), "link": ""},
]

technique_attributes := [{"key": "mitre_technique", "value": t, "link": ""} |
	some t in object.get(meta, "mitre_technique_id", [])
]

attributes := [a |
	some a in array.concat(base_attributes, technique_attributes)
	usable(a.value)
]

usable(v) if {
	is_string(v)
	v != ""
}

usable(v) if is_number(v)

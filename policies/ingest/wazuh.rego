# Wazuh alerts (alerts.json lines, or the Wazuh integration/webhook payload):
#   {"timestamp", "id", "rule": {"level", "description", "id", "groups", "mitre": {...}},
#    "agent": {"id", "name", "ip"}, "manager", "decoder", "location", "full_log",
#    "data": {"srcip", "srcuser", "dstuser", ...}, "syscheck": {...}}
#
# Alerts on: rule.level 7 and above.
#
# Ignored (no alert):
#   - rule.level 0-6. In Wazuh's rule classification these are "ignored", system
#     notifications, successful logins (e.g. 5715 sshd authentication success, level 3),
#     user-generated errors and "low relevance attacks"; the Wazuh dashboard counts them
#     as low severity. Level 7 ("bad word" matches) and above are the first levels
#     Wazuh itself treats as worth a look;
#   - payloads without a rule.
#
# Severity: the Wazuh dashboard's own rule.level buckets:
#   7-11 medium, 12-14 high, 15 critical.
#
# Fingerprint: rule id + agent name. Source IPs, log lines, alert ids and timestamps
# differ between occurrences; the same rule on the same host joins the same ticket.
package ingest.wazuh

min_level := 7

rule := object.get(input, "rule", {})

level := object.get(rule, "level", 0)

agent := object.get(input, "agent", {})

data_field := object.get(input, "data", {})

alerts contains {
	"title": title,
	"description": description,
	"attributes": attributes,
	"tags": tags,
	"severity": severity,
	"fingerprint": fingerprint,
} if {
	is_number(level)
	level >= min_level
	object.get(rule, "id", "") != ""
}

# --- title, description -----------------------------------------------------

rule_description := trim_right(object.get(rule, "description", "Wazuh rule"), ".")

agent_name := object.get(agent, "name", object.get(input, ["manager", "name"], "unknown agent"))

title := sprintf("Wazuh: %s on %s (rule %v, level %v)", [rule_description, agent_name, rule.id, level])

description := sprintf("%s\n\n%s", [rule_description, l]) if {
	l := object.get(input, "full_log", "")
	l != ""
} else := rule_description

# --- severity ---------------------------------------------------------------

severity := "critical" if {
	level >= 15
} else := "high" if {
	level >= 12
} else := "medium"

# --- fingerprint ------------------------------------------------------------

fingerprint := {"rule": rule.id, "agent": agent_name}

# --- tags -------------------------------------------------------------------

mitre := object.get(rule, "mitre", {})

tags := array.concat(
	array.concat(["wazuh"], [g | some g in object.get(rule, "groups", [])]),
	[t | some t in object.get(mitre, "tactic", [])],
)

# --- attributes -------------------------------------------------------------

base_attributes := [
	{"key": "rule_id", "value": rule.id, "link": ""},
	{"key": "rule_level", "value": level, "link": ""},
	{"key": "agent", "value": agent_name, "link": ""},
	{"key": "agent_id", "value": object.get(agent, "id", ""), "link": ""},
	{"key": "agent_ip", "value": object.get(agent, "ip", ""), "link": ""},
	{"key": "src_ip", "value": object.get(data_field, "srcip", ""), "link": ""},
	{"key": "src_port", "value": object.get(data_field, "srcport", ""), "link": ""},
	{"key": "dst_ip", "value": object.get(data_field, "dstip", ""), "link": ""},
	{"key": "src_user", "value": object.get(data_field, "srcuser", ""), "link": ""},
	{"key": "dst_user", "value": object.get(data_field, "dstuser", ""), "link": ""},
	{"key": "url", "value": object.get(data_field, "url", ""), "link": ""},
	{"key": "location", "value": object.get(input, "location", ""), "link": ""},
	{"key": "decoder", "value": object.get(input, ["decoder", "name"], ""), "link": ""},
	{"key": "file", "value": object.get(input, ["syscheck", "path"], ""), "link": ""},
	{"key": "sha256", "value": object.get(input, ["syscheck", "sha256_after"], ""), "link": ""},
]

technique_attributes := [a |
	tid := object.get(mitre, "id", [])[i]
	a := {
		"key": "mitre_technique",
		"value": trim_space(sprintf("%s %s", [tid, technique_name(i)])),
		"link": sprintf("https://attack.mitre.org/techniques/%s/", [replace(tid, ".", "/")]),
	}
]

technique_name(i) := n if {
	n := mitre.technique[i]
	is_string(n)
} else := ""

attributes := [a |
	some a in array.concat(base_attributes, technique_attributes)
	usable(a.value)
]

usable(v) if {
	is_string(v)
	v != ""
}

usable(v) if is_number(v)

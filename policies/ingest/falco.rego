# Falco events: Falco's JSON output (json_output: true) or a falcosidekick webhook payload:
#   {"uuid", "output", "priority", "rule", "time", "source", "tags", "hostname",
#    "output_fields": {"proc.name", "proc.cmdline", "user.name", "container.id", ...}}
#
# Alerts on: every Falco rule match at priority Informational or above.
#
# Ignored (no alert):
#   - priority Debug: Falco's lowest level, meant for rule development;
#   - falcosidekick's self-test event (rule "Test rule", sent by POST /test);
#   - payloads without a rule name.
#
# Severity: Falco priority: Emergency, Alert, Critical -> critical; Error -> high;
#   Warning -> medium; Notice -> low; Informational / Info -> info.
#
# Fingerprint: rule + hostname + container image + Kubernetes namespace. Pod names,
# container ids, process ids and timestamps change with every restart, so they are left
# out: the same rule firing for the same workload joins the same ticket.
package ingest.falco

rule_name := object.get(input, "rule", "")

priority := lower(p) if {
	p := object.get(input, "priority", "")
	is_string(p)
} else := ""

fields := object.get(input, "output_fields", {})

field(name) := v if {
	v := fields[name]
	v != null
} else := ""

noise if priority == "debug"

noise if {
	rule_name == "Test rule"
	startswith(object.get(input, "output", ""), "This is a test from falcosidekick")
}

alerts contains {
	"title": title,
	"description": object.get(input, "output", rule_name),
	"attributes": attributes,
	"tags": tags,
	"severity": severity,
	"fingerprint": fingerprint,
} if {
	is_string(rule_name)
	rule_name != ""
	not noise
}

# --- title ------------------------------------------------------------------

host := h if {
	h := object.get(input, "hostname", "")
	h != ""
} else := h if {
	h := field("k8s.node.name")
	h != ""
} else := "unknown host"

workload := sprintf(" (pod %s/%s)", [field("k8s.ns.name"), field("k8s.pod.name")]) if {
	field("k8s.pod.name") != ""
} else := sprintf(" (container %s)", [field("container.name")]) if {
	field("container.name") != ""
	field("container.name") != "host"
} else := ""

title := sprintf("Falco: %s on %s%s", [rule_name, host, workload])

# --- severity ---------------------------------------------------------------

priority_severity := {
	"emergency": "critical",
	"alert": "critical",
	"critical": "critical",
	"error": "high",
	"warning": "medium",
	"notice": "low",
	"informational": "info",
	"info": "info",
}

severity := s if {
	s := priority_severity[priority]
} else := "medium"

# --- fingerprint ------------------------------------------------------------

fingerprint := {
	"rule": rule_name,
	"host": host,
	"image": field("container.image.repository"),
	"namespace": field("k8s.ns.name"),
}

# --- tags -------------------------------------------------------------------

tags := array.concat(
	["falco", object.get(input, "source", "syscall")],
	[t | some t in object.get(input, "tags", []); is_string(t)],
)

# --- attributes -------------------------------------------------------------

field_attributes := [
	["user", "user.name"],
	["process", "proc.name"],
	["command_line", "proc.cmdline"],
	["parent_process", "proc.pname"],
	["executable", "proc.exepath"],
	["file", "fd.name"],
	["src_ip", "fd.sip"],
	["remote_ip", "fd.rip"],
	["container_id", "container.id"],
	["container_name", "container.name"],
	["container_image", "container.image.repository"],
	["image_tag", "container.image.tag"],
	["k8s_namespace", "k8s.ns.name"],
	["k8s_pod", "k8s.pod.name"],
	["event_type", "evt.type"],
	["k8s_user", "ka.user.name"],
	["k8s_verb", "ka.verb"],
	["k8s_target", "ka.target.resource"],
	["aws_user", "aws.user"],
	["aws_event", "aws.eventName"],
	["aws_source_ip", "aws.sourceIP"],
]

attributes := [a |
	some a in array.concat(
		[
			{"key": "rule", "value": rule_name, "link": ""},
			{"key": "priority", "value": object.get(input, "priority", ""), "link": ""},
			{"key": "host", "value": host, "link": ""},
		],
		[{"key": k, "value": field(f), "link": ""} | some pair in field_attributes; k := pair[0]; f := pair[1]],
	)
	usable(a.value)
]

usable(v) if {
	is_string(v)
	v != ""
}

usable(v) if is_number(v)

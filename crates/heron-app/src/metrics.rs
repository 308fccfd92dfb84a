//! Metric names (Prometheus style, `heron_<noun>_<unit>`), recorded through the `metrics`
//! facade; the binary installs the exporter.

pub const EVENTS_RECEIVED: &str = "heron_events_received_total";
pub const EVENTS_DUPLICATE: &str = "heron_events_duplicate_total";
pub const EVENTS_PROCESSED: &str = "heron_events_processed_total";
pub const EVENTS_IGNORED: &str = "heron_events_ignored_total";
pub const EVENTS_FAILED: &str = "heron_events_failed_total";
pub const EVENTS_RETRIED: &str = "heron_event_attempts_retried_total";
pub const ALERTS: &str = "heron_alerts_total";
pub const TICKETS_OPENED: &str = "heron_tickets_opened_total";
pub const QUEUE_DEPTH: &str = "heron_queue_depth";
pub const STAGE_SECONDS: &str = "heron_stage_duration_seconds";
pub const TRIAGE_QUEUE_DEPTH: &str = "heron_triage_queue_depth";
pub const AGENT_RUNS: &str = "heron_agent_runs_total";
pub const LLM_TOKENS: &str = "heron_llm_tokens_total";
pub const BIGQUERY_BYTES: &str = "heron_bigquery_bytes_processed_total";
pub const AGENT_STEPS: &str = "heron_agent_steps_total";
pub const ENRICH_TASKS: &str = "heron_enrich_tasks_total";
pub const ALERT_METADATA: &str = "heron_alert_metadata_total";
pub const ALERT_EMBEDDINGS: &str = "heron_alert_embeddings_total";
pub const POLICY_RELOADS: &str = "heron_policy_reloads_total";
pub const POLICY_RELOAD_FAILING: &str = "heron_policy_reload_failing";
pub const POLICY_GENERATION: &str = "heron_policy_generation";

/// Distinct `schema` label values kept; later schemas are counted as `other`. Anyone holding
/// a webhook token can invent schema names, and each new label value is a new time series.
pub const MAX_SCHEMA_LABELS: usize = 200;

static SCHEMA_LABELS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// The `schema` label for `schema`: itself for the first [`MAX_SCHEMA_LABELS`] names seen by
/// this process, `other` after that.
pub fn schema_label(schema: &heron_core::SchemaName) -> String {
    let name = schema.as_str();
    let mut seen = match SCHEMA_LABELS.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if seen.contains(name) {
        return name.to_owned();
    }
    if seen.len() < MAX_SCHEMA_LABELS {
        seen.insert(name.to_owned());
        return name.to_owned();
    }
    "other".to_owned()
}

/// Describes every metric once, so `/metrics` has HELP lines from the start.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        POLICY_RELOADS,
        "Policy reloads, by result: ok (swapped in) or refused (did not compile or its tests failed)."
    );
    describe_gauge!(
        POLICY_RELOAD_FAILING,
        "1 while the newest policies on disk are refused and an older set is in force."
    );
    describe_gauge!(
        POLICY_GENERATION,
        "Policy sets loaded by this process, the first one included."
    );
    describe_counter!(
        EVENTS_RECEIVED,
        "Webhook deliveries stored, by schema and source."
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        "Re-deliveries answered with an existing event."
    );
    describe_counter!(EVENTS_PROCESSED, "Events that produced alerts.");
    describe_counter!(
        EVENTS_IGNORED,
        "Events for which the ingest policy produced no alert."
    );
    describe_counter!(
        EVENTS_FAILED,
        "Events that failed for good (until retried)."
    );
    describe_counter!(EVENTS_RETRIED, "Failed attempts scheduled for another try.");
    describe_counter!(ALERTS, "Alerts created, by schema and what became of them.");
    describe_counter!(TICKETS_OPENED, "Tickets opened.");
    describe_gauge!(
        QUEUE_DEPTH,
        "Events by queue state (pending, processing, failed)."
    );
    describe_histogram!(STAGE_SECONDS, Unit::Seconds, "Pipeline stage latency.");
    describe_gauge!(
        TRIAGE_QUEUE_DEPTH,
        "Triage jobs by state (pending, processing, failed)."
    );
    describe_counter!(
        ALERT_EMBEDDINGS,
        "Alerts taken off the embedding list, by outcome (embedded, skipped)."
    );
    describe_counter!(AGENT_RUNS, "Agent runs ended, by purpose and status.");
    describe_counter!(
        LLM_TOKENS,
        "Tokens spent by agent runs, by purpose and kind (prompt, completion)."
    );
    describe_counter!(
        BIGQUERY_BYTES,
        Unit::Bytes,
        "Bytes processed by the agent's BigQuery queries."
    );
    describe_counter!(
        AGENT_STEPS,
        "Agent steps, by kind (model, tool) and outcome."
    );
    describe_counter!(
        ENRICH_TASKS,
        "Enrich tasks by outcome: ok, error (triage got the error), retry (the model was \
         unavailable; the event is retried), skipped (no model configured)."
    );
    describe_counter!(
        ALERT_METADATA,
        "Alerts whose missing title or description was asked of the model, by outcome."
    );
}

/// Counts an ended run: its status, tokens, steps and bytes scanned.
pub fn agent_run(run: &heron_core::agent::AgentRun) {
    let purpose = run.purpose.as_str();
    let status = run.status.as_str();
    metrics::counter!(AGENT_RUNS, "purpose" => purpose, "status" => status).increment(1);
    metrics::counter!(LLM_TOKENS, "purpose" => purpose, "kind" => "prompt")
        .increment(u64::from(run.usage.prompt_tokens));
    metrics::counter!(LLM_TOKENS, "purpose" => purpose, "kind" => "completion")
        .increment(u64::from(run.usage.completion_tokens));
    for step in &run.steps {
        // By kind, not by tool name: the model chooses names, and a label value per invented
        // name would be a time series per invention.
        let kind = match step.kind {
            heron_core::agent::StepKind::Model => "model",
            heron_core::agent::StepKind::Tool => "tool",
        };
        let outcome = if step.error.is_some() { "error" } else { "ok" };
        metrics::counter!(AGENT_STEPS, "kind" => kind, "outcome" => outcome).increment(1);
        if let Some(bytes) = step.bytes_processed {
            metrics::counter!(BIGQUERY_BYTES).increment(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_labels_stop_growing_at_the_cap() {
        let name = |i: usize| heron_core::SchemaName::parse(&format!("label-test-{i}")).unwrap();
        let labels: Vec<String> = (0..MAX_SCHEMA_LABELS + 5)
            .map(|i| schema_label(&name(i)))
            .collect();
        assert!(labels.iter().any(|l| l == "other"));
        let distinct: std::collections::HashSet<&String> = labels.iter().collect();
        assert!(distinct.len() <= MAX_SCHEMA_LABELS + 1);
        // A name seen before the cap keeps its own label.
        assert_eq!(schema_label(&name(0)), labels[0]);
    }
}

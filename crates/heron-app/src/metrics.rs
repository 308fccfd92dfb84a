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

/// Describes every metric once, so `/metrics` has HELP lines from the start.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
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
}

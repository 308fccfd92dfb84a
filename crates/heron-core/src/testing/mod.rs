//! Test support (feature `testing`): an in-memory store that behaves like the real ones, and
//! the conformance suite all stores must pass.
//!
//! A store crate runs the suite with one `#[tokio::test]` per case:
//!
//! ```ignore
//! heron_core::conformance_tests!(fresh_store().await);
//! ```
//!
//! where the expression is evaluated once per test, inside the test's async body, and yields a
//! [`StoreFixture`]: an `Arc<dyn Store>` works as is; a fixture that owns a database can clean it
//! up in [`StoreFixture::teardown`]. The calling crate needs `tokio` (with `macros` and
//! `rt-multi-thread`) as a dev-dependency.

mod access_conformance;
mod chat;
pub mod chat_conformance;
pub mod conformance;
mod embedder;
pub mod fuzz;
mod llm;
mod memory;
mod tool_cache;

pub use chat::{ChatCall, RecordingChat};
pub use embedder::FakeEmbedder;
pub use llm::ScriptedChatModel;
pub use memory::{InMemoryStore, MAX_PAGE};
pub use tool_cache::InMemoryToolCache;

use crate::ports::Store;
use std::future::Future;
use std::sync::Arc;

/// A fresh, empty store for one conformance case, and whatever must be cleaned up after it.
pub trait StoreFixture {
    fn store(&self) -> Arc<dyn Store>;
    /// Runs after a case passed (a failed case panics before it: its data stays for autopsy).
    fn teardown(self) -> impl Future<Output = ()>
    where
        Self: Sized,
    {
        async {}
    }
}

impl StoreFixture for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(self)
    }
}

impl StoreFixture for Arc<InMemoryStore> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(self) as Arc<dyn Store>
    }
}

/// Expands to one `#[tokio::test]` per conformance case (see the module documentation).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@cases $fixture;
            accepted_event_is_stored_verbatim_as_pending_and_due,
            duplicate_idempotency_key_returns_the_first_event,
            idempotency_keys_are_per_schema_and_optional,
            accepting_an_existing_event_id_conflicts,
            unknown_ids_read_as_none,
            listing_paginates_newest_first_with_filters,
            scanning_events_reads_oldest_first_in_pages_with_filters,
            retrying_a_processed_event_conflicts,
            retrying_a_failed_event_makes_it_due_again_without_its_error,
            retrying_an_ignored_event_makes_it_pending_again,
            retrying_all_failed_events_touches_only_failed_ones,
            queue_stats_count_pending_processing_and_failed_events,
            a_held_event_waits_unleased_until_resumed_oldest_first_without_spending_an_attempt,
            leasing_takes_due_events_oldest_first_and_counts_the_attempt,
            leased_event_is_not_leased_again_while_its_lease_holds,
            expired_lease_is_taken_over_and_the_old_holder_cannot_complete,
            an_expired_lease_not_yet_taken_over_can_still_complete,
            failed_event_with_retry_at_is_not_leased_before_it_is_due,
            failing_without_retry_at_marks_the_event_failed_with_its_error,
            released_event_is_due_at_once_and_the_attempt_is_not_counted,
            wrong_or_finished_leases_are_lost_for_every_queue_operation,
            empty_completion_marks_the_event_ignored,
            four_workers_process_two_thousand_events_exactly_once,
            batch_completion_commits_every_event_in_order,
            batch_with_a_lost_lease_skips_only_that_event,
            batch_with_a_stale_attach_skips_only_that_event,
            batch_with_two_opens_of_one_fingerprint_makes_one_ticket,
            batch_attach_counts_add_up,
            four_workers_completing_batches_make_one_ticket_per_fingerprint,
            opening_a_ticket_makes_it_the_dedup_target,
            open_with_a_fresh_target_attaches_to_it,
            attaching_bumps_count_and_last_seen_but_not_the_version,
            tickets_of_events_are_those_holding_their_alerts_each_once,
            attach_to_a_resolved_ticket_conflicts_and_stores_nothing,
            attach_to_a_stale_ticket_conflicts,
            attach_to_a_ticket_of_another_fingerprint_conflicts,
            open_races_resolve_to_one_ticket,
            stale_active_ticket_is_replaced_by_a_new_one,
            alerts_of_one_event_with_one_fingerprint_share_one_ticket,
            notice_and_discard_dispositions_store_the_alert,
            alerts_list_newest_first_by_schema_ticket_and_binding,
            ticket_update_stores_the_mutable_fields_and_bumps_the_version,
            ticket_update_with_stale_version_conflicts,
            resolving_releases_the_fingerprint,
            listing_tickets_filters_by_status_severity_assignee_tag_and_text,
            tickets_are_counted_by_status,
            tickets_sort_by_creation_update_or_severity_both_ways_across_pages,
            dashboard_metrics_count_a_small_fixture_exactly,
            binding_an_unbound_alert_puts_it_on_the_ticket_once,
            comments_are_listed_oldest_first_and_need_a_ticket,
            escalating_a_notice_opens_a_ticket_that_is_not_a_dedup_target,
            escalating_a_notice_twice_conflicts,
            notices_list_newest_first_filtered_by_escalation,
            an_expired_lease_past_max_attempts_fails_the_event_instead_of_handing_it_out,
            a_pending_event_is_leased_whatever_its_attempts,
            an_extended_lease_outlives_its_first_expiry,
            the_store_clock_is_current_and_drives_the_queue,
            accepting_a_batch_keeps_order_and_deduplicates_within_it_and_against_the_store,
            a_batch_accept_that_fails_stores_nothing,
            a_value_the_database_cannot_hold_fails_only_its_own_completion,
            concurrent_single_and_batch_completions_of_shared_tickets_do_not_deadlock,
            timestamps_round_trip_to_the_microsecond,
            ping_answers,
            opening_a_ticket_enqueues_one_triage_job_and_attaching_enqueues_none,
            escalating_a_notice_enqueues_one_triage_job,
            triage_leases_take_due_jobs_oldest_first_and_hold,
            an_expired_triage_lease_is_taken_over_and_the_stale_token_is_lost,
            an_expired_triage_lease_past_max_attempts_fails_the_job,
            finishing_triage_stores_the_run_and_writes_the_finding_without_bumping_the_version,
            a_run_without_a_finding_leaves_the_ticket_alone,
            skipping_triage_records_the_reason_and_no_run,
            failed_triage_is_retried_when_due_or_fails_for_good,
            released_triage_is_due_at_once_and_the_attempt_is_not_counted,
            requeueing_triage_makes_it_pending_again_unless_it_is_running,
            concurrent_triage_leases_never_hand_out_a_job_twice,
            agent_runs_are_replaced_whole_and_listed_oldest_first,
            tokens_spent_since_sums_the_runs_started_at_or_after_it,
            embeddings_are_stored_per_ticket_and_model_and_replaced,
            new_alerts_wait_for_an_embedding_until_one_is_stored_or_skipped,
            similar_tickets_are_the_closest_of_one_model_and_dimension_best_first,
            a_similar_ticket_carries_the_finding_the_agent_wrote,
            the_tool_cache_serves_an_entry_until_it_expires_and_replaces_it,
            a_slack_delivery_is_accepted_once_and_leased_until_done,
            one_agent_chat_holds_a_thread_until_released_aborted_or_stale,
            discovering_gives_new_tickets_and_notices_one_pending_thread,
            a_sync_requested_while_syncing_keeps_the_thread_due,
            a_failed_sync_backs_off_then_fails_for_good_and_a_stale_lease_is_refused,
            messages_link_to_comments_once_and_edits_and_deletions_follow,
            a_ticket_opened_from_a_thread_is_found_by_that_thread_and_has_a_triage_job,
            a_token_is_found_by_the_hash_of_its_secret_and_listed_without_it,
            a_token_name_is_taken_until_its_token_is_revoked,
            token_use_moves_last_used_forward_only,
            audit_entries_list_newest_first_filtered_and_paged,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = $fixture;
                let store = $crate::testing::StoreFixture::store(&fixture);
                $crate::testing::conformance::$case(store).await;
                $crate::testing::StoreFixture::teardown(fixture).await;
            }
        )*
    };
}

#[cfg(test)]
mod memory_conformance {
    use super::InMemoryStore;
    use std::sync::Arc;

    crate::conformance_tests!(Arc::new(InMemoryStore::new()));
}

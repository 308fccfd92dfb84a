//! What a tool call knows about its run, how tool results are cut down for the model, and the
//! cache port for threat-intelligence answers.
//!
//! The [`Tool`](crate::agent::Tool) trait itself lives in [`crate::agent`]; a tool receives a
//! [`ToolContext`] with every call, so tools are shared, stateless values and everything that
//! belongs to one run (who it is for, how many bytes its queries scanned) travels with the call.
//! An agent loop makes one context per run and passes it to every call of that run.
//!
//! Invariants:
//! - a [`ScanLedger`] never grows past the limit a reservation was checked against: the check
//!   and the addition happen under one lock, so concurrent calls of one run cannot both slip
//!   under a budget that only one of them fits;
//! - [`clip`] never returns more than `max` bytes (for `max >= MIN_CLIP_BYTES`), cuts on a
//!   character boundary, and says in the text how much was cut, so a later clip at the same
//!   size (the agent's own) leaves it untouched and the model always knows it saw a part;
//! - a [`ToolCache`] answer is never older than the TTL it was stored with: `get` takes the
//!   current time and an entry past its expiry is a miss.

use crate::agent::ToolOutput;
use crate::{TicketId, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};

/// The size tool results are clipped to unless configured otherwise.
pub const DEFAULT_CLIP_BYTES: usize = 16 * 1024;

/// Below this, the clip note itself would not fit.
pub const MIN_CLIP_BYTES: usize = 64;

/// Everything about the current run a tool may need.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub run_id: uuid::Uuid,
    /// The ticket under investigation, when there is one (a chat may have none).
    pub ticket_id: Option<TicketId>,
    /// Bytes scanned by queries in this run, shared by every call of the run.
    pub scan: ScanLedger,
}

impl ToolContext {
    /// A fresh context: nothing scanned yet.
    pub fn new(run_id: uuid::Uuid, ticket_id: Option<TicketId>) -> Self {
        Self {
            run_id,
            ticket_id,
            scan: ScanLedger::default(),
        }
    }
}

/// Bytes scanned so far in one run. Cloning shares the count.
///
/// The ledger holds no limit of its own: each tool checks against its configured budget, so
/// the agent needs to know nothing about BigQuery to give a run its ledger.
#[derive(Debug, Clone, Default)]
pub struct ScanLedger {
    scanned: Arc<Mutex<u64>>,
}

impl ScanLedger {
    pub fn scanned(&self) -> u64 {
        *self.lock()
    }

    /// Adds `bytes` if the total stays within `limit`: `Ok(new total)`; otherwise adds nothing
    /// and answers `Err(current total)`.
    pub fn reserve(&self, bytes: u64, limit: u64) -> Result<u64, u64> {
        let mut scanned = self.lock();
        match scanned.checked_add(bytes) {
            Some(total) if total <= limit => {
                *scanned = total;
                Ok(total)
            }
            _ => Err(*scanned),
        }
    }

    /// Replaces a reservation of `reserved` bytes by what was actually scanned (a query served
    /// from cache scans nothing; an estimate can differ from the bill). May exceed the limit
    /// the reservation was checked against, because the bytes were spent either way.
    pub fn settle(&self, reserved: u64, actual: u64) {
        let mut scanned = self.lock();
        *scanned = scanned.saturating_sub(reserved).saturating_add(actual);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // A plain counter cannot be left half-updated, so a poisoned lock is still consistent.
        self.scanned.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How much of a result was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clipped {
    /// Bytes of the original text that were kept.
    pub kept: usize,
    /// Bytes of the original text.
    pub total: usize,
}

/// At most `max` bytes of `text` (never less than [`MIN_CLIP_BYTES`]), cut on a character
/// boundary, ending with `[clipped: N of M bytes]` when anything was cut. The note counts
/// against `max`, so clipping the result again at the same size changes nothing.
pub fn clip(text: &str, max: usize) -> (String, Option<Clipped>) {
    let max = max.max(MIN_CLIP_BYTES);
    if text.len() <= max {
        return (text.to_owned(), None);
    }
    let total = text.len();
    // The note's length depends on the kept count, which depends on the note's length: size
    // the note for the largest count it can show, which is never shorter than the real one.
    let room = max.saturating_sub(note(max, total).len());
    let mut kept = room.min(total);
    while !text.is_char_boundary(kept) {
        kept -= 1;
    }
    let clipped = Clipped { kept, total };
    (
        format!("{}{}", &text[..kept], note(kept, total)),
        Some(clipped),
    )
}

fn note(kept: usize, total: usize) -> String {
    format!("\n[clipped: {kept} of {total} bytes]")
}

impl ToolOutput {
    /// A result for the model, clipped to `max` bytes (see [`clip`]).
    pub fn clipped(text: &str, max: usize) -> Self {
        let (text, clipped) = clip(text, max);
        Self {
            text,
            clipped,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tool cache: {0}")]
pub struct ToolCacheError(pub String);

/// Remembers answers of external lookups (OTX, urlscan) for a while, so the same indicator in
/// a storm of tickets is looked up once. Values are the text given to the model. A failing
/// cache must never fail a tool: callers treat errors as misses.
#[async_trait]
pub trait ToolCache: Send + Sync {
    /// The value stored under `key`, unless it expired at or before `now`.
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<String>, ToolCacheError>;
    /// Stores `value` under `key` until `expires_at`, replacing any earlier value.
    async fn put(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), ToolCacheError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_not_clipped() {
        assert_eq!(clip("hello", 100), ("hello".to_owned(), None));
    }

    #[test]
    fn clipped_text_fits_the_limit_and_says_how_much_was_kept() {
        let text = "x".repeat(10_000);
        let (out, clipped) = clip(&text, 1000);
        assert!(out.len() <= 1000, "{}", out.len());
        let clipped = clipped.unwrap();
        assert_eq!(clipped.total, 10_000);
        assert!(out.ends_with(&format!("[clipped: {} of 10000 bytes]", clipped.kept)));
        assert!(out.starts_with(&"x".repeat(clipped.kept)));
        assert!(clipped.kept > 900, "{}", clipped.kept);
    }

    #[test]
    fn clipping_twice_at_the_same_size_changes_nothing() {
        let text = "é".repeat(5_000);
        let (once, _) = clip(&text, 777);
        let (twice, again) = clip(&once, 777);
        assert_eq!(once, twice);
        assert_eq!(again, None);
    }

    #[test]
    fn clipping_never_splits_a_character() {
        let text = "日本語".repeat(200);
        for max in 64..200 {
            let (out, _) = clip(&text, max);
            assert!(out.len() <= max);
            assert!(out.contains("[clipped: "));
        }
    }

    #[test]
    fn a_reservation_that_would_pass_the_limit_adds_nothing() {
        let ledger = ScanLedger::default();
        assert_eq!(ledger.reserve(60, 100), Ok(60));
        assert_eq!(ledger.reserve(50, 100), Err(60));
        assert_eq!(ledger.reserve(40, 100), Ok(100));
        assert_eq!(ledger.reserve(u64::MAX, u64::MAX), Err(100));
        assert_eq!(ledger.scanned(), 100);
    }

    #[test]
    fn settling_replaces_the_estimate_by_the_actual_bytes_for_every_clone() {
        let ledger = ScanLedger::default();
        let shared = ledger.clone();
        assert_eq!(ledger.reserve(80, 100), Ok(80));
        shared.settle(80, 0);
        assert_eq!(ledger.scanned(), 0);
        assert_eq!(ledger.reserve(10, 100), Ok(10));
        shared.settle(10, 25);
        assert_eq!(ledger.scanned(), 25);
    }
}

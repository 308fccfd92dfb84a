//! How completions apply to tickets: the replay shared by every store (feature-independent,
//! no IO), so that the in-memory store and both databases attach, open, notice and discard
//! by one implementation.
//!
//! A store opens one transaction (or takes its lock), finds which leases are held, and locks
//! the ticket rows the batch can touch: every `Attach` target, and the current dedup target of
//! every fingerprint an `Open` names ([`lock_set`]). [`plan`] then replays the events in order
//! against those rows, exactly as `complete_event` would apply them one after the other (a
//! conflicting event is rolled back on its own), and answers what to write: one aggregated
//! update per existing ticket, the new tickets, the alerts and notices, and the events' new
//! states. The store writes that and commits once. Single completions are batches of one
//! ([`single`]).
//!
//! Rows that nobody else can change while they are locked are all the replay needs; the only
//! thing it cannot see is a dedup target committed by another transaction after the rows were
//! read, which the store's insert of a new ticket resolves (see [`NewTicketWrite`]).
//!
//! What the replay does not check, because a database's unique indexes do it as a whole-batch
//! error: ids (alerts, notices, new tickets) that already exist.

use crate::ports::{
    AlertBinding, Disposition, Lease, NewAlert, PlannedAlert, StoreError, StoreResult,
};
use crate::ticket::NewTicket;
use crate::{EventId, EventState, Fingerprint, NoticeId, TicketId, Timestamp, truncate_to_micros};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The answer of `complete_event`, made by `complete_events` with a batch of one: every store
/// completes single events that way, so one code path (and one lock order) serves both.
pub fn single(
    results: StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>>,
) -> StoreResult<Vec<AlertBinding>> {
    results?.into_iter().next().unwrap_or_else(|| {
        Err(StoreError::Backend(
            "a batch of one completion answered nothing".to_owned(),
        ))
    })
}

/// A ticket row as locked by the transaction.
#[derive(Debug, Clone)]
pub struct LockedTicket {
    pub id: TicketId,
    pub dedup_key: Option<Fingerprint>,
    /// Open or acknowledged.
    pub active: bool,
    pub last_seen: Timestamp,
}

/// What the locks are needed for: the `Attach` targets and the fingerprints `Open` names, of
/// the events whose lease is held.
pub fn lock_set(
    batch: &[(Lease, Vec<PlannedAlert>)],
    held: &HashSet<EventId>,
) -> (Vec<TicketId>, Vec<Fingerprint>) {
    let mut ids = Vec::new();
    let mut fingerprints = Vec::new();
    for (lease, alerts) in batch {
        if !held.contains(&lease.event_id) {
            continue;
        }
        for planned in alerts {
            match &planned.disposition {
                Disposition::Attach { ticket_id, .. } => ids.push(*ticket_id),
                Disposition::Open { ticket, .. } => fingerprints.push(ticket.fingerprint.clone()),
                Disposition::Notice { .. } | Disposition::Discard => {}
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    fingerprints.sort_unstable();
    fingerprints.dedup();
    (ids, fingerprints)
}

/// One update of an existing ticket: `alert_count` grows by `added`, `last_seen`
/// becomes at least `last_seen`, and with `release` it stops being its fingerprint's target.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketUpdate {
    pub id: TicketId,
    pub added: i64,
    pub last_seen: Timestamp,
    pub release: bool,
}

/// A ticket the batch opens, with everything the batch counted on it. Inserted with
/// `alert_count = count` and `version = 1`. With `dedup_key`, it becomes the fingerprint's target —
/// unless a target committed meanwhile by another transaction exists: then (as the upsert of
/// `complete_event` does) that one counts the alerts instead if it was seen since
/// `seen_since`, and the backend rebinds the alerts to it ([`BatchWrite::rebind`]).
#[derive(Debug, Clone)]
pub struct NewTicketWrite {
    pub ticket: NewTicket,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: i64,
    pub dedup_key: Option<Fingerprint>,
    pub seen_since: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NoticeWrite {
    pub id: NoticeId,
    /// Index into [`BatchWrite::alerts`].
    pub alert: usize,
    pub title: String,
    pub channel: Option<String>,
}

/// Everything one batch writes, and what each event is answered.
#[derive(Debug)]
pub struct BatchWrite {
    pub results: Vec<Result<Vec<AlertBinding>, StoreError>>,
    /// Committed events and their new state (`processed` or `ignored`).
    pub events: Vec<(EventId, EventState)>,
    /// Existing tickets, sorted by id, each once.
    pub updates: Vec<TicketUpdate>,
    /// New tickets, sorted by fingerprint (the order concurrent inserts must wait in).
    pub opened: Vec<NewTicketWrite>,
    pub alerts: Vec<(NewAlert, AlertBinding)>,
    pub notices: Vec<NoticeWrite>,
}

impl BatchWrite {
    /// The new ticket `planned` turned out to be `actual`, a target another transaction
    /// committed: every alert the batch bound to it is bound to `actual` instead.
    pub fn rebind(&mut self, planned: TicketId, actual: TicketId) {
        let fix = |binding: &mut AlertBinding| match binding {
            AlertBinding::Opened(id) | AlertBinding::Attached(id) if *id == planned => {
                *binding = AlertBinding::Attached(actual);
            }
            _ => {}
        };
        for (_, binding) in &mut self.alerts {
            fix(binding);
        }
        for bindings in self.results.iter_mut().flatten() {
            bindings.iter_mut().for_each(fix);
        }
    }
}

#[derive(Debug, Clone)]
struct SimTicket {
    dedup_key: Option<Fingerprint>,
    active: bool,
    last_seen: Timestamp,
    added: i64,
    /// Index into `opened` for a ticket this batch opens.
    new: Option<usize>,
    /// Whether an existing ticket stopped being its fingerprint's target.
    released: bool,
}

#[derive(Debug, Clone)]
struct OpenedSim {
    ticket: NewTicket,
    first_seen: Timestamp,
    seen_since: Timestamp,
}

/// Replays the batch in order on the locked rows. `held` names the events whose lease is
/// current; `locked` are the rows of [`lock_set`] (rows that do not exist are simply absent).
pub fn plan(
    batch: Vec<(Lease, Vec<PlannedAlert>)>,
    held: &HashSet<EventId>,
    locked: Vec<LockedTicket>,
) -> BatchWrite {
    let mut tickets: HashMap<TicketId, SimTicket> = HashMap::new();
    let mut targets: HashMap<Fingerprint, TicketId> = HashMap::new();
    for row in locked {
        if let Some(key) = &row.dedup_key {
            targets.insert(key.clone(), row.id);
        }
        tickets.insert(
            row.id,
            SimTicket {
                dedup_key: row.dedup_key,
                active: row.active,
                last_seen: truncate_to_micros(row.last_seen),
                added: 0,
                new: None,
                released: false,
            },
        );
    }
    let mut opened: Vec<OpenedSim> = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    let mut alerts_out: Vec<(NewAlert, AlertBinding)> = Vec::new();
    let mut notices: Vec<NoticeWrite> = Vec::new();
    let mut done: HashSet<EventId> = HashSet::new();

    for (lease, alerts) in batch {
        // A lease named twice is spent by its first completion.
        if !held.contains(&lease.event_id) || !done.insert(lease.event_id) {
            results.push(Err(StoreError::LeaseLost(lease.event_id)));
            continue;
        }
        let saved = (
            tickets.clone(),
            targets.clone(),
            opened.len(),
            alerts_out.len(),
            notices.len(),
        );
        let state = if alerts.is_empty() {
            EventState::Ignored
        } else {
            EventState::Processed
        };
        let mut bindings = Vec::with_capacity(alerts.len());
        let mut conflict = None;
        for planned in alerts {
            let PlannedAlert { alert, disposition } = planned;
            let seen = truncate_to_micros(alert.created_at);
            let binding = match disposition {
                Disposition::Attach {
                    ticket_id,
                    seen_since,
                } => {
                    let seen_since = truncate_to_micros(seen_since);
                    match tickets.get_mut(&ticket_id) {
                        Some(t)
                            if t.active
                                && t.dedup_key.as_ref() == Some(&alert.fingerprint)
                                && t.last_seen >= seen_since =>
                        {
                            t.added += 1;
                            t.last_seen = t.last_seen.max(seen);
                            AlertBinding::Attached(ticket_id)
                        }
                        _ => {
                            conflict = Some(StoreError::Conflict(format!(
                                "ticket {ticket_id} is no longer the active ticket for fingerprint {}",
                                alert.fingerprint
                            )));
                            break;
                        }
                    }
                }
                Disposition::Open { ticket, seen_since } => {
                    let seen_since = truncate_to_micros(seen_since);
                    let fingerprint = ticket.fingerprint.clone();
                    let fresh = match targets.get(&fingerprint).copied() {
                        Some(id) => match tickets.get_mut(&id) {
                            Some(t) if t.last_seen >= seen_since => Some(id),
                            Some(t) => {
                                // Stale: it stops being the target; the new ticket replaces it.
                                t.dedup_key = None;
                                t.released = t.new.is_none();
                                targets.remove(&fingerprint);
                                None
                            }
                            None => None,
                        },
                        None => None,
                    };
                    match fresh {
                        Some(id) => {
                            if let Some(t) = tickets.get_mut(&id) {
                                t.added += 1;
                                t.last_seen = t.last_seen.max(seen);
                            }
                            AlertBinding::Attached(id)
                        }
                        None if tickets.contains_key(&ticket.id) => {
                            conflict = Some(StoreError::Conflict(format!(
                                "ticket {} already exists",
                                ticket.id
                            )));
                            break;
                        }
                        None => {
                            let id = ticket.id;
                            tickets.insert(
                                id,
                                SimTicket {
                                    dedup_key: Some(fingerprint.clone()),
                                    active: true,
                                    last_seen: seen,
                                    added: 1,
                                    new: Some(opened.len()),
                                    released: false,
                                },
                            );
                            targets.insert(fingerprint, id);
                            opened.push(OpenedSim {
                                ticket,
                                first_seen: seen,
                                seen_since,
                            });
                            AlertBinding::Opened(id)
                        }
                    }
                }
                Disposition::Notice {
                    notice_id,
                    title,
                    channel,
                } => {
                    notices.push(NoticeWrite {
                        id: notice_id,
                        alert: alerts_out.len(),
                        title,
                        channel,
                    });
                    AlertBinding::Noticed(notice_id)
                }
                Disposition::Discard => AlertBinding::Discarded,
            };
            alerts_out.push((alert, binding));
            bindings.push(binding);
        }
        match conflict {
            Some(error) => {
                let (t, g, o, a, n) = saved;
                tickets = t;
                targets = g;
                opened.truncate(o);
                alerts_out.truncate(a);
                notices.truncate(n);
                results.push(Err(error));
            }
            None => {
                events.push((lease.event_id, state));
                results.push(Ok(bindings));
            }
        }
    }

    let mut updates = Vec::new();
    let mut new_tickets: Vec<Option<NewTicketWrite>> = vec![None; opened.len()];
    let mut opened: Vec<Option<OpenedSim>> = opened.into_iter().map(Some).collect();
    for (id, t) in tickets {
        match t.new {
            Some(index) => {
                if let Some(sim) = opened.get_mut(index).and_then(Option::take) {
                    new_tickets[index] = Some(NewTicketWrite {
                        ticket: sim.ticket,
                        first_seen: sim.first_seen,
                        last_seen: t.last_seen,
                        count: t.added,
                        dedup_key: t.dedup_key,
                        seen_since: sim.seen_since,
                    });
                }
            }
            None if t.added > 0 || t.released => updates.push(TicketUpdate {
                id,
                added: t.added,
                last_seen: t.last_seen,
                release: t.released,
            }),
            None => {}
        }
    }
    updates.sort_by_key(|u| u.id);
    // Grouped by fingerprint (stable: one fingerprint's tickets keep their batch order).
    let mut by_fingerprint: BTreeMap<Fingerprint, Vec<NewTicketWrite>> = BTreeMap::new();
    for write in new_tickets.into_iter().flatten() {
        by_fingerprint
            .entry(write.ticket.fingerprint.clone())
            .or_default()
            .push(write);
    }
    BatchWrite {
        results,
        events,
        updates,
        opened: by_fingerprint.into_values().flatten().collect(),
        alerts: alerts_out,
        notices,
    }
}

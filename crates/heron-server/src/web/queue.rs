//! The ticket queue (`/`) and its live updates (`/live/tickets`).
//!
//! Invariants: the queue is ordered by creation, last update or severity, either way, and
//! its "older" link carries the order with a cursor of that order (a cursor keeps its place
//! when its ticket is edited meanwhile); filters and order survive paging. Live updates run
//! on the first page only and count tickets newer than the newest ticket of all (not of the
//! page), so a filter that hides new tickets does not make the count wrong.

use super::{
    OptionView, PAGE_SIZE, PageError, SEVERITIES, STATUSES, Viewer, bad_request, blank_to_none,
    or_dash, render, signed_in, verdict_of, when,
};
use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use heron_core::dashboard::{SortDirection, TicketCursor, TicketSort, TicketSortKey};
use heron_core::ports::TicketQuery;
use heron_core::{Severity, TicketId, TicketStatus};
use serde::Deserialize;

/// How often a live page's stream looks for new tickets.
const LIVE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub(super) struct LiveParams {
    /// The newest ticket when the page was rendered; absent when there was none.
    after: Option<String>,
}

/// Server-Sent Events for an open queue page: a `tickets` event with the number of tickets
/// newer than `after` (up to a page of them), whenever that number changes; its `id` is the
/// newest ticket's, for the page to count from once it has shown them. Ticket ids are
/// time-ordered (UUIDv7), so "newer" is "greater id".
pub(super) async fn live_tickets(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<LiveParams>, QueryRejection>,
) -> Result<Response, PageError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    signed_in(&state, &ctx, &headers, &uri)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let after = match blank_to_none(&params.after) {
        None => None,
        Some(s) => Some(
            s.parse::<TicketId>()
                .map_err(|_| bad_request(format!("bad ticket id {s:?}")))?,
        ),
    };
    let store = state.inner.store.clone();
    let stream = futures_util::stream::unfold(0usize, move |announced| {
        let store = store.clone();
        async move {
            loop {
                tokio::time::sleep(LIVE_POLL).await;
                let (newer, newest) = match store
                    .list_tickets(&TicketQuery {
                        limit: PAGE_SIZE,
                        ..TicketQuery::default()
                    })
                    .await
                {
                    Ok(page) => (
                        page.items
                            .iter()
                            .filter(|t| after.is_none_or(|after| t.id > after))
                            .count(),
                        page.items.first().map(|t| t.id.to_string()),
                    ),
                    // The stream ends; the browser reconnects on its own.
                    Err(_) => return None,
                };
                if newer != announced {
                    let mut event = Event::default().event("tickets").data(newer.to_string());
                    if let Some(newest) = newest {
                        event = event.id(newest);
                    }
                    return Some((Ok::<_, std::convert::Infallible>(event), newer));
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct QueueParams {
    status: Option<String>,
    severity: Option<String>,
    assignee: Option<String>,
    tag: Option<String>,
    q: Option<String>,
    /// created (default), updated or severity.
    sort: Option<String>,
    /// desc (default) or asc.
    order: Option<String>,
    before: Option<String>,
}

/// The filters as typed, for the form's values and the links.
#[derive(Debug, Default)]
struct Filters {
    status: String,
    severity: String,
    assignee: String,
    tag: String,
    q: String,
}

impl Filters {
    /// The queue's URL with these filters, `sort`, and `before` when given.
    fn url(&self, sort: TicketSort, before: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("status", &self.status),
            ("severity", &self.severity),
            ("assignee", &self.assignee),
            ("tag", &self.tag),
            ("q", &self.q),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        if sort != TicketSort::default() {
            query.append_pair("sort", sort.key.as_str());
            query.append_pair("order", sort.direction.as_str());
        }
        if let Some(before) = before {
            query.append_pair("before", before);
        }
        let query = query.finish();
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }
}

struct CountView {
    status: &'static str,
    count: u64,
    selected: bool,
}

/// A sortable column's header: the link that sorts by it (descending first, then the other
/// way), and its `aria-sort` when the queue is sorted by it.
struct SortLink {
    href: String,
    aria_sort: &'static str,
}

struct TicketRow {
    id: TicketId,
    title: String,
    schema: String,
    severity: String,
    status: String,
    assignee: String,
    alert_count: u64,
    verdict: String,
    created_at: String,
    created_at_iso: String,
    updated_at: String,
    updated_at_iso: String,
    last_seen: String,
    last_seen_iso: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    viewer: Viewer,
    counts: Vec<CountView>,
    status_options: Vec<OptionView>,
    severity_options: Vec<OptionView>,
    sort_options: Vec<OptionView>,
    order_options: Vec<OptionView>,
    filters: Filters,
    by_severity: SortLink,
    by_created: SortLink,
    by_updated: SortLink,
    /// How the table is ordered, in words (its caption).
    order_caption: String,
    tickets: Vec<TicketRow>,
    next_page: Option<String>,
    /// The newest ticket of all (live updates count from it); empty when there is none.
    newest: String,
    /// Live updates run on the first page only.
    live: bool,
}

fn parse_param<T: std::str::FromStr>(
    value: &Option<String>,
    what: &str,
) -> Result<Option<T>, PageError> {
    match blank_to_none(value) {
        None => Ok(None),
        Some(s) => s
            .parse::<T>()
            .map(Some)
            .map_err(|_| bad_request(format!("unknown {what} {s:?}"))),
    }
}

fn caption(sort: TicketSort) -> String {
    let way = match (sort.key, sort.direction) {
        (TicketSortKey::Created, SortDirection::Desc) => "newest first",
        (TicketSortKey::Created, SortDirection::Asc) => "oldest first",
        (TicketSortKey::Updated, SortDirection::Desc) => "last updated first",
        (TicketSortKey::Updated, SortDirection::Asc) => "least recently updated first",
        (TicketSortKey::Severity, SortDirection::Desc) => "most severe first",
        (TicketSortKey::Severity, SortDirection::Asc) => "least severe first",
    };
    format!("Tickets, {way}")
}

pub(super) async fn queue(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<QueueParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let status = parse_param::<TicketStatus>(&params.status, "status")?;
    let severity = parse_param::<Severity>(&params.severity, "severity")?;
    let sort = TicketSort {
        key: parse_param(&params.sort, "sort")?.unwrap_or_default(),
        direction: parse_param(&params.order, "order")?.unwrap_or_default(),
    };
    let cursor = match blank_to_none(&params.before) {
        None => None,
        Some(s) => match s.parse::<TicketCursor>() {
            Ok(cursor) if cursor.key() == sort.key => Some(cursor),
            _ => return Err(bad_request(format!("bad page cursor {s:?}"))),
        },
    };
    let filters = Filters {
        status: status.map(|s| s.to_string()).unwrap_or_default(),
        severity: severity.map(|s| s.to_string()).unwrap_or_default(),
        assignee: blank_to_none(&params.assignee).unwrap_or_default(),
        tag: blank_to_none(&params.tag).unwrap_or_default(),
        q: blank_to_none(&params.q).unwrap_or_default(),
    };
    let store = &state.inner.store;
    let page = store
        .list_tickets(&TicketQuery {
            status,
            severity,
            assignee: blank_to_none(&params.assignee),
            tag: blank_to_none(&params.tag),
            text: blank_to_none(&params.q),
            sort,
            cursor,
            limit: PAGE_SIZE,
        })
        .await?;
    let counted = store.count_tickets_by_status().await?;
    let counts = STATUSES
        .iter()
        .map(|s| CountView {
            status: s.as_str(),
            count: counted
                .iter()
                .find(|(status, _)| status == s)
                .map_or(0, |(_, n)| *n),
            selected: status == Some(*s),
        })
        .collect();
    let live = cursor.is_none();
    let newest = if live {
        store
            .list_tickets(&TicketQuery {
                limit: 1,
                ..TicketQuery::default()
            })
            .await?
            .items
            .first()
            .map(|t| t.id.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let next_page = page
        .next_cursor
        .as_ref()
        .map(|cursor| filters.url(sort, Some(cursor)));
    let sort_link = |key: TicketSortKey| {
        let sorted_here = sort.key == key;
        let direction = if sorted_here && sort.direction == SortDirection::Desc {
            SortDirection::Asc
        } else {
            SortDirection::Desc
        };
        SortLink {
            href: filters.url(TicketSort { key, direction }, None),
            aria_sort: match (sorted_here, sort.direction) {
                (false, _) => "none",
                (true, SortDirection::Desc) => "descending",
                (true, SortDirection::Asc) => "ascending",
            },
        }
    };
    let tickets = page
        .items
        .iter()
        .map(|t| TicketRow {
            id: t.id,
            title: t.title.clone(),
            schema: t.schema.to_string(),
            severity: t.severity.to_string(),
            status: t.status.to_string(),
            assignee: or_dash(t.assignee.as_deref()),
            alert_count: t.alert_count,
            verdict: verdict_of(t),
            created_at: when(t.created_at),
            created_at_iso: t.created_at.to_rfc3339(),
            updated_at: when(t.updated_at),
            updated_at_iso: t.updated_at.to_rfc3339(),
            last_seen: when(t.last_seen),
            last_seen_iso: t.last_seen.to_rfc3339(),
        })
        .collect();
    render(&QueuePage {
        viewer,
        counts,
        status_options: STATUSES
            .iter()
            .map(|s| OptionView {
                value: s.as_str(),
                selected: status == Some(*s),
            })
            .collect(),
        severity_options: SEVERITIES
            .iter()
            .map(|s| OptionView {
                value: s.as_str(),
                selected: severity == Some(*s),
            })
            .collect(),
        sort_options: TicketSortKey::ALL
            .iter()
            .map(|k| OptionView {
                value: k.as_str(),
                selected: sort.key == *k,
            })
            .collect(),
        order_options: SortDirection::ALL
            .iter()
            .map(|d| OptionView {
                value: d.as_str(),
                selected: sort.direction == *d,
            })
            .collect(),
        by_severity: sort_link(TicketSortKey::Severity),
        by_created: sort_link(TicketSortKey::Created),
        by_updated: sort_link(TicketSortKey::Updated),
        order_caption: caption(sort),
        filters,
        live,
        newest,
        tickets,
        next_page,
    })
}

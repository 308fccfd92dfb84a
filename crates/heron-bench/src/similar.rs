//! `similar`: similar-ticket search latency and recall on both stores.
//!
//! Loads tickets with clustered random embeddings (a fixed seed: every run searches the same
//! data), then times `similar_tickets` through the store (limit 10) and measures recall@10
//! against the exact top 10, computed here in Rust from the same vectors with the same
//! measure (`cosine_similarity`). PostgreSQL answers from its HNSW index, created after the
//! load (building it once is much faster than maintaining it row by row); SQLite searches
//! exactly, so its recall is 1 by construction and only its latency is of interest.
//!
//! Loading goes around the store (multi-row inserts straight into its tables): 100,000 tickets
//! through the event pipeline would measure the pipeline, not the search.

use anyhow::{Context, bail};
use heron_core::TicketId;
use heron_core::investigation::cosine_similarity;
use heron_core::ports::Store;
use heron_store::{EF_SEARCH, PgStore, SqliteStore, hnsw_index_sql};
use std::time::{Duration, Instant};

const MODEL: &str = "bench-embedding";
const K: usize = 10;

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub pg_tickets: usize,
    pub sqlite_tickets: usize,
    pub dims: usize,
    pub clusters: usize,
    pub queries: usize,
    pub seed: u64,
}

/// Points around `clusters` random centres: centre coordinates N(0, 1), each point the centre
/// plus N(0, 0.5²) noise, so that neighbours within a cluster have cosine ≈ 0.8 and the
/// clusters themselves are near-orthogonal (as embeddings of related tickets tend to be).
/// Large clusters make the search hard: the true top 10 are a few of a thousand points at
/// almost the same distance.
struct Generator {
    rng: fastrand::Rng,
    centres: Vec<Vec<f32>>,
}

impl Generator {
    fn new(seed: u64, clusters: usize, dims: usize) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let centres = (0..clusters.max(1))
            .map(|_| (0..dims).map(|_| gaussian(&mut rng)).collect())
            .collect();
        Self { rng, centres }
    }

    fn point(&mut self) -> Vec<f32> {
        let centre = &self.centres[self.rng.usize(..self.centres.len())];
        centre
            .iter()
            .map(|c| c + 0.5 * gaussian(&mut self.rng))
            .collect()
    }
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut fastrand::Rng) -> f32 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

struct Data {
    ids: Vec<TicketId>,
    vectors: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

fn data(params: &Params, tickets: usize) -> Data {
    let mut generator = Generator::new(params.seed, params.clusters, params.dims);
    let vectors: Vec<Vec<f32>> = (0..tickets).map(|_| generator.point()).collect();
    let queries = (0..params.queries).map(|_| generator.point()).collect();
    Data {
        ids: (0..tickets).map(|_| TicketId::new()).collect(),
        vectors,
        queries,
    }
}

/// The exact top `K` of every query, best first (score, then smaller id: the stores' order),
/// on every core.
fn exact_top(data: &Data) -> Vec<Vec<TicketId>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = data.queries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = data
            .queries
            .chunks(chunk)
            .map(|queries| {
                scope.spawn(move || {
                    queries
                        .iter()
                        .map(|q| {
                            let mut scored: Vec<(f64, TicketId)> = data
                                .vectors
                                .iter()
                                .zip(&data.ids)
                                .map(|(v, id)| (cosine_similarity(q, v), *id))
                                .collect();
                            let nth = K.min(scored.len() - 1);
                            scored.select_nth_unstable_by(nth, |a, b| {
                                b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
                            });
                            scored.truncate(K);
                            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                            scored.into_iter().map(|(_, id)| id).collect()
                        })
                        .collect::<Vec<Vec<TicketId>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Times every query through the store (after a few unmeasured ones) and scores its answers
/// against the exact top `K`.
async fn measure(
    store: &dyn Store,
    data: &Data,
    exact: &[Vec<TicketId>],
) -> anyhow::Result<(Vec<Duration>, f64)> {
    for q in data.queries.iter().take(20) {
        store.similar_tickets(MODEL, q, K, None).await?;
    }
    let mut latencies = Vec::with_capacity(data.queries.len());
    let mut found = 0usize;
    for (q, truth) in data.queries.iter().zip(exact) {
        let start = Instant::now();
        let answer = store.similar_tickets(MODEL, q, K, None).await?;
        latencies.push(start.elapsed());
        found += answer
            .iter()
            .filter(|hit| truth.contains(&hit.ticket_id))
            .count();
    }
    latencies.sort();
    let recall = found as f64 / (exact.len() * K).max(1) as f64;
    Ok((latencies, recall))
}

fn report(name: &str, latencies: &[Duration], recall: f64) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name}: {} queries of limit {K}: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms; recall@{K} {recall:.3}",
        latencies.len(),
        ms(crate::percentile(latencies, 0.50)),
        ms(crate::percentile(latencies, 0.95)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

/// Rows per multi-row insert.
const CHUNK: usize = 2_000;

pub async fn run(base_url: Option<&str>, params: Params, backends: &str) -> anyhow::Result<()> {
    if params.dims == 0 || params.queries == 0 {
        bail!("--dims and --queries must be positive");
    }
    println!(
        "== similar ({} dims, {} clusters, {} queries, seed {})",
        params.dims, params.clusters, params.queries, params.seed
    );
    if backends == "all" || backends == "sqlite" {
        sqlite(&params).await?;
    }
    if backends == "all" || backends == "postgres" {
        let url = base_url.context(
            "set HERON_BENCH_DATABASE_URL (or run through scripts/bench, which starts PostgreSQL)",
        )?;
        postgres(url, &params).await?;
    }
    Ok(())
}

async fn sqlite(params: &Params) -> anyhow::Result<()> {
    let data = data(params, params.sqlite_tickets);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("heron.db");
    let store = SqliteStore::open(&path).await?;

    let start = Instant::now();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path))
        .await?;
    let now = chrono::Utc::now().timestamp_micros();
    for (ids, vectors) in data.ids.chunks(CHUNK).zip(data.vectors.chunks(CHUNK)) {
        let mut tx = pool.begin().await?;
        let mut tickets = sqlx::QueryBuilder::new(
            "INSERT INTO tickets (id, title, description, schema, status, severity, tags, \
             attributes, fingerprint, alert_count, first_seen, last_seen, created_at, \
             updated_at, version) ",
        );
        tickets.push_values(ids, |mut row, id| {
            row.push_bind(id.to_string())
                .push_bind(format!("bench ticket {id}"))
                .push_bind("")
                .push_bind("bench")
                .push_bind("resolved")
                .push_bind("low")
                .push_bind("[]")
                .push_bind("[]")
                .push_bind(format!("fp-{id}"))
                .push_bind(1i64)
                .push_bind(now)
                .push_bind(now)
                .push_bind(now)
                .push_bind(now)
                .push_bind(1i64);
        });
        tickets.build().execute(&mut *tx).await?;
        let mut embeddings = sqlx::QueryBuilder::new(
            "INSERT INTO ticket_embeddings (ticket_id, model, dims, embedding) ",
        );
        embeddings.push_values(ids.iter().zip(vectors), |mut row, (id, v)| {
            let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            row.push_bind(id.to_string())
                .push_bind(MODEL)
                .push_bind(params.dims as i64)
                .push_bind(blob);
        });
        embeddings.build().execute(&mut *tx).await?;
        tx.commit().await?;
    }
    pool.close().await;
    println!(
        "SQLite: loaded {} tickets with embeddings in {:.1} s",
        data.ids.len(),
        start.elapsed().as_secs_f64()
    );

    let exact = exact_top(&data);
    let (latencies, recall) = measure(&store, &data, &exact).await?;
    report(
        &format!("SQLite, {} tickets, exact search", data.ids.len()),
        &latencies,
        recall,
    );
    store.close().await;
    Ok(())
}

async fn postgres(base_url: &str, params: &Params) -> anyhow::Result<()> {
    let data = data(params, params.pg_tickets);
    let url = crate::fresh_database(base_url).await?;
    let store = PgStore::connect(&url, 4).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;

    let start = Instant::now();
    let now = chrono::Utc::now();
    for (ids, vectors) in data.ids.chunks(CHUNK).zip(data.vectors.chunks(CHUNK)) {
        let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO tickets (id, title, description, schema, status, severity, tags, \
             attributes, fingerprint, alert_count, first_seen, last_seen, created_at, \
             updated_at, version) \
             SELECT id, 'bench ticket ' || id, '', 'bench', 'resolved', 'low', '[]', '[]', \
                 'fp-' || id, 1, $2, $2, $2, $2, 1 \
             FROM UNNEST($1::uuid[]) AS id",
        )
        .bind(&uuids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let vectors: Vec<pgvector::Vector> = vectors
            .iter()
            .map(|v| pgvector::Vector::from(v.clone()))
            .collect();
        sqlx::query(
            "INSERT INTO ticket_embeddings (ticket_id, model, dims, embedding) \
             SELECT id, $2, $3, v FROM UNNEST($1::uuid[], $4::vector[]) AS u(id, v)",
        )
        .bind(&uuids)
        .bind(MODEL)
        .bind(i32::try_from(params.dims)?)
        .bind(&vectors)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    println!(
        "PostgreSQL: loaded {} tickets with embeddings in {:.1} s",
        data.ids.len(),
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let mut conn = pool.acquire().await?;
    // The build's memory and workers for this session only; the graph fits in 1 GB here.
    sqlx::query("SET maintenance_work_mem = '1GB'")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET max_parallel_maintenance_workers = 1")
        .execute(&mut *conn)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(hnsw_index_sql(i32::try_from(
        params.dims,
    )?)))
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE ticket_embeddings")
        .execute(&mut *conn)
        .await?;
    drop(conn);
    println!(
        "PostgreSQL: built the HNSW index (m 16, ef_construction 64) in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let plan = store.explain_similar(MODEL, &data.queries[0], K).await?;
    let index = format!("ticket_embeddings_hnsw_{}", params.dims);
    if plan.contains(&index) {
        println!("PostgreSQL: the search plan uses {index}");
    } else {
        println!("PostgreSQL: WARNING, the search plan does not use {index}:\n{plan}");
    }

    let exact = exact_top(&data);
    let (latencies, recall) = measure(&store, &data, &exact).await?;
    report(
        &format!(
            "PostgreSQL, {} tickets, HNSW ef_search {EF_SEARCH}",
            data.ids.len()
        ),
        &latencies,
        recall,
    );
    store.close().await;
    pool.close().await;
    crate::drop_database(base_url, &url).await
}

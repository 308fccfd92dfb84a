//! The BigQuery tools against `heron_tools::testing::FakeBigQuery`, a local server speaking
//! the BigQuery REST v2 wire format (jobs.query, jobs.getQueryResults, tables.get).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::agent::{Tool, ToolError, ToolOutput};
use heron_core::tool::ToolContext;
use heron_tools::testing::{FakeBigQuery, FakeQuery, bigquery_error};
use heron_tools::{AllowedTable, BigQueryConfig, BigQueryCredentials, BigQueryTools};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const TABLE: &str = include_str!("fixtures/bigquery/table_auth_events.json");
const GB: u64 = 1_000_000_000;

fn config(fake: &FakeBigQuery) -> BigQueryConfig {
    let mut config = BigQueryConfig::new(
        "sec-prod",
        BigQueryCredentials::AccessToken("bq-test-token".into()),
    );
    config.base_url = Some(fake.base_url());
    config.tables = vec![
        AllowedTable {
            table: "logs.auth_events".into(),
            description: "Identity-provider sign-ins, partitioned by event_time".into(),
        },
        AllowedTable {
            table: "sec-prod.logs.dns".into(),
            description: "Resolver query logs".into(),
        },
    ];
    config
}

async fn tools(config: BigQueryConfig) -> Vec<Arc<dyn Tool>> {
    BigQueryTools::connect(config).await.unwrap().tools()
}

fn tool(tools: &[Arc<dyn Tool>], name: &str) -> Arc<dyn Tool> {
    tools
        .iter()
        .find(|t| t.name() == name)
        .cloned()
        .unwrap_or_else(|| panic!("no tool {name}"))
}

fn ctx() -> ToolContext {
    ToolContext::new(uuid::Uuid::now_v7(), None)
}

fn query(sql: &str) -> Value {
    json!({"sql": sql, "description": "failed sign-ins of the user in the alert"})
}

fn fields() -> Value {
    json!([
        {"name": "user", "type": "STRING", "mode": "NULLABLE"},
        {"name": "failures", "type": "INTEGER", "mode": "NULLABLE"},
        {"name": "last_seen", "type": "TIMESTAMP", "mode": "NULLABLE"}
    ])
}

fn rows(n: usize) -> Vec<Vec<Value>> {
    (0..n)
        .map(|i| {
            vec![
                json!(format!("user{i}@example.com")),
                json!(i.to_string()),
                json!("1.7953383E9"),
            ]
        })
        .collect()
}

const FAILED_LOGINS: &str = "SELECT user, COUNT(*) AS failures, MAX(event_time) AS last_seen \
     FROM logs.auth_events WHERE outcome = 'FAILURE' \
     AND event_time > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY) GROUP BY user";

fn lines(output: &ToolOutput) -> Vec<Value> {
    output
        .text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn a_query_is_dry_run_first_then_run_with_maximum_bytes_billed_at_the_cap() {
    let fake = FakeBigQuery::start().await;
    fake.on_query(
        "FROM logs.auth_events",
        FakeQuery::new(3 * GB, fields(), rows(3)),
    );
    let tools = tools(config(&fake)).await;
    let ctx = ctx();
    let output = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx)
        .await
        .unwrap();

    let (dry, jobs) = fake.query_bodies();
    assert_eq!(dry.len(), 1);
    assert_eq!(dry[0]["dryRun"], true);
    assert_eq!(dry[0]["useLegacySql"], false);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["maximumBytesBilled"], "10000000000");
    assert!(jobs[0].get("dryRun").is_none());
    assert_eq!(jobs[0]["labels"]["heron_run"], ctx.run_id.to_string());
    let requests = fake.requests();
    assert_eq!(requests[0].path, "/bigquery/v2/projects/sec-prod/queries");
    assert_eq!(requests[0].headers["authorization"], "Bearer bq-test-token");
    assert_eq!(requests[0].body["dryRun"], true, "the dry run comes first");

    assert_eq!(output.bytes_processed, Some(3 * GB));
    assert_eq!(ctx.scan.scanned(), 3 * GB);
    let parsed = lines(&output);
    assert_eq!(parsed[0]["bytes_processed"], 3 * GB);
    assert_eq!(parsed[0]["total_rows"], 3);
    assert_eq!(
        parsed[0]["columns"],
        json!(["user", "failures", "last_seen"])
    );
    assert_eq!(
        parsed[1],
        json!({"user": "user0@example.com", "failures": 0, "last_seen": "2026-11-22T09:05:00Z"})
    );
    assert_eq!(parsed.len(), 4);
    assert!(!output.text.contains("[rows:"));
}

#[tokio::test]
async fn a_query_over_the_per_query_cap_is_refused_with_the_numbers_and_advice() {
    let fake = FakeBigQuery::start().await;
    fake.on_query(
        "FROM logs.auth_events",
        FakeQuery::new(23_400_000_000, fields(), rows(1)),
    );
    let tools = tools(config(&fake)).await;
    let ctx = ctx();
    let error = tool(&tools, "bigquery_query")
        .call(query("SELECT * FROM logs.auth_events"), &ctx)
        .await
        .unwrap_err();
    match error {
        ToolError::Refused(message) => {
            assert!(message.contains("23.4 GB"), "{message}");
            assert!(message.contains("10.0 GB"), "{message}");
            assert!(message.contains("partition column"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (dry, jobs) = fake.query_bodies();
    assert_eq!((dry.len(), jobs.len()), (1, 0), "no job may run");
    assert_eq!(ctx.scan.scanned(), 0);
}

#[tokio::test]
async fn the_per_ticket_budget_is_tracked_across_queries_and_refuses_the_one_that_would_pass_it() {
    let fake = FakeBigQuery::start().await;
    fake.on_query(
        "FROM logs.auth_events",
        FakeQuery::new(8 * GB, fields(), rows(2)),
    );
    let mut config = config(&fake);
    config.max_bytes_per_ticket = 15 * GB;
    let tools = tools(config).await;
    let bq = tool(&tools, "bigquery_query");
    let ctx = ctx();
    let first = bq.call(query(FAILED_LOGINS), &ctx).await.unwrap();
    assert_eq!(first.bytes_processed, Some(8 * GB));
    let error = bq.call(query(FAILED_LOGINS), &ctx).await.unwrap_err();
    match error {
        ToolError::Refused(message) => {
            assert!(message.contains("already scanned 8.0 GB"), "{message}");
            assert!(message.contains("15.0 GB"), "{message}");
            assert!(message.contains("7.0 GB left"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(ctx.scan.scanned(), 8 * GB);
    let (_, jobs) = fake.query_bodies();
    assert_eq!(jobs.len(), 1, "the second query never ran");
    // Another ticket's run has its own budget.
    assert!(bq.call(query(FAILED_LOGINS), &self::ctx()).await.is_ok());
}

#[tokio::test]
async fn results_are_followed_through_page_tokens() {
    let fake = FakeBigQuery::start().await;
    let mut paged = FakeQuery::new(GB, fields(), rows(5));
    paged.page_size = 2;
    fake.on_query("FROM logs.auth_events", paged);
    let tools = tools(config(&fake)).await;
    let output = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx())
        .await
        .unwrap();
    let parsed = lines(&output);
    assert_eq!(parsed.len(), 6, "header and five rows");
    assert_eq!(parsed[5]["user"], "user4@example.com");
    let tokens: Vec<Option<String>> = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/queries/job_1"))
        .map(|r| r.query_param("pageToken"))
        .collect();
    assert_eq!(tokens, vec![Some("tok-2".into()), Some("tok-4".into())]);
    assert!(!output.text.contains("[rows:"));
}

#[tokio::test]
async fn rows_beyond_the_row_limit_are_left_out_with_a_note() {
    let fake = FakeBigQuery::start().await;
    let mut many = FakeQuery::new(GB, fields(), rows(250));
    many.page_size = 60;
    fake.on_query("FROM logs.auth_events", many);
    let tools = tools(config(&fake)).await;
    let output = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx())
        .await
        .unwrap();
    assert!(
        output
            .text
            .contains("[rows: showing 100 of 250; at most 100 rows are returned"),
        "{}",
        output.text
    );
    assert!(output.text.contains("aggregate"));
    assert_eq!(lines(&output).len(), 101);
    let (_, jobs) = fake.query_bodies();
    assert_eq!(jobs[0]["maxResults"], 100);
    let follow_up: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/queries/job_1"))
        .collect();
    assert_eq!(follow_up.len(), 1, "paging stops at the row limit");
    assert_eq!(
        follow_up[0].query_param("maxResults").as_deref(),
        Some("40")
    );
}

#[tokio::test]
async fn rows_that_do_not_fit_the_size_limit_are_cut_with_a_note() {
    let fake = FakeBigQuery::start().await;
    let wide: Vec<Vec<Value>> = (0..50)
        .map(|i| {
            vec![
                json!(format!("{i}-{}", "x".repeat(200))),
                json!("1"),
                json!(null),
            ]
        })
        .collect();
    fake.on_query("FROM logs.auth_events", FakeQuery::new(GB, fields(), wide));
    let mut config = config(&fake);
    config.clip_bytes = 2000;
    let tools = tools(config).await;
    let output = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx())
        .await
        .unwrap();
    assert!(output.text.len() <= 2000, "{}", output.text.len());
    assert!(
        output
            .text
            .contains("of 50; the rest did not fit in 2.0 KB"),
        "{}",
        output.text
    );
    assert_eq!(output.bytes_processed, Some(GB));
}

#[tokio::test]
async fn a_job_still_running_is_polled_until_complete() {
    let fake = FakeBigQuery::start().await;
    let mut slow = FakeQuery::new(GB, fields(), rows(2));
    slow.polls_before_complete = 2;
    fake.on_query("FROM logs.auth_events", slow);
    let tools = tools(config(&fake)).await;
    let output = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx())
        .await
        .unwrap();
    assert_eq!(lines(&output).len(), 3);
    let polls = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/queries/job_1"))
        .count();
    assert_eq!(polls, 3, "two answers of jobComplete false, then the rows");
}

#[tokio::test]
async fn a_query_that_outlasts_the_deadline_times_out_and_keeps_its_estimate_counted() {
    let fake = FakeBigQuery::start().await;
    let mut endless = FakeQuery::new(2 * GB, fields(), rows(1));
    endless.polls_before_complete = u32::MAX;
    fake.on_query("FROM logs.auth_events", endless);
    let mut config = config(&fake);
    config.timeout = Duration::from_millis(600);
    let tools = tools(config).await;
    let ctx = ctx();
    let error = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx)
        .await
        .unwrap_err();
    assert!(matches!(error, ToolError::Timeout(_)), "{error:?}");
    assert_eq!(
        ctx.scan.scanned(),
        2 * GB,
        "the job may still be running and billing"
    );
}

#[tokio::test]
async fn tables_outside_the_allow_list_are_refused_before_any_request() {
    let fake = FakeBigQuery::start().await;
    let tools = tools(config(&fake)).await;
    let bq = tool(&tools, "bigquery_query");
    for sql in [
        "SELECT * FROM logs.secrets",
        "SELECT * FROM `region-us`.INFORMATION_SCHEMA.JOBS",
        "SELECT * FROM `other-proj.logs.auth_events`",
        "SELECT * FROM auth_events",
        "SELECT * FROM logs.auth_events a, logs.payroll p WHERE a.user = p.user",
        "SELECT * FROM logs.auth_events WHERE user IN (SELECT user FROM hr.employees)",
        "SELECT * FROM logs.auth_events JOIN `sec-prod.logs.dns_archive` USING (source_ip)",
        "SELECT * FROM logs.AUTH_EVENTS",
        "DELETE FROM logs.auth_events WHERE true",
        "SELECT 1; SELECT * FROM logs.secrets",
        "SELECT * FROM EXTERNAL_QUERY('sec-prod.us.crm', 'SELECT * FROM customers')",
    ] {
        let error = bq.call(query(sql), &ctx()).await.unwrap_err();
        assert!(matches!(error, ToolError::Refused(_)), "{sql}: {error:?}");
    }
    assert!(fake.requests().is_empty());
    // The refusal tells the model what it may read.
    let error = bq
        .call(query("SELECT 1 FROM logs.secrets"), &ctx())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("`logs.secrets`"), "{message}");
    assert!(
        message.contains("sec-prod.logs.auth_events`: Identity-provider sign-ins"),
        "{message}"
    );
}

#[tokio::test]
async fn ctes_subqueries_and_fully_qualified_allowed_tables_pass_the_allow_list() {
    let fake = FakeBigQuery::start().await;
    fake.on_query("WITH failures", FakeQuery::new(GB, fields(), rows(1)));
    let tools = tools(config(&fake)).await;
    let sql = "WITH failures AS (SELECT user, source_ip FROM logs.auth_events \
               WHERE outcome = 'FAILURE') \
               SELECT f.user, COUNT(*) AS failures, NULL AS last_seen FROM failures f \
               JOIN `sec-prod.logs.dns` d ON d.client_ip = f.source_ip \
               WHERE EXTRACT(HOUR FROM d.ts) < 6 GROUP BY f.user";
    let output = tool(&tools, "bigquery_query")
        .call(query(sql), &ctx())
        .await
        .unwrap();
    assert_eq!(lines(&output).len(), 2);
}

#[tokio::test]
async fn a_syntax_error_from_the_dry_run_is_returned_for_the_model_to_fix() {
    let fake = FakeBigQuery::start().await;
    let mut broken = FakeQuery::new(0, fields(), Vec::new());
    broken.dry_run_error = Some((
        400,
        bigquery_error(
            400,
            "invalidQuery",
            "Syntax error: Unexpected keyword GROUP at [1:48]",
        ),
    ));
    fake.on_query("FROM logs.auth_events", broken);
    let tools = tools(config(&fake)).await;
    let error = tool(&tools, "bigquery_query")
        .call(
            query("SELECT user FROM logs.auth_events GROUP GROUP BY user"),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ToolError::InvalidArguments(m) if m.contains("Unexpected keyword GROUP")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_quota_error_of_the_job_is_reported_and_releases_the_reservation() {
    let fake = FakeBigQuery::start().await;
    let mut limited = FakeQuery::new(4 * GB, fields(), rows(1));
    limited.job_error = Some((
        403,
        bigquery_error(
            403,
            "quotaExceeded",
            "Quota exceeded: Your project exceeded quota for concurrent queries.",
        ),
    ));
    fake.on_query("FROM logs.auth_events", limited);
    let tools = tools(config(&fake)).await;
    let ctx = ctx();
    let error = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ToolError::Failed(m) if m.contains("quotaExceeded") && m.contains("concurrent queries")),
        "{error:?}"
    );
    assert_eq!(ctx.scan.scanned(), 0);
}

#[tokio::test]
async fn a_cache_hit_costs_nothing_against_the_budget() {
    let fake = FakeBigQuery::start().await;
    let mut cached = FakeQuery::new(5 * GB, fields(), rows(1));
    cached.cache_hit = true;
    fake.on_query("FROM logs.auth_events", cached);
    let tools = tools(config(&fake)).await;
    let ctx = ctx();
    let output = tool(&tools, "bigquery_query")
        .call(query(FAILED_LOGINS), &ctx)
        .await
        .unwrap();
    assert_eq!(output.bytes_processed, Some(0));
    assert_eq!(ctx.scan.scanned(), 0);
    assert_eq!(lines(&output)[0]["cache_hit"], true);
}

#[tokio::test]
async fn the_schema_tool_answers_columns_of_allowed_tables_only() {
    let fake = FakeBigQuery::start().await;
    fake.table(
        "sec-prod",
        "logs",
        "auth_events",
        serde_json::from_str(TABLE).unwrap(),
    );
    let tools = tools(config(&fake)).await;
    let schema = tool(&tools, "bigquery_schema");
    let output = schema
        .call(json!({"table": "`logs.auth_events`"}), &ctx())
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&output.text).unwrap();
    assert_eq!(answer["table"], "sec-prod.logs.auth_events");
    assert_eq!(
        answer["time_partitioning"],
        json!({"type": "DAY", "field": "event_time"})
    );
    assert_eq!(answer["require_partition_filter"], true);
    assert_eq!(answer["clustering"], json!(["user", "source_ip"]));
    assert_eq!(answer["bytes"], "734.0 GB");
    assert_eq!(
        answer["columns"][0],
        json!({"name": "event_time", "type": "TIMESTAMP", "mode": "REQUIRED", "description": "When the attempt happened (UTC)."})
    );
    assert_eq!(
        answer["columns"][5]["fields"][1],
        json!({"name": "asn", "type": "INTEGER"})
    );
    assert_eq!(answer["columns"][6]["mode"], "REPEATED");

    let refused = schema
        .call(json!({"table": "hr.salaries"}), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(refused, ToolError::Refused(_)), "{refused:?}");
    assert_eq!(fake.requests().len(), 1);

    // Allowed, but gone from BigQuery: Google's 404 notFound body.
    let missing = schema
        .call(json!({"table": "logs.dns"}), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, ToolError::Failed(m) if m.contains("Not found: Table sec-prod:logs.dns")),
        "{missing:?}"
    );
}

#[tokio::test]
async fn runbooks_are_listed_in_the_tool_description_and_returned_by_name() {
    let fake = FakeBigQuery::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("failed_logins.sql"),
        "-- Title: Failed sign-ins per user\n-- Description: Last 24 hours, worst first\n\
         SELECT user, COUNT(*) FROM logs.auth_events GROUP BY user\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("dns")).unwrap();
    std::fs::write(dir.path().join("dns/rare_domains.sql"), "SELECT 1\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a runbook").unwrap();
    let mut config = config(&fake);
    config.runbook_dir = Some(dir.path().to_owned());
    let tools = tools(config).await;
    let runbook = tool(&tools, "get_runbook");
    let description = runbook.description();
    assert!(
        description
            .contains("failed_logins: Failed sign-ins per user — Last 24 hours, worst first"),
        "{description}"
    );
    assert!(
        description.contains("dns/rare_domains: dns/rare_domains"),
        "{description}"
    );

    let output = runbook
        .call(json!({"name": "failed_logins"}), &ctx())
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&output.text).unwrap();
    assert!(answer["sql"].as_str().unwrap().contains("GROUP BY user"));
    assert_eq!(answer["title"], "Failed sign-ins per user");

    let unknown = runbook
        .call(json!({"name": "nope"}), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, ToolError::InvalidArguments(m) if m.contains("dns/rare_domains, failed_logins")),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn without_runbooks_there_is_no_runbook_tool_and_the_query_tool_lists_tables_and_caps() {
    let fake = FakeBigQuery::start().await;
    let tools = tools(config(&fake)).await;
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    assert_eq!(names, vec!["bigquery_query", "bigquery_schema"]);
    let description = tool(&tools, "bigquery_query").description().to_owned();
    assert!(
        description.contains("`sec-prod.logs.dns`: Resolver query logs"),
        "{description}"
    );
    assert!(description.contains("more than 10.0 GB"), "{description}");
    assert!(description.contains("50.0 GB in all"), "{description}");
    for tool in &tools {
        let schema = tool.parameters();
        assert_eq!(schema["additionalProperties"], false);
        let properties: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        let required: Vec<String> = serde_json::from_value(schema["required"].clone()).unwrap();
        assert_eq!(properties.len(), required.len(), "{}", tool.name());
    }
}

#[tokio::test]
async fn query_arguments_are_checked_against_the_schema_before_any_request() {
    let fake = FakeBigQuery::start().await;
    let tools = tools(config(&fake)).await;
    let bq = tool(&tools, "bigquery_query");
    for arguments in [
        json!({"sql": "SELECT 1 FROM logs.auth_events"}),
        json!({"sql": "SELECT 1 FROM logs.auth_events", "description": " "}),
        json!({"sql": "SELECT 1 FROM logs.auth_events", "description": "x", "dry_run": false}),
        json!({"sql": 42, "description": "x"}),
        json!({"sql": "", "description": "x"}),
    ] {
        let error = bq.call(arguments.clone(), &ctx()).await.unwrap_err();
        assert!(
            matches!(error, ToolError::InvalidArguments(_)),
            "{arguments}: {error:?}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn setup_refuses_an_empty_allow_list_unqualified_tables_and_zero_caps() {
    let fake = FakeBigQuery::start().await;
    let mut empty = config(&fake);
    empty.tables.clear();
    assert!(BigQueryTools::connect(empty).await.is_err());
    let mut unqualified = config(&fake);
    unqualified.tables.push(AllowedTable {
        table: "auth_events".into(),
        description: String::new(),
    });
    assert!(BigQueryTools::connect(unqualified).await.is_err());
    let mut zero = config(&fake);
    zero.max_bytes_per_query = 0;
    assert!(BigQueryTools::connect(zero).await.is_err());
    let mut missing_dir = config(&fake);
    missing_dir.runbook_dir = Some("/nonexistent/heron/runbooks".into());
    assert!(BigQueryTools::connect(missing_dir).await.is_err());
    let shown = format!("{:?}", config(&fake).credentials);
    assert!(!shown.contains("bq-test-token"), "{shown}");
}

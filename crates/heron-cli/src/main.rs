//! `heron`: serve, work, migrate, test and evaluate policies, inspect and retry events.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use heron_cli::runtime;
use heron_cli::settings::{Overrides, Settings};
use heron_core::policy::PolicyEngine;
use heron_core::ports::{Disposition, EventQuery};
use heron_core::{EventId, EventState, SchemaName};
use heron_policy::testing::Outcome;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// Prints to stdout, ignoring a closed pipe (`heron … | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[derive(Debug, Parser)]
#[command(name = "heron", version, about = "Agentic security-alert triage")]
struct Cli {
    /// TOML settings file (default: ./heron.toml when present).
    #[arg(long, global = true, env = "HERON_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Default)]
struct Common {
    /// Folder for the SQLite database and the bootstrap token.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// postgres://… to use PostgreSQL instead of SQLite.
    #[arg(long)]
    database_url: Option<String>,
    /// Policy file or folder (repeatable; default ./policies).
    #[arg(long = "policies")]
    policies: Vec<PathBuf>,
    /// Parse policies as Rego v0.
    #[arg(long)]
    rego_v0: bool,
}

impl Common {
    fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            policies: (!self.policies.is_empty()).then(|| self.policies.clone()),
            rego_version: self.rego_v0.then(|| "v0".to_owned()),
            ..Overrides::default()
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (and, unless --no-worker, the worker).
    Serve {
        /// Address to bind (default 127.0.0.1:8080).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Accept requests without a token; only on a loopback address.
        #[arg(long)]
        no_auth: bool,
        /// Do not process events in this process (run `heron worker` elsewhere).
        #[arg(long)]
        no_worker: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Process queued events without serving HTTP.
    Worker {
        #[command(flatten)]
        common: Common,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Test and evaluate Rego policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Inspect and retry stored events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Create, list and revoke stored API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Print the effective settings (secrets redacted).
    Config {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Run `test_*` rules (like `opa test`).
    Test {
        /// Policy files or folders (default ./policies).
        paths: Vec<PathBuf>,
        /// Print every test with its result and duration.
        #[arg(short, long)]
        verbose: bool,
        /// Only tests whose `data.package.rule` name matches this regular expression.
        #[arg(short = 'r', long)]
        run: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Parse policies as Rego v0 (modules with `import rego.v1` stay v1).
        #[arg(long, alias = "v0-compatible")]
        rego_v0: bool,
        /// Exit 1 when no test ran (a misspelt --run, an empty folder).
        #[arg(long)]
        fail_on_empty: bool,
        /// Report which policy lines the tests evaluated.
        #[arg(long)]
        coverage: bool,
        /// With --coverage: fail (exit 1) when total coverage is below this percentage.
        #[arg(long, requires = "coverage", value_parser = parse_percent)]
        threshold: Option<f64>,
        /// warren-style fixtures: every object under DIR/<schema>/**/*.json|jsonl must make
        /// at least one alert.
        #[arg(long, value_name = "DIR")]
        detect: Vec<PathBuf>,
        /// warren-style fixtures: no object under DIR/<schema>/**/*.json|jsonl may make an
        /// alert.
        #[arg(long, value_name = "DIR")]
        ignore: Vec<PathBuf>,
    },
    /// Re-run ingest, fingerprinting and triage over stored events with a candidate policy
    /// set and print what would change against the current one. Reads only; calls no model
    /// (enrich tasks are not run: triage sees empty enrich results on both sides).
    Replay {
        /// The candidate policy files or folders.
        #[arg(long = "policies", required = true, value_name = "DIR")]
        candidate: Vec<PathBuf>,
        /// The current set (default: the configured policies).
        #[arg(long = "current", value_name = "DIR")]
        current: Vec<PathBuf>,
        /// Only events received within this long before now (`30m`, `24h`, `7d`) or since an
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events of this schema.
        #[arg(long)]
        schema: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Example event ids shown per kind of change.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// Folder for the SQLite database.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// postgres://… to read from PostgreSQL instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
        /// Parse both sets as Rego v0.
        #[arg(long)]
        rego_v0: bool,
    },
    /// Evaluate ingest and triage on one event (a file, or - for stdin) and print the result.
    Eval {
        #[arg(long)]
        schema: String,
        /// The event JSON file, or - for stdin.
        input: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret (shown this once; only its hash is stored).
    Create {
        /// A unique name: who or what uses the token (recorded as the actor of its changes).
        #[arg(long)]
        name: String,
        /// Comma-separated: ingest (webhooks), read (GET API, dashboard), write (changes).
        #[arg(long)]
        scopes: String,
        /// Lifetime: 30d, 12h, 90m… (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens: name, scopes, created, expires, last used, revoked.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a token by name or id; requests with it are refused from then on.
    Revoke {
        /// The token's name or id.
        token: String,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List events, newest first.
    List {
        #[arg(long)]
        state: Option<EventState>,
        #[arg(long)]
        schema: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one event with its body and last error.
    Show { id: EventId },
    /// Put failed (or ignored) events back in the queue.
    Retry {
        /// The event to retry.
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<EventId>,
        /// Retry every failed event.
        #[arg(long)]
        all_failed: bool,
    },
}

// Policy evaluation allocates many small values; mimalloc makes it ~25% faster than the
// system allocator (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One TLS provider for the whole process (see docs/adr/0002).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERON_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve {
            addr,
            no_auth,
            no_worker,
            common,
        } => {
            let mut overrides = common.overrides();
            overrides.addr = addr;
            overrides.no_auth = no_auth.then_some(true);
            let mut settings = Settings::load(config, &overrides)?;
            if no_worker {
                settings.worker.enabled = false;
            }
            init_tracing(&settings);
            runtime::start_server(&settings)
                .await?
                .run_until_signal()
                .await?;
        }
        Command::Worker { common } => {
            let settings = Settings::load(config, &common.overrides())?;
            init_tracing(&settings);
            runtime::start_worker(&settings)
                .await?
                .run_until_signal()
                .await?;
        }
        Command::Migrate { common } => {
            let settings = Settings::load(config, &common.overrides())?;
            init_tracing(&settings);
            let store = runtime::open_store(&settings).await?;
            out!("migrations applied ({} database)", store.backend());
        }
        Command::Policy {
            command:
                PolicyCommand::Replay {
                    candidate,
                    current,
                    since,
                    schema,
                    format,
                    examples,
                    data_dir,
                    database_url,
                    rego_v0,
                },
        } => {
            let overrides = Overrides {
                data_dir,
                database_url,
                policies: (!current.is_empty()).then_some(current),
                rego_version: rego_v0.then(|| "v0".to_owned()),
                ..Overrides::default()
            };
            let settings = Settings::load(config, &overrides)?;
            let request = ReplayRequest {
                candidate,
                since,
                schema,
                format,
                examples,
            };
            return replay(&settings, request).await;
        }
        Command::Policy { command } => return policy(config, command),
        Command::Events { command, common } => {
            let settings = Settings::load(config, &common.overrides())?;
            return events(&settings, command).await;
        }
        Command::Token { command, common } => {
            let settings = Settings::load(config, &common.overrides())?;
            let store = runtime::open_store(&settings).await?;
            match command {
                TokenCommand::Create {
                    name,
                    scopes,
                    expires,
                } => {
                    let (secret, token) = heron_cli::tokens::create(
                        store.as_ref(),
                        &name,
                        &scopes,
                        expires.as_deref(),
                    )
                    .await?;
                    eprintln!(
                        "created token {:?} ({}); its secret is shown once, store it now:",
                        token.name, token.id
                    );
                    out!("{secret}");
                }
                TokenCommand::List { format } => {
                    let tokens = store.list_api_tokens().await?;
                    match format {
                        Format::Json => out!("{}", serde_json::to_string_pretty(&tokens)?),
                        Format::Text => {
                            out_raw!("{}", heron_cli::tokens::table(&tokens, chrono::Utc::now()))
                        }
                    }
                }
                TokenCommand::Revoke { token } => {
                    let revoked = heron_cli::tokens::revoke(store.as_ref(), &token).await?;
                    out!("revoked token {:?} ({})", revoked.name, revoked.id);
                }
            }
        }
        Command::Config { common } => {
            let settings = Settings::load(config, &common.overrides())?;
            out_raw!("{}", toml::to_string_pretty(&settings.redacted())?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn policy(config: Option<&std::path::Path>, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Test {
            paths,
            verbose,
            run,
            format,
            rego_v0,
            fail_on_empty,
            coverage,
            threshold,
            detect,
            ignore,
        } => {
            let overrides = Overrides {
                policies: Some(runtime::policy_roots(&paths)),
                rego_version: rego_v0.then(|| "v0".to_owned()),
                ..Overrides::default()
            };
            let settings = Settings::load(config, &overrides)?;
            let set = match runtime::load_policies(&settings) {
                Ok(set) => set,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let filter = match run.as_deref().map(regex::Regex::new).transpose() {
                Ok(filter) => filter,
                Err(e) => {
                    eprintln!("error: --run is not a valid regular expression: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let mut report = heron_policy::testing::run_with(
                &set,
                |name| filter.as_ref().is_none_or(|re| re.is_match(name)),
                coverage,
            );
            for (dirs, expect) in [
                (&detect, heron_policy::fixtures::Expect::Detect),
                (&ignore, heron_policy::fixtures::Expect::Ignore),
            ] {
                for dir in dirs {
                    heron_policy::fixtures::run(&set, dir, expect, &mut report);
                }
            }
            match format {
                Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
                Format::Text => print_test_report(&report, verbose),
            }
            let under_threshold = match (threshold, &report.coverage) {
                (Some(min), Some(c)) if c.percent < min => {
                    eprintln!(
                        "coverage {:.1}% is below the threshold of {min:.1}%",
                        c.percent
                    );
                    true
                }
                _ => false,
            };
            let ran = report.results.len() - report.count(Outcome::Skipped);
            if fail_on_empty && ran == 0 {
                eprintln!("no test ran (--fail-on-empty)");
            }
            let code = if report.count(Outcome::Error) > 0 {
                2
            } else if report.count(Outcome::Fail) > 0
                || under_threshold
                || (fail_on_empty && ran == 0)
            {
                1
            } else {
                0
            };
            Ok(ExitCode::from(code))
        }
        PolicyCommand::Replay { .. } => bail!("replay runs in the async runtime"),
        PolicyCommand::Eval {
            schema,
            input,
            common,
        } => {
            let settings = Settings::load(config, &common.overrides())?;
            let set = runtime::load_policies(&settings)?;
            let schema = SchemaName::parse(&schema)?;
            let text = if input.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                text
            } else {
                std::fs::read_to_string(&input)
                    .with_context(|| format!("cannot read {}", input.display()))?
            };
            let body: serde_json::Value =
                serde_json::from_str(&text).context("the input is not valid JSON")?;
            if !body.is_object() {
                bail!("the input must be a JSON object");
            }
            out!(
                "{}",
                serde_json::to_string_pretty(&evaluate(&set, &schema, &body)?)?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct ReplayRequest {
    candidate: Vec<PathBuf>,
    since: Option<String>,
    schema: Option<String>,
    format: Format,
    examples: usize,
}

/// `heron policy replay`: the configured (or `--current`) set against the candidate.
async fn replay(settings: &Settings, request: ReplayRequest) -> anyhow::Result<ExitCode> {
    use heron_app::replay::{ReplaySettings, replay};
    let now = chrono::Utc::now();
    let since = request
        .since
        .as_deref()
        .map(|raw| parse_since(raw, now))
        .transpose()?;
    let schema = request
        .schema
        .as_deref()
        .map(SchemaName::parse)
        .transpose()?;
    let current = runtime::load_policies(settings).context("the current policy set")?;
    let mut candidate_settings = settings.clone();
    candidate_settings.policies = request.candidate.clone();
    let candidate =
        runtime::load_policies(&candidate_settings).context("the candidate policy set")?;
    let store = runtime::open_store(settings).await?;
    let started = std::time::Instant::now();
    let report = replay(
        store,
        std::sync::Arc::new(current),
        std::sync::Arc::new(candidate),
        &ReplaySettings {
            since,
            schema,
            dedup_window: settings.worker.to_app().dedup_window,
            examples: request.examples,
            ..ReplaySettings::default()
        },
    )
    .await?;
    let elapsed = started.elapsed();
    match request.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_replay(&report, since, elapsed),
    }
    Ok(ExitCode::SUCCESS)
}

/// `7d`, `24h`, `30m`, `90s` before `now`, or an RFC 3339 time.
fn parse_since(
    raw: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let raw = raw.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(time.with_timezone(&chrono::Utc));
    }
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let amount: i64 = number.parse().map_err(|_| {
        anyhow::anyhow!(
            "--since {raw:?}: expected a duration such as 7d, 24h, 30m or an RFC 3339 time"
        )
    })?;
    let duration = match unit {
        "d" => chrono::Duration::try_days(amount),
        "h" => chrono::Duration::try_hours(amount),
        "m" => chrono::Duration::try_minutes(amount),
        "s" => chrono::Duration::try_seconds(amount),
        _ => None,
    }
    .ok_or_else(|| anyhow::anyhow!("--since {raw:?}: the unit must be d, h, m or s"))?;
    now.checked_sub_signed(duration)
        .ok_or_else(|| anyhow::anyhow!("--since {raw:?} is too far back"))
}

fn print_replay(
    report: &heron_app::replay::ReplayReport,
    since: Option<chrono::DateTime<chrono::Utc>>,
    elapsed: std::time::Duration,
) {
    let rate = report.events as f64 / elapsed.as_secs_f64().max(1e-9);
    out!(
        "replayed {} events{} in {:.2} s ({rate:.0} events/s)",
        report.events,
        since.map_or(String::new(), |s| format!(
            " received since {}",
            s.to_rfc3339()
        )),
        elapsed.as_secs_f64()
    );
    for (side, has) in [
        ("current", report.enrich_skipped.current),
        ("candidate", report.enrich_skipped.candidate),
    ] {
        if has {
            out!(
                "note: the {side} set has data.enrich; its tasks were not run (replay calls no model) and triage saw empty enrich results"
            );
        }
    }
    for schema in &report.schemas {
        out!("");
        out!("{}: {} events", schema.schema, schema.events);
        out!("  {:<12} {:>10} {:>10}", "", "current", "candidate");
        let (a, b) = (&schema.current, &schema.candidate);
        for (label, x, y) in [
            ("alerts", a.alerts, b.alerts),
            ("published", a.published, b.published),
            ("notices", a.notices, b.notices),
            ("discarded", a.discarded, b.discarded),
            ("tickets", a.tickets, b.tickets),
            ("errors", a.errors, b.errors),
        ] {
            out!("  {label:<12} {x:>10} {y:>10}");
        }
        if schema.changes.is_empty() {
            out!("  no change");
        }
        for change in &schema.changes {
            let examples: Vec<String> = change.examples.iter().map(|e| e.to_string()).collect();
            out!(
                "  {:<28} {:>8}  e.g. {}",
                change.kind,
                change.count,
                examples.join(", ")
            );
        }
    }
    if report.schemas.is_empty() {
        out!("no stored event matched");
    }
}

/// Dry run of ingest → fingerprint → triage for one event; nothing is stored.
fn evaluate(
    set: &heron_policy::PolicySet,
    schema: &SchemaName,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let now = chrono::Utc::now();
    let output = set.ingest(schema, body)?;
    let alerts =
        heron_app::pipeline::alerts_from_drafts(EventId::new(), schema, output.alerts, body, now);
    let mut results = Vec::new();
    for mut alert in alerts {
        let disposition = heron_app::pipeline::triage_alert(set, &mut alert, now, Vec::new())?;
        let decision = match disposition {
            Disposition::Open { .. } | Disposition::Attach { .. } => "alert",
            Disposition::Notice { .. } => "notice",
            Disposition::Discard => "discard",
        };
        results.push(serde_json::json!({
            "title": alert.title,
            "description": alert.description,
            "severity": alert.severity,
            "attributes": alert.attributes,
            "tags": alert.tags,
            "channel": alert.channel,
            "fingerprint": alert.fingerprint,
            "publish": decision,
        }));
    }
    Ok(serde_json::json!({
        "schema": schema,
        "ingest_package": output.package_found,
        "alerts": results,
    }))
}

fn parse_percent(raw: &str) -> Result<f64, String> {
    let value: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a percentage (0 to 100)"))
    }
}

fn print_test_report(report: &heron_policy::testing::TestReport, verbose: bool) {
    let mut current_file = None;
    for result in &report.results {
        // Like `opa test`: failures and errors always, every test with -v; print() output
        // of a test is shown whenever the test is.
        let show = verbose || matches!(result.outcome, Outcome::Fail | Outcome::Error);
        if !show {
            continue;
        }
        if current_file != Some(&result.file) {
            out!("{}:", result.file);
            current_file = Some(&result.file);
        }
        out!(
            "data.{}.{}: {} ({:.3}ms)",
            result.package,
            result.name,
            result.outcome.label(),
            result.duration.as_secs_f64() * 1000.0
        );
        for case in &result.cases {
            if verbose || case.outcome != Outcome::Pass {
                out!("  {}: {}", case.name.join(" / "), case.outcome.label());
            }
        }
        for line in &result.output {
            out!("  {line}");
        }
    }
    let total = report.results.len();
    out!("{}", "-".repeat(80));
    out!("PASS: {}/{}", report.count(Outcome::Pass), total);
    for outcome in [Outcome::Fail, Outcome::Error, Outcome::Skipped] {
        let n = report.count(outcome);
        if n > 0 {
            out!("{}: {n}/{total}", outcome.label());
        }
    }
    if let Some(coverage) = &report.coverage {
        for file in &coverage.files {
            let uncovered = file
                .not_covered
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            if uncovered.is_empty() {
                out!("coverage {:>5.1}%  {}", file.percent, file.path);
            } else {
                out!(
                    "coverage {:>5.1}%  {}  (not covered: lines {uncovered})",
                    file.percent,
                    file.path
                );
            }
        }
        out!("coverage {:>5.1}%  total", coverage.percent);
    }
}

async fn events(settings: &Settings, command: EventsCommand) -> anyhow::Result<ExitCode> {
    let store = runtime::open_store(settings).await?;
    let now = chrono::Utc::now();
    match command {
        EventsCommand::List {
            state,
            schema,
            limit,
            format,
        } => {
            let query = EventQuery {
                state,
                schema: schema.as_deref().map(SchemaName::parse).transpose()?,
                before: None,
                limit: limit.clamp(1, 10_000),
            };
            let page = store.list_events(&query).await?;
            match format {
                Format::Json => out!("{}", serde_json::to_string_pretty(&page.items)?),
                Format::Text => {
                    out!(
                        "{:<36}  {:<10}  {:<16}  {:>3}  {:<20}  ERROR",
                        "ID",
                        "STATE",
                        "SCHEMA",
                        "TRY",
                        "RECEIVED"
                    );
                    for e in &page.items {
                        out!(
                            "{:<36}  {:<10}  {:<16}  {:>3}  {:<20}  {}",
                            e.id,
                            e.state,
                            e.schema,
                            e.attempts,
                            e.received_at.format("%Y-%m-%d %H:%M:%S"),
                            e.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
        EventsCommand::Show { id } => match store.get_event(id).await? {
            Some(event) => out!("{}", serde_json::to_string_pretty(&event)?),
            None => bail!("event {id} not found"),
        },
        EventsCommand::Retry { id, all_failed } => {
            let audit = |target: Option<String>, details: serde_json::Value| {
                heron_core::access::AuditEntry {
                    id: heron_core::AuditId::new(),
                    at: chrono::Utc::now(),
                    actor: heron_cli::tokens::cli_actor(),
                    source: heron_core::access::AuditSource::Cli,
                    remote: None,
                    action: if target.is_some() {
                        "event.retry"
                    } else {
                        "event.retry_failed"
                    }
                    .to_owned(),
                    ticket_id: None,
                    target,
                    details,
                }
            };
            if all_failed {
                let n = store.retry_failed_events(now).await?;
                store
                    .record_audit(audit(None, serde_json::json!({ "retried": n })))
                    .await?;
                out!("{n} failed events queued again");
            } else if let Some(id) = id {
                let event = store.retry_event(id, now).await?;
                store
                    .record_audit(audit(Some(id.to_string()), serde_json::json!({})))
                    .await?;
                out!(
                    "event {} queued again (was attempted {} times)",
                    event.id,
                    event.attempts
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

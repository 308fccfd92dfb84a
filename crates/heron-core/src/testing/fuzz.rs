//! The driver of Heron's long proptest runs (`fuzz_*` tests, ignored by default; see
//! docs/development.md#fuzzing): `PROPTEST_CASES` cases, or with `HERON_FUZZ_SECS` as many
//! rounds of them as fit in that many seconds. Stable Rust, no nightly, no cargo-fuzz.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::time::{Duration, Instant};

/// Runs `test` over `strategy` as configured by the environment; panics with the shrunk
/// failing input when one fails. Prints how many cases ran.
pub fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    // Failures are reported (shrunk) on stderr; there is no source file to persist seeds
    // next to, so none are saved.
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let budget = std::env::var("HERON_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut rounds = 0u64;
    loop {
        let mut runner = TestRunner::new(config.clone());
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        rounds += 1;
        if budget.is_none_or(|b| started.elapsed() >= b) {
            break;
        }
    }
    eprintln!(
        "{name}: {} cases in {:.1} s",
        rounds * u64::from(config.cases),
        started.elapsed().as_secs_f64()
    );
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fuzzing (proptest, ignored by default; docs/development.md#fuzzing): Slack's `v0` request
//! signature. Any timestamp, signature and body is answered without a panic; a body signed
//! with the secret at a time within five minutes verifies, and changing any of its parts
//! does not.

use heron_core::slack::RequestVerifier;
use heron_core::testing::fuzz::fuzz;
use heron_slack::SigningSecret;
use proptest::prelude::*;

fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|t| t.to_string()),
        (-400i64..400).prop_map(|skew| (1_700_000_000 + skew).to_string()),
        "[ -~]{0,24}",
        Just(i64::MIN.to_string()),
        Just(i64::MAX.to_string()),
    ]
}

#[test]
#[ignore = "fuzzing: run with --ignored (docs/development.md#fuzzing)"]
fn fuzz_slack_signatures_verify_exactly_what_was_signed() {
    let secret = SigningSecret::new("8f742231b10e8888abcd99yyyzzz85a5");
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    fuzz(
        "slack signatures",
        (
            timestamp(),
            "[ -~]{0,80}",
            prop::collection::vec(any::<u8>(), 0..512),
            any::<prop::sample::Index>(),
        ),
        |(ts, signature, body, flip)| {
            // Arbitrary input: an answer, never a panic.
            let _ = secret.verify(&ts, &signature, &body, now);
            let signed = secret.sign(&ts, &body);
            let fresh = ts.trim().parse::<i64>().is_ok_and(|t| {
                t.abs_diff(now.timestamp()) <= heron_slack::MAX_SKEW_SECS.unsigned_abs()
            });
            prop_assert_eq!(
                secret.verify(&ts, &signed, &body, now).is_ok(),
                fresh && !ts.is_empty()
            );
            if fresh && !body.is_empty() {
                let mut changed = body.clone();
                let at = flip.index(changed.len());
                changed[at] ^= 0x01;
                prop_assert!(secret.verify(&ts, &signed, &changed, now).is_err());
                prop_assert!(
                    SigningSecret::new("another")
                        .verify(&ts, &signed, &body, now)
                        .is_err()
                );
            }
            Ok(())
        },
    );
}

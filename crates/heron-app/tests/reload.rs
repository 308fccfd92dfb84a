#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Policy reloads through [`PolicyHandle`]: a set the loader accepts is swapped in, a refused
//! one leaves the set in force and its error in the status, and snapshots taken before a swap
//! keep the set they were taken from.

use heron_app::{PolicyHandle, ReloadError};
use heron_core::policy::{PolicyEngine, PolicyLoadFailure, PolicyLoader};
use heron_policy::{LoadOptions, PolicySet};
use std::sync::{Arc, Mutex};

fn set(schema: &str) -> Arc<dyn PolicyEngine> {
    let source = format!("package ingest.{schema}\n\nalerts contains {{\"title\": \"x\"}}\n");
    Arc::new(
        PolicySet::from_sources(vec![("p.rego".into(), source)], &LoadOptions::default()).unwrap(),
    )
}

/// Hands out the queued results in order.
struct Scripted(Mutex<Vec<Result<Arc<dyn PolicyEngine>, PolicyLoadFailure>>>);

impl PolicyLoader for Scripted {
    fn load(&self) -> Result<Arc<dyn PolicyEngine>, PolicyLoadFailure> {
        self.0.lock().unwrap().remove(0)
    }
}

fn schemas(engine: &Arc<dyn PolicyEngine>) -> Vec<String> {
    engine.info().ingest_schemas
}

#[test]
fn an_accepted_set_is_swapped_in_and_a_refused_one_keeps_the_set_in_force_with_its_error() {
    let loader = Scripted(Mutex::new(vec![
        Ok(set("second")),
        Err(PolicyLoadFailure("p.rego:3:1: unexpected token".into())),
        Ok(set("third")),
    ]));
    let handle = PolicyHandle::reloadable(set("first"), Arc::new(loader));
    let snapshot = handle.current();
    assert_eq!(handle.status().generation, 1);

    let status = handle.reload("api").unwrap();
    assert_eq!(status.generation, 2);
    assert_eq!(schemas(&handle.current()), vec!["second"]);
    assert_eq!(
        schemas(&snapshot),
        vec!["first"],
        "a snapshot keeps its set"
    );

    let refused = handle.reload("watch").unwrap_err();
    assert!(matches!(refused, ReloadError::Refused(_)));
    assert!(refused.to_string().contains("previous set stays in force"));
    assert_eq!(schemas(&handle.current()), vec!["second"]);
    let status = handle.status();
    assert_eq!(status.generation, 2);
    assert_eq!(status.last_trigger.as_deref(), Some("watch"));
    assert_eq!(
        status.last_error.as_deref(),
        Some("p.rego:3:1: unexpected token")
    );
    assert_eq!((status.reloads_ok, status.reloads_failed), (1, 1));

    handle.reload("sighup").unwrap();
    assert_eq!(schemas(&handle.current()), vec!["third"]);
    assert_eq!(
        handle.status().last_error,
        None,
        "a good reload clears the error"
    );
}

#[test]
fn a_fixed_set_cannot_be_reloaded() {
    let handle = PolicyHandle::new(set("only"));
    assert!(!handle.is_reloadable());
    assert_eq!(
        handle.reload("api").unwrap_err(),
        ReloadError::NotReloadable
    );
    assert_eq!(schemas(&handle.current()), vec!["only"]);
}

#[test]
fn concurrent_readers_always_see_a_whole_set_while_reloads_swap() {
    let loader = Scripted(Mutex::new(
        (0..200).map(|i| Ok(set(&format!("s{i}")))).collect(),
    ));
    let handle = PolicyHandle::reloadable(set("first"), Arc::new(loader));
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..20_000 {
                let names = schemas(&handle.current());
                assert_eq!(names.len(), 1);
                seen.insert(names[0].clone());
            }
            seen
        });
        for _ in 0..200 {
            handle.reload("api").unwrap();
        }
        assert!(!reader.join().unwrap().is_empty());
    });
    assert_eq!(handle.status().generation, 201);
    assert_eq!(schemas(&handle.current()), vec!["s199"]);
}

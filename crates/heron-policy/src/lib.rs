//! Rego policies on regorus: loading a policy folder, evaluating warren-compatible `ingest`,
//! `enrich` and `triage` packages for the pipeline (with the prompt templates of `enrich`
//! tasks, see [`prompts`]), and running `test_*` rules.
//!
//! Invariants:
//! - a [`PolicySet`] is immutable once loaded; it is compiled fully at load time, so a set that
//!   loads can be evaluated, and a folder that fails to compile never yields a set;
//! - evaluation takes `&self` and is safe to share between threads;
//! - a missing package has warren's default (one alert from the raw event; publish = alert),
//!   while a package that exists but errors is an error, never a silent default.

mod decode;
pub mod fixtures;
mod load;
pub mod prompts;
mod set;
pub mod testing;

pub use load::{LoadOptions, PolicyLoadError, RegoVersion};
pub use set::PolicySet;

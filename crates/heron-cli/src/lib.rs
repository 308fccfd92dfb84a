//! The `heron` binary's library half: settings, and the one place where concrete adapters
//! (SQLite or PostgreSQL store, regorus policies, Prometheus exporter) are chosen and wired
//! into the application and the server. Integration tests start Heron through [`runtime`].

pub mod agent;
pub mod reload;
pub mod runtime;
pub mod settings;
pub mod tokens;

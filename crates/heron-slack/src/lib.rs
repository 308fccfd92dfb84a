//! Heron's Slack adapter: [`SlackClient`] (the `ChatPlatform` port over the Slack Web API with
//! slack-morphism), [`SigningSecret`] (request signature verification, the
//! `RequestVerifier` port) and the Block Kit rendering of what Heron posts ([`render`]).
//!
//! Feature `testing`: [`testing::FakeSlack`], a local Slack Web API that records calls and
//! answers in Slack's own JSON formats.

mod client;
pub mod render;
mod verify;

#[cfg(feature = "testing")]
pub mod testing;

pub use client::{SlackClient, SlackClientSettings, SlackSetupError};
pub use verify::{MAX_SKEW_SECS, SigningSecret};

//! Schema names select the ingest policy (`data.ingest.<schema>`) for a webhook.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated schema name: `[a-z0-9][a-z0-9_.-]{0,63}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SchemaName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid schema name {0:?}: expected 1-64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
)]
pub struct InvalidSchemaName(pub String);

impl SchemaName {
    pub fn parse(raw: &str) -> Result<Self, InvalidSchemaName> {
        let bytes = raw.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
        if first_ok && rest_ok && bytes.len() <= 64 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidSchemaName(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SchemaName {
    type Error = InvalidSchemaName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SchemaName> for String {
    fn from(value: SchemaName) -> Self {
        value.0
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_are_valid_schema_names() {
        for ok in [
            "guardduty",
            "aws.securityhub",
            "okta-prod",
            "x",
            "0day_feed",
        ] {
            assert!(SchemaName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_with_capitals_slashes_or_leading_punctuation_are_rejected() {
        let too_long = "a".repeat(65);
        for bad in [
            "",
            "GuardDuty",
            "a/b",
            "-x",
            ".x",
            "a b",
            too_long.as_str(),
            "é",
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Alert fingerprints: the grouping key that turns an alert storm into one ticket.
//!
//! A fingerprint is the SHA-256 of a canonical encoding (object keys sorted, no whitespace) of
//! either the policy's own `fingerprint` value or, without one, the alert's title and its
//! attributes (sorted), always prefixed by the schema: two schemas never share a fingerprint.

use crate::{AlertDraft, SchemaName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of an alert draft produced from `schema`, given its final title.
    pub fn of(schema: &SchemaName, draft: &AlertDraft, title: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"heron-fingerprint-v1\0");
        hasher.update(schema.as_str().as_bytes());
        hasher.update(b"\0");
        let mut canonical = String::new();
        match &draft.fingerprint {
            Some(key) => {
                canonical.push_str("key:");
                write_canonical(key, &mut canonical);
            }
            None => {
                let mut attributes: Vec<(&str, &str)> = draft
                    .attributes
                    .iter()
                    .map(|a| (a.key.as_str(), a.value.as_str()))
                    .collect();
                attributes.sort_unstable();
                let derived = serde_json::json!({ "title": title, "attributes": attributes });
                canonical.push_str("derived:");
                write_canonical(&derived, &mut canonical);
            }
        }
        hasher.update(canonical.as_bytes());
        Self(hex::encode(hasher.finalize()))
    }

    /// Wraps a stored fingerprint.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// JSON with object keys sorted, independent of how serde_json orders maps in this build.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attribute;
    use serde_json::json;

    fn schema(s: &str) -> SchemaName {
        SchemaName::parse(s).unwrap()
    }

    fn draft(fp: Option<serde_json::Value>, attrs: &[(&str, &str)]) -> AlertDraft {
        AlertDraft {
            fingerprint: fp,
            attributes: attrs
                .iter()
                .map(|(k, v)| Attribute {
                    key: (*k).into(),
                    value: (*v).into(),
                    link: None,
                })
                .collect(),
            ..AlertDraft::default()
        }
    }

    #[test]
    fn policy_fingerprint_ignores_key_order_and_title() {
        let a = draft(Some(json!({"type": "x", "resource": "i-1"})), &[]);
        let b = draft(
            Some(json!({"resource": "i-1", "type": "x"})),
            &[("ip", "1")],
        );
        assert_eq!(
            Fingerprint::of(&schema("guardduty"), &a, "one title"),
            Fingerprint::of(&schema("guardduty"), &b, "another title")
        );
    }

    #[test]
    fn same_key_in_two_schemas_gives_two_fingerprints() {
        let a = draft(Some(json!("k")), &[]);
        assert_ne!(
            Fingerprint::of(&schema("falco"), &a, "t"),
            Fingerprint::of(&schema("okta"), &a, "t")
        );
    }

    #[test]
    fn derived_fingerprint_ignores_attribute_order_but_not_values() {
        let a = draft(None, &[("ip", "192.0.2.1"), ("user", "bob")]);
        let b = draft(None, &[("user", "bob"), ("ip", "192.0.2.1")]);
        let c = draft(None, &[("user", "eve"), ("ip", "192.0.2.1")]);
        let s = schema("falco");
        assert_eq!(Fingerprint::of(&s, &a, "t"), Fingerprint::of(&s, &b, "t"));
        assert_ne!(Fingerprint::of(&s, &a, "t"), Fingerprint::of(&s, &c, "t"));
        assert_ne!(Fingerprint::of(&s, &a, "t"), Fingerprint::of(&s, &a, "u"));
    }
}

//! `heron token create|list|revoke`: stored API tokens (see `heron_core::access` and
//! docs/adr/0010-stored-tokens-and-the-audit-log.md).

use heron_core::TokenId;
use heron_core::access::{
    ApiToken, AuditEntry, AuditSource, NewApiToken, Scope, TokenRef, parse_scopes, token_hash,
};
use heron_core::ports::{Store, StoreError};

/// A fresh secret: `heron_` and 256 random bits, base64url. Enough entropy that a plain
/// SHA-256 of it is safe to store (nothing to brute-force).
pub fn new_secret() -> anyhow::Result<String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(format!(
        "heron_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// `30d`, `12h`, `90m` or `3600s` from now.
pub fn parse_expiry(
    raw: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let bad = || anyhow::anyhow!("--expires {raw:?}: expected a duration such as 30d, 12h or 90m");
    let amount: i64 = number.parse().map_err(|_| bad())?;
    if amount <= 0 {
        return Err(bad());
    }
    let duration = match unit {
        "d" => chrono::Duration::try_days(amount),
        "h" => chrono::Duration::try_hours(amount),
        "m" => chrono::Duration::try_minutes(amount),
        "s" => chrono::Duration::try_seconds(amount),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_add_signed(duration)
        .ok_or_else(|| anyhow::anyhow!("--expires {raw:?} is too far ahead"))
}

/// Who runs the command, for the audit log.
pub fn cli_actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}

fn audit(action: &str, target: &str, details: serde_json::Value) -> AuditEntry {
    AuditEntry {
        id: heron_core::AuditId::new(),
        at: chrono::Utc::now(),
        actor: cli_actor(),
        source: AuditSource::Cli,
        remote: None,
        action: action.to_owned(),
        ticket_id: None,
        target: Some(target.to_owned()),
        details,
    }
}

/// Validates and stores a new token; its secret (to show once) and row.
pub async fn create(
    store: &dyn Store,
    name: &str,
    scopes: &str,
    expires: Option<&str>,
) -> anyhow::Result<(String, ApiToken)> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        anyhow::bail!("--name must be 1 to 128 printable characters");
    }
    if name.parse::<TokenId>().is_ok() {
        anyhow::bail!("--name must not look like a token id (a UUID)");
    }
    let scopes = parse_scopes(scopes).map_err(|e| {
        anyhow::anyhow!("--scopes: {e}; expected a comma-separated list of ingest, read, write")
    })?;
    if scopes.is_empty() {
        anyhow::bail!("--scopes needs at least one of ingest, read, write");
    }
    let now = chrono::Utc::now();
    let expires_at = expires.map(|raw| parse_expiry(raw, now)).transpose()?;
    let secret = new_secret()?;
    let token = NewApiToken {
        id: TokenId::new(),
        name: name.to_owned(),
        hash: token_hash(&secret),
        scopes: scopes.clone(),
        created_at: now,
        expires_at,
    };
    let details = serde_json::json!({
        "scopes": scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
        "expires_at": expires_at,
    });
    let created = store
        .create_api_token(token, audit("token.create", name, details))
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => anyhow::anyhow!(
                "a token named {name:?} exists already; revoke it first or pick another name"
            ),
            other => other.into(),
        })?;
    Ok((secret, created))
}

pub async fn revoke(store: &dyn Store, which: &str) -> anyhow::Result<ApiToken> {
    let reference = TokenRef::parse(which.trim());
    store
        .revoke_api_token(
            &reference,
            chrono::Utc::now(),
            audit("token.revoke", which.trim(), serde_json::json!({})),
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => anyhow::anyhow!("no active {reference}"),
            StoreError::Conflict(m) => anyhow::anyhow!("{m}"),
            other => other.into(),
        })
}

/// The table `heron token list` prints.
pub fn table(tokens: &[ApiToken], now: chrono::DateTime<chrono::Utc>) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    let mut out = format!(
        "{:<36}  {:<24}  {:<18}  {:<16}  {:<16}  {:<16}  {}\n",
        "ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "LAST USED", "STATE"
    );
    for t in tokens {
        let state = match t.usable_at(now) {
            Ok(()) => "active".to_owned(),
            Err(heron_core::access::TokenRefusal::Revoked) => {
                format!("revoked {}", time(t.revoked_at))
            }
            Err(heron_core::access::TokenRefusal::Expired) => "expired".to_owned(),
        };
        out.push_str(&format!(
            "{:<36}  {:<24}  {:<18}  {:<16}  {:<16}  {:<16}  {}\n",
            t.id,
            t.name,
            t.scopes
                .iter()
                .map(Scope::as_str)
                .collect::<Vec<_>>()
                .join(","),
            time(Some(t.created_at)),
            time(t.expires_at),
            time(t.last_used_at),
            state
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert!(a.starts_with("heron_") && a.len() == 6 + 43, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn expiry_is_a_positive_duration_from_now() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_expiry("30d", now).unwrap(),
            now + chrono::Duration::days(30)
        );
        assert_eq!(
            parse_expiry("90m", now).unwrap(),
            now + chrono::Duration::minutes(90)
        );
        assert!(parse_expiry("0d", now).is_err());
        assert!(parse_expiry("soon", now).is_err());
        assert!(parse_expiry("3w", now).is_err());
    }
}

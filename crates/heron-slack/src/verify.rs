//! Slack request signing: `X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))`
//! with `X-Slack-Request-Timestamp: {ts}` no more than 5 minutes from now, either way.

use heron_core::Timestamp;
use heron_core::slack::{RequestVerifier, SignatureError};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a request's timestamp may be from now, in seconds.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// The app's signing secret. `Debug` does not show it.
#[derive(Clone)]
pub struct SigningSecret(String);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl SigningSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The `X-Slack-Signature` of `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!("v0={}", hex::encode(self.mac(timestamp, body)))
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.0.as_bytes()) {
            Ok(mac) => mac,
            Err(_) => return Vec::new(),
        };
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

impl RequestVerifier for SigningSecret {
    fn verify(
        &self,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), SignatureError> {
        if timestamp.is_empty() || signature.is_empty() {
            return Err(SignatureError::Missing);
        }
        let sent: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::Malformed)?;
        // `abs_diff`: a timestamp near i64::MIN must not overflow the subtraction.
        if now.timestamp().abs_diff(sent) > MAX_SKEW_SECS.unsigned_abs() {
            return Err(SignatureError::Stale);
        }
        let given = signature
            .strip_prefix("v0=")
            .and_then(|h| hex::decode(h).ok())
            .ok_or(SignatureError::Mismatch)?;
        let expected = self.mac(timestamp, body);
        if expected.is_empty() || !bool::from(expected.ct_eq(&given)) {
            return Err(SignatureError::Mismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    // Slack's documented test vector (docs.slack.dev, "Verifying requests from Slack"; also
    // slackapi/python-slack-sdk tests/slack_sdk/signature/test_signature_verifier.py).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(secs: i64) -> Timestamp {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn slacks_documented_test_vector_signs_and_verifies() {
        let secret = SigningSecret::new(SECRET);
        assert_eq!(secret.sign(TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        assert_eq!(
            secret.verify(
                TIMESTAMP,
                SIGNATURE,
                BODY.as_bytes(),
                at(1_531_420_618 + 60)
            ),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_or_another_secret_is_a_mismatch() {
        let secret = SigningSecret::new(SECRET);
        let now = at(1_531_420_618);
        let tampered = BODY.replace("roadrunner", "coyote");
        assert_eq!(
            secret.verify(TIMESTAMP, SIGNATURE, tampered.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            SigningSecret::new("other").verify(TIMESTAMP, SIGNATURE, BODY.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            secret.verify(TIMESTAMP, "v1=abc", BODY.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_timestamp_more_than_five_minutes_away_is_stale_either_way() {
        let secret = SigningSecret::new(SECRET);
        for now in [1_531_420_618 + 301, 1_531_420_618 - 301] {
            assert_eq!(
                secret.verify(TIMESTAMP, SIGNATURE, BODY.as_bytes(), at(now)),
                Err(SignatureError::Stale)
            );
        }
        assert_eq!(
            secret.verify("", SIGNATURE, BODY.as_bytes(), at(0)),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            secret.verify("soon", SIGNATURE, BODY.as_bytes(), at(0)),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_timestamp_at_the_ends_of_the_integer_range_is_stale_not_an_overflow() {
        let secret = SigningSecret::new(SECRET);
        for ts in [i64::MIN.to_string(), i64::MAX.to_string()] {
            let signed = secret.sign(&ts, b"x");
            assert_eq!(
                secret.verify(&ts, &signed, b"x", at(1_700_000_000)),
                Err(SignatureError::Stale)
            );
        }
    }

    #[test]
    fn the_secret_is_not_shown_in_debug_output() {
        assert!(!format!("{:?}", SigningSecret::new(SECRET)).contains(SECRET));
    }
}

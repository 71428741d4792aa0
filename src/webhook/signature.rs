//! Signature verification for the two schemes of ARCHITECTURE §3, and signing for `coach-worker sign`.
//!
//! * **Standard Webhooks**: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> …`;
//!   the signed content is `{id}.{timestamp}.{body}` and the key is the base64 decoding of the secret
//!   after `whsec_` (spec: `shared/data/webhooks/standard-webhooks_spec.md`, "Verifying webhook
//!   authenticity").
//! * **Make-friendly**: Make's `sha256(text; "hex"; key)` HMACs with the key as UTF-8 text and prints
//!   hex, so the worker accepts `X-Coach-Timestamp: <unix seconds>` and
//!   `X-Coach-Signature: v1=<hex HMAC-SHA256(secret text, "{timestamp}.{body}")>`.
//!
//! Every configured secret is tried (rotation), each comparison is constant time
//! (`Mac::verify_slice`), and the error never tells which secret or byte was wrong. The timestamp must
//! be within the tolerance in both directions, which bounds replays of a captured request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A webhook secret from configuration.
#[derive(Clone)]
pub struct Secret {
    /// The secret text as configured: the Make scheme's key.
    text: String,
    /// The decoded key for Standard Webhooks, when the secret is a `whsec_` secret.
    standard_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Parses a configured secret. `whsec_` secrets must carry valid base64 after the prefix; any other
    /// text of at least 16 characters is a Make-scheme secret.
    pub fn parse(text: &str) -> Result<Secret, SignatureError> {
        if let Some(rest) = text.strip_prefix("whsec_") {
            let key = B64.decode(rest).map_err(|_| {
                SignatureError::BadSecret("a `whsec_` secret must be followed by base64".into())
            })?;
            if key.len() < 16 {
                return Err(SignatureError::BadSecret(
                    "a `whsec_` secret must decode to at least 16 bytes".into(),
                ));
            }
            Ok(Secret {
                text: text.to_owned(),
                standard_key: Some(key),
            })
        } else if text.chars().count() < 16 {
            Err(SignatureError::BadSecret(
                "a secret must be at least 16 characters long".into(),
            ))
        } else {
            Ok(Secret {
                text: text.to_owned(),
                standard_key: None,
            })
        }
    }

    /// A fresh random `whsec_` secret (used by `serve --demo`).
    pub fn generate() -> Secret {
        let bytes: [u8; 24] = rand::random();
        let text = format!("whsec_{}", B64.encode(bytes));
        Secret {
            text,
            standard_key: Some(bytes.to_vec()),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The signature scheme of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// Standard Webhooks (`webhook-*` headers).
    Standard,
    /// Make-friendly (`X-Coach-*` headers).
    Make,
}

/// Why a request's signature was refused. Each maps to a 401 with a stable code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error(
        "the request is not signed: send `webhook-id`, `webhook-timestamp` and `webhook-signature` (Standard Webhooks) \
         or `X-Coach-Timestamp` and `X-Coach-Signature` (Make scheme)"
    )]
    Missing,
    #[error("the signature headers are malformed: {0}")]
    Malformed(String),
    #[error(
        "the signed timestamp is outside the allowed window of {tolerance_secs} seconds; sign each request when it is sent \
         and check the sender's clock"
    )]
    Stale { tolerance_secs: u64 },
    #[error(
        "no configured secret produces this signature; check the secret and that the exact raw body is signed"
    )]
    Invalid,
    #[error("bad webhook secret: {0}")]
    BadSecret(String),
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "SIGNATURE_MISSING",
            SignatureError::Malformed(_) => "SIGNATURE_MALFORMED",
            SignatureError::Stale { .. } => "SIGNATURE_STALE",
            SignatureError::Invalid => "SIGNATURE_INVALID",
            SignatureError::BadSecret(_) => "BAD_SECRET",
        }
    }
}

/// The signature headers of a request, as read by the HTTP layer (names are case-insensitive there).
#[derive(Debug, Default, Clone)]
pub struct SignedHeaders<'a> {
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
    pub coach_timestamp: Option<&'a str>,
    pub coach_signature: Option<&'a str>,
}

/// What a verified request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scheme: Scheme,
    pub timestamp: i64,
}

/// Verifies a request's signature over its exact raw body. `now` is unix seconds.
pub fn verify(
    secrets: &[Secret],
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<Verified, SignatureError> {
    if let Some(sig_header) = headers.webhook_signature {
        let id = headers
            .webhook_id
            .ok_or_else(|| SignatureError::Malformed("`webhook-id` is missing".into()))?;
        let ts_text = headers
            .webhook_timestamp
            .ok_or_else(|| SignatureError::Malformed("`webhook-timestamp` is missing".into()))?;
        let timestamp = parse_timestamp(ts_text, "webhook-timestamp")?;
        check_window(timestamp, now, tolerance_secs)?;
        let candidates = parse_standard_signatures(sig_header)?;
        for secret in secrets {
            let Some(key) = &secret.standard_key else {
                continue;
            };
            for candidate in &candidates {
                let mut mac = new_mac(key);
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(ts_text.as_bytes());
                mac.update(b".");
                mac.update(body);
                if mac.verify_slice(candidate).is_ok() {
                    return Ok(Verified {
                        scheme: Scheme::Standard,
                        timestamp,
                    });
                }
            }
        }
        Err(SignatureError::Invalid)
    } else if let Some(sig_header) = headers.coach_signature {
        let ts_text = headers
            .coach_timestamp
            .ok_or_else(|| SignatureError::Malformed("`X-Coach-Timestamp` is missing".into()))?;
        let timestamp = parse_timestamp(ts_text, "X-Coach-Timestamp")?;
        check_window(timestamp, now, tolerance_secs)?;
        let candidates = parse_make_signatures(sig_header)?;
        for secret in secrets {
            for candidate in &candidates {
                let mut mac = new_mac(secret.text.as_bytes());
                mac.update(ts_text.as_bytes());
                mac.update(b".");
                mac.update(body);
                if mac.verify_slice(candidate).is_ok() {
                    return Ok(Verified {
                        scheme: Scheme::Make,
                        timestamp,
                    });
                }
            }
        }
        Err(SignatureError::Invalid)
    } else if headers.webhook_id.is_some()
        || headers.webhook_timestamp.is_some()
        || headers.coach_timestamp.is_some()
    {
        Err(SignatureError::Malformed(
            "a signature header is missing".into(),
        ))
    } else {
        Err(SignatureError::Missing)
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this never fails.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn parse_timestamp(text: &str, header: &str) -> Result<i64, SignatureError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| SignatureError::Malformed(format!("`{header}` must be unix seconds")))
}

fn check_window(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), SignatureError> {
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    if now.saturating_sub(timestamp) > tolerance || timestamp.saturating_sub(now) > tolerance {
        return Err(SignatureError::Stale { tolerance_secs });
    }
    Ok(())
}

/// `v1,<base64>` entries separated by spaces; other versions are ignored as the spec asks.
fn parse_standard_signatures(header: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    let mut out = Vec::new();
    for part in header.split_whitespace() {
        if let Some(b64) = part.strip_prefix("v1,")
            && let Ok(bytes) = B64.decode(b64)
        {
            out.push(bytes);
        }
    }
    if out.is_empty() {
        return Err(SignatureError::Malformed(
            "`webhook-signature` holds no `v1,<base64>` signature".into(),
        ));
    }
    Ok(out)
}

/// `v1=<hex>` entries, separated by commas or spaces (several while a secret is being rotated).
fn parse_make_signatures(header: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    let mut out = Vec::new();
    for part in header.split([',', ' ']).filter(|p| !p.is_empty()) {
        if let Some(hex_text) = part.strip_prefix("v1=")
            && let Ok(bytes) = hex::decode(hex_text)
        {
            out.push(bytes);
        }
    }
    if out.is_empty() {
        return Err(SignatureError::Malformed(
            "`X-Coach-Signature` holds no `v1=<hex>` signature".into(),
        ));
    }
    Ok(out)
}

/// Standard Webhooks signature (`v1,<base64>`) of a message.
pub fn sign_standard(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let key = secret.standard_key.as_ref().ok_or_else(|| {
        SignatureError::BadSecret("the Standard Webhooks scheme needs a `whsec_` secret".into())
    })?;
    let mut mac = new_mac(key);
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// Make-scheme signature (`v1=<hex>`) of a body.
pub fn sign_make(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = new_mac(secret.text.as_bytes());
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_headers<'a>(ts: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            coach_timestamp: Some(ts),
            coach_signature: Some(sig),
            ..Default::default()
        }
    }

    #[test]
    fn make_scheme_round_trips_and_refuses_tampering() {
        let secret = Secret::parse("make-secret-0123456789").unwrap();
        let body = br#"{"run_request_id":"recABCDEFGHIJKLMN"}"#;
        let sig = sign_make(&secret, 1_700_000_000, body);
        let headers = make_headers("1700000000", &sig);
        let ok = verify(
            std::slice::from_ref(&secret),
            &headers,
            body,
            1_700_000_010,
            300,
        )
        .unwrap();
        assert_eq!(ok.scheme, Scheme::Make);
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                &headers,
                b"{}",
                1_700_000_010,
                300
            ),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                &headers,
                body,
                1_700_000_400,
                300
            ),
            Err(SignatureError::Stale {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(&[secret], &headers, body, 1_699_999_600, 300),
            Err(SignatureError::Stale {
                tolerance_secs: 300
            })
        );
    }

    #[test]
    fn rotation_accepts_any_configured_secret() {
        let old = Secret::parse("old-secret-0123456789").unwrap();
        let new = Secret::parse("new-secret-0123456789").unwrap();
        let sig = sign_make(&old, 10, b"x");
        assert!(
            verify(
                &[new.clone(), old],
                &make_headers("10", &sig),
                b"x",
                10,
                300
            )
            .is_ok()
        );
        assert_eq!(
            verify(&[new], &make_headers("10", &sig), b"x", 10, 300),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn secrets_are_never_printed() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}

//! Signature verification for the two schemes of ARCHITECTURE §3, and signing for `coach-worker sign`.
//!
//! * **Standard Webhooks**: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> …`;
//!   the signed content is `{id}.{timestamp}.{body}` and the key is the base64 decoding of the secret
//!   after `whsec_` (spec: `shared/data/webhooks/standard-webhooks_spec.md`, "Verifying webhook
//!   authenticity"); a bare base64 key of at least 16 bytes is taken too, as the reference
//!   libraries take it.
//! * **Make-friendly**: Make's `sha256(text; "hex"; key)` HMACs with the key as UTF-8 text and prints
//!   hex, so the worker accepts `X-Coach-Timestamp: <unix seconds>` and
//!   `X-Coach-Signature: v1=<hex HMAC-SHA256(secret text, "{timestamp}.{body}")>`.
//!
//! Verification is in two steps so that a request costs little before it has shown it is signed:
//! [`check_headers`] runs before the body is read (headers present, at most
//! [`MAX_SIGNATURE_HEADER`] bytes, timestamp within the tolerance in both directions, between one
//! and [`MAX_CANDIDATES`] candidates of exactly 32 bytes — shorter or longer ones are dropped
//! undecoded), then [`Pending::verify`] computes one HMAC per configured secret (rotation) over the
//! body and compares it with every candidate in constant time. The error never tells which secret or
//! byte was wrong.

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
    /// text of at least 16 characters is a Make-scheme secret, and also a Standard Webhooks key when
    /// it is valid base64 of at least 16 bytes (the form without the prefix).
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
            // The Standard Webhooks reference libraries also take the bare base64 key, so a secret
            // that is valid base64 of at least 16 bytes serves `webhook-signature` as well. Make
            // secrets with `-`, `_` or odd lengths are not base64 and stay Make-only.
            let standard_key = B64.decode(text).ok().filter(|k| k.len() >= 16);
            Ok(Secret {
                text: text.to_owned(),
                standard_key,
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
    #[error(
        "the request carries a Standard Webhooks signature but no configured secret is a Standard Webhooks \
         secret; add the `whsec_…` secret (or its bare base64 key) to COACH_WEBHOOK_SECRETS"
    )]
    NoStandardSecret,
    #[error("bad webhook secret: {0}")]
    BadSecret(String),
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "SIGNATURE_MISSING",
            SignatureError::Malformed(_) => "SIGNATURE_MALFORMED",
            SignatureError::Stale { .. } => "SIGNATURE_STALE",
            SignatureError::Invalid | SignatureError::NoStandardSecret => "SIGNATURE_INVALID",
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

/// Longest signature header read. A real header holds a few 47- or 67-character entries; anything
/// much longer is refused before any of it is decoded.
pub const MAX_SIGNATURE_HEADER: usize = 1024;
/// Most signatures of the right shape one header may carry (several only while a secret rotates).
pub const MAX_CANDIDATES: usize = 5;
/// An HMAC-SHA256 is 32 bytes; a candidate of any other length cannot match and is never compared.
const MAC_LEN: usize = 32;

/// A request whose signature headers are present, well formed and fresh, and whose body has not been
/// read yet. [`check_headers`] makes one; [`Pending::verify`] finishes the check over the body.
///
/// The split is what keeps an unsigned or stale request from costing a body read, and what bounds the
/// work of a signed one: at most one HMAC per configured secret, whatever the header holds.
#[derive(Debug, Clone)]
pub struct Pending {
    scheme: Scheme,
    timestamp: i64,
    /// What is MACed before the body: `{id}.{timestamp}.` (Standard) or `{timestamp}.` (Make).
    prefix: Vec<u8>,
    candidates: Vec<[u8; MAC_LEN]>,
}

impl Pending {
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The signed unix timestamp.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Checks the MAC over the exact raw body: one HMAC per secret of the scheme, each compared with
    /// every candidate in constant time (no early exit on the first match either, so the time
    /// depends only on the number of secrets and candidates).
    pub fn verify(&self, secrets: &[Secret], body: &[u8]) -> Result<Verified, SignatureError> {
        let keys: Vec<&[u8]> = secrets
            .iter()
            .filter_map(|s| match self.scheme {
                Scheme::Standard => s.standard_key.as_deref(),
                Scheme::Make => Some(s.text.as_bytes()),
            })
            .collect();
        if keys.is_empty() {
            return Err(SignatureError::NoStandardSecret);
        }
        if self.candidates.is_empty() {
            return Err(SignatureError::Invalid);
        }
        let mut matched = 0u8;
        for key in keys {
            let mut mac = new_mac(key);
            mac.update(&self.prefix);
            mac.update(body);
            let expected: [u8; MAC_LEN] = mac.finalize().into_bytes().into();
            for candidate in &self.candidates {
                matched |= ct_eq(&expected, candidate);
            }
        }
        if std::hint::black_box(matched) == 1 {
            Ok(Verified {
                scheme: self.scheme,
                timestamp: self.timestamp,
            })
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// 1 when equal, 0 otherwise, looking at every byte.
fn ct_eq(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> u8 {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    u8::from(std::hint::black_box(diff) == 0)
}

/// Checks what can be checked before the body is read: which scheme, that its headers are all there
/// and of sane size, that the timestamp is within the tolerance, and that the signature header holds
/// at least one and at most [`MAX_CANDIDATES`] MACs of the right length. `now` is unix seconds.
pub fn check_headers(
    headers: &SignedHeaders<'_>,
    now: i64,
    tolerance_secs: u64,
) -> Result<Pending, SignatureError> {
    if let Some(sig_header) = headers.webhook_signature {
        let id = headers
            .webhook_id
            .ok_or_else(|| SignatureError::Malformed("`webhook-id` is missing".into()))?;
        let ts_text = headers
            .webhook_timestamp
            .ok_or_else(|| SignatureError::Malformed("`webhook-timestamp` is missing".into()))?;
        if id.len() > MAX_SIGNATURE_HEADER {
            return Err(SignatureError::Malformed(format!(
                "`webhook-id` is longer than {MAX_SIGNATURE_HEADER} bytes"
            )));
        }
        let timestamp = parse_timestamp(ts_text, "webhook-timestamp")?;
        check_window(timestamp, now, tolerance_secs)?;
        let candidates = parse_standard_signatures(sig_header)?;
        Ok(Pending {
            scheme: Scheme::Standard,
            timestamp,
            prefix: format!("{id}.{ts_text}.").into_bytes(),
            candidates,
        })
    } else if let Some(sig_header) = headers.coach_signature {
        let ts_text = headers
            .coach_timestamp
            .ok_or_else(|| SignatureError::Malformed("`X-Coach-Timestamp` is missing".into()))?;
        let timestamp = parse_timestamp(ts_text, "X-Coach-Timestamp")?;
        check_window(timestamp, now, tolerance_secs)?;
        let candidates = parse_make_signatures(sig_header)?;
        Ok(Pending {
            scheme: Scheme::Make,
            timestamp,
            prefix: format!("{ts_text}.").into_bytes(),
            candidates,
        })
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

/// Verifies a request's signature over its exact raw body: [`check_headers`], then
/// [`Pending::verify`]. `now` is unix seconds.
pub fn verify(
    secrets: &[Secret],
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<Verified, SignatureError> {
    check_headers(headers, now, tolerance_secs)?.verify(secrets, body)
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this never fails.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn parse_timestamp(text: &str, header: &str) -> Result<i64, SignatureError> {
    if text.len() > 32 {
        return Err(SignatureError::Malformed(format!(
            "`{header}` must be unix seconds"
        )));
    }
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

/// Seconds left before a signed timestamp leaves the window: the longest a body read for it may
/// take, since a signature checked after that would be stale anyway.
pub fn seconds_left(timestamp: i64, now: i64, tolerance_secs: u64) -> u64 {
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    let left = timestamp.saturating_add(tolerance).saturating_sub(now);
    u64::try_from(left).unwrap_or(0)
}

fn check_header_size(header: &str, name: &str) -> Result<(), SignatureError> {
    if header.len() > MAX_SIGNATURE_HEADER {
        return Err(SignatureError::Malformed(format!(
            "`{name}` is longer than {MAX_SIGNATURE_HEADER} bytes; send at most {MAX_CANDIDATES} signatures"
        )));
    }
    Ok(())
}

/// Keeps the `v1` entries that can be a MAC (`text_len` characters that decode to 32 bytes),
/// refusing a header with more than [`MAX_CANDIDATES`] of them or with no `v1` entry at all. Entries
/// of another length are dropped undecoded; when only such entries were sent the signature is simply
/// wrong (an empty list, which matches nothing).
fn keep_macs<'h>(
    entries: impl Iterator<Item = &'h str>,
    text_len: usize,
    decode: impl Fn(&str) -> Option<Vec<u8>>,
    name: &str,
    shape: &str,
) -> Result<Vec<[u8; MAC_LEN]>, SignatureError> {
    let mut out = Vec::new();
    let mut any = false;
    for text in entries {
        any = true;
        if text.len() != text_len {
            continue;
        }
        if let Some(mac) = decode(text).and_then(|b| <[u8; MAC_LEN]>::try_from(b.as_slice()).ok()) {
            if out.len() == MAX_CANDIDATES {
                return Err(SignatureError::Malformed(format!(
                    "`{name}` holds more than {MAX_CANDIDATES} signatures"
                )));
            }
            out.push(mac);
        }
    }
    if !any {
        return Err(SignatureError::Malformed(format!(
            "`{name}` holds no `{shape}` signature"
        )));
    }
    Ok(out)
}

/// `v1,<base64>` entries separated by spaces; other versions are ignored as the spec asks.
fn parse_standard_signatures(header: &str) -> Result<Vec<[u8; MAC_LEN]>, SignatureError> {
    check_header_size(header, "webhook-signature")?;
    keep_macs(
        header
            .split_whitespace()
            .filter_map(|part| part.strip_prefix("v1,")),
        // 32 bytes are 44 base64 characters.
        44,
        |text| B64.decode(text).ok(),
        "webhook-signature",
        "v1,<base64>",
    )
}

/// `v1=<hex>` entries, separated by commas or spaces (several while a secret is being rotated).
fn parse_make_signatures(header: &str) -> Result<Vec<[u8; MAC_LEN]>, SignatureError> {
    check_header_size(header, "X-Coach-Signature")?;
    keep_macs(
        header
            .split([',', ' '])
            .filter_map(|part| part.strip_prefix("v1=")),
        2 * MAC_LEN,
        |text| hex::decode(text).ok(),
        "X-Coach-Signature",
        "v1=<hex>",
    )
}

/// Standard Webhooks signature (`v1,<base64>`) of a message.
pub fn sign_standard(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let key = secret.standard_key.as_ref().ok_or_else(|| {
        SignatureError::BadSecret(
            "the Standard Webhooks scheme needs a `whsec_` secret (or its bare base64 key)".into(),
        )
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

    fn std_headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            webhook_id: Some(id),
            webhook_timestamp: Some(ts),
            webhook_signature: Some(sig),
            ..Default::default()
        }
    }

    #[test]
    fn candidates_that_cannot_be_a_mac_are_dropped_and_their_number_is_capped() {
        // Empty and short entries are not candidates: nothing is hashed for them, and a header of
        // nothing else is a wrong signature.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let empties = vec!["v1,"; 200].join(" ");
        let pending = check_headers(&std_headers("m", "10", &empties), 10, 300).unwrap();
        assert!(pending.candidates.is_empty());
        assert_eq!(
            pending.verify(std::slice::from_ref(&secret), b"{}"),
            Err(SignatureError::Invalid)
        );
        let short = "v1,Zm9v v1,AAAA";
        let pending = check_headers(&std_headers("m", "10", short), 10, 300).unwrap();
        assert!(pending.candidates.is_empty());
        assert!(matches!(
            check_headers(&std_headers("m", "10", "v2,AAAA"), 10, 300),
            Err(SignatureError::Malformed(_))
        ));
        // A long header is refused whatever it holds.
        let long = format!("v1,{}", "A".repeat(MAX_SIGNATURE_HEADER));
        assert!(matches!(
            check_headers(&std_headers("m", "10", &long), 10, 300),
            Err(SignatureError::Malformed(_))
        ));
        // A handful of 32-byte candidates is fine; one more is refused.
        let mac = format!("v1,{}", B64.encode([7u8; 32]));
        let five = [mac.as_str(); MAX_CANDIDATES].join(" ");
        let pending = check_headers(&std_headers("m", "10", &five), 10, 300).unwrap();
        assert_eq!(pending.candidates.len(), MAX_CANDIDATES);
        let six = [mac.as_str(); MAX_CANDIDATES + 1].join(" ");
        assert!(matches!(
            check_headers(&std_headers("m", "10", &six), 10, 300),
            Err(SignatureError::Malformed(_))
        ));
        let make = vec![format!("v1={}", "ab".repeat(32)); MAX_CANDIDATES + 1].join(",");
        assert!(matches!(
            check_headers(&make_headers("10", &make), 10, 300),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn stale_and_missing_headers_are_refused_without_a_body() {
        assert_eq!(
            check_headers(&SignedHeaders::default(), 10, 300).unwrap_err(),
            SignatureError::Missing
        );
        let mac = format!("v1,{}", B64.encode([7u8; 32]));
        assert_eq!(
            check_headers(&std_headers("m", "10", &mac), 1_000, 300).unwrap_err(),
            SignatureError::Stale {
                tolerance_secs: 300
            }
        );
        assert_eq!(seconds_left(1_000, 1_100, 300), 200);
        assert_eq!(seconds_left(1_000, 2_000, 300), 0);
    }

    #[test]
    fn a_bare_base64_key_verifies_standard_signatures() {
        let with_prefix = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let bare = Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign_standard(&with_prefix, "msg_1", 10, b"{}").unwrap();
        let ok = verify(
            std::slice::from_ref(&bare),
            &std_headers("msg_1", "10", &sig),
            b"{}",
            10,
            300,
        );
        assert_eq!(ok.unwrap().scheme, Scheme::Standard);
        assert_eq!(sign_standard(&bare, "msg_1", 10, b"{}").unwrap(), sig);
        // Text that is not base64 stays a Make-only secret, and says so when used for Standard.
        let make = Secret::parse("make-scenario-secret-0001").unwrap();
        assert_eq!(
            verify(&[make], &std_headers("msg_1", "10", &sig), b"{}", 10, 300),
            Err(SignatureError::NoStandardSecret)
        );
    }

    #[test]
    fn secrets_are_never_printed() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}

//! Webhook intake rules that do not depend on HTTP: signatures and delivery keys.

pub mod signature;

pub use signature::{Scheme, Secret, SignatureError, SignedHeaders, Verified};

use sha2::{Digest, Sha256};

/// The idempotency key of a delivery (ARCHITECTURE §3): the sender's delivery id (`webhook-id` or
/// `X-Coach-Delivery`), else `Idempotency-Key`, else a hash of the scenario and the canonical body.
/// Keys are scoped by scenario so that one id sent to two hooks names two deliveries.
pub fn delivery_key(
    scenario: &str,
    delivery_id: Option<&str>,
    idempotency_key: Option<&str>,
    body: &serde_json::Value,
) -> String {
    match delivery_id
        .or(idempotency_key)
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        Some(id) => format!("{scenario}:{id}"),
        None => format!("{scenario}:body:{}", body_hash(body)),
    }
}

/// The journal key of what a Make-scheme signature covers (the timestamp and the exact raw body),
/// scoped by scenario like delivery keys. Two requests with this key carry the same signed content,
/// whatever their unsigned delivery headers say.
pub fn signed_content_key(scenario: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(timestamp.to_string().as_bytes())
        .chain_update(b".")
        .chain_update(body)
        .finalize();
    format!("{scenario}:signed:{}", hex::encode(digest))
}

/// SHA-256 (hex) of the canonical form of a JSON body: object keys sorted (serde_json's map is
/// ordered), no insignificant whitespace. Two bodies that differ only in key order or spacing hash
/// the same.
pub fn body_hash(body: &serde_json::Value) -> String {
    /// Feeds the serialiser's output straight into the hash, with no copy of the canonical form.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Writing a `Value` into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut hashing, body);
    let mut hex = [0u8; 64];
    // 32 bytes always fit 64 hex digits, which are ASCII.
    let _ = hex::encode_to_slice(hashing.0.finalize(), &mut hex);
    String::from_utf8_lossy(&hex).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefers_delivery_id_then_idempotency_key_then_body() {
        let body = serde_json::json!({"b": 1, "a": 2});
        assert_eq!(
            delivery_key("r1", Some("msg_1"), Some("idem"), &body),
            "r1:msg_1"
        );
        assert_eq!(delivery_key("r1", None, Some("idem"), &body), "r1:idem");
        let same: serde_json::Value = serde_json::from_str(r#"{ "a": 2,  "b": 1 }"#).unwrap();
        assert_eq!(
            delivery_key("r1", None, None, &body),
            delivery_key("r1", None, None, &same)
        );
        assert_ne!(
            delivery_key("r1", None, None, &body),
            delivery_key("a2", None, None, &body)
        );
    }

    #[test]
    fn body_hash_is_the_sha256_of_the_compact_sorted_json() {
        // Journaled deliveries are compared by this hash, so it must never change: this is
        // `printf '{"a":2,"b":1}' | sha256sum`.
        let body = serde_json::json!({"b": 1, "a": 2});
        assert_eq!(
            body_hash(&body),
            "d3626ac30a87e6f7a6428233b3c68299976865fa5508e4267c5415c76af7a772"
        );
    }
}

//! `POST /v1/airtable/ping`: Airtable webhook notifications wake the R1 poller at once.
//!
//! Airtable signs each notification with `X-Airtable-Content-MAC: hmac-sha256=<hex>`, the HMAC-SHA256
//! of the raw body keyed with the base64-decoded `macSecretBase64` it returned when the webhook was
//! created. The ping carries no data the worker trusts: it only triggers a poll, which reads Airtable.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::http::Routes;

/// Verifies an Airtable content MAC over `body`.
pub fn verify_mac(secret_base64: &str, header: &str, body: &[u8]) -> bool {
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(secret_base64.trim()) else {
        return false;
    };
    let Some(hex_mac) = header.trim().strip_prefix("hmac-sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_mac) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The ping route, registered only when `AIRTABLE_WEBHOOK_MAC_SECRET` is set.
pub fn routes(secret: String, ping: Arc<Notify>) -> Routes {
    let secret = Arc::new(secret);
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        let (secret, ping) = (secret.clone(), ping.clone());
        cfg.route(
            "/v1/airtable/ping",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let (secret, ping) = (secret.clone(), ping.clone());
                async move {
                    let header = req.headers().get("x-airtable-content-mac").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !verify_mac(&secret, header, &body) {
                        return Err(ApiError::unauthorized(
                            "SIGNATURE_INVALID",
                            "X-Airtable-Content-MAC does not match; check AIRTABLE_WEBHOOK_MAC_SECRET (the webhook's macSecretBase64)",
                        ));
                    }
                    ping.notify_one();
                    Ok::<_, ApiError>(HttpResponse::Ok().json(json!({ "status": "poll scheduled" })))
                }
            }),
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips() {
        let secret =
            base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef0123456789abcdef");
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(b"{\"base\":{\"id\":\"app1\"}}");
        let header = format!("hmac-sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify_mac(
            &secret,
            &header,
            b"{\"base\":{\"id\":\"app1\"}}"
        ));
        assert!(!verify_mac(&secret, &header, b"{}"));
        assert!(!verify_mac(&secret, "sha1=00", b"{}"));
    }
}

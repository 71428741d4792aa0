//! The admin bearer token check.
//!
//! Both the expected token and the presented one are hashed with SHA-256 and the digests are compared
//! with an xor fold over all 32 bytes, so the time taken depends neither on where the first differing
//! byte is nor on the presented token's length. Only the digest of the token is kept in memory after
//! start-up. The audit log names the actor by a short hash of the token (domain-separated from the
//! digest used for the check), so entries made with different tokens can be told apart without the
//! log ever holding anything that helps to guess one.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::HttpRequest;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What the admin routes know about the configured token.
pub struct AdminAuth {
    digest: [u8; 32],
    actor: String,
}

impl AdminAuth {
    pub fn new(token: &str) -> AdminAuth {
        let actor_hash = Sha256::new()
            .chain_update(b"coach-worker admin actor\0")
            .chain_update(token.as_bytes())
            .finalize();
        AdminAuth {
            digest: sha256(token.as_bytes()),
            actor: format!("admin:{}", hex::encode(&actor_hash[..4])),
        }
    }

    /// The name written to the audit log for actions made with this token.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// True when `presented` is the admin token (constant time in the token's content).
    pub fn matches(&self, presented: &str) -> bool {
        let other = sha256(presented.as_bytes());
        let diff = self
            .digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // `black_box` keeps the optimiser from turning the fold into an early-exit comparison.
        std::hint::black_box(diff) == 0
    }

    /// Checks the request's `Authorization: Bearer …` header.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match presented {
            Some(token) if self.matches(token) => Ok(()),
            _ => Err(ApiError::unauthorized(
                "ADMIN_UNAUTHORIZED",
                "send `Authorization: Bearer <COACH_ADMIN_TOKEN>` with the worker's admin token",
            )),
        }
    }
}

/// The admin page's live sessions: nonce → expiry (unix seconds). A session cookie is honoured only
/// while its nonce is here, so logging out ends it on the server, not only in the browser that held
/// the cookie; a copy of the cookie (and its CSRF token) is worthless afterwards.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, i64>>,
}

/// Live sessions kept at most; past it the one closest to expiry makes room (a few operators use the
/// page, so reaching it means someone is logging in in a loop).
const MAX_SESSIONS: usize = 256;

impl Sessions {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a new session.
    pub fn open(&self, nonce: &str, expiry: i64, now: i64) {
        let mut live = self.live();
        live.retain(|_, exp| *exp > now);
        if live.len() >= MAX_SESSIONS
            && let Some(first) = live
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(n, _)| n.clone())
        {
            live.remove(&first);
        }
        live.insert(nonce.to_owned(), expiry);
    }

    /// Whether a session is open and unexpired.
    pub fn is_live(&self, nonce: &str, now: i64) -> bool {
        self.live().get(nonce).is_some_and(|exp| *exp > now)
    }

    /// Ends a session.
    pub fn close(&self, nonce: &str) {
        self.live().remove(nonce);
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_or_expired_session_is_not_live() {
        let sessions = Sessions::default();
        sessions.open("n1", 100, 10);
        assert!(sessions.is_live("n1", 50));
        assert!(!sessions.is_live("n1", 100));
        sessions.close("n1");
        assert!(!sessions.is_live("n1", 50));
        assert!(!sessions.is_live("never-opened", 50));
    }

    #[test]
    fn only_the_exact_token_matches_and_the_actor_hides_it() {
        let auth = AdminAuth::new("correct-horse-battery-staple");
        assert!(auth.matches("correct-horse-battery-staple"));
        assert!(!auth.matches("correct-horse-battery-stapl"));
        assert!(!auth.matches(""));
        assert!(auth.actor().starts_with("admin:"));
        assert_eq!(auth.actor().len(), "admin:".len() + 8);
        assert!(!auth.actor().contains("horse"));
    }
}

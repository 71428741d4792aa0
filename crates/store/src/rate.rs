//! Client-side rate limiting: at most `rate` requests per second per Airtable base, across all tasks.
//!
//! Airtable allows 5 requests per second per base and answers 429 (then blocks for 30 s) above it. We do
//! not know how Airtable counts its window, so the limiter is the strictest useful form of a token bucket:
//! capacity one, refilled every `1/rate` seconds (a GCRA). Requests therefore leave evenly spaced, and any
//! one-second window holds at most `rate` of them no matter where it starts. A 5 % safety margin on the
//! spacing absorbs network jitter between our clock and the server's (achieved ≈ 4.76 req/s at rate 5).
//! A burst-friendly bucket of capacity 5 would be faster for short bursts but can put 6 requests into one
//! server-side second, which is exactly the 429 this exists to avoid.
//!
//! Limiters are kept in a process-wide registry keyed by API URL and base id, so two `Store`s built for
//! the same base still share one budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Spacing multiplier: 5 % slower than the nominal rate.
const SAFETY: f64 = 1.05;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(rate_per_sec: f64) -> RateLimiter {
        let rate = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            5.0
        };
        RateLimiter {
            interval: Duration::from_secs_f64(SAFETY / rate),
            next: Mutex::new(None),
        }
    }

    /// Waits for this caller's slot. Slots are handed out in call order, so no task starves.
    pub(crate) async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = match *next {
                Some(t) if t > now => t,
                _ => now,
            };
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// The shared limiter for one base.
pub(crate) fn for_base(api_url: &str, base_id: &str, rate_per_sec: f64) -> Arc<RateLimiter> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<RateLimiter>>>> = OnceLock::new();
    let key = format!("{api_url}|{base_id}|{rate_per_sec}");
    let mut map = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(key)
        .or_insert_with(|| Arc::new(RateLimiter::new(rate_per_sec)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_evenly() {
        let l = RateLimiter::new(5.0);
        let start = Instant::now();
        for _ in 0..11 {
            l.acquire().await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        // 10 intervals of 0.21 s.
        assert!((elapsed - 2.1).abs() < 0.01, "{elapsed}");
        assert!(Arc::ptr_eq(
            &for_base("u", "b", 5.0),
            &for_base("u", "b", 5.0)
        ));
    }
}

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
//! the same base still share one budget. Another process's requests are out of its sight: the
//! short-lived `airtable check|apply` commands therefore wait one `WINDOW` before their first request
//! (`migrate::wait_for_a_fresh_rate_window`), so that running them back to back does not put six
//! requests into one second.
//!
//! Several instances of the worker share one base, so their limiters must share one budget: a
//! [`Pacer`] installed with [`install_shared_pacer`] (the worker's Postgres journal keeps the pacing
//! state in the database) takes every request's slot instead, and this crate never learns what is
//! behind it. When the shared pacer cannot answer, the request is paced in-process.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Spacing multiplier: 5 % slower than the nominal rate.
const SAFETY: f64 = 1.05;

/// The sliding window the limiter also enforces: at most `rate` requests in any `WINDOW`. It is longer
/// than Airtable's second so that requests delayed on their way (a busy machine, a slow scheduler)
/// cannot arrive bunched into one server-side second.
pub(crate) const WINDOW: Duration = Duration::from_millis(1080);

/// Paces requests for one bucket (API URL + base) across processes.
pub trait Pacer: Send + Sync {
    /// Waits for this request's slot. `false`: the pacer could not decide; pace in-process instead.
    fn acquire(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// Makes a shared pacer for a bucket name and a rate (requests per second).
pub type PacerFactory = Arc<dyn Fn(&str, f64) -> Arc<dyn Pacer> + Send + Sync>;

static SHARED: OnceLock<Mutex<Option<PacerFactory>>> = OnceLock::new();

/// Installs the process-wide shared pacer: limiters created from now on take their slots from it.
pub fn install_shared_pacer(factory: PacerFactory) {
    *SHARED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(factory);
}

pub(crate) struct RateLimiter {
    interval: Duration,
    burst: usize,
    sent: Mutex<std::collections::VecDeque<Instant>>,
    shared: Option<Arc<dyn Pacer>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval", &self.interval)
            .field("shared", &self.shared.is_some())
            .finish()
    }
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
            burst: (rate.floor() as usize).max(1),
            sent: Mutex::new(std::collections::VecDeque::new()),
            shared: None,
        }
    }

    /// Waits until a request may leave: `interval` after the previous one actually left, and no more
    /// than `burst` in the last `WINDOW`. Times are taken when a caller is let through, not when it
    /// was scheduled, so a caller that wakes late pushes the next ones back instead of bunching them.
    pub(crate) async fn acquire(&self) {
        if let Some(shared) = &self.shared
            && shared.acquire().await
        {
            return;
        }
        loop {
            let wait_until = {
                let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    sent.pop_front();
                }
                let after_last = sent.back().map(|t| *t + self.interval).filter(|t| *t > now);
                let after_window =
                    (sent.len() >= self.burst).then(|| sent[sent.len() - self.burst] + WINDOW);
                match after_last.into_iter().chain(after_window).max() {
                    None => {
                        sent.push_back(now);
                        return;
                    }
                    Some(t) => t,
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
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
        .or_insert_with(|| {
            let mut limiter = RateLimiter::new(rate_per_sec);
            let factory = SHARED
                .get()
                .and_then(|f| f.lock().unwrap_or_else(|e| e.into_inner()).clone());
            limiter.shared =
                factory.map(|make| make(&format!("{api_url}|{base_id}"), rate_per_sec));
            Arc::new(limiter)
        })
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
        // 10 intervals of 0.21 s, and never 5 in 1.08 s: the 6th waits for the window (1.08 s after
        // the 1st) and the 11th for 1.08 s after the 6th.
        assert!((elapsed - 2.16).abs() < 0.02, "{elapsed}");
        assert!(Arc::ptr_eq(
            &for_base("u", "b", 5.0),
            &for_base("u", "b", 5.0)
        ));
    }
}

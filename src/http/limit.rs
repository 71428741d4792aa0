//! A small per-client token bucket for the unauthenticated routes (the public run view, the admin
//! login form).
//!
//! Clients are told apart by the TCP peer address, not by `X-Forwarded-For` or `Forwarded`, which a
//! caller can write freely. Behind a proxy every request shares the proxy's address, so the limit is
//! then one shared budget: set it high enough for the pollers in front of it (Make polls one run a
//! few times a minute). The table forgets clients whose bucket has refilled, so it cannot grow past
//! the number of clients seen within one refill period.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets of `burst` tokens refilled at `per_sec`, one per client address.
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Clients tracked before full buckets are swept out of the table.
const SWEEP_AT: usize = 4096;

impl RateLimiter {
    /// `per_sec` may be below 1 (0.1 is one token every ten seconds).
    pub fn new(burst: u32, per_sec: f64) -> RateLimiter {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_sec: per_sec.max(0.001),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client`: `Ok` when there was one, else the whole seconds until there
    /// is (for `Retry-After`).
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let client = client.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= SWEEP_AT {
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// The TCP peer's address of a request.
pub fn client_of(req: &actix_web::HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_served_then_refused_per_client() {
        let limiter = RateLimiter::new(3, 1.0);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        assert_eq!(limiter.check(a), Err(1));
        assert!(limiter.check(b).is_ok());
    }
}

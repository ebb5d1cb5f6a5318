//! Per-source-address connection rate limiting: a token bucket per IP, so
//! one address cannot open connections faster than the configured rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets untouched this long are forgotten.
const IDLE_SECS: f64 = 60.0;
/// Sweep idle buckets once the map holds this many addresses.
const SWEEP_AT: usize = 10_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` = 0 disables the limit.
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(per_second) * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True when `ip` may open another connection now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, (_, seen)| now.duration_since(*seen).as_secs_f64() < IDLE_SECS);
        }
        let (tokens, seen) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*seen).as_secs_f64() * self.per_second).min(self.burst);
        *seen = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_address() {
        let limiter = RateLimiter::new(5);
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let allowed = (0..20).filter(|_| limiter.allow(a)).count();
        assert_eq!(allowed, 10);
        assert!(limiter.allow(b), "another address has its own bucket");
    }

    #[test]
    fn zero_disables() {
        let limiter = RateLimiter::new(0);
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        assert!((0..1_000).all(|_| limiter.allow(a)));
    }
}

//! Rate limits, all one GCRA bucket shape (governor's): new connections per
//! source address, so one address cannot open connections faster than the
//! configured rate (IPv6 per /64, since one host may use any address of its
//! /64), and client frames per session.

use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

/// How often addresses whose bucket has refilled are forgotten. A bucket is
/// full again at most two seconds after its last connect (burst = twice the
/// rate), so the map holds the addresses seen in the last few seconds: its
/// size follows the rate at which the server accepts connections, not how
/// many addresses ever connected. Sweeping on a timer keeps the connect path
/// free of any whole-map work (a size threshold would re-sweep on every
/// connect while the map stays above it with all entries fresh).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub struct ConnectLimiter {
    /// `None` when the limit is off.
    buckets: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl ConnectLimiter {
    /// `per_second` new connections per address, in bursts of twice that;
    /// 0 disables the limit.
    pub fn new(per_second: u32) -> ConnectLimiter {
        let buckets =
            NonZeroU32::new(per_second).map(|rate| DefaultKeyedRateLimiter::dashmap(quota(rate)));
        ConnectLimiter { buckets }
    }

    /// True when `ip` may open another connection now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.buckets
            .as_ref()
            .is_none_or(|b| b.check_key(&bucket_key(ip)).is_ok())
    }

    /// Forgets every address whose bucket is full again (it would start
    /// full anyway) and gives the memory back.
    pub fn sweep(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }

    /// How many addresses are remembered now.
    pub fn tracked(&self) -> usize {
        self.buckets.as_ref().map_or(0, |b| b.len())
    }
}

/// The one bucket shape herald limits with: `rate` a second on average, in
/// bursts of twice that.
fn quota(rate: NonZeroU32) -> Quota {
    Quota::per_second(rate).allow_burst(rate.saturating_add(rate.get()))
}

/// The clock every session's frame limiter reads. Building a clock
/// queries the CPU (cpuid) for its time source, which cost about 5% of
/// herald's CPU during a connection storm when each session built its own;
/// a clone shares the calibration.
static FRAME_CLOCK: LazyLock<DefaultClock> = LazyLock::new(DefaultClock::default);

/// Client frames one session may send: the same bucket as connects, for
/// one session (at least one frame a second).
pub struct FrameLimiter(DefaultDirectRateLimiter);

impl FrameLimiter {
    pub fn new(per_second: u32) -> FrameLimiter {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        FrameLimiter(DefaultDirectRateLimiter::direct_with_clock(
            quota(rate),
            FRAME_CLOCK.clone(),
        ))
    }

    /// True when one more frame is within the rate now.
    pub fn allow(&self) -> bool {
        self.0.check().is_ok()
    }
}

/// Sweeps `limiter` every [`SWEEP_EVERY`] until it is dropped. Call inside
/// an actix system.
pub fn spawn_sweeper(limiter: &Arc<ConnectLimiter>) {
    let limiter: Weak<ConnectLimiter> = Arc::downgrade(limiter);
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            match limiter.upgrade() {
                Some(limiter) => limiter.sweep(),
                None => return,
            }
        }
    });
}

/// The bucket an address counts against: IPv4 per address (also when
/// written as an IPv4-mapped IPv6 address), IPv6 per /64 prefix.
pub fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn burst_then_refused_per_address() {
        let limiter = ConnectLimiter::new(5);
        let a = ip("127.0.0.2");
        let b = ip("127.0.0.3");
        let allowed = (0..20).filter(|_| limiter.allow(a)).count();
        assert_eq!(allowed, 10);
        assert!(limiter.allow(b), "another address has its own bucket");
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket() {
        assert_eq!(bucket_key(ip("2001:db8:1:2::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            bucket_key(ip("2001:db8:1:2:ffff:eeee:dddd:cccc")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(bucket_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:3::"));

        let limiter = ConnectLimiter::new(1);
        assert!(limiter.allow(ip("2001:db8::1")));
        assert!(limiter.allow(ip("2001:db8::2")));
        assert!(!limiter.allow(ip("2001:db8::3")), "same /64, burst spent");
        assert!(limiter.allow(ip("2001:db8:0:1::1")), "another /64");
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_the_ipv4_address() {
        assert_eq!(bucket_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(bucket_key(ip("192.0.2.7")), ip("192.0.2.7"));

        let limiter = ConnectLimiter::new(1);
        assert!(limiter.allow(ip("192.0.2.7")));
        assert!(limiter.allow(ip("::ffff:192.0.2.7")));
        assert!(
            !limiter.allow(ip("192.0.2.7")),
            "one bucket for both spellings"
        );
    }

    #[test]
    fn sweep_forgets_addresses_whose_bucket_refilled() {
        let limiter = ConnectLimiter::new(1_000);
        for i in 0..100_u32 {
            limiter.allow(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert_eq!(limiter.tracked(), 100);
        // One connect each: refilled within a millisecond at 1 000/s.
        std::thread::sleep(Duration::from_millis(20));
        limiter.sweep();
        assert_eq!(limiter.tracked(), 0);
    }

    /// ns per `allow()` once `addresses` distinct addresses are known.
    fn ns_per_allow(limiter: &ConnectLimiter, addresses: u32) -> f64 {
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..addresses {
            limiter.allow(ip(i));
        }
        let calls = addresses.max(10_000);
        let started = Instant::now();
        for i in 0..calls {
            std::hint::black_box(limiter.allow(ip(i % addresses)));
        }
        started.elapsed().as_nanos() as f64 / f64::from(calls)
    }

    #[test]
    #[ignore = "measurement; run by hand"]
    fn measure_cost_per_connect_at_30_000_addresses() {
        for addresses in [1, 1_000, 30_000] {
            let ns = ns_per_allow(&ConnectLimiter::new(50), addresses);
            eprintln!("{addresses:>6} addresses: {ns:>10.0} ns per allow()");
        }
    }

    #[test]
    fn a_session_gets_a_burst_of_twice_its_rate() {
        let frames = FrameLimiter::new(5);
        assert_eq!((0..30).filter(|_| frames.allow()).count(), 10);
    }

    #[test]
    fn zero_disables() {
        let limiter = ConnectLimiter::new(0);
        let a = ip("127.0.0.2");
        assert!((0..1_000).all(|_| limiter.allow(a)));
        assert_eq!(limiter.tracked(), 0);
    }
}

//! Rate limits per webhook: a token bucket each. Its time is the monotonic
//! clock, not Herald's `Clock`: a rate is what a receiver can take per real
//! second, so `--time-scale` (which shortens retry waits) must not change
//! it. Deliveries wait for a token; they never fail for want of one.

use std::time::{Duration, Instant};

use crate::model::RateLimit;

/// The longest one wait for a token may be (the slowest valid rate's).
const MAX_WAIT: Duration = Duration::from_secs(1000);

#[derive(Debug, Clone)]
pub(super) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(super) fn new(limit: RateLimit, now: Instant) -> Bucket {
        Bucket { limit, tokens: f64::from(limit.burst), last: now }
    }

    /// Takes a token if one is there; otherwise says how long until one is.
    /// A changed limit applies at once, keeping what has been used.
    pub(super) fn take(&mut self, limit: RateLimit, now: Instant) -> Option<Duration> {
        self.limit = limit;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            // A rate below the validated minimum (a row written by hand)
            // must not make a wait no `Duration` can hold.
            let wait = (1.0 - self.tokens) / limit.per_second.max(crate::model::MIN_RATE);
            Some(Duration::try_from_secs_f64(wait).unwrap_or(MAX_WAIT).min(MAX_WAIT))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = RateLimit { per_second: 10.0, burst: 3 };
        let start = Instant::now();
        let mut bucket = Bucket::new(limit, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(limit, start), None);
        }
        let wait = bucket.take(limit, start).expect("the burst is spent");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(limit, start + Duration::from_millis(100)), None);
        assert!(bucket.take(limit, start + Duration::from_millis(100)).is_some());
    }

    /// Review of #13: a rate of 1e-20 made a wait of 1e20 s, and
    /// `Duration::from_secs_f64` panicked with the engine's lock held.
    #[test]
    fn a_tiny_rate_waits_at_most_max_wait_and_never_panics() {
        let limit = RateLimit { per_second: 1e-20, burst: 1 };
        let start = Instant::now();
        let mut bucket = Bucket::new(limit, start);
        assert_eq!(bucket.take(limit, start), None);
        assert_eq!(bucket.take(limit, start), Some(MAX_WAIT));
        assert!(limit.validate().unwrap_err().contains("between 0.001 and 100000"));
    }

    proptest! {
        /// However the takes are timed, no window of one second lets more
        /// than `burst + per_second` through.
        #[test]
        fn no_second_holds_more_than_the_burst_and_the_rate(
            per_second in 1u32..200, burst in 1u32..20, gaps_us in proptest::collection::vec(0u64..50_000, 1..400)
        ) {
            let limit = RateLimit { per_second: f64::from(per_second), burst };
            let start = Instant::now();
            let mut bucket = Bucket::new(limit, start);
            let mut now = start;
            let mut passed = Vec::new();
            for gap in gaps_us {
                now += Duration::from_micros(gap);
                if bucket.take(limit, now).is_none() {
                    passed.push(now);
                }
            }
            let most = (burst + per_second) as usize;
            for (i, at) in passed.iter().enumerate() {
                let within = passed[i..].iter().take_while(|t| t.duration_since(*at) < Duration::from_secs(1)).count();
                prop_assert!(within <= most, "{within} in a second, at most {most}");
            }
        }
    }
}

//! The one clock. Every wait in Herald (retry schedules, lease expiry, the
//! dispatcher's sleep until the next due delivery) goes through a `Clock`, so
//! tests can drive a 27-hour retry schedule in milliseconds with a
//! `ManualClock`, and operators can rehearse retries with a time-scale factor.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::model::Timestamp;

pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// A future that completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> SleepFuture;
    /// The deadline a wait of `wait` from `now` ends at. The time-scale
    /// factor applies here, and only here: timestamps stay real while every
    /// retry wait shrinks or grows.
    fn after(&self, now: Timestamp, wait: Duration) -> Timestamp;
}

pub type SharedClock = Arc<dyn Clock>;

/// Scales a wait by `scale`, saturating instead of overflowing.
pub fn scaled_millis(wait: Duration, scale: f64) -> i64 {
    let ms = wait.as_secs_f64() * 1000.0 * scale;
    if ms >= i64::MAX as f64 { i64::MAX } else { ms.max(0.0).round() as i64 }
}

/// Wall-clock time, with retry waits multiplied by `scale`.
pub struct SystemClock {
    scale: f64,
}

impl SystemClock {
    pub fn new(scale: f64) -> Self {
        Self { scale }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Timestamp(ms)
    }

    fn sleep_until(&self, deadline: Timestamp) -> SleepFuture {
        let remaining = deadline.0.saturating_sub(self.now().0);
        Box::pin(async move {
            if remaining > 0 {
                tokio::time::sleep(Duration::from_millis(remaining as u64)).await;
            }
        })
    }

    fn after(&self, now: Timestamp, wait: Duration) -> Timestamp {
        Timestamp(now.0.saturating_add(scaled_millis(wait, self.scale)))
    }
}

/// A clock that moves only when told to. Sleepers wake as soon as an
/// `advance` or `set` carries the time past their deadline.
#[derive(Clone)]
pub struct ManualClock {
    // A std Mutex, not a Tokio one: nothing async happens while it is held.
    now: Arc<Mutex<i64>>,
    ticks: watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        let (ticks, _) = watch::channel(start.0);
        Self { now: Arc::new(Mutex::new(start.0)), ticks }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap();
        *now = now.saturating_add(by.as_millis() as i64);
        self.ticks.send_replace(*now);
    }

    pub fn set(&self, to: Timestamp) {
        let mut now = self.now.lock().unwrap();
        *now = to.0.max(*now);
        self.ticks.send_replace(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.now.lock().unwrap())
    }

    fn sleep_until(&self, deadline: Timestamp) -> SleepFuture {
        let mut ticks = self.ticks.subscribe();
        Box::pin(async move {
            // wait_for checks the current value first, so a deadline already
            // passed completes at once.
            let _ = ticks.wait_for(|now| *now >= deadline.0).await;
        })
    }

    fn after(&self, now: Timestamp, wait: Duration) -> Timestamp {
        Timestamp(now.0.saturating_add(scaled_millis(wait, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn scaling_is_monotonic_and_never_negative(a in 0u64..10_000_000_000, b in 0u64..10_000_000_000, scale in 0.0f64..1000.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let lo_ms = scaled_millis(Duration::from_millis(lo), scale);
            let hi_ms = scaled_millis(Duration::from_millis(hi), scale);
            prop_assert!(lo_ms >= 0);
            prop_assert!(lo_ms <= hi_ms);
        }

        #[test]
        fn manual_clock_after_is_exact(start in 0i64..4_000_000_000_000, wait_ms in 0u64..1_000_000_000) {
            let clock = ManualClock::new(Timestamp(start));
            prop_assert_eq!(clock.after(clock.now(), Duration::from_millis(wait_ms)).0, start + wait_ms as i64);
        }
    }

    #[test]
    fn time_scale_divides_waits() {
        let clock = SystemClock::new(0.001);
        let now = Timestamp(1_000_000);
        assert_eq!(clock.after(now, Duration::from_secs(100_000)), Timestamp(1_000_000 + 100_000));
    }

    #[tokio::test]
    async fn manual_sleepers_wake_only_when_time_passes_their_deadline() {
        let clock = ManualClock::new(Timestamp(0));
        let sleeper = tokio::spawn(clock.sleep_until(Timestamp(27 * 3600 * 1000)));
        clock.advance(Duration::from_secs(26 * 3600));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(3600));
        sleeper.await.unwrap();
        // A deadline in the past completes immediately.
        clock.sleep_until(Timestamp(5)).await;
    }
}

//! Retry policies, pure: how long to wait after a failed attempt, given the
//! attempt number, the receiver's `Retry-After` and a jitter sample. No
//! clock and no randomness inside, so every schedule is table-testable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest wait a policy may ask for between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most attempts a policy may make.
pub const MAX_ATTEMPTS: u32 = 50;
/// A `Retry-After` longer than this is cut to it: a receiver may slow us
/// down, but not park a delivery for weeks.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 3600);

/// A webhook's retry policy, as the API accepts and returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum RetryPolicy {
    /// A named policy (`standard`, `business`, `routee`, `wwebjs`, `viber-bot`).
    Preset(String),
    /// Explicit waits in seconds between attempts; attempts = waits + 1.
    Schedule(Vec<f64>),
    Exponential(Exponential),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exponential {
    /// Seconds to wait after the first failed attempt.
    pub first: f64,
    /// Each wait is the previous one times this.
    pub factor: f64,
    /// No wait is longer than this many seconds.
    pub cap: f64,
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Each wait is moved by up to this fraction either way (0 = exact).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

pub const PRESETS: &[&str] = &["standard", "business", "routee", "wwebjs", "viber-bot"];

impl RetryPolicy {
    pub fn preset(name: &str) -> RetryPolicy {
        RetryPolicy::Preset(name.to_owned())
    }

    /// Checks the policy's numbers; the error names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let max_wait = MAX_WAIT.as_secs_f64();
        match self {
            RetryPolicy::Preset(name) => {
                if !PRESETS.contains(&name.as_str()) {
                    return Err(format!("retry.preset: unknown preset `{name}` (known: {})", PRESETS.join(", ")));
                }
            }
            RetryPolicy::Schedule(waits) => {
                if waits.len() as u32 >= MAX_ATTEMPTS {
                    return Err(format!("retry.schedule: at most {} waits", MAX_ATTEMPTS - 1));
                }
                if let Some(bad) = waits.iter().find(|w| !(w.is_finite() && **w >= 0.0 && **w <= max_wait)) {
                    return Err(format!("retry.schedule: wait {bad} is not between 0 and {max_wait} seconds"));
                }
            }
            RetryPolicy::Exponential(e) => {
                if !(e.first.is_finite() && e.first > 0.0 && e.first <= max_wait) {
                    return Err(format!("retry.exponential.first: must be above 0 and at most {max_wait} seconds"));
                }
                if !(e.factor.is_finite() && (1.0..=100.0).contains(&e.factor)) {
                    return Err("retry.exponential.factor: must be between 1 and 100".to_owned());
                }
                if !(e.cap.is_finite() && e.cap >= e.first && e.cap <= max_wait) {
                    return Err(format!("retry.exponential.cap: must be between `first` and {max_wait} seconds"));
                }
                if !(1..=MAX_ATTEMPTS).contains(&e.attempts) {
                    return Err(format!("retry.exponential.attempts: must be between 1 and {MAX_ATTEMPTS}"));
                }
                if !(e.jitter.is_finite() && (0.0..=1.0).contains(&e.jitter)) {
                    return Err("retry.exponential.jitter: must be between 0 and 1".to_owned());
                }
            }
        }
        Ok(())
    }

    /// The policy with presets replaced by what they stand for.
    pub fn resolve(&self) -> RetryPolicy {
        match self {
            RetryPolicy::Preset(name) => preset_policy(name),
            other => other.clone(),
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        match self.resolve() {
            RetryPolicy::Schedule(waits) => waits.len() as u32 + 1,
            RetryPolicy::Exponential(e) => e.attempts,
            RetryPolicy::Preset(_) => 1,
        }
    }

    /// The wait after failed attempt number `n_done` (1-based), before
    /// jitter; `None` when that attempt was the last.
    pub fn base_wait(&self, n_done: u32) -> Option<Duration> {
        if n_done == 0 || n_done >= self.max_attempts() {
            return None;
        }
        let secs = match self.resolve() {
            RetryPolicy::Schedule(waits) => waits[(n_done - 1) as usize],
            RetryPolicy::Exponential(e) => (e.first * e.factor.powi(n_done as i32 - 1)).min(e.cap),
            RetryPolicy::Preset(_) => return None,
        };
        Some(Duration::from_secs_f64(secs.clamp(0.0, MAX_WAIT.as_secs_f64())))
    }

    pub fn jitter(&self) -> f64 {
        match self.resolve() {
            RetryPolicy::Exponential(e) => e.jitter,
            _ => 0.0,
        }
    }

    /// The wait after failed attempt `n_done`, with jitter applied from
    /// `sample` (uniform in [-1, 1]) and the receiver's `Retry-After`
    /// honoured: never shorter than it asks, up to `RETRY_AFTER_CAP`.
    pub fn next_wait(&self, n_done: u32, retry_after: Option<Duration>, sample: f64) -> Option<Duration> {
        let base = self.base_wait(n_done)?;
        let spread = self.jitter() * sample.clamp(-1.0, 1.0);
        let jittered = Duration::from_secs_f64((base.as_secs_f64() * (1.0 + spread)).max(0.0));
        let asked = retry_after.map(|d| d.min(RETRY_AFTER_CAP)).unwrap_or_default();
        Some(jittered.max(asked))
    }
}

/// What each preset stands for. The seeds give the numbers for `business`
/// (000/001), `routee` (003) and `wwebjs` (004); `standard` and `viber-bot`
/// are ours.
fn preset_policy(name: &str) -> RetryPolicy {
    match name {
        // 8 attempts over about 21 hours: 10 s, 50 s, 4 min, 21 min, 1.7 h, 8.7 h, 10 h.
        "standard" => {
            RetryPolicy::Exponential(Exponential { first: 10.0, factor: 5.0, cap: 36_000.0, attempts: 8, jitter: 0.2 })
        }
        // 1 + 2 retries, 10 s then 100 s (×10, capped at 100 000 s).
        "business" => RetryPolicy::Exponential(Exponential {
            first: 10.0,
            factor: 10.0,
            cap: 100_000.0,
            attempts: 3,
            jitter: 0.0,
        }),
        "routee" => RetryPolicy::Schedule(vec![
            30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0, 86_400.0,
        ]),
        // WEBHOOK_RETRY_ATTEMPTS=3 tries, WEBHOOK_RETRY_DELAY=5000 ms doubling.
        "wwebjs" => {
            RetryPolicy::Exponential(Exponential { first: 5.0, factor: 2.0, cap: 86_400.0, attempts: 3, jitter: 0.0 })
        }
        // Up to about 4 hours: 5 s, 15 s, 45 s … capped at 1 h, 10 attempts.
        "viber-bot" => {
            RetryPolicy::Exponential(Exponential { first: 5.0, factor: 3.0, cap: 3600.0, attempts: 10, jitter: 0.2 })
        }
        _ => RetryPolicy::Schedule(Vec::new()),
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date, relative
/// to `now_unix_secs`. A date in the past means no wait.
pub fn parse_retry_after(value: &str, now_unix_secs: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let at = date.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now_unix_secs).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn check(policy: &RetryPolicy, expected_waits: &[u64]) {
        let waits: Vec<u64> = (1..=60).map_while(|n| policy.base_wait(n)).map(|d| d.as_secs()).collect();
        assert_eq!(waits, expected_waits);
        assert_eq!(policy.max_attempts() as usize, expected_waits.len() + 1);
    }

    #[test]
    fn presets_follow_the_seeds() {
        check(&RetryPolicy::preset("business"), &[10, 100]);
        check(&RetryPolicy::preset("routee"), &[30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400]);
        check(&RetryPolicy::preset("wwebjs"), &[5, 10]);
        check(&RetryPolicy::preset("standard"), &[10, 50, 250, 1250, 6250, 31_250, 36_000]);
    }

    #[test]
    fn business_backoff_is_capped_at_100_000_seconds_when_attempts_grow() {
        let policy = RetryPolicy::Exponential(Exponential {
            first: 10.0,
            factor: 10.0,
            cap: 100_000.0,
            attempts: 7,
            jitter: 0.0,
        });
        check(&policy, &[10, 100, 1000, 10_000, 100_000, 100_000]);
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_capped() {
        let policy = RetryPolicy::preset("business");
        assert_eq!(policy.next_wait(1, Some(Duration::from_secs(60)), 0.0), Some(Duration::from_secs(60)));
        assert_eq!(policy.next_wait(1, Some(Duration::from_secs(1)), 0.0), Some(Duration::from_secs(10)));
        // The README: a `Retry-After` is honoured up to one day.
        assert_eq!(policy.next_wait(1, Some(Duration::from_secs(10_000_000)), 0.0), Some(Duration::from_secs(86_400)));
        assert_eq!(policy.next_wait(1, Some(Duration::from_secs(86_401)), 0.0), Some(Duration::from_secs(86_400)));
        assert_eq!(policy.next_wait(1, Some(Duration::from_secs(86_399)), 0.0), Some(Duration::from_secs(86_399)));
        assert_eq!(policy.next_wait(3, Some(Duration::from_secs(60)), 0.0), None);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_400), Some(Duration::from_secs(80)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_500_000), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }

    #[test]
    fn validation_names_the_field() {
        let bad =
            RetryPolicy::Exponential(Exponential { first: 0.0, factor: 2.0, cap: 10.0, attempts: 3, jitter: 0.0 });
        assert!(bad.validate().unwrap_err().starts_with("retry.exponential.first"));
        assert!(RetryPolicy::preset("nope").validate().unwrap_err().contains("unknown preset"));
        let nan = RetryPolicy::Schedule(vec![1.0, f64::NAN]).validate().unwrap_err();
        assert_eq!(nan, "retry.schedule: wait NaN is not between 0 and 604800 seconds");
        assert!(RetryPolicy::Schedule(vec![]).validate().is_ok());
        for name in PRESETS {
            assert!(RetryPolicy::preset(name).validate().is_ok());
        }
    }

    fn any_policy() -> impl Strategy<Value = RetryPolicy> {
        prop_oneof![
            proptest::collection::vec(0.0f64..604_800.0, 0..49).prop_map(RetryPolicy::Schedule),
            (0.001f64..1000.0, 1.0f64..100.0, 1u32..=50, 0.0f64..=1.0).prop_map(|(first, factor, attempts, jitter)| {
                RetryPolicy::Exponential(Exponential {
                    first,
                    factor,
                    cap: (first * 1000.0).min(604_800.0),
                    attempts,
                    jitter,
                })
            }),
            proptest::sample::select(PRESETS).prop_map(RetryPolicy::preset),
        ]
    }

    proptest! {
        #[test]
        fn every_valid_policy_ends_and_respects_its_bounds(policy in any_policy(), sample in -1.0f64..=1.0, retry_after in proptest::option::of(0u64..10_000_000)) {
            prop_assert!(policy.validate().is_ok());
            let max = policy.max_attempts();
            prop_assert!((1..=MAX_ATTEMPTS).contains(&max));
            prop_assert_eq!(policy.next_wait(max, None, sample), None);
            for n in 1..max {
                let base = policy.base_wait(n).unwrap();
                let wait = policy.next_wait(n, retry_after.map(Duration::from_secs), sample).unwrap();
                prop_assert!(base <= MAX_WAIT);
                let jitter = policy.jitter();
                let low = base.as_secs_f64() * (1.0 - jitter) - 0.001;
                prop_assert!(wait.as_secs_f64() >= low);
                // What a `Retry-After` asks, up to the README's one day.
                let asked = retry_after.map_or(0.0, |ra| ra.min(86_400) as f64);
                prop_assert!(wait.as_secs_f64() >= asked);
                // The jittered wait, or what the receiver asked if longer:
                // never more than both.
                let high = (base.as_secs_f64() * (1.0 + jitter)).max(asked) + 0.001;
                prop_assert!(wait.as_secs_f64() <= high, "{wait:?} > {high}");
            }
        }

        #[test]
        fn exponential_waits_never_shrink(first in 0.001f64..1000.0, factor in 1.0f64..100.0, attempts in 2u32..=50) {
            let policy = RetryPolicy::Exponential(Exponential { first, factor, cap: 604_800.0, attempts, jitter: 0.0 });
            let waits: Vec<Duration> = (1..attempts).map(|n| policy.base_wait(n).unwrap()).collect();
            prop_assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}

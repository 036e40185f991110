//! A circuit breaker per webhook, pure. After `FAILURES_TO_OPEN` failed
//! attempts in a row the breaker opens: nothing is sent to that receiver
//! until the cooldown ends, and its due deliveries wait without using up
//! their attempts. Then one delivery goes as a probe: success closes the
//! breaker, failure reopens it with twice the cooldown. A receiver that is
//! down is not hammered, and its retries do not crowd out healthy ones.

use std::time::Duration;

use crate::clock::Clock;
use crate::model::Timestamp;

pub const FAILURES_TO_OPEN: u32 = 5;
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    failures_in_a_row: u32,
    /// When set, the breaker is open until then.
    open_until: Option<Timestamp>,
    /// A probe has been claimed and has not reported yet.
    probing: bool,
    cooldown: Duration,
}

/// What the breaker lets through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Closed: send as usual.
    Any,
    /// The cooldown is over: send one delivery as a probe.
    Probe,
    /// Open (or a probe is out): send nothing; look again at the time given.
    Nothing(Option<Timestamp>),
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { failures_in_a_row: 0, open_until: None, probing: false, cooldown: FIRST_COOLDOWN }
    }
}

impl Breaker {
    pub fn allowance(&self, now: Timestamp) -> Allowance {
        match self.open_until {
            None => Allowance::Any,
            Some(_) if self.probing => Allowance::Nothing(None),
            Some(until) if now < until => Allowance::Nothing(Some(until)),
            Some(_) => Allowance::Probe,
        }
    }

    /// Whether an attempt already claimed may still be sent.
    pub fn lets_through(&self, now: Timestamp, is_probe: bool) -> bool {
        match self.open_until {
            None => true,
            Some(until) => is_probe || now >= until && !self.probing,
        }
    }

    pub fn probe_claimed(&mut self) {
        self.probing = true;
    }

    /// The probe was claimed but nothing was due to send.
    pub fn probe_unused(&mut self) {
        self.probing = false;
    }

    /// What the API shows of it.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "state": match (self.open_until, self.probing) {
                (None, _) => "closed",
                (Some(_), true) => "probing",
                (Some(_), false) => "open",
            },
            "failures_in_a_row": self.failures_in_a_row,
            "open_until": self.open_until,
        })
    }

    pub fn is_idle(&self) -> bool {
        self.failures_in_a_row == 0 && self.open_until.is_none()
    }

    /// Feeds one attempt's outcome.
    pub fn record(&mut self, success: bool, now: Timestamp, clock: &dyn Clock) {
        if success {
            *self = Breaker::default();
            return;
        }
        self.failures_in_a_row += 1;
        if self.probing || self.open_until.is_some() {
            // A failed probe: longer cooldown.
            self.probing = false;
            self.cooldown = (self.cooldown * 2).min(MAX_COOLDOWN);
            self.open_until = Some(clock.after(now, self.cooldown));
        } else if self.failures_in_a_row >= FAILURES_TO_OPEN {
            self.open_until = Some(clock.after(now, self.cooldown));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn opens_after_five_failures_probes_after_the_cooldown_and_backs_off() {
        let clock = ManualClock::new(Timestamp(0));
        let mut breaker = Breaker::default();
        for _ in 0..4 {
            breaker.record(false, Timestamp(0), &clock);
            assert_eq!(breaker.allowance(Timestamp(0)), Allowance::Any);
        }
        breaker.record(false, Timestamp(0), &clock);
        assert_eq!(breaker.allowance(Timestamp(999)), Allowance::Nothing(Some(Timestamp(1000))));
        assert!(!breaker.lets_through(Timestamp(999), false));
        assert_eq!(breaker.allowance(Timestamp(1000)), Allowance::Probe);
        breaker.probe_claimed();
        assert_eq!(breaker.allowance(Timestamp(1000)), Allowance::Nothing(None));
        breaker.record(false, Timestamp(1000), &clock);
        assert_eq!(breaker.allowance(Timestamp(2999)), Allowance::Nothing(Some(Timestamp(3000))));
        assert_eq!(breaker.allowance(Timestamp(3000)), Allowance::Probe);
        breaker.probe_claimed();
        breaker.record(true, Timestamp(3000), &clock);
        assert_eq!(breaker.allowance(Timestamp(3000)), Allowance::Any);
        assert!(breaker.is_idle());
    }

    #[test]
    fn the_cooldown_is_capped() {
        let clock = ManualClock::new(Timestamp(0));
        let mut breaker = Breaker::default();
        let mut now = Timestamp(0);
        for _ in 0..40 {
            breaker.record(false, now, &clock);
            if let Allowance::Nothing(Some(until)) = breaker.allowance(now) {
                assert!(until.0 - now.0 <= MAX_COOLDOWN.as_millis() as i64);
                now = until;
            }
            if breaker.allowance(now) == Allowance::Probe {
                breaker.probe_claimed();
            }
        }
    }
}

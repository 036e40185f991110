//! A circuit breaker per webhook, pure. After `FAILURES_TO_OPEN` failed
//! attempts in a row the breaker opens: nothing is sent to that receiver
//! until the cooldown ends, and its due deliveries wait without using up
//! their attempts. Then one delivery goes as a probe: success closes the
//! breaker, failure reopens it with twice the cooldown. A receiver that is
//! down is not hammered, and its retries do not crowd out healthy ones.
//!
//! Only a probe's failure lengthens the cooldown. Sends already on their
//! way when the breaker opened fail too, but they say nothing new: counted
//! as failed probes, the sixteen of a busy lane had turned a one-second
//! blip into five minutes of silence.

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
    /// When the current run of failures began (for disabling a webhook
    /// that fails for days, and telling the account it recovered).
    failing_since: Option<Timestamp>,
}

/// What an outcome changed, for the engine to act on beyond sending.
/// A webhook's circuit breaker as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Circuit {
    pub state: CircuitState,
    pub failures_in_a_row: u32,
    /// While open: when the next probe may go.
    pub open_until: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CircuitState {
    /// Sending as usual.
    Closed,
    /// Sending nothing until `open_until`.
    Open,
    /// One delivery is on its way to find out whether the receiver is back.
    Probing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Nothing,
    /// The breaker opened: the receiver has failed five times in a row.
    Opened,
    /// It was open and failed again.
    FailedAgain,
    /// It was open and a delivery got through: closed again, after failing
    /// since then.
    Closed {
        failing_since: Timestamp,
    },
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
        Breaker {
            failures_in_a_row: 0,
            open_until: None,
            probing: false,
            cooldown: FIRST_COOLDOWN,
            failing_since: None,
        }
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
    pub fn view(&self) -> Circuit {
        Circuit {
            state: match (self.open_until, self.probing) {
                (None, _) => CircuitState::Closed,
                (Some(_), true) => CircuitState::Probing,
                (Some(_), false) => CircuitState::Open,
            },
            failures_in_a_row: self.failures_in_a_row,
            open_until: self.open_until,
        }
    }

    /// When the current run of failures began, if one has.
    pub fn failing_since(&self) -> Option<Timestamp> {
        self.failing_since
    }

    /// An earlier start of the current run, known from before a restart.
    pub fn failing_since_at_least(&mut self, since: Timestamp) {
        self.failing_since = Some(self.failing_since.map_or(since, |known| known.min(since)));
    }

    pub fn is_idle(&self) -> bool {
        self.failures_in_a_row == 0 && self.open_until.is_none()
    }

    /// Holds everything back until `until` (the receiver's `Retry-After`),
    /// without counting a failure or lengthening the cooldown: then one
    /// probe goes, as after any opening.
    pub fn hold_until(&mut self, until: Timestamp) {
        self.open_until = Some(self.open_until.map_or(until, |open| open.max(until)));
    }

    /// Feeds one attempt's outcome; `is_probe` when it was the probe this
    /// breaker let through.
    pub fn record(&mut self, success: bool, is_probe: bool, now: Timestamp, clock: &dyn Clock) -> Transition {
        if success {
            let closed =
                self.open_until.map(|_| Transition::Closed { failing_since: self.failing_since.unwrap_or(now) });
            *self = Breaker::default();
            return closed.unwrap_or(Transition::Nothing);
        }
        self.failures_in_a_row += 1;
        self.failing_since.get_or_insert(now);
        match self.open_until {
            None if self.failures_in_a_row >= FAILURES_TO_OPEN => {
                self.open_until = Some(clock.after(now, self.cooldown));
                Transition::Opened
            }
            None => Transition::Nothing,
            Some(_) if is_probe => {
                // The probe failed: the receiver is still down; wait longer.
                self.probing = false;
                self.cooldown = (self.cooldown * 2).min(MAX_COOLDOWN);
                self.open_until = Some(clock.after(now, self.cooldown));
                Transition::FailedAgain
            }
            Some(until) if now >= until && !self.probing => {
                // Sent after the cooldown ended, before any probe: as good
                // as one, but not counted as one, so the wait is not longer.
                self.open_until = Some(clock.after(now, self.cooldown));
                Transition::FailedAgain
            }
            // Sent before the breaker opened: old news.
            Some(_) => Transition::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// A breaker just opened at 0 by five failures, and its clock.
    fn opened_at_zero() -> (Breaker, ManualClock) {
        let clock = ManualClock::new(Timestamp(0));
        let mut breaker = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN {
            let _ = breaker.record(false, false, Timestamp(0), &clock);
        }
        (breaker, clock)
    }

    #[test]
    fn opens_after_five_failures_probes_after_the_cooldown_and_backs_off() {
        let clock = ManualClock::new(Timestamp(0));
        let mut breaker = Breaker::default();
        for _ in 0..4 {
            let _ = breaker.record(false, false, Timestamp(0), &clock);
            assert_eq!(breaker.allowance(Timestamp(0)), Allowance::Any);
        }
        let _ = breaker.record(false, false, Timestamp(0), &clock);
        assert_eq!(breaker.allowance(Timestamp(999)), Allowance::Nothing(Some(Timestamp(1000))));
        assert!(!breaker.lets_through(Timestamp(999), false));
        assert_eq!(breaker.allowance(Timestamp(1000)), Allowance::Probe);
        breaker.probe_claimed();
        assert_eq!(breaker.allowance(Timestamp(1000)), Allowance::Nothing(None));
        let _ = breaker.record(false, true, Timestamp(1000), &clock);
        assert_eq!(breaker.allowance(Timestamp(2999)), Allowance::Nothing(Some(Timestamp(3000))));
        assert_eq!(breaker.allowance(Timestamp(3000)), Allowance::Probe);
        breaker.probe_claimed();
        let _ = breaker.record(true, true, Timestamp(3000), &clock);
        assert_eq!(breaker.allowance(Timestamp(3000)), Allowance::Any);
        assert!(breaker.is_idle());
    }

    /// The README's numbers: 1 s, then doubling, capped at five minutes.
    #[test]
    fn each_failed_probe_doubles_the_cooldown_up_to_five_minutes() {
        let (mut breaker, clock) = opened_at_zero();
        let mut now = Timestamp(0);
        let mut cooldowns = Vec::new();
        for _ in 0..12 {
            let Allowance::Nothing(Some(until)) = breaker.allowance(now) else {
                panic!("the breaker should be open at {now:?}: {breaker:?}");
            };
            cooldowns.push((until.0 - now.0) / 1000);
            now = until;
            assert_eq!(breaker.allowance(now), Allowance::Probe);
            breaker.probe_claimed();
            let _ = breaker.record(false, true, now, &clock);
        }
        assert_eq!(cooldowns, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    /// Hardening #8: sends in flight when the breaker opened each counted
    /// as a failed probe and doubled the wait (a 1 s blip became 299 s).
    #[test]
    fn failures_of_sends_started_before_the_breaker_opened_do_not_lengthen_it() {
        let (mut breaker, clock) = opened_at_zero();
        // Eleven more of a full lane come back failed, still inside the cooldown.
        for i in 0..11 {
            let _ = breaker.record(false, false, Timestamp(10 * i), &clock);
        }
        assert_eq!(breaker.allowance(Timestamp(500)), Allowance::Nothing(Some(Timestamp(1000))));
        assert_eq!(breaker.allowance(Timestamp(1000)), Allowance::Probe);
        breaker.probe_claimed();
        // A late one while the probe is out changes nothing either.
        let _ = breaker.record(false, false, Timestamp(1001), &clock);
        assert_eq!(breaker.allowance(Timestamp(1001)), Allowance::Nothing(None));
        let _ = breaker.record(true, true, Timestamp(1002), &clock);
        assert_eq!(breaker.allowance(Timestamp(1002)), Allowance::Any);
    }

    #[test]
    fn a_send_after_the_cooldown_that_fails_reopens_for_the_same_cooldown() {
        let (mut breaker, clock) = opened_at_zero();
        let _ = breaker.record(false, false, Timestamp(1500), &clock);
        assert_eq!(breaker.allowance(Timestamp(1500)), Allowance::Nothing(Some(Timestamp(2500))));
    }
}

#[cfg(test)]
mod transitions {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn opening_failing_again_and_closing_are_reported_with_when_the_failures_began() {
        let clock = ManualClock::new(Timestamp(0));
        let mut breaker = Breaker::default();
        for i in 0..4 {
            assert_eq!(breaker.record(false, false, Timestamp(i * 10), &clock), Transition::Nothing);
        }
        assert_eq!(breaker.record(false, false, Timestamp(40), &clock), Transition::Opened);
        assert_eq!(breaker.failing_since(), Some(Timestamp(0)));
        assert_eq!(breaker.record(false, false, Timestamp(50), &clock), Transition::Nothing, "in flight before");
        breaker.probe_claimed();
        assert_eq!(breaker.record(false, true, Timestamp(1040), &clock), Transition::FailedAgain);
        breaker.failing_since_at_least(Timestamp(-5000));
        breaker.probe_claimed();
        assert_eq!(
            breaker.record(true, true, Timestamp(5000), &clock),
            Transition::Closed { failing_since: Timestamp(-5000) }
        );
        assert_eq!(breaker.failing_since(), None);
        // A success that closes nothing reports nothing.
        let _ = breaker.record(false, false, Timestamp(6000), &clock);
        assert_eq!(breaker.record(true, false, Timestamp(6001), &clock), Transition::Nothing);
    }
}

//! One attempt of one delivery: render it through its profile, send it,
//! and decide what comes next. The decision is pure (`next_step`), so the
//! retry rules are testable without a network. What the receiver said of
//! itself (gone for good, or slow down until a time) comes back beside it,
//! for the engine to apply to the whole webhook.

use std::time::Duration;

use crate::clock::Clock;
use crate::http_client::{Outbound, ReceivedResponse, SendError};
use crate::model::{Attempt, AttemptRecord, DueDelivery, ErrorClass, NextStep, Timestamp};
use crate::retry::{RETRY_AFTER_CAP, RetryPolicy, parse_retry_after};

/// What an attempt tells of its receiver, beyond its own delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverSays {
    Nothing,
    /// `410 Gone`: the webhook is to be disabled at once.
    Gone,
    /// `429` or `503` with `Retry-After`: send it nothing before then.
    WaitUntil(Timestamp),
}

/// An attempt's record, and what it told of the receiver.
#[derive(Debug, Clone)]
pub struct Performed {
    pub record: AttemptRecord,
    pub receiver_says: ReceiverSays,
}

/// Sends `due` once and returns what the store should record.
/// `jitter_sample` is uniform in [-1, 1]; `max_body` bounds what a template
/// may render. A request that cannot be built fails the delivery at once:
/// the same event and template would render the same again, so retrying
/// could not help (a manual retry can, once the template is changed).
pub async fn perform(
    outbound: &Outbound,
    clock: &dyn Clock,
    due: &DueDelivery,
    jitter_sample: f64,
    max_body: usize,
) -> Performed {
    let started_at = clock.now();
    let request = match due.webhook.profile.render(due, started_at, max_body) {
        Ok(request) => request,
        Err(message) => {
            let attempt = Attempt {
                started_at,
                duration_ms: 0,
                status_code: None,
                response_body: None,
                error_class: Some(ErrorClass::Render),
                error_message: Some(message),
            };
            return Performed { record: record(due, attempt, NextStep::Failed), receiver_says: ReceiverSays::Nothing };
        }
    };
    let timeout = Duration::from_millis(due.webhook.effective_timeout_ms());
    // Latency is measured, not waited for, so it reads the monotonic timer.
    let stopwatch = std::time::Instant::now();
    let result = outbound.send(request, timeout).await;
    let duration_ms = stopwatch.elapsed().as_millis() as u64;
    let finished_at = clock.now();
    let next = next_step(&due.webhook.effective_retry(), due, &result, finished_at, clock, jitter_sample);
    let receiver_says = receiver_says(&result, finished_at, clock);
    let attempt = match result {
        Ok(response) => Attempt {
            started_at,
            duration_ms,
            status_code: Some(response.status),
            error_class: (!is_success(response.status)).then_some(ErrorClass::Status),
            error_message: (!is_success(response.status)).then(|| format!("receiver answered {}", response.status)),
            response_body: Some(response.body_excerpt),
        },
        Err(SendError { class, message }) => Attempt {
            started_at,
            duration_ms,
            status_code: None,
            response_body: None,
            error_class: Some(class),
            error_message: Some(message),
        },
    };
    Performed { record: record(due, attempt, next), receiver_says }
}

/// `410` is final for the webhook; `429` and `503` with a `Retry-After`
/// hold all of its deliveries back (up to a day), not just this one.
fn receiver_says(result: &Result<ReceivedResponse, SendError>, now: Timestamp, clock: &dyn Clock) -> ReceiverSays {
    match result {
        Ok(response) if response.status == 410 => ReceiverSays::Gone,
        Ok(response) if response.status == 429 || response.status == 503 => response
            .retry_after
            .as_deref()
            .and_then(|v| parse_retry_after(v, now.unix_seconds()))
            .map_or(ReceiverSays::Nothing, |wait| ReceiverSays::WaitUntil(clock.after(now, wait.min(RETRY_AFTER_CAP)))),
        _ => ReceiverSays::Nothing,
    }
}

fn record(due: &DueDelivery, attempt: Attempt, next: NextStep) -> AttemptRecord {
    AttemptRecord {
        delivery_id: due.delivery_id.clone(),
        account_id: due.webhook.account_id.clone(),
        number: due.n_attempts + 1,
        attempt,
        next,
    }
}

pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What follows an attempt that ended at `now` with `result`.
pub fn next_step(
    policy: &RetryPolicy,
    due: &DueDelivery,
    result: &Result<ReceivedResponse, SendError>,
    now: Timestamp,
    clock: &dyn Clock,
    jitter_sample: f64,
) -> NextStep {
    let retry_after = match result {
        Ok(response) if is_success(response.status) => return NextStep::Success,
        // The receiver says it is gone for good: no retry can reach it.
        Ok(response) if response.status == 410 => return NextStep::Failed,
        Ok(response) => response.retry_after.as_deref().and_then(|v| parse_retry_after(v, now.unix_seconds())),
        Err(_) => None,
    };
    if due.final_attempt {
        return NextStep::Failed;
    }
    match policy.next_wait(due.n_attempts + 1, retry_after, jitter_sample) {
        Some(wait) => NextStep::RetryAt(clock.after(now, wait)),
        None => NextStep::Failed,
    }
}

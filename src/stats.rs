//! Delivery statistics, pure: counts by status, the success rate and
//! attempt latency percentiles, from samples the store gathers.

use serde::Serialize;

use crate::model::DeliveryStatus;

/// What the store gathers for one webhook over a window.
#[derive(Debug, Clone, Default)]
pub struct WebhookSample {
    pub webhook_id: String,
    pub pending: u64,
    pub retrying: u64,
    pub success: u64,
    pub failed: u64,
    /// Attempt durations in ms, in any order.
    pub durations_ms: Vec<u64>,
}

/// Samples gathered per webhook from a store's rows: delivery counts by
/// status and attempt durations, in webhook order. Both stores fill it.
#[derive(Default)]
pub struct Samples(std::collections::BTreeMap<String, WebhookSample>);

impl Samples {
    fn of(&mut self, webhook_id: String) -> &mut WebhookSample {
        self.0.entry(webhook_id.clone()).or_insert_with(|| WebhookSample { webhook_id, ..Default::default() })
    }

    /// `n` deliveries of `webhook_id` in `status` (as the store spells it;
    /// a status this Herald does not know is left out of the counts).
    pub fn add_count(&mut self, webhook_id: String, status: &str, n: i64) {
        let sample = self.of(webhook_id);
        if let Some(status) = DeliveryStatus::parse(status) {
            sample.add_count(status, n.max(0) as u64);
        }
    }

    pub fn add_duration(&mut self, webhook_id: String, ms: i64) {
        self.of(webhook_id).durations_ms.push(ms.max(0) as u64);
    }

    pub fn into_vec(self) -> Vec<WebhookSample> {
        self.0.into_values().collect()
    }
}

impl WebhookSample {
    pub fn add_count(&mut self, status: DeliveryStatus, n: u64) {
        match status {
            DeliveryStatus::Pending => self.pending += n,
            DeliveryStatus::Retrying => self.retrying += n,
            DeliveryStatus::Success => self.success += n,
            DeliveryStatus::Failed => self.failed += n,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Summary {
    pub deliveries: u64,
    pub by_status: ByStatus,
    /// success / (success + failed): finished deliveries only; `null` when
    /// none has finished.
    pub success_rate: Option<f64>,
    pub attempts: u64,
    /// Attempt durations; `null` when there were no attempts.
    pub latency_ms: Option<Latency>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ByStatus {
    pub pending: u64,
    pub retrying: u64,
    pub success: u64,
    pub failed: u64,
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(samples: &[&WebhookSample]) -> Summary {
    let sum = |f: fn(&WebhookSample) -> u64| samples.iter().map(|s| f(s)).sum::<u64>();
    let by_status = ByStatus {
        pending: sum(|s| s.pending),
        retrying: sum(|s| s.retrying),
        success: sum(|s| s.success),
        failed: sum(|s| s.failed),
    };
    let mut durations: Vec<u64> = samples.iter().flat_map(|s| s.durations_ms.iter().copied()).collect();
    durations.sort_unstable();
    let finished = by_status.success + by_status.failed;
    Summary {
        deliveries: by_status.pending + by_status.retrying + finished,
        success_rate: (finished > 0).then(|| by_status.success as f64 / finished as f64),
        by_status,
        attempts: durations.len() as u64,
        latency_ms: (!durations.is_empty()).then(|| Latency {
            p50: percentile(&durations, 50.0),
            p90: percentile(&durations, 90.0),
            p99: percentile(&durations, 99.0),
            max: *durations.last().expect("not empty"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn the_seed_example_rate() {
        // Seed 004: 950 success and 50 failed.
        let sample = WebhookSample { success: 950, failed: 50, durations_ms: vec![5, 1, 9], ..Default::default() };
        let summary = summarize(&[&sample]);
        assert_eq!(summary.success_rate, Some(0.95));
        assert_eq!(summary.deliveries, 1000);
        assert_eq!(summary.latency_ms, Some(Latency { p50: 5, p90: 9, p99: 9, max: 9 }));
        assert_eq!(summarize(&[]).success_rate, None);
    }
}

//! What counting costs per event, alone: the calls the hot path makes for
//! one delivered event (`events_ingested`, `attempt`, and its share of a
//! 512-attempt recorder batch), timed over a million events with metrics on
//! and off, in one process. `herald bench` moves by more than 20 % between
//! identical runs on a shared machine, far more than what is measured here,
//! so this is the figure that says what `/metrics` costs (see BENCHMARKS.md):
//!
//! ```text
//! cargo build --release --example metrics_cost
//! target/release/examples/metrics_cost
//! ```

use std::time::Instant;

use herald::metrics::{Metrics, MetricsConfig};
use herald::model::{Attempt, AttemptRecord, NextStep, Timestamp};
use herald::profile::Profile;

const EVENTS: usize = 1_000_000;
const BATCH: usize = 512;

fn per_event_ns(metrics: &Metrics, record: &AttemptRecord) -> f64 {
    let started = Instant::now();
    for i in 0..EVENTS {
        metrics.events_ingested(1, false);
        metrics.attempt("wh_01", Profile::Standard, std::hint::black_box(record));
        if i % BATCH == BATCH - 1 {
            metrics.recorder_batch(BATCH);
        }
    }
    started.elapsed().as_nanos() as f64 / EVENTS as f64
}

fn main() {
    let record = AttemptRecord {
        delivery_id: "dlv_01".into(),
        account_id: "acc_01".into(),
        number: 1,
        attempt: Attempt {
            started_at: Timestamp(0),
            duration_ms: 3,
            status_code: Some(200),
            response_body: None,
            error_class: None,
            error_message: None,
        },
        next: NextStep::Success,
    };
    let on = Metrics::new(MetricsConfig::default());
    let off = Metrics::new(MetricsConfig { disabled: true, per_webhook: false });
    for round in 1..=3 {
        let (on_ns, off_ns) = (per_event_ns(&on, &record), per_event_ns(&off, &record));
        println!("round {round}: metrics on {on_ns:.1} ns/event, off {off_ns:.1} ns/event");
    }
    let scraped = on.render(Default::default()).unwrap_or_default();
    assert!(scraped.contains("herald_deliveries_total{outcome=\"success\",profile=\"standard\"} 3000000"));
}

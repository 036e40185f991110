//! Prometheus metrics: every series Herald exports, named in one place,
//! and the handles the engine, the store and the API count with. Each
//! `Application` has its own registry (no global recorder), so tests in one
//! process never see each other's counts. Handles with fixed labels are
//! registered once at start, so counting on the hot path is an atomic add,
//! with no lookup and no allocation; only `--metrics-per-webhook` adds
//! series keyed at run time. Gauges about the engine's schedule and the
//! process are read when `/metrics` is scraped.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::model::{AttemptRecord, ErrorClass, NextStep};
use crate::profile::{PROFILES, Profile};

/// The names of every series, so a dashboard author reads them here.
pub mod names {
    pub const EVENTS_INGESTED: &str = "herald_events_ingested_total";
    pub const DELIVERIES: &str = "herald_deliveries_total";
    pub const ATTEMPTS: &str = "herald_attempts_total";
    pub const ATTEMPT_SECONDS: &str = "herald_attempt_duration_seconds";
    pub const RETRIES_SCHEDULED: &str = "herald_retries_scheduled_total";
    pub const WEBHOOKS_WAITING: &str = "herald_webhooks_waiting";
    pub const DELIVERIES_QUEUED: &str = "herald_deliveries_queued";
    pub const REQUESTS_IN_FLIGHT: &str = "herald_http_requests_in_flight";
    pub const BREAKER_OPENINGS: &str = "herald_breaker_openings_total";
    pub const STORE_COMMIT_SECONDS: &str = "herald_store_commit_duration_seconds";
    pub const STORE_COMMIT_JOBS: &str = "herald_store_commit_jobs";
    pub const RECORDER_BATCH: &str = "herald_recorder_batch_attempts";
    pub const WEBHOOK_DELIVERIES: &str = "herald_webhook_deliveries_total";
    pub const WEBHOOK_ATTEMPTS: &str = "herald_webhook_attempts_total";
    pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
    pub const PROCESS_RSS_BYTES: &str = "process_resident_memory_bytes";
    pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
    pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
}

/// Final outcomes of a delivery, in the order of the `deliveries` table.
const OUTCOMES: [&str; 2] = ["success", "failed"];
/// Status classes of an attempt; `none` when no response came.
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const ERROR_CLASSES: [Option<ErrorClass>; 8] = [
    None,
    Some(ErrorClass::Timeout),
    Some(ErrorClass::Connect),
    Some(ErrorClass::Dns),
    Some(ErrorClass::Blocked),
    Some(ErrorClass::Status),
    Some(ErrorClass::Request),
    Some(ErrorClass::Render),
];
const LATENCY_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const COMMIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Whether and how to count.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsConfig {
    /// Count nothing and serve no `/metrics` (the bench's baseline).
    pub disabled: bool,
    /// Also count deliveries and attempts per webhook (one series per
    /// webhook and label: bounded only by the number of webhooks).
    pub per_webhook: bool,
}

/// The store's writer thread counts its group commits with these.
#[derive(Clone)]
pub struct CommitMetrics {
    seconds: Histogram,
    jobs: Histogram,
}

impl Default for CommitMetrics {
    /// Counting nothing.
    fn default() -> Self {
        CommitMetrics { seconds: Histogram::noop(), jobs: Histogram::noop() }
    }
}

impl CommitMetrics {
    /// One group commit: how long it took, and how many callers it served.
    pub fn committed(&self, elapsed: std::time::Duration, n_jobs: usize) {
        self.seconds.record(elapsed.as_secs_f64());
        self.jobs.record(n_jobs as f64);
    }
}

/// What the engine's schedule holds, read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Webhooks with deliveries in the store whose time has come.
    pub webhooks_due_now: usize,
    /// Webhooks whose first unfinished delivery is due later (retries).
    pub webhooks_due_later: usize,
    /// Deliveries claimed into lanes, waiting for their send.
    pub deliveries_queued: usize,
}

pub struct Metrics {
    /// `None` when disabled: every handle below is then a no-op.
    recorder: Option<PrometheusRecorder>,
    handle: Option<PrometheusHandle>,
    per_webhook: bool,
    /// From the API, and Herald's own (`herald.*`).
    events_ingested: [Counter; 2],
    /// `[outcome][profile]`.
    deliveries: Vec<Counter>,
    /// `[status class][error class]`.
    attempts: Vec<Counter>,
    attempt_seconds: Histogram,
    retries_scheduled: Counter,
    requests_in_flight: Gauge,
    breaker_openings: Counter,
    recorder_batch: Histogram,
    commits: CommitMetrics,
    webhooks_due_now: Gauge,
    webhooks_due_later: Gauge,
    deliveries_queued: Gauge,
    cpu_seconds: Gauge,
    rss_bytes: Gauge,
    open_fds: Gauge,
    start_time: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(MetricsConfig { disabled: true, per_webhook: false })
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("enabled", &self.recorder.is_some()).finish()
    }
}

impl Metrics {
    pub fn new(config: MetricsConfig) -> Metrics {
        if config.disabled {
            return Metrics::with(None, false);
        }
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (names::ATTEMPT_SECONDS, &LATENCY_BUCKETS[..]),
            (names::STORE_COMMIT_SECONDS, &COMMIT_BUCKETS[..]),
            (names::STORE_COMMIT_JOBS, &SIZE_BUCKETS[..]),
            (names::RECORDER_BATCH, &SIZE_BUCKETS[..]),
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .expect("the bucket lists above are not empty");
        }
        Metrics::with(Some(builder.build_recorder()), config.per_webhook)
    }

    fn with(recorder: Option<PrometheusRecorder>, per_webhook: bool) -> Metrics {
        let describe = |name: &'static str, help: &'static str| {
            if let Some(r) = &recorder {
                r.describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
            }
        };
        describe(
            names::EVENTS_INGESTED,
            "Events accepted by ingest, from the API or Herald's own herald.* (a repeated id is not counted again).",
        );
        describe(names::DELIVERIES, "Deliveries finished, by outcome and profile.");
        describe(names::ATTEMPTS, "Attempts recorded, by response status class and error class.");
        describe(names::ATTEMPT_SECONDS, "How long an attempt took, from sending to the end of the answer read.");
        describe(names::RETRIES_SCHEDULED, "Attempts that failed and scheduled another.");
        describe(
            names::WEBHOOKS_WAITING,
            "Webhooks with unfinished deliveries in the store, by when the first is due.",
        );
        describe(names::DELIVERIES_QUEUED, "Deliveries claimed into the engine's lanes, waiting for their send.");
        describe(names::REQUESTS_IN_FLIGHT, "API requests being answered.");
        describe(names::BREAKER_OPENINGS, "Circuit breakers opened (five failures in a row).");
        describe(
            names::STORE_COMMIT_SECONDS,
            "How long a store commit took (SQLite: a group commit of the writer thread; PostgreSQL: an ingest or a batch of attempt records).",
        );
        describe(names::STORE_COMMIT_JOBS, "Writes that shared one commit (always 1 on PostgreSQL).");
        describe(names::RECORDER_BATCH, "Attempts the recorder committed together.");
        describe(names::PROCESS_CPU_SECONDS, "User and system CPU time used, in seconds.");
        describe(names::PROCESS_RSS_BYTES, "Resident memory, in bytes.");
        describe(names::PROCESS_OPEN_FDS, "Open file descriptors.");
        describe(names::PROCESS_START_TIME, "When the process started, in seconds since the Unix epoch.");
        let key = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            Key::from_parts(name, labels.iter().map(|(k, v)| Label::from_static_parts(k, v)).collect::<Vec<_>>())
        };
        let meta = Metadata::new(module_path!(), metrics::Level::INFO, None);
        let counter = |name, labels: &[(&'static str, &'static str)]| match &recorder {
            Some(r) => r.register_counter(&key(name, labels), &meta),
            None => Counter::noop(),
        };
        let gauge = |name, labels: &[(&'static str, &'static str)]| match &recorder {
            Some(r) => r.register_gauge(&key(name, labels), &meta),
            None => Gauge::noop(),
        };
        let histogram = |name| match &recorder {
            Some(r) => r.register_histogram(&key(name, &[]), &meta),
            None => Histogram::noop(),
        };
        let mut deliveries = Vec::new();
        for outcome in OUTCOMES {
            for profile in PROFILES {
                deliveries.push(counter(names::DELIVERIES, &[("outcome", outcome), ("profile", profile.name())]));
            }
        }
        let mut attempts = Vec::new();
        for status in STATUS_CLASSES {
            for error in ERROR_CLASSES {
                let error = error.map_or("none", ErrorClass::as_str);
                attempts.push(counter(names::ATTEMPTS, &[("status_class", status), ("error_class", error)]));
            }
        }
        let metrics = Metrics {
            per_webhook,
            events_ingested: [
                counter(names::EVENTS_INGESTED, &[("source", "api")]),
                counter(names::EVENTS_INGESTED, &[("source", "herald")]),
            ],
            deliveries,
            attempts,
            attempt_seconds: histogram(names::ATTEMPT_SECONDS),
            retries_scheduled: counter(names::RETRIES_SCHEDULED, &[]),
            requests_in_flight: gauge(names::REQUESTS_IN_FLIGHT, &[]),
            breaker_openings: counter(names::BREAKER_OPENINGS, &[]),
            recorder_batch: histogram(names::RECORDER_BATCH),
            commits: CommitMetrics {
                seconds: histogram(names::STORE_COMMIT_SECONDS),
                jobs: histogram(names::STORE_COMMIT_JOBS),
            },
            webhooks_due_now: gauge(names::WEBHOOKS_WAITING, &[("due", "now")]),
            webhooks_due_later: gauge(names::WEBHOOKS_WAITING, &[("due", "later")]),
            deliveries_queued: gauge(names::DELIVERIES_QUEUED, &[]),
            cpu_seconds: gauge(names::PROCESS_CPU_SECONDS, &[]),
            rss_bytes: gauge(names::PROCESS_RSS_BYTES, &[]),
            open_fds: gauge(names::PROCESS_OPEN_FDS, &[]),
            start_time: gauge(names::PROCESS_START_TIME, &[]),
            handle: recorder.as_ref().map(PrometheusRecorder::handle),
            recorder,
        };
        if let Some(start) = process::start_time_seconds() {
            metrics.start_time.set(start);
        }
        metrics
    }

    pub fn enabled(&self) -> bool {
        self.recorder.is_some()
    }

    /// The handles the store's writer thread counts its commits with.
    pub fn commits(&self) -> CommitMetrics {
        self.commits.clone()
    }

    /// Events ingest committed (not counting repeated ids); `own` for
    /// Herald's operational events.
    pub fn events_ingested(&self, n_events: usize, own: bool) {
        self.events_ingested[own as usize].increment(n_events as u64);
    }

    /// An API request started; the guard counts it finished when dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.requests_in_flight.increment(1.0);
        InFlight(self.clone())
    }

    pub fn breaker_opened(&self) {
        self.breaker_openings.increment(1);
    }

    /// A batch of attempts the recorder is committing.
    pub fn recorder_batch(&self, n_attempts: usize) {
        self.recorder_batch.record(n_attempts as f64);
        // Histogram samples wait in the handles until drained: drain them
        // once per batch, so memory stays bounded when nobody scrapes.
        if let Some(handle) = &self.handle {
            handle.run_upkeep();
        }
    }

    /// One attempt, as recorded, of a delivery of `webhook_id` with `profile`.
    pub fn attempt(&self, webhook_id: &str, profile: Profile, record: &AttemptRecord) {
        let attempt = &record.attempt;
        let status = status_class(attempt.status_code);
        let error = ERROR_CLASSES.iter().position(|e| *e == attempt.error_class).unwrap_or(0);
        self.attempts[status * ERROR_CLASSES.len() + error].increment(1);
        self.attempt_seconds.record(attempt.duration_ms as f64 / 1000.0);
        let outcome = match record.next {
            NextStep::Success => Some(0),
            NextStep::Failed => Some(1),
            NextStep::RetryAt(_) => {
                self.retries_scheduled.increment(1);
                None
            }
        };
        let profile_index = PROFILES.iter().position(|p| *p == profile).unwrap_or(0);
        if let Some(outcome) = outcome {
            self.deliveries[outcome * PROFILES.len() + profile_index].increment(1);
        }
        if self.per_webhook
            && let Some(recorder) = &self.recorder
        {
            let meta = Metadata::new(module_path!(), metrics::Level::INFO, None);
            let webhook = Label::new("webhook_id", webhook_id.to_owned());
            let labels = vec![webhook.clone(), Label::from_static_parts("status_class", STATUS_CLASSES[status])];
            recorder.register_counter(&Key::from_parts(names::WEBHOOK_ATTEMPTS, labels), &meta).increment(1);
            if let Some(outcome) = outcome {
                let labels = vec![webhook, Label::from_static_parts("outcome", OUTCOMES[outcome])];
                recorder.register_counter(&Key::from_parts(names::WEBHOOK_DELIVERIES, labels), &meta).increment(1);
            }
        }
    }

    /// The text format, with the engine's schedule and the process read now;
    /// `None` when metrics are disabled.
    pub fn render(&self, waiting: Waiting) -> Option<String> {
        let handle = self.handle.as_ref()?;
        self.webhooks_due_now.set(waiting.webhooks_due_now as f64);
        self.webhooks_due_later.set(waiting.webhooks_due_later as f64);
        self.deliveries_queued.set(waiting.deliveries_queued as f64);
        if let Some(cpu) = process::cpu_seconds() {
            self.cpu_seconds.set(cpu);
        }
        if let Some(rss) = process::resident_bytes() {
            self.rss_bytes.set(rss as f64);
        }
        if let Some(fds) = process::open_fds() {
            self.open_fds.set(fds as f64);
        }
        Some(handle.render())
    }
}

/// An API request in flight, counted until dropped.
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests_in_flight.decrement(1.0);
    }
}

/// The index of a status in `STATUS_CLASSES`.
fn status_class(status: Option<u16>) -> usize {
    match status {
        Some(code @ 100..=599) => (code / 100 - 1) as usize,
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// This process, from `/proc/self` (Linux; elsewhere the gauges stay unset).
mod process {
    fn stat_fields() -> Option<Vec<String>> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses.
        let (_, rest) = stat.rsplit_once(')')?;
        Some(rest.split_whitespace().map(str::to_owned).collect())
    }

    fn ticks_per_second() -> f64 {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 { ticks as f64 } else { 100.0 }
    }

    pub fn cpu_seconds() -> Option<f64> {
        let fields = stat_fields()?;
        // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        Some((ticks(11)? + ticks(12)?) / ticks_per_second())
    }

    pub fn resident_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
        kib.parse::<u64>().ok().map(|kib| kib * 1024)
    }

    pub fn open_fds() -> Option<usize> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
    }

    /// Boot time (`btime` of `/proc/stat`) plus the process's start in
    /// ticks after boot (field 22 of its stat).
    pub fn start_time_seconds() -> Option<f64> {
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let started: f64 = stat_fields()?.get(19)?.parse().ok()?;
        Some(boot + started / ticks_per_second())
    }
}

#[cfg(test)]
mod tests {
    use super::status_class;

    #[test]
    fn status_classes() {
        for (status, class) in [(Some(100), 0), (Some(204), 1), (Some(302), 2), (Some(410), 3), (Some(599), 4)] {
            assert_eq!(status_class(status), class, "{status:?}");
        }
        assert_eq!(status_class(None), 5);
        assert_eq!(status_class(Some(600)), 5);
    }
}

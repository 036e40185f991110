//! The bench's scenarios. Each starts what it needs (a fresh Herald, the
//! receiver, webhooks), drives load, and returns its figures.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::ProgressBar;
use serde_json::json;

use super::load::{Client, run_concurrently, status_payload};
use super::process::HeraldProcess;
use super::receiver::BenchReceiver;
use super::{Metric, ScenarioResult, Sizes};
use crate::stats::percentile;

const CONCURRENCY: usize = 64;
const BATCH: usize = 100;
const BATCH_CONCURRENCY: usize = 8;
/// How long any scenario may wait for its deliveries before giving up.
const PATIENCE: Duration = Duration::from_secs(600);

fn show_progress(
    pb: &ProgressBar,
    receiver: &BenchReceiver,
    label: &'static str,
    total: u64,
) -> tokio::task::JoinHandle<()> {
    let (pb, counts) = (pb.clone(), receiver.counts.clone());
    tokio::spawn(async move {
        loop {
            let done = counts.ok.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed);
            pb.set_message(format!("{label}: {done}/{total} received"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Reads Herald's figures for the scenario, then stops it.
async fn finish(name: &'static str, herald: HeraldProcess, cpu_before: f64, metrics: Vec<Metric>) -> ScenarioResult {
    let result = ScenarioResult {
        name,
        metrics,
        herald_cpu_seconds: Some(herald.cpu_seconds() - cpu_before),
        herald_peak_rss_mb: Some(herald.peak_rss_mb()),
    };
    herald.stop().await;
    result
}

/// Rounds of the baseline; the best is the machine's ceiling. A noisy
/// machine scores some rounds low, and a low ceiling would flatter the
/// end-to-end ratio.
const BASELINE_ROUNDS: usize = 3;

pub async fn baseline(sizes: &Sizes, _pb: &ProgressBar) -> anyhow::Result<ScenarioResult> {
    let receiver = BenchReceiver::start().await?;
    let client = Client::new(&receiver.base, "none");
    let body =
        json!({"type": "whatsapp:message:status", "timestamp": "2021-06-18T14:48:06Z", "data": status_payload(0)})
            .to_string();
    let body = bytes::Bytes::from(body);
    let n = sizes.baseline;
    let mut best: f64 = 0.0;
    for _ in 0..BASELINE_ROUNDS {
        let (client, body) = (client.clone(), body.clone());
        let elapsed = run_concurrently(n, CONCURRENCY, move |_| {
            let (client, body) = (client.clone(), body.clone());
            async move { client.post("/ok", body).await.map(|_| ()) }
        })
        .await?;
        best = best.max(n as f64 / elapsed.as_secs_f64());
    }
    Ok(ScenarioResult {
        name: "baseline",
        metrics: vec![Metric::new("requests/s, best of 3", best, None)],
        herald_cpu_seconds: None,
        herald_peak_rss_mb: None,
    })
}

async fn herald_with_webhook(receiver: &BenchReceiver) -> anyhow::Result<(HeraldProcess, Client)> {
    herald_with_webhook_and(receiver, &[]).await
}

async fn herald_with_webhook_and(receiver: &BenchReceiver, args: &[String]) -> anyhow::Result<(HeraldProcess, Client)> {
    let herald = HeraldProcess::start_with(args).await?;
    let client = Client::new(&herald.base, &herald.token);
    client.create_webhook(json!({"url": format!("{}/ok", receiver.base)})).await?;
    Ok((herald, client))
}

pub async fn ingest_single(sizes: &Sizes, _pb: &ProgressBar) -> anyhow::Result<ScenarioResult> {
    let receiver = BenchReceiver::start().await?;
    let (herald, client) = herald_with_webhook(&receiver).await?;
    let n = sizes.ingest_single;
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        (0..n)
            .map(|i| {
                json!({"id": format!("e{i}"), "type": "whatsapp:message:status", "payload": status_payload(i)})
                    .to_string()
                    .into()
            })
            .collect(),
    );
    let cpu = herald.cpu_seconds();
    let elapsed = run_concurrently(n, CONCURRENCY, move |i| {
        let (client, body) = (client.clone(), bodies[i].clone());
        async move { client.post("/v1/events", body).await.map(|_| ()) }
    })
    .await?;
    Ok(finish(
        "ingest-single",
        herald,
        cpu,
        vec![Metric::new("events/s accepted", n as f64 / elapsed.as_secs_f64(), None)],
    )
    .await)
}

/// Posts prepared batches (see `Client::batch_bodies`) from
/// `BATCH_CONCURRENCY` tasks.
async fn post_batches(client: &Client, bodies: Vec<bytes::Bytes>) -> anyhow::Result<Duration> {
    let (client, bodies) = (client.clone(), Arc::new(bodies));
    run_concurrently(bodies.len(), BATCH_CONCURRENCY, move |b| {
        let (client, body) = (client.clone(), bodies[b].clone());
        async move { client.post("/v1/events", body).await.map(|_| ()) }
    })
    .await
}

pub async fn ingest_batch(sizes: &Sizes, _pb: &ProgressBar) -> anyhow::Result<ScenarioResult> {
    let receiver = BenchReceiver::start().await?;
    let (herald, client) = herald_with_webhook(&receiver).await?;
    let n = sizes.ingest_batch;
    let bodies = Client::batch_bodies("whatsapp:message:status", n, BATCH);
    let cpu = herald.cpu_seconds();
    let elapsed = post_batches(&client, bodies).await?;
    Ok(finish(
        "ingest-batch",
        herald,
        cpu,
        vec![Metric::new("events/s accepted", n as f64 / elapsed.as_secs_f64(), Some(50_000.0))],
    )
    .await)
}

/// Rounds of end-to-end, each on a fresh Herald and database; the best
/// is compared with the baseline's best, so that both sides of the ratio
/// are measured alike.
const END_TO_END_ROUNDS: usize = 3;

pub async fn end_to_end(sizes: &Sizes, pb: &ProgressBar, baseline: Option<f64>) -> anyhow::Result<ScenarioResult> {
    // The best round's rate and CPU seconds; the worst CPU per event and
    // peak RSS of any round.
    let (mut rate, mut cpu_s, mut cpu_ms, mut rss): (f64, f64, f64, f64) = (0.0, 0.0, 0.0, 0.0);
    for round in 1..=END_TO_END_ROUNDS {
        let run = end_to_end_round(sizes, pb, &format!("end-to-end ({round}/{END_TO_END_ROUNDS})")).await?;
        if run.rate > rate {
            (rate, cpu_s) = (run.rate, run.cpu_seconds);
        }
        cpu_ms = cpu_ms.max(run.cpu_ms_per_event);
        rss = rss.max(run.peak_rss_mb);
    }
    let mut metrics = vec![Metric::new("events/s delivered, best of 3", rate, None)];
    if let Some(baseline) = baseline {
        metrics.push(Metric::new("ratio to baseline", rate / baseline, Some(0.5)));
    }
    metrics.push(Metric::at_most("herald CPU ms per event, worst", cpu_ms, 0.1));
    metrics.push(Metric::at_most("peak RSS MB, worst", rss, 150.0));
    Ok(ScenarioResult { name: "end-to-end", metrics, herald_cpu_seconds: Some(cpu_s), herald_peak_rss_mb: Some(rss) })
}

struct EndToEndRun {
    rate: f64,
    cpu_seconds: f64,
    cpu_ms_per_event: f64,
    peak_rss_mb: f64,
}

async fn end_to_end_round(sizes: &Sizes, pb: &ProgressBar, label: &str) -> anyhow::Result<EndToEndRun> {
    let receiver = BenchReceiver::start().await?;
    // As many requests open to the receiver as the baseline holds (the
    // default per webhook is 16): the ratio compares like with like.
    let same_concurrency = ["--per-webhook-concurrency".to_owned(), CONCURRENCY.to_string()];
    let (herald, client) = herald_with_webhook_and(&receiver, &same_concurrency).await?;
    let n = sizes.end_to_end;
    let bodies = Client::batch_bodies("whatsapp:message:status", n, BATCH);
    pb.set_message(label.to_owned());
    let progress = show_progress(pb, &receiver, "end-to-end", n as u64);
    let cpu = herald.cpu_seconds();
    let started = Instant::now();
    post_batches(&client, bodies).await?;
    if !receiver.wait_until(PATIENCE, |c| c.ok.load(Ordering::Relaxed) >= n as u64).await {
        bail!("end-to-end: not every event arrived");
    }
    progress.abort();
    let elapsed = receiver.last_ok().unwrap_or_else(Instant::now) - started;
    let cpu_seconds = herald.cpu_seconds() - cpu;
    let run = EndToEndRun {
        rate: n as f64 / elapsed.as_secs_f64(),
        cpu_seconds,
        cpu_ms_per_event: cpu_seconds * 1000.0 / n as f64,
        peak_rss_mb: herald.peak_rss_mb(),
    };
    herald.stop().await;
    Ok(run)
}

pub async fn latency(sizes: &Sizes, pb: &ProgressBar) -> anyhow::Result<ScenarioResult> {
    let receiver = BenchReceiver::start().await?;
    let (herald, client) = herald_with_webhook(&receiver).await?;
    receiver.track_arrivals();
    let cpu = herald.cpu_seconds();
    let n = (sizes.latency_seconds * sizes.latency_rate) as usize;
    let progress = show_progress(pb, &receiver, "latency", n as u64);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::with_capacity(n)));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / sizes.latency_rate as f64));
    let mut requests = Vec::with_capacity(n);
    for i in 0..n {
        ticker.tick().await;
        let (client, sent) = (client.clone(), sent.clone());
        requests.push(tokio::spawn(async move {
            let id = format!("lat{i}");
            let body = json!({"id": id, "type": "whatsapp:message:status", "payload": status_payload(i)}).to_string();
            sent.lock().unwrap().insert(id, Instant::now());
            client.post("/v1/events", body).await.map(|_| ())
        }));
    }
    for request in requests {
        request.await??;
    }
    if !receiver.wait_until(PATIENCE, |c| c.ok.load(Ordering::Relaxed) >= n as u64).await {
        bail!("latency: not every event arrived");
    }
    progress.abort();
    let arrivals = receiver.take_arrivals();
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let mut micros: Vec<u64> = sent
        .iter()
        .filter_map(|(id, at)| {
            arrivals.get(id).map(|arrived| arrived.saturating_duration_since(*at).as_micros() as u64)
        })
        .collect();
    micros.sort_unstable();
    let ms = |p: f64| percentile(&micros, p) as f64 / 1000.0;
    let metrics = vec![
        Metric::at_most("p50 ms", ms(50.0), 2.0),
        Metric::at_most("p99 ms", ms(99.0), 8.0),
        Metric::at_most("p99.9 ms", ms(99.9), 25.0),
        Metric::new("max ms", micros.last().copied().unwrap_or(0) as f64 / 1000.0, None),
    ];
    Ok(finish("latency", herald, cpu, metrics).await)
}

pub async fn fan_out(sizes: &Sizes, pb: &ProgressBar) -> anyhow::Result<ScenarioResult> {
    let receiver = BenchReceiver::start().await?;
    let herald = HeraldProcess::start().await?;
    let client = Client::new(&herald.base, &herald.token);
    for w in 0..sizes.fan_out_webhooks {
        client.create_webhook(json!({"url": format!("{}/ok/{w}", receiver.base)})).await?;
    }
    let total = (sizes.fan_out_events * sizes.fan_out_webhooks) as u64;
    let bodies = Client::batch_bodies("whatsapp:message:status", sizes.fan_out_events, BATCH);
    let progress = show_progress(pb, &receiver, "fan-out", total);
    let cpu = herald.cpu_seconds();
    let started = Instant::now();
    post_batches(&client, bodies).await?;
    if !receiver.wait_until(PATIENCE, |c| c.ok.load(Ordering::Relaxed) >= total).await {
        bail!("fan-out: not every delivery arrived");
    }
    progress.abort();
    let elapsed = receiver.last_ok().unwrap_or_else(Instant::now) - started;
    Ok(finish(
        "fan-out",
        herald,
        cpu,
        vec![Metric::new("deliveries/s", total as f64 / elapsed.as_secs_f64(), Some(20_000.0))],
    )
    .await)
}

/// Healthy deliveries per second and their p99 latency, with `failing`
/// webhooks that answer 500 (and retry every second) beside 10 healthy ones.
async fn healthy_under(sizes: &Sizes, failing: usize) -> anyhow::Result<(f64, f64, HeraldProcess, f64)> {
    const HEALTHY: usize = 10;
    let receiver = BenchReceiver::start().await?;
    let herald = HeraldProcess::start().await?;
    let client = Client::new(&herald.base, &herald.token);
    for w in 0..HEALTHY {
        client.create_webhook(json!({"url": format!("{}/ok/{w}", receiver.base)})).await?;
    }
    for w in 0..failing {
        let retry = json!({"schedule": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]});
        client.create_webhook(json!({"url": format!("{}/fail/{w}", receiver.base), "retry": retry})).await?;
    }
    receiver.track_arrivals();
    let n = sizes.failing_events;
    let total = (n * HEALTHY) as u64;
    let bodies = Arc::new(Client::batch_bodies("t", n, BATCH));
    let cpu = herald.cpu_seconds();
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(vec![Instant::now(); bodies.len()]));
    let started = Instant::now();
    let (batch_client, batch_sent) = (client.clone(), sent.clone());
    run_concurrently(bodies.len(), BATCH_CONCURRENCY, move |b| {
        let (client, sent, body) = (batch_client.clone(), batch_sent.clone(), bodies[b].clone());
        async move {
            sent.lock().unwrap()[b] = Instant::now();
            client.post("/v1/events", body).await.map(|_| ())
        }
    })
    .await?;
    if !receiver.wait_until(PATIENCE, |c| c.ok.load(Ordering::Relaxed) >= total).await {
        bail!("failing receiver: healthy deliveries did not all arrive");
    }
    let elapsed = receiver.last_ok().unwrap_or_else(Instant::now) - started;
    let arrivals = receiver.take_arrivals();
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let mut micros: Vec<u64> = (0..n)
        .filter_map(|i| {
            let arrived = arrivals.get(&format!("e{i}"))?;
            Some(arrived.saturating_duration_since(sent[i / BATCH]).as_micros() as u64)
        })
        .collect();
    micros.sort_unstable();
    Ok((total as f64 / elapsed.as_secs_f64(), percentile(&micros, 99.0) as f64 / 1000.0, herald, cpu))
}

/// Rounds of each side of the failing-receiver comparison, alternated
/// (alone, beside failing, alone, …); each side keeps its best. A noisy
/// machine moves single runs by more than the 20 % the bar allows.
const FAILING_ROUNDS: usize = 2;

pub async fn failing_receiver(sizes: &Sizes, pb: &ProgressBar) -> anyhow::Result<ScenarioResult> {
    let (mut alone_rate, mut alone_p99) = (0.0_f64, f64::INFINITY);
    let (mut rate, mut p99) = (0.0_f64, f64::INFINITY);
    let mut last = None;
    for round in 1..=FAILING_ROUNDS {
        pb.set_message(format!("failing receiver: healthy webhooks alone ({round}/{FAILING_ROUNDS})"));
        let (r, p, herald, _) = healthy_under(sizes, 0).await?;
        herald.stop().await;
        (alone_rate, alone_p99) = (alone_rate.max(r), alone_p99.min(p));
        pb.set_message(format!("failing receiver: beside as many failing ones ({round}/{FAILING_ROUNDS})"));
        let (r, p, herald, cpu) = healthy_under(sizes, 10).await?;
        (rate, p99) = (rate.max(r), p99.min(p));
        if let Some((previous, _)) = last.replace((herald, cpu)) {
            HeraldProcess::stop(previous).await;
        }
    }
    let (herald, cpu) = last.expect("at least one round");
    let metrics = vec![
        Metric::new("healthy/s alone, best of 2", alone_rate, None),
        Metric::new("healthy/s with failing, best of 2", rate, None),
        Metric::new("throughput kept", rate / alone_rate, Some(0.8)),
        Metric::new("p99 ms alone, best of 2", alone_p99, None),
        Metric::new("p99 ms with failing, best of 2", p99, None),
        Metric::at_most("p99 growth", p99 / alone_p99.max(0.001), 1.2),
    ];
    Ok(finish("failing-receiver", herald, cpu, metrics).await)
}

pub async fn scheduled_backlog(sizes: &Sizes, pb: &ProgressBar) -> anyhow::Result<ScenarioResult> {
    let receiver = BenchReceiver::start().await?;
    let herald = HeraldProcess::start().await?;
    let client = Client::new(&herald.base, &herald.token);
    // The receiver is down: the first deliveries fail and wait ten hours for
    // their retry, and after five failures the webhook's circuit breaker
    // holds all the others back, so nothing is due for a long while.
    client.create_webhook(json!({"url": format!("{}/fail", receiver.base), "retry": {"schedule": [36000]}})).await?;
    let n = sizes.backlog;
    pb.set_message(format!("scheduled backlog: ingesting {n} events"));
    let bodies = Client::batch_bodies("whatsapp:message:status", n, BATCH);
    let cpu_start = herald.cpu_seconds();
    post_batches(&client, bodies).await?;
    if !receiver.wait_until(PATIENCE, |c| c.failed.load(Ordering::Relaxed) >= 5).await {
        bail!("scheduled backlog: the receiver never saw a failing attempt");
    }
    pb.set_message("scheduled backlog: measuring idle CPU");
    // Let the last attempts be recorded, then watch a quiet Herald.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_from = herald.cpu_seconds();
    let watch = Duration::from_secs(sizes.idle_seconds);
    tokio::time::sleep(watch).await;
    let idle_percent = (herald.cpu_seconds() - idle_from) / watch.as_secs_f64() * 100.0;
    let metrics = vec![
        Metric::new("deliveries waiting", n as f64, None),
        Metric::at_most("peak RSS MB", herald.peak_rss_mb(), 200.0),
        Metric::new("database MB", herald.database_mb(), None),
        Metric::at_most("idle CPU % of a core", idle_percent, 1.0),
    ];
    Ok(finish("scheduled-backlog", herald, cpu_start, metrics).await)
}

//! The store's cost per event, alone: ingest batches of 100 events for one
//! webhook, then record each delivery's successful first attempt, through
//! the public `Store` API on a real SQLite file. No HTTP, no engine, so
//! that the count is steady enough to compare builds under callgrind,
//! where `herald bench` moves by ±15 % from run to run on a shared machine:
//!
//! ```text
//! cargo build --release --example store_cost
//! valgrind --tool=callgrind target/release/examples/store_cost handed 100
//! strace -f -c -e trace=pwrite64,pread64 target/release/examples/store_cost backlog 200
//! ```
//!
//! `handed`: ingest hands every delivery to the engine (as when its lane
//! has room); `backlog`: none is handed, each is claimed from the store.

use herald::model::{Attempt, AttemptRecord, NewEvent, NextStep, NodeId, Timestamp, Webhook};
use herald::store::{ClaimWant, HandOver, Lease, SqliteStore, Store};

/// The bench's payload: seed 001's WhatsApp message status.
fn payload(n: usize) -> String {
    format!(
        r#"{{"id":"a418d672-9781-4d97-b517-{n:012}","channel":"whatsapp","from":"919019120xxx","to":"9190199xxxxx","status":"delivered","delivered_at":"2021-06-18T14:48:06.886358Z","read_at":"2021-06-18T14:48:06.886358Z","processed_at":"2021-06-18T14:48:06.886358Z","timestamp":"2021-06-18T14:48:06.886358Z","foreign_id":"your-business-identifier"}}"#
    )
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "handed".to_owned());
    let batches: usize = args.next().map_or(200, |n| n.parse().expect("a number of batches"));
    let handed = match mode.as_str() {
        "handed" => true,
        "backlog" => false,
        other => panic!("mode `{other}`: handed or backlog"),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("herald.db")).unwrap();
    let start = Timestamp(1_800_000_000_000);
    let account = store.bootstrap(None, start).await.unwrap().default_account.unwrap().0.id;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
    let webhook = Webhook {
        id: "wh_cost".into(),
        ..Webhook::new(&account, "http://127.0.0.1:9/hook", Default::default(), secret, start)
    };
    store.create_webhook(webhook).await.unwrap();
    let node = NodeId("node_cost".into());
    let cpu = cpu_seconds();
    for batch in 0..batches {
        // Time moves on as under load: about 2.5 ms per batch of 100.
        let now = Timestamp(start.0 + 2 * batch as i64);
        let events = (0..100)
            .map(|i| NewEvent {
                id: Some(format!("e{}", batch * 100 + i)),
                event_type: "whatsapp:message:status".into(),
                payload: payload(batch * 100 + i),
                webhook_id: None,
                timestamp: None,
            })
            .collect();
        // Ingest's room for handing deliveries over: all or none.
        let room =
            HandOver { per_webhook: [("wh_cost".to_owned(), if handed { 100 } else { 0 })].into_iter().collect() };
        let lease = Lease { node: node.clone(), until: now };
        let ingested = store.ingest(&account, events, now, room, &lease).await.unwrap();
        let dues = if handed {
            ingested.handed
        } else {
            let want = ClaimWant { webhook_id: "wh_cost".into(), limit: 100 };
            store.claim_due(now, &lease, vec![want]).await.unwrap().pop().unwrap().deliveries
        };
        assert_eq!(dues.len(), 100);
        let records = dues
            .iter()
            .map(|due| AttemptRecord {
                delivery_id: due.delivery_id.clone(),
                account_id: due.webhook.account_id.clone(),
                number: due.n_attempts + 1,
                attempt: Attempt {
                    started_at: now,
                    duration_ms: 1,
                    status_code: Some(200),
                    response_body: Some("ok".into()),
                    error_class: None,
                    error_message: None,
                },
                next: NextStep::Success,
            })
            .collect();
        store.record_attempts(&node, std::sync::Arc::new(records), Vec::new(), now).await.unwrap();
    }
    let events = batches * 100;
    let on_disk: u64 = ["herald.db", "herald.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.path().join(name)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{mode}: {events} events, {:.1} us of CPU per event, {} KB on disk",
        (cpu_seconds() - cpu) * 1e6 / events as f64,
        on_disk / 1024
    );
}

//! The store's claim contract, on a real SQLite file: a claim leases what
//! it hands out until it is recorded or handed back (one node's file keeps
//! that lease in memory, with a cursor past what it handed out), finds what
//! was put back behind the cursor, and says whether more is due.

use herald::store::IdSet;

use herald::model::{Attempt, AttemptRecord, DeliveryKey, ErrorClass, NewEvent, NextStep, NodeId, Timestamp, Webhook};
use herald::store::{ClaimWant, ClaimedBatch, HandOver, Lease, SqliteStore, Store};

pub(crate) const NOW: Timestamp = Timestamp(1_800_000_000_000);

pub(crate) fn node() -> NodeId {
    NodeId("node_claims".into())
}

pub(crate) fn lease() -> Lease {
    Lease { node: node(), until: Timestamp(NOW.0 + 300_000) }
}

/// A store with `n` deliveries waiting for `wh_claims`, and its account id.
pub(crate) async fn backlog(n: usize) -> (SqliteStore, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("herald.db")).unwrap();
    let account = store.bootstrap(None, NOW).await.unwrap().default_account.unwrap().0.id;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
    let webhook = Webhook {
        id: "wh_claims".into(),
        ..Webhook::new(&account, "http://127.0.0.1:9/hook", Default::default(), secret, NOW)
    };
    store.create_webhook(webhook).await.unwrap();
    let events = (0..n)
        .map(|i| NewEvent {
            id: Some(format!("e{i}")),
            event_type: "t".into(),
            payload: format!("{{\"i\":{i}}}"),
            webhook_id: None,
            timestamp: None,
        })
        .collect();
    // No room offered: every delivery waits in the store.
    let ingested = store.ingest(&account, events, NOW, HandOver::default(), &lease()).await.unwrap();
    assert!(ingested.handed.is_empty());
    (store, account, dir)
}

pub(crate) async fn claim(store: &SqliteStore, limit: usize) -> ClaimedBatch {
    let want = ClaimWant { webhook_id: "wh_claims".into(), limit };
    store.claim_due(NOW, &lease(), vec![want]).await.unwrap().pop().unwrap()
}

pub(crate) fn ids(batch: &ClaimedBatch) -> Vec<String> {
    batch.deliveries.iter().map(|d| d.delivery_id.clone()).collect()
}

/// Hands deliveries back unsent: they wait again, their attempts intact.
async fn hand_back(store: &SqliteStore, account_id: &str, delivery_ids: &[String]) {
    let keys = delivery_ids
        .iter()
        .map(|id| DeliveryKey { account_id: account_id.to_owned(), delivery_id: id.clone() })
        .collect();
    let lost = store.record_attempts(&node(), Default::default(), keys, NOW).await.unwrap();
    assert!(lost.is_empty(), "one node's file: no lease is ever lost");
}

#[tokio::test]
async fn claims_skip_what_is_held_resume_past_the_cursor_and_say_when_nothing_more_is_due() {
    let (store, _, _dir) = backlog(10).await;
    let mut held = IdSet::default();

    let first = claim(&store, 4).await;
    assert_eq!(first.deliveries.len(), 4);
    // Stopping at the limit says nothing of what lies beyond: more is due.
    assert_eq!(first.next_due, Some(NOW));
    held.extend(ids(&first));

    let second = claim(&store, 4).await;
    assert_eq!(second.deliveries.len(), 4);
    assert!(ids(&second).iter().all(|id| !held.contains(id)), "nothing held comes back");
    held.extend(ids(&second));

    let third = claim(&store, 4).await;
    assert_eq!(third.deliveries.len(), 2, "the last two");
    // A claim streaming past its cursor reads nothing behind it (what it
    // found there might be held, or released while it read): running
    // short, it may say more is due, never that nothing is when something is.
    held.extend(ids(&third));
    assert_eq!(held.len(), 10);

    let fourth = claim(&store, 4).await;
    assert!(fourth.deliveries.is_empty(), "a claim with everything held takes nothing");
    assert_eq!(fourth.next_due, None, "all ten are held: nothing more is due");
}

#[tokio::test]
async fn a_delivery_handed_back_behind_the_cursor_is_claimed_again() {
    let (store, account_id, _dir) = backlog(6).await;
    let all = claim(&store, 6).await;
    // The engine lets go of one it had claimed (its breaker opened, say);
    // it is behind the cursor now.
    let released = ids(&all)[2].clone();
    hand_back(&store, &account_id, std::slice::from_ref(&released)).await;

    let again = claim(&store, 4).await;
    assert_eq!(ids(&again), vec![released]);
    assert_eq!(again.next_due, None);
}

#[tokio::test]
async fn a_claim_that_stops_at_its_limit_says_more_is_due_whatever_it_skipped() {
    // Regression: when held deliveries came after the ones taken, a claim
    // that stopped at its limit read fewer rows than it meant to skip and
    // took that for "nothing more is due", stranding the rest.
    let (store, account_id, _dir) = backlog(10).await;
    let order = ids(&claim(&store, 10).await);
    // The first six are handed back; the last four stay held.
    hand_back(&store, &account_id, &order[..6]).await;
    let batch = claim(&store, 2).await;
    assert_eq!(ids(&batch), order[..2].to_vec());
    assert_eq!(batch.next_due, Some(NOW), "four more are due and not held");
}

#[tokio::test]
async fn a_recorded_attempt_releases_its_delivery_to_claims_as_it_now_is() {
    let (store, account_id, _dir) = backlog(2).await;
    let both = claim(&store, 2).await;
    let (retried, done) = (ids(&both)[0].clone(), ids(&both)[1].clone());
    let record = |delivery_id: &str, status: u16, next: NextStep| AttemptRecord {
        delivery_id: delivery_id.to_owned(),
        account_id: account_id.clone(),
        number: 1,
        attempt: Attempt {
            started_at: NOW,
            duration_ms: 3,
            status_code: Some(status),
            response_body: Some(String::new()),
            error_class: (status >= 300).then_some(ErrorClass::Status),
            error_message: None,
        },
        next,
    };
    let records = vec![record(&retried, 500, NextStep::RetryAt(NOW)), record(&done, 200, NextStep::Success)];
    let lost = store.record_attempts(&node(), std::sync::Arc::new(records), Vec::new(), NOW).await.unwrap();
    assert!(lost.is_empty());
    let again = claim(&store, 10).await;
    assert_eq!(ids(&again), vec![retried], "the retry is due again; the success is not");
    assert_eq!(again.deliveries[0].n_attempts, 1);
}

/// What a claim says of each delivery: its event and how many attempts it
/// has had, all read from the due index and the event row.
fn described(batch: &ClaimedBatch) -> Vec<(String, String, String, u32)> {
    let mut rows: Vec<_> = batch
        .deliveries
        .iter()
        .map(|d| (d.event_id.clone(), d.event_type.clone(), d.payload.to_string(), d.n_attempts))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_claim_carries_each_delivery_s_event_and_attempts_before_and_after_the_due_index_migration() {
    let (store, account_id, dir) = backlog(3).await;
    // One delivery failed once and is due again.
    let first = claim(&store, 1).await;
    let failed = AttemptRecord {
        delivery_id: ids(&first)[0].clone(),
        account_id,
        number: 1,
        attempt: Attempt {
            started_at: NOW,
            duration_ms: 3,
            status_code: Some(500),
            response_body: Some(String::new()),
            error_class: Some(ErrorClass::Status),
            error_message: Some("receiver answered 500".into()),
        },
        next: NextStep::RetryAt(NOW),
    };
    store.record_attempts(&node(), std::sync::Arc::new(vec![failed]), Vec::new(), NOW).await.unwrap();
    // (Deliveries made in one millisecond come in no particular order.)
    let retried = first.deliveries[0].event_id.clone();
    let expected: Vec<(String, String, String, u32)> = (0..3)
        .map(|i| {
            let event = format!("e{i}");
            let attempts = u32::from(event == retried);
            (event, "t".to_owned(), format!("{{\"i\":{i}}}"), attempts)
        })
        .collect();
    assert_eq!(described(&claim(&store, 10).await), expected);

    // The same database as migration 2 left it: the due index without the
    // columns claims read, no first attempt in the delivery rows. Opening it
    // migrates it, and claims say the same.
    drop(store);
    let path = dir.path().join("herald.db");
    crate::attempt_log::rewrite_at_schema_version(&path, 2);
    // Before migration 4 the failed first attempt was a row of the log, and
    // the delivery's own row had no place for it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO attempts (delivery_id, n, started_at, duration_ms, status_code, response_body, error_class, \
         error_message) VALUES (?1, 1, ?2, 3, 500, '', 'status', 'receiver answered 500')",
        rusqlite::params![ids(&first)[0], NOW.0],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(described(&claim(&store, 10).await), expected);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version as usize, herald::store::schema_migrations().len());
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id, next_attempt_at, n_attempts, final_attempt, event_seq FROM deliveries \
             WHERE webhook_id = 'wh_claims' AND next_attempt_at <= 0 AND leased = 0 ORDER BY next_attempt_at, id",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("COVERING INDEX deliveries_due"), "{plan}");
}

#[tokio::test]
async fn deliveries_of_a_webhook_whose_row_is_gone_fail_instead_of_staying_due() {
    let (store, account_id, dir) = backlog(3).await;
    // Herald only marks webhooks deleted; here the row is removed by hand.
    let conn = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    conn.execute("DELETE FROM webhooks WHERE id = 'wh_claims'", []).unwrap();
    drop(conn);

    let refused = claim(&store, 10).await;
    assert!(refused.deliveries.is_empty());
    let again = claim(&store, 10).await;
    assert!(again.deliveries.is_empty());
    assert_eq!(again.next_due, None, "nothing is left due: each was failed, not left waiting");
    let conn = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    let failed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE account_id = ?1 AND status = 'failed' \
             AND last_error = 'webhook deleted'",
            [&account_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 3);
}

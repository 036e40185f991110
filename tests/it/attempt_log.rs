//! The attempt log on a real SQLite file: a delivery's first attempt lives
//! in its own row and later ones in `attempts`, and a delivery's detail and
//! the stats read both, whichever way a database recorded them.

use herald::model::{Attempt, AttemptRecord, ErrorClass, NextStep, Timestamp};
use herald::store::{IdSet, SqliteStore, Store};

use crate::claims::{NOW, backlog, claim, ids};

/// The columns migration 4 added, dropped again: a database as migration 3
/// left it.
pub(crate) fn drop_first_attempt_columns(conn: &rusqlite::Connection) {
    for column in ["started_at", "duration_ms", "status_code", "response_body", "error_class", "error_message"] {
        conn.execute_batch(&format!("ALTER TABLE deliveries DROP COLUMN first_{column}")).unwrap();
    }
}

/// The column migration 6 added, dropped again: token kinds, which every
/// database before it lacks.
pub(crate) fn drop_token_kinds(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "ALTER TABLE tokens DROP COLUMN kind;
         ALTER TABLE webhooks DROP COLUMN disabled_reason;
         ALTER TABLE webhooks DROP COLUMN disabled_at;",
    )
    .unwrap();
}

fn record(account_id: &str, delivery_id: &str, number: u32, status: u16, duration_ms: u64) -> AttemptRecord {
    let failed = status >= 400;
    AttemptRecord {
        delivery_id: delivery_id.to_owned(),
        account_id: account_id.to_owned(),
        number,
        attempt: Attempt {
            started_at: Timestamp(NOW.0 + i64::from(number) * 1000),
            duration_ms,
            status_code: Some(status),
            response_body: Some(format!("answer {number}")),
            error_class: failed.then_some(ErrorClass::Status),
            error_message: failed.then(|| format!("receiver answered {status}")),
        },
        next: if failed { NextStep::RetryAt(NOW) } else { NextStep::Success },
    }
}

/// What the store says of a delivery's attempts: (status, body, start, ms).
async fn log_of(store: &SqliteStore, account: &str, id: &str) -> Vec<(Option<u16>, Option<String>, i64, u64)> {
    let (_, attempts) = store.get_delivery(account, id).await.unwrap().unwrap();
    attempts.into_iter().map(|a| (a.status_code, a.response_body, a.started_at.0, a.duration_ms)).collect()
}

fn entry(number: u32, status: u16, duration_ms: u64) -> (Option<u16>, Option<String>, i64, u64) {
    (Some(status), Some(format!("answer {number}")), NOW.0 + i64::from(number) * 1000, duration_ms)
}

/// Every attempt's duration the stats count, in order.
async fn durations(store: &SqliteStore, account: &str) -> Vec<u64> {
    let stats = store.delivery_stats(account, Timestamp(0), Timestamp(NOW.0 + 86_400_000), None).await.unwrap();
    let mut durations: Vec<u64> = stats.into_iter().flat_map(|s| s.durations_ms).collect();
    durations.sort();
    durations
}

#[tokio::test]
async fn a_delivery_s_attempts_read_first_to_last_with_the_first_in_its_row() {
    let (store, account, _dir) = backlog(2).await;
    let all = ids(&claim(&store, &IdSet::default(), None, 2).await);
    let (a, b) = (&all[0], &all[1]);

    store
        .record_attempts(
            std::sync::Arc::new(vec![record(&account, a, 1, 500, 11), record(&account, b, 1, 503, 12)]),
            Vec::new(),
            NOW,
        )
        .await
        .unwrap();
    store.record_attempts(std::sync::Arc::new(vec![record(&account, a, 2, 200, 21)]), Vec::new(), NOW).await.unwrap();
    assert_eq!(log_of(&store, &account, a).await, vec![entry(1, 500, 11), entry(2, 200, 21)]);
    let (delivery, _) = store.get_delivery(&account, a).await.unwrap().unwrap();
    assert_eq!((delivery.n_attempts, delivery.last_status_code), (2, Some(200)));

    // An engine that says "first" of a delivery the store has seen tried is
    // not believed: the attempt goes to the log as the second.
    store.record_attempts(std::sync::Arc::new(vec![record(&account, b, 1, 200, 22)]), Vec::new(), NOW).await.unwrap();
    assert_eq!(log_of(&store, &account, b).await, vec![entry(1, 503, 12), entry(1, 200, 22)]);
    let (delivery, _) = store.get_delivery(&account, b).await.unwrap().unwrap();
    assert_eq!(delivery.n_attempts, 2);

    assert_eq!(durations(&store, &account).await, vec![11, 12, 21, 22]);
}

#[tokio::test]
async fn a_first_attempt_recorded_before_migration_4_reads_before_the_attempts_after_it() {
    // A database as migration 3 left it, with one delivery tried once: its
    // first attempt is a row of the log.
    let (store, account, dir) = backlog(1).await;
    let id = ids(&claim(&store, &IdSet::default(), None, 1).await).remove(0);
    drop(store);
    let path = dir.path().join("herald.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    drop_first_attempt_columns(&conn);
    drop_token_kinds(&conn);
    conn.execute(
        "INSERT INTO attempts (delivery_id, n, started_at, duration_ms, status_code, response_body, error_class, \
         error_message) VALUES (?1, 1, ?2, 13, 500, 'answer 1', 'status', 'receiver answered 500')",
        rusqlite::params![id, NOW.0 + 1000],
    )
    .unwrap();
    conn.execute("UPDATE deliveries SET n_attempts = 1, status = 'retrying' WHERE id = ?1", [&id]).unwrap();
    conn.execute_batch("PRAGMA user_version = 3").unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    store.record_attempts(std::sync::Arc::new(vec![record(&account, &id, 2, 200, 23)]), Vec::new(), NOW).await.unwrap();
    assert_eq!(log_of(&store, &account, &id).await, vec![entry(1, 500, 13), entry(2, 200, 23)]);
    assert_eq!(durations(&store, &account).await, vec![13, 23]);
}

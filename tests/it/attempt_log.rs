//! The attempt log on a real SQLite file: a delivery's first attempt lives
//! in its own row and later ones in `attempts`, and a delivery's detail and
//! the stats read both, whichever way a database recorded them.

use herald::model::{Attempt, AttemptRecord, ErrorClass, NextStep, Timestamp};
use herald::store::{SqliteStore, Store};

use crate::claims::{NOW, backlog, claim, ids};

/// Rewrites the SQLite file at `path` as a database an older Herald left at
/// schema `version`: a new file made by applying the first `version`
/// migrations, into which every row is copied, each with the columns that
/// schema has. (Rows the current store writes the way older ones did, that
/// is; what older versions kept elsewhere, such as a first attempt in
/// `attempts`, the test writes by hand.)
pub(crate) fn rewrite_at_schema_version(path: &std::path::Path, version: usize) {
    let old = path.with_extension("old.db");
    let conn = rusqlite::Connection::open(&old).unwrap();
    for migration in &herald::store::schema_migrations()[..version] {
        conn.execute_batch(migration).unwrap();
    }
    conn.execute_batch(&format!("PRAGMA user_version = {version}")).unwrap();
    conn.execute("ATTACH DATABASE ?1 AS current", [path.to_str().unwrap()]).unwrap();
    for (table, columns) in crate::support::tables_and_columns(&conn) {
        let columns = columns.join(", ");
        conn.execute_batch(&format!("INSERT INTO main.{table} ({columns}) SELECT {columns} FROM current.{table}"))
            .unwrap();
    }
    conn.execute_batch("DETACH DATABASE current").unwrap();
    drop(conn);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::rename(&old, path).unwrap();
}

/// The schema version of the SQLite file at `path`.
pub(crate) fn schema_version(path: &std::path::Path) -> usize {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
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
    let all = ids(&claim(&store, 2).await);
    let (a, b) = (&all[0], &all[1]);

    store
        .record_attempts(
            &crate::claims::node(),
            std::sync::Arc::new(vec![record(&account, a, 1, 500, 11), record(&account, b, 1, 503, 12)]),
            Vec::new(),
            NOW,
        )
        .await
        .unwrap();
    store
        .record_attempts(
            &crate::claims::node(),
            std::sync::Arc::new(vec![record(&account, a, 2, 200, 21)]),
            Vec::new(),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(log_of(&store, &account, a).await, vec![entry(1, 500, 11), entry(2, 200, 21)]);
    let (delivery, _) = store.get_delivery(&account, a).await.unwrap().unwrap();
    assert_eq!((delivery.n_attempts, delivery.last_status_code), (2, Some(200)));

    // An engine that says "first" of a delivery the store has seen tried is
    // not believed: the attempt goes to the log as the second.
    store
        .record_attempts(
            &crate::claims::node(),
            std::sync::Arc::new(vec![record(&account, b, 1, 200, 22)]),
            Vec::new(),
            NOW,
        )
        .await
        .unwrap();
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
    let id = ids(&claim(&store, 1).await).remove(0);
    drop(store);
    let path = dir.path().join("herald.db");
    rewrite_at_schema_version(&path, 3);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO attempts (delivery_id, n, started_at, duration_ms, status_code, response_body, error_class, \
         error_message) VALUES (?1, 1, ?2, 13, 500, 'answer 1', 'status', 'receiver answered 500')",
        rusqlite::params![id, NOW.0 + 1000],
    )
    .unwrap();
    conn.execute("UPDATE deliveries SET n_attempts = 1, status = 'retrying' WHERE id = ?1", [&id]).unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(schema_version(&path), herald::store::schema_migrations().len(), "migrated on open");
    store
        .record_attempts(
            &crate::claims::node(),
            std::sync::Arc::new(vec![record(&account, &id, 2, 200, 23)]),
            Vec::new(),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(log_of(&store, &account, &id).await, vec![entry(1, 500, 13), entry(2, 200, 23)]);
    assert_eq!(durations(&store, &account).await, vec![13, 23]);
}

//! Many rows in one INSERT. A statement's setup (binding, opening a cursor
//! per b-tree, seeking each from its root) is paid per statement, not per
//! row: rows that append to the same b-trees (a batch's deliveries, a
//! round's attempts) share it.
//!
//! The statements are `INSERT OR IGNORE`, and a chunk that inserted fewer
//! rows than it was given is an error, so a refused row still fails the
//! write as a plain INSERT would. The difference is in SQLite's bookkeeping:
//! a plain multi-row INSERT may abort halfway, so SQLite journals every page
//! it touches to undo the statement alone, which for rows spread over many
//! pages (one event fanned out to a hundred webhooks) cost more than the
//! statements saved. The caller's savepoint undoes a failed write whole.

use rusqlite::types::ToSql;
use rusqlite::{Connection, params_from_iter};

/// The largest chunk; chunk sizes are powers of two up to it, so that a
/// handful of cached statements serves any number of rows.
const MAX_CHUNK: usize = 64;

/// Inserts `values.len() / width` rows: `into` names the table and its
/// columns, `row` one row's placeholders, e.g. `(?, ?, 'pending')`, and
/// `values` the rows' parameters, `width` per row, row after row.
pub(super) fn insert_many(
    conn: &Connection,
    into: &str,
    row: &str,
    width: usize,
    values: &[&dyn ToSql],
) -> rusqlite::Result<()> {
    debug_assert_eq!(values.len() % width, 0);
    let mut rest = values;
    while !rest.is_empty() {
        let rows = rest.len() / width;
        let chunk = if rows >= MAX_CHUNK { MAX_CHUNK } else { 1 << rows.ilog2() };
        let (these, after) = rest.split_at(chunk * width);
        let mut sql = String::with_capacity(into.len() + 32 + chunk * (row.len() + 1));
        sql.push_str("INSERT OR IGNORE INTO ");
        sql.push_str(into);
        sql.push_str(" VALUES ");
        for i in 0..chunk {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(row);
        }
        let inserted = conn.prepare_cached(&sql)?.execute(params_from_iter(these.iter()))?;
        if inserted != chunk {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
                Some(format!("{} of {chunk} rows refused by a constraint: {into}", chunk - inserted)),
            ));
        }
        rest = after;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_goes_in_whatever_the_count() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER UNIQUE, b TEXT NOT NULL, c TEXT)").unwrap();
        let mut expected = 0;
        for n in [0usize, 1, 2, 3, 63, 64, 65, 130, 200] {
            let a: Vec<i64> = (expected..expected + n).map(|i| i as i64).collect();
            let b: Vec<String> = a.iter().map(|i| format!("b{i}")).collect();
            let mut values: Vec<&dyn ToSql> = Vec::new();
            for i in 0..n {
                values.push(&a[i]);
                values.push(&b[i]);
            }
            insert_many(&conn, "t (a, b, c)", "(?, ?, 'fixed')", 2, &values).unwrap();
            expected += n;
            let count: usize = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
            assert_eq!(count, expected, "after {n} rows");
            let wrong: usize =
                conn.query_row("SELECT count(*) FROM t WHERE b != 'b' || a OR c != 'fixed'", [], |r| r.get(0)).unwrap();
            assert_eq!(wrong, 0);
        }
    }

    #[test]
    fn a_refused_row_fails_the_insert() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER UNIQUE, b TEXT NOT NULL)").unwrap();
        let (one, two, b) = (1_i64, 2_i64, "b".to_owned());
        let none: Option<String> = None;
        let duplicate: [&dyn ToSql; 4] = [&one, &b, &one, &b];
        let err = insert_many(&conn, "t (a, b)", "(?, ?)", 2, &duplicate).unwrap_err();
        assert!(err.to_string().contains("1 of 2 rows refused"), "{err}");
        let null: [&dyn ToSql; 2] = [&two, &none];
        assert!(insert_many(&conn, "t (a, b)", "(?, ?)", 2, &null).is_err());
    }
}

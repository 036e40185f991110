//! The database schema: a file whose schema is newer than this Herald's
//! migrations is refused, untouched, by the store and by `herald serve`.

use herald::store::SqliteStore;

use crate::attempt_log::schema_version;
use crate::support::{PATIENCE, clean_command};

#[tokio::test]
async fn a_schema_newer_than_this_herald_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    drop(SqliteStore::open(&path).unwrap());
    let known = herald::store::schema_migrations().len();
    assert_eq!(schema_version(&path), known);
    let newer = known + 1;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {newer}")).unwrap();
    drop(conn);

    let err = SqliteStore::open(&path).err().expect("the store refuses a newer schema");
    let expected = format!("database schema version {newer} is newer than this herald ({known})");
    assert!(format!("{err:#}").contains(&expected), "{err:#}");

    let run = clean_command(env!("CARGO_BIN_EXE_herald"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--database"])
        .arg(format!("sqlite://{}", path.display()))
        .env("HERALD_ADMIN_TOKEN", crate::support::OPERATOR_TOKEN)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, run).await.expect("herald serve stopped in time").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "herald serve started on a newer schema");
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(schema_version(&path), newer, "the version was rewritten");
}

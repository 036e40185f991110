//! SQLite connections: one writer thread that commits in groups, and a pool
//! of read connections. Every write job runs inside its own savepoint of a
//! shared transaction, so one failing job rolls back alone, and a single
//! fsync'd commit makes many jobs durable at once (group commit). Callers
//! hear back only after that commit.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{SqliteOptions, StoreError, StoreResult};

/// The most jobs one commit carries; bounds a commit's latency.
const MAX_GROUP: usize = 512;
/// Jobs queued before writers wait: back-pressure on ingest.
const QUEUE_DEPTH: usize = 4096;

type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// Runs on the open transaction, or with `None` when none could be begun
/// (its completion then hears why).
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

pub struct Pool {
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    options: SqliteOptions,
}

/// Page cache of the writer connection, in KiB; readers keep SQLite's
/// default (2 MiB each), since up to `MAX_READERS` of them stay open.
const WRITER_CACHE_KIB: u32 = 8192;
/// Read connections kept open between reads.
const MAX_READERS: usize = 16;

fn open_connection(path: &Path, options: SqliteOptions) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening sqlite database {}", path.display()))?;
    // WAL with synchronous=FULL: every commit is fsync'd before it returns,
    // so a 202 means the event survives a crash or power loss. Statement
    // journals (one per savepoint) stay in memory rather than in a temp
    // file opened and unlinked per commit.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.busy_timeout(std::time::Duration::from_millis(options.busy_timeout_ms.into()))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Pool {
    /// Opens the database, runs `migrate` on the writer connection and
    /// starts the writer thread.
    pub fn open(
        path: &Path,
        options: SqliteOptions,
        commits: crate::metrics::CommitMetrics,
        migrate: impl FnOnce(&mut Connection) -> anyhow::Result<()>,
    ) -> anyhow::Result<Pool> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        restrict_access(path)?;
        let mut conn = open_connection(path, options)?;
        // The hot end of the tables stays out of pread.
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}"))?;
        migrate(&mut conn)?;
        let (writer, jobs) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs, commits))?;
        Ok(Pool { writer, readers: Mutex::new(Vec::new()), path: path.to_owned(), options })
    }

    /// Runs `job` on the writer connection; returns once it is committed.
    pub async fn write<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.write_or_undo(job, drop).await
    }

    /// Like `write`; when the job succeeds but its commit fails, its result
    /// goes to `undo` (on the writer thread) before the error is returned.
    pub async fn write_or_undo<T, F, U>(&self, job: F, undo: U) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        U: FnOnce(T) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = conn.map(|conn| run_in_savepoint(conn, job));
            Box::new(move |committed: StoreResult<()>| {
                let outcome = match (committed, result) {
                    (Err(err), Some(Ok(done))) => {
                        undo(done);
                        Err(err)
                    }
                    (Err(err), _) => Err(err),
                    (Ok(()), Some(result)) => result,
                    (Ok(()), None) => Err(StoreError::Internal(anyhow::anyhow!("a job ran without a transaction"))),
                };
                let _ = reply.send(outcome);
            })
        });
        self.writer.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `job` on a read connection, on the blocking thread pool.
    pub async fn read<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.readers.lock().unwrap().pop();
        let (path, options) = (self.path.clone(), self.options);
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(conn) => conn,
                None => open_connection(&path, options).map_err(StoreError::Internal)?,
            };
            let result = job(&conn);
            Ok::<_, StoreError>((conn, result))
        })
        .await
        .map_err(|e| StoreError::Internal(e.into()))??;
        let mut readers = self.readers.lock().unwrap();
        if readers.len() < MAX_READERS {
            readers.push(conn);
        }
        result
    }
}

/// The database holds every webhook's signing secret, so only its owner
/// may read it. A new file is created 0600 before SQLite opens it; SQLite
/// gives its `-wal` and `-shm` files the main file's mode. Files an older
/// Herald left readable by group or others lose those bits.
fn restrict_access(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("creating {}", path.display())),
    }
    let beside = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    for file in [path.to_owned(), beside("-wal"), beside("-shm")] {
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & !0o077))
                .with_context(|| format!("making {} private", file.display()))?;
            tracing::warn!(file = %file.display(), "the database was readable by other users; now only its owner may");
        }
    }
    Ok(())
}

fn run_in_savepoint<T>(conn: &Connection, job: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    // Cached statements: a savepoint per job must not cost a parse per job.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map_err(internal);
    run("SAVEPOINT job")?;
    let result = job(conn);
    if conn.is_autocommit() {
        // SQLite rolled the whole transaction back (a full disk, an I/O
        // error mid-statement): there is no savepoint left to release, and
        // the job's own error says why.
        return result.and(Err(rolled_back()));
    }
    if result.is_err() {
        run("ROLLBACK TO job")?;
    }
    run("RELEASE job")?;
    result
}

/// What the jobs of a transaction SQLite rolled back on its own hear.
fn rolled_back() -> StoreError {
    StoreError::Unavailable("sqlite rolled the transaction back (a full disk or an i/o error)".to_owned())
}

fn write_loop(conn: Connection, mut jobs: mpsc::Receiver<Job>, commits: crate::metrics::CommitMetrics) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    let mut completions: Vec<Completion> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = jobs.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (started, n_jobs) = (std::time::Instant::now(), group.len());
        // Each caller hears what happened to its job: a lock held past
        // the busy timeout or a full disk is `Unavailable`, so callers
        // answer 503 and retry rather than report a shutdown.
        if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %err, "sqlite: could not begin a transaction");
            for job in group.drain(..) {
                job(None)(Err(classify(err.to_string(), &err)));
            }
            continue;
        }
        for job in group.drain(..) {
            if conn.is_autocommit() {
                // An earlier job's statement took the transaction down with
                // it: run nothing more outside one.
                job(None)(Err(rolled_back()));
                continue;
            }
            completions.push(job(Some(&conn)));
        }
        let committed = match conn.is_autocommit() {
            true => Err(rolled_back()),
            false => conn.execute_batch("COMMIT").map_err(|err| {
                tracing::error!(error = %err, "sqlite: commit failed");
                let _ = conn.execute_batch("ROLLBACK");
                classify(format!("commit failed: {err}"), &err)
            }),
        };
        commits.committed(started.elapsed(), n_jobs);
        for completion in completions.drain(..) {
            completion(match &committed {
                Ok(()) => Ok(()),
                Err(err) => Err(match err {
                    StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
                    other => StoreError::Internal(anyhow::anyhow!("{other}")),
                }),
            });
        }
    }
}

pub fn internal(err: rusqlite::Error) -> StoreError {
    classify(err.to_string(), &err)
}

/// `Unavailable` for what another process or the machine causes and may
/// clear by itself (busy, locked, full, I/O, read-only, cannot open);
/// `Internal` for the rest.
fn classify(message: String, err: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match err.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | ReadOnly | CannotOpen | OutOfMemory) => {
            StoreError::Unavailable(message)
        }
        _ => StoreError::Internal(anyhow::anyhow!(message)),
    }
}

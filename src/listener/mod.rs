//! Serves the API router on a `TcpListener` with a bounded number of
//! connections and network timeouts, so that clients who open connections
//! and never finish a request cannot use up the process's descriptors and
//! lock everyone out. At the cap, a new connection closes the one idle
//! longest; `connection.rs` serves one connection with its timers.

mod connection;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use connection::Tracker;
pub use connection::{BodyTimedOut, is_body_timeout};

/// How many API connections may be open at once, and how long a client
/// may take over each part of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Open API connections at most (clamped at start to what the
    /// open-file limit allows, see `connection_budget`).
    pub max_connections: usize,
    /// A request head must arrive whole within this: from the accept for a
    /// connection's first request, from its first byte for later ones.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this of its head.
    pub body_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Descriptors kept out of the API's share whatever the limit: the
/// database and its WAL, the listener, the runtime's own, standard streams.
const RESERVED_DESCRIPTORS: u64 = 64;

/// How long the accept loop waits after an error that is not about one
/// connection (out of descriptors or memory), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The most API connections `soft_limit` descriptors allow: half of what
/// the reserve leaves, so that outbound deliveries always have the other
/// half.
pub fn connection_budget(soft_limit: u64) -> usize {
    let budget = soft_limit.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

/// Raises the soft open-file limit to the hard one (Herald holds a
/// descriptor per API connection and per outbound connection, and the
/// usual soft default of 1024 is far below what machines allow); returns
/// the soft limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct we pass; raising the soft
        // limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(to_u64(limit.rlim_cur))
}

/// `connection_budget` for the soft open-file limit in force, if the
/// system says: also the most requests the engine may have in flight, each
/// of which holds a descriptor too.
pub fn descriptor_budget() -> Option<usize> {
    soft_open_file_limit().map(connection_budget)
}

/// The soft open-file limit in force, if the system says.
fn soft_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(to_u64(limit.rlim_cur))
}

// `rlim_t` is u64 on 64-bit targets but not on every target.
#[allow(clippy::unnecessary_cast)]
fn to_u64(limit: libc::rlim_t) -> u64 {
    limit as u64
}

/// Serves `router` on `listener` until `shutdown`; then stops accepting,
/// lets requests in progress finish and returns once every connection
/// has closed.
pub async fn serve(listener: TcpListener, router: axum::Router, config: ListenerConfig, shutdown: CancellationToken) {
    let mut max_connections = config.max_connections.max(1);
    if let Some(soft_limit) = soft_open_file_limit() {
        let budget = connection_budget(soft_limit);
        if max_connections > budget {
            tracing::warn!(
                wanted = max_connections,
                allowed = budget,
                open_file_limit = soft_limit,
                "max_connections lowered to half of what the open-file limit leaves, so deliveries keep descriptors"
            );
            max_connections = budget;
        }
    }
    let config = Arc::new(ListenerConfig { max_connections, ..config });
    let slots = Arc::new(Semaphore::new(max_connections));
    let open = Arc::new(OpenConnections::default());
    let tasks = TaskTracker::new();
    let mut next_id: u64 = 0;
    // A flood would otherwise log a line per connection.
    let (mut accept_error_warned, mut cap_warned) = (Warned::default(), Warned::default());
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of descriptors (EMFILE, ENFILE) or memory: make
                    // one free if an idle connection holds it, and wait a
                    // little rather than spin on the error.
                    if accept_error_warned.again() {
                        tracing::warn!(error = %err, "accepting API connections fails; retrying every 100 ms");
                    }
                    open.close_longest_idle();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // At the cap, the connection idle longest makes room; with none
        // idle, wait (the kernel's backlog holds further connections) until
        // one closes or goes idle.
        let permit = loop {
            if let Ok(permit) = slots.clone().try_acquire_owned() {
                break Some(permit);
            }
            if cap_warned.again() {
                tracing::warn!(
                    max_connections,
                    "API connections at the cap; each new one closes the connection idle longest"
                );
            }
            let closing = open.close_longest_idle();
            tokio::select! {
                permit = slots.clone().acquire_owned() => break permit.ok(),
                _ = open.became_idle.notified(), if !closing => {}
                _ = shutdown.cancelled() => break None,
            }
        };
        let Some(permit) = permit else { break };
        next_id += 1;
        let id = next_id;
        let tracker = Arc::new(Tracker::new(config.clone(), open.became_idle.clone()));
        open.insert(id, tracker.clone());
        let (router, open, shutdown) = (router.clone(), open.clone(), shutdown.clone());
        tasks.spawn(async move {
            // Dropped even if serving panics: a connection left in the table
            // would be picked to close at the cap and free nothing.
            let _leaving = Leaving { open, id, _permit: permit };
            connection::serve(stream, router, tracker, shutdown).await;
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// Takes a served connection out of the table and gives its slot back.
struct Leaving {
    open: Arc<OpenConnections>,
    id: u64,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.open.remove(self.id);
    }
}

/// When a repeated warning was last logged: at most one a minute.
#[derive(Default)]
struct Warned(Option<tokio::time::Instant>);

impl Warned {
    fn again(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let due = self.0.is_none_or(|last| now - last >= Duration::from_secs(60));
        if due {
            self.0 = Some(now);
        }
        due
    }
}

/// Accept errors that concern one connection the peer already gave up on:
/// accept the next at once.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// The connections being served, so that the accept loop can pick the one
/// idle longest when it needs room.
#[derive(Default)]
struct OpenConnections {
    // A std Mutex, not a Tokio one: nothing async happens while it is held.
    by_id: Mutex<HashMap<u64, Arc<Tracker>>>,
    /// Told when a connection finishes a request, for an accept loop
    /// waiting at the cap with no idle connection to close.
    became_idle: Arc<Notify>,
}

impl OpenConnections {
    fn insert(&self, id: u64, tracker: Arc<Tracker>) {
        self.by_id.lock().unwrap().insert(id, tracker);
    }

    fn remove(&self, id: u64) {
        self.by_id.lock().unwrap().remove(&id);
    }

    /// Closes the connection idle longest (with no request in progress);
    /// says whether there was one.
    fn close_longest_idle(&self) -> bool {
        let by_id = self.by_id.lock().unwrap();
        let longest = by_id
            .values()
            .filter_map(|tracker| tracker.idle_since().map(|since| (since, tracker)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, tracker)) => {
                tracker.close();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_gets_half_of_what_the_reserve_leaves() {
        assert_eq!(connection_budget(1024), 480);
        assert_eq!(connection_budget(256), 96);
        assert_eq!(connection_budget(1_048_576), 524_256);
        // Even a tiny limit leaves the API one connection.
        assert_eq!(connection_budget(10), 1);
    }
}

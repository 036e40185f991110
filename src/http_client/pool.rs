//! Keep-alive connections to receivers, by origin.
//!
//! HTTP/1.1 connections are lent out one request at a time and come back
//! when the answer has been read to its end; HTTP/2 connections (when TLS
//! negotiates h2) are shared. Each connection's I/O runs in a task of its
//! own, as hyper's connection API has it; a connection the receiver closes
//! ends that task and is dropped at its next checkout.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use super::{BoxError, GuardedResolver};

pub(super) type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;
pub(super) type Body = Full<Bytes>;

/// Where a connection goes: scheme and authority.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    https: bool,
    authority: Authority,
}

impl Origin {
    pub(super) fn of(uri: &http::Uri) -> Option<Origin> {
        Some(Origin { https: uri.scheme() == Some(&Scheme::HTTPS), authority: uri.authority()?.clone() })
    }
}

/// A connection to send one request on.
pub(super) enum Lent {
    /// Ours alone until given back; `reused` if it served a request before.
    Http1 {
        sender: http1::SendRequest<Body>,
        reused: bool,
    },
    Http2(http2::SendRequest<Body>),
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// Keyed by origin, hashed with foldhash: looked up on every request.
type ByOrigin<V> = HashMap<Origin, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Idles {
    by_origin: ByOrigin<VecDeque<Idle>>,
    shared: ByOrigin<http2::SendRequest<Body>>,
    last_sweep: Option<Instant>,
}

pub(super) struct Pool {
    connector: Connector,
    idles: Mutex<Idles>,
    max_idle_per_origin: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(super) fn new(connector: Connector, max_idle_per_origin: usize, idle_timeout: Duration) -> Pool {
        Pool { connector, idles: Mutex::default(), max_idle_per_origin, idle_timeout }
    }

    /// An idle connection to `origin`, if one is open and ready.
    pub(super) fn idle(&self, origin: &Origin) -> Option<Lent> {
        let mut idles = self.idles.lock().unwrap();
        if let Some(shared) = idles.shared.get(origin) {
            if !shared.is_closed() {
                return Some(Lent::Http2(shared.clone()));
            }
            idles.shared.remove(origin);
        }
        let queue = idles.by_origin.get_mut(origin)?;
        // The most recently used first: it is the likeliest to be open.
        while let Some(idle) = queue.pop_back() {
            // Not `is_ready`: a connection whose last answer was just read
            // may not yet have said it wants the next request.
            if !idle.sender.is_closed() && idle.since.elapsed() < self.idle_timeout {
                return Some(Lent::Http1 { sender: idle.sender, reused: true });
            }
        }
        idles.by_origin.remove(origin);
        None
    }

    /// A new connection to `uri`'s origin.
    pub(super) async fn connect(&self, uri: &http::Uri, origin: &Origin) -> Result<Lent, BoxError> {
        let stream = self.connector.clone().call(uri.clone()).await?;
        if stream.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new()).handshake(stream).await?;
            tokio::spawn(connection);
            self.idles.lock().unwrap().shared.insert(origin.clone(), sender.clone());
            return Ok(Lent::Http2(sender));
        }
        let (sender, connection) = http1::Builder::new().handshake::<_, Body>(stream).await?;
        tokio::spawn(connection);
        Ok(Lent::Http1 { sender, reused: false })
    }

    /// Takes back an HTTP/1.1 connection whose last answer was read to its end.
    pub(super) fn give_back(&self, origin: Origin, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idles = self.idles.lock().unwrap();
        let queue = idles.by_origin.entry(origin).or_default();
        if queue.len() < self.max_idle_per_origin {
            queue.push_back(Idle { sender, since: now });
        }
        // Now and then, close what has idled too long, whatever its origin.
        if idles.last_sweep.is_none_or(|at| now - at >= self.idle_timeout) {
            idles.last_sweep = Some(now);
            let timeout = self.idle_timeout;
            idles.by_origin.retain(|_, queue| {
                queue.retain(|idle| now - idle.since < timeout && !idle.sender.is_closed());
                !queue.is_empty()
            });
            idles.shared.retain(|_, sender| !sender.is_closed());
        }
    }
}

//! One API connection: hyper's HTTP/1.1 server on a TCP stream, with the
//! listener's timers. A `Tracker` follows what the connection is doing
//! (idle, reading a head, serving requests), which sets its one deadline
//! and lets the accept loop pick the connection idle longest to close.
//!
//! These are network timeouts, so they run on `tokio::time` (like the
//! outbound request timeout), not on Herald's `Clock`, which schedules
//! retries and which tests stop.
//!
//! hyper's own `header_read_timeout` is not used: its timer also runs
//! while a keep-alive connection waits for its next request, which would
//! cap the idle timeout at the header timeout.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::ListenerConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one connection is doing, shared by its reads, its requests, its
/// driver and the accept loop.
pub(super) struct Tracker {
    config: Arc<ListenerConfig>,
    // A std Mutex, not a Tokio one: nothing async happens while it is held.
    activity: Mutex<Activity>,
    /// Cancelled when the accept loop needs this connection's slot.
    close: CancellationToken,
    became_idle: Arc<Notify>,
}

struct Activity {
    /// Requests whose response has not been sent whole yet.
    n_in_progress: usize,
    /// When the connection last had nothing in progress: its accept, or
    /// the end of its last response.
    idle_since: Instant,
    served_one: bool,
    /// Bytes of a next request have arrived.
    head_started: bool,
    /// When the connection is closed unless a request head completes;
    /// none while a request is in progress.
    deadline: Option<Instant>,
    closing: bool,
}

impl Tracker {
    pub(super) fn new(config: Arc<ListenerConfig>, became_idle: Arc<Notify>) -> Tracker {
        let now = Instant::now();
        let activity = Activity {
            n_in_progress: 0,
            idle_since: now,
            served_one: false,
            head_started: false,
            deadline: Some(now + config.header_timeout),
            closing: false,
        };
        Tracker { config, activity: Mutex::new(activity), close: CancellationToken::new(), became_idle }
    }

    /// Since when the connection has had no request in progress; none
    /// while one is, or once it is being closed.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        let activity = self.activity.lock().unwrap();
        (activity.n_in_progress == 0 && !activity.closing).then_some(activity.idle_since)
    }

    /// Asks the connection to close: at once if it is idle, after the
    /// response in progress otherwise.
    pub(super) fn close(&self) {
        self.activity.lock().unwrap().closing = true;
        self.close.cancel();
    }

    fn deadline(&self) -> Option<Instant> {
        self.activity.lock().unwrap().deadline
    }

    fn is_busy(&self) -> bool {
        self.activity.lock().unwrap().n_in_progress > 0
    }

    fn bytes_read(&self) {
        let mut activity = self.activity.lock().unwrap();
        if activity.n_in_progress == 0 && !activity.head_started {
            activity.head_started = true;
            // A first request's head is timed from the accept; a later
            // one's from its first byte, the idle time before not counted.
            if activity.served_one {
                activity.deadline = Some(Instant::now() + self.config.header_timeout);
            }
        }
    }

    fn request_started(self: &Arc<Self>) -> InProgress {
        let mut activity = self.activity.lock().unwrap();
        activity.n_in_progress += 1;
        activity.head_started = false;
        activity.deadline = None;
        InProgress(self.clone())
    }

    fn request_finished(&self) {
        let mut activity = self.activity.lock().unwrap();
        activity.n_in_progress -= 1;
        if activity.n_in_progress == 0 {
            let now = Instant::now();
            activity.served_one = true;
            activity.idle_since = now;
            activity.deadline = Some(now + self.config.idle_timeout);
            drop(activity);
            self.became_idle.notify_one();
        }
    }
}

/// A request in progress, until its response has been sent whole (or
/// dropped with the connection).
struct InProgress(Arc<Tracker>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

enum Event {
    Ended(Result<(), hyper::Error>),
    TimedOut,
    Closed,
    ShuttingDown,
}

/// Serves one connection until the client closes it, a deadline passes,
/// the accept loop takes its slot or shutdown lets it finish.
pub(super) async fn serve(stream: TcpStream, router: axum::Router, tracker: Arc<Tracker>, shutdown: CancellationToken) {
    let io = TokioIo::new(TrackedIo { stream, tracker: tracker.clone() });
    let service = ApiService { router, tracker: tracker.clone() };
    let mut connection = pin!(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
    let mut timer = pin!(tokio::time::sleep_until(Instant::now() + tracker.config.header_timeout));
    let mut closed = pin!(tracker.close.cancelled());
    let mut shutting_down = pin!(shutdown.cancelled());
    let (mut closing, mut stopping) = (false, false);
    loop {
        // The deadline is read after each poll of the connection, which is
        // where its reads and requests move it.
        let event = poll_fn(|cx| {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(Event::Ended(result));
            }
            if let Some(deadline) = tracker.deadline() {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::TimedOut);
                }
            }
            if !closing && closed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Closed);
            }
            if !stopping && shutting_down.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::ShuttingDown);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Ended(Ok(())) => return,
            Event::Ended(Err(err)) => {
                tracing::debug!(error = %err, "API connection ended with an error");
                return;
            }
            // Dropping the connection closes the socket.
            Event::TimedOut => {
                tracing::debug!("closing an API connection whose client took too long");
                return;
            }
            Event::Closed if !tracker.is_busy() => return,
            Event::Closed => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            Event::ShuttingDown => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The TCP stream, telling the tracker when bytes of a new request arrive.
struct TrackedIo {
    stream: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router as hyper calls it: each request's body gets its deadline,
/// and the request counts as in progress until its response is sent.
#[derive(Clone)]
struct ApiService {
    router: axum::Router,
    tracker: Arc<Tracker>,
}

impl hyper::service::Service<Request<Incoming>> for ApiService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_progress = self.tracker.request_started();
        let body_timeout = self.tracker.config.body_timeout;
        let request = request.map(|body| DeadlineBody {
            body,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + body_timeout)),
        });
        // A Router is always ready (its poll_ready returns Ready at once),
        // so calling a clone directly is what `oneshot` would do.
        let response = tower_service::Service::call(&mut self.router.clone(), request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody { body, _in_progress: in_progress }))
        })
    }
}

/// The request body fails once its deadline (set when its head arrived)
/// passes. One timer for the whole body, not reset per frame, so that a
/// slow drip cannot hold a connection for ever.
struct DeadlineBody {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
}

/// The error a request body fails with when it arrives too slowly.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive within the body timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

/// Whether `err`, or an error it wraps, is a body that arrived too slowly.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        next = err.source();
    }
    false
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // What has arrived is taken first, so that a handler slow to read a
        // body that came in time does not fail it; the deadline is checked
        // whenever the client makes us wait.
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that keeps its request in progress until hyper has
/// taken its last frame (and so drops it).
pub(super) struct TrackedBody {
    body: Body,
    _in_progress: InProgress,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

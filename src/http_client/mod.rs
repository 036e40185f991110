//! The one outbound HTTP client. It never follows redirects, never uses a
//! proxy from the environment, bounds what it reads of a response, and
//! refuses to connect to private, loopback, link-local and other non-public
//! addresses unless the operator allows them. The check runs on the
//! addresses a name resolves to at connect time, so DNS rebinding does not
//! get around it, and on IP-literal URLs before anything is sent.

mod pool;

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

use pool::{Lent, Origin, Pool};

use crate::model::ErrorClass;
use crate::profile::OutgoingRequest;

/// How much of a response body the attempt log keeps.
pub const RESPONSE_EXCERPT_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct ReceivedResponse {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body_excerpt: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendError {
    pub class: ErrorClass,
    pub message: String,
}

impl SendError {
    fn new(class: ErrorClass, message: impl Into<String>) -> SendError {
        SendError { class, message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is not a public address (start herald with --allow-private-targets to allow it)")]
struct Blocked(IpAddr);

#[derive(Debug, thiserror::Error)]
#[error("could not resolve {name}: {reason}")]
struct DnsFailure {
    name: String,
    reason: String,
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// Resolves names with the system resolver and drops what may not be dialled.
#[derive(Clone)]
struct GuardedResolver {
    allow_private: bool,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| DnsFailure { name: host.clone(), reason: e.to_string() })?
                .collect();
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| allow_private || is_public(a.ip())).collect();
            match (allowed.is_empty(), resolved.first()) {
                (false, _) => Ok(allowed.into_iter()),
                (true, Some(first)) => Err(Box::new(Blocked(first.ip())) as BoxError),
                (true, None) => Err(Box::new(DnsFailure { name: host, reason: "no addresses".into() }) as BoxError),
            }
        })
    }
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and other ::/96
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// Installs rustls' ring provider once per process; every HTTPS client
/// Herald makes needs it.
pub fn install_tls_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The delivery client: hyper's connections, a guarded resolver, rustls,
/// and a keep-alive pool of our own. A webhook gateway sends one kind of
/// request, so nothing general sits between the engine and the connection:
/// a general client's layers (redirect and retry middleware, URL parsing,
/// header copies, pool keys built per request) were a fifth of Herald's
/// CPU per delivery.
#[derive(Clone)]
pub struct Outbound {
    pool: Arc<Pool>,
    allow_private: bool,
}

impl Outbound {
    /// `bind` is the local address outgoing connections leave from (for
    /// receivers that allow-list senders, as Routee's do).
    pub fn new(allow_private: bool, bind: Option<IpAddr>) -> anyhow::Result<Outbound> {
        install_tls_provider();
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_local_address(bind);
        let tls = <rustls::ClientConfig as rustls_platform_verifier::ConfigVerifierExt>::with_platform_verifier()?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        // Many webhooks often share one host: keep as many idle connections
        // as there can be requests in flight, so bursts do not reconnect.
        let pool = Pool::new(connector, 1024, Duration::from_secs(60));
        Ok(Outbound { pool: Arc::new(pool), allow_private })
    }

    /// Sends one request and reads at most `RESPONSE_EXCERPT_BYTES` of the
    /// answer, all within `timeout`. Redirects are answers, not followed.
    pub async fn send(&self, request: OutgoingRequest, timeout: Duration) -> Result<ReceivedResponse, SendError> {
        let uri = target(&request.url)?;
        if !self.allow_private
            && let Some(ip) = ip_literal(&uri).filter(|ip| !is_public(*ip))
        {
            return Err(SendError::new(ErrorClass::Blocked, Blocked(ip).to_string()));
        }
        let origin = Origin::of(&uri).ok_or_else(|| SendError::new(ErrorClass::Request, "invalid url: no host"))?;
        let mut outgoing = http::Request::new(Full::new(request.body));
        *outgoing.method_mut() = request.method;
        let headers = outgoing.headers_mut();
        headers.reserve(request.headers.len() + 1);
        for (name, value) in request.headers {
            headers.append(name, value);
        }
        match tokio::time::timeout(timeout, self.exchange(outgoing, uri, origin)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::new(ErrorClass::Timeout, format!("no answer within {} ms", timeout.as_millis()))),
        }
    }

    async fn exchange(
        &self,
        mut request: http::Request<Full<bytes::Bytes>>,
        uri: http::Uri,
        origin: Origin,
    ) -> Result<ReceivedResponse, SendError> {
        let mut lent = self.pool.idle(&origin);
        loop {
            let connection = match lent.take() {
                Some(connection) => connection,
                // Boxed: dialling is rare, and its future (TLS and both
                // handshakes) would otherwise make every send's future,
                // and so every delivery's task, kilobytes larger.
                None => Box::pin(self.pool.connect(&uri, &origin)).await.map_err(classify_connect)?,
            };
            match connection {
                Lent::Http2(mut sender) => {
                    *request.uri_mut() = uri.clone();
                    let response = sender.send_request(request).await.map_err(classify_exchange)?;
                    return read_answer(response).await.map(|(answer, _)| answer);
                }
                Lent::Http1 { mut sender, reused } => {
                    if sender.ready().await.is_err() {
                        // Closed while it idled: dial anew.
                        continue;
                    }
                    // HTTP/1.1 asks for the path, and names the host apart.
                    *request.uri_mut() = origin_form(&uri);
                    if !request.headers().contains_key(http::header::HOST) {
                        let host = http::HeaderValue::from_str(host_header(&uri, origin_port(&uri)).as_str())
                            .map_err(|e| SendError::new(ErrorClass::Request, format!("invalid host: {e}")))?;
                        request.headers_mut().insert(http::header::HOST, host);
                    }
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            let (answer, finished) = read_answer(response).await?;
                            if finished {
                                self.pool.give_back(origin, sender);
                            }
                            return Ok(answer);
                        }
                        // A kept-alive connection the receiver closed before
                        // the request went out: the request comes back, and
                        // goes on a new connection.
                        Err(mut failed) if reused && failed.message().is_some() => {
                            request = failed.take_message().expect("checked above");
                            continue;
                        }
                        Err(failed) => return Err(classify_exchange(failed.into_error())),
                    }
                }
            }
        }
    }
}

/// Reads the status, `Retry-After` and an excerpt of the body; true if the
/// body was read to its end (so the connection can serve again).
async fn read_answer(response: http::Response<hyper::body::Incoming>) -> Result<(ReceivedResponse, bool), SendError> {
    let status = response.status().as_u16();
    let retry_after =
        response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = response.into_body();
    let mut excerpt = Vec::new();
    // A body that breaks off still leaves the status we already have; what
    // was read is kept.
    let mut finished = body.is_end_stream();
    while !finished && excerpt.len() < RESPONSE_EXCERPT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    excerpt.extend_from_slice(&data);
                }
                finished = body.is_end_stream();
            }
            Some(Err(_)) => break,
            None => finished = true,
        }
    }
    excerpt.truncate(RESPONSE_EXCERPT_BYTES);
    let answer = ReceivedResponse { status, retry_after, body_excerpt: String::from_utf8_lossy(&excerpt).into_owned() };
    Ok((answer, finished))
}

/// The target as HTTP/1.1 sends it: the path and query alone.
fn origin_form(uri: &http::Uri) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query =
        Some(uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
    http::Uri::from_parts(parts).expect("a path alone is a valid target")
}

fn origin_port(uri: &http::Uri) -> Option<u16> {
    let default = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
    uri.port_u16().filter(|port| *port != default)
}

fn host_header(uri: &http::Uri, port: Option<u16>) -> String {
    let host = uri.host().unwrap_or_default();
    let mut header = String::with_capacity(host.len() + 6);
    header.push_str(host);
    if let Some(port) = port {
        header.push(':');
        header.push_str(itoa::Buffer::new().format(port));
    }
    header
}

/// The request target: an absolute http or https URI. Hosts outside ASCII
/// go through the URL parser for their punycode form.
fn target(url: &str) -> Result<http::Uri, SendError> {
    let invalid = |reason: String| SendError::new(ErrorClass::Request, format!("invalid url: {reason}"));
    let uri = match url.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(_) => {
            let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
            parsed.as_str().parse::<http::Uri>().map_err(|e| invalid(e.to_string()))?
        }
    };
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        Some("http" | "https") => Err(invalid("empty host".into())),
        _ => Err(invalid(format!("{url} is not an absolute http or https URL"))),
    }
}

fn ip_literal(uri: &http::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

/// A connection that could not be made: refused by the guard, a name
/// that did not resolve, or a failed dial or TLS handshake.
fn classify_connect(err: BoxError) -> SendError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(&*err);
    let mut innermost = err.to_string();
    while let Some(current) = cause {
        if let Some(blocked) = current.downcast_ref::<Blocked>() {
            return SendError::new(ErrorClass::Blocked, blocked.to_string());
        }
        if let Some(dns) = current.downcast_ref::<DnsFailure>() {
            return SendError::new(ErrorClass::Dns, dns.to_string());
        }
        innermost = current.to_string();
        cause = current.source();
    }
    SendError::new(ErrorClass::Connect, innermost)
}

/// An exchange that broke off on an open connection.
fn classify_exchange(err: hyper::Error) -> SendError {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(current) = cause {
        message = format!("{message}: {current}");
        cause = current.source();
    }
    SendError::new(ErrorClass::Request, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(ip: &str, public: bool) {
        assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
    }

    fn request(url: &str) -> OutgoingRequest {
        OutgoingRequest { method: http::Method::POST, url: url.into(), headers: Vec::new(), body: bytes::Bytes::new() }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connect_time() {
        let outbound = Outbound::new(false, None).unwrap();
        // `localhost` resolves to loopback through the system resolver; the
        // guard sees the resolved address, whatever the name looked like.
        let err = outbound.send(request("http://localhost:9/hook"), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Blocked, "{err:?}");
        assert!(err.message.contains("not a public address"));
        let err = outbound.send(request("http://127.0.0.1:9/hook"), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Blocked);
        let err = outbound.send(request("http://[::ffff:10.0.0.1]/"), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Blocked);
    }

    #[tokio::test]
    async fn allowed_private_targets_are_dialled() {
        // A socket bound and never listening holds its port, so no other
        // test can take it, and a dial there is refused.
        let reserved = tokio::net::TcpSocket::new_v4().unwrap();
        reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = reserved.local_addr().unwrap().port();
        let outbound = Outbound::new(true, None).unwrap();
        let err =
            outbound.send(request(&format!("http://127.0.0.1:{port}/")), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Connect, "{err:?}");
    }

    /// A raw HTTP/1.1 receiver on loopback: answers each request with
    /// `body` (never, if `None`), closes after each answer when `close` is
    /// set, and reports each connection it accepted ("connection"), each
    /// request head it read, and each connection the client closed
    /// ("closed").
    async fn raw_receiver(
        body: Option<&'static str>,
        close: bool,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (seen, heads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                let _ = seen.send("connection".to_owned());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Requests here carry no body: a head ends a request.
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buffer.drain(..end + 4).collect();
                            let _ = seen.send(String::from_utf8_lossy(&head).into_owned());
                            let Some(body) = body else { continue };
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{}\r\n{body}",
                                body.len(),
                                if close { "connection: close\r\n" } else { "" }
                            );
                            // A client that stops reading a long answer hangs up.
                            if socket.write_all(answer.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => {
                                let _ = seen.send("closed".to_owned());
                                return;
                            }
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (base, heads)
    }

    fn drain(heads: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Vec<String> {
        std::iter::from_fn(|| heads.try_recv().ok()).collect()
    }

    #[tokio::test]
    async fn one_kept_alive_connection_serves_requests_one_after_another() {
        let (base, mut heads) = raw_receiver(Some("ok"), false).await;
        let outbound = Outbound::new(true, None).unwrap();
        for _ in 0..5 {
            let answer = outbound.send(request(&format!("{base}/hook?x=1")), Duration::from_secs(5)).await.unwrap();
            assert_eq!((answer.status, answer.body_excerpt.as_str()), (200, "ok"));
        }
        let seen = drain(&mut heads);
        assert_eq!(seen.iter().filter(|s| *s == "connection").count(), 1, "{seen:?}");
        let requests: Vec<&String> = seen.iter().filter(|s| s.starts_with("POST")).collect();
        assert_eq!(requests.len(), 5);
        // HTTP/1.1 asks for the path and names the host in its own header.
        let port = base.rsplit(':').next().unwrap();
        assert!(requests[0].starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{}", requests[0]);
        assert!(requests[0].to_lowercase().contains(&format!("host: 127.0.0.1:{port}\r\n")), "{}", requests[0]);
    }

    #[tokio::test]
    async fn a_receiver_that_closes_after_each_answer_still_gets_every_request() {
        let (base, mut heads) = raw_receiver(Some("bye"), true).await;
        let outbound = Outbound::new(true, None).unwrap();
        for _ in 0..4 {
            let answer = outbound.send(request(&format!("{base}/")), Duration::from_secs(5)).await.unwrap();
            assert_eq!(answer.body_excerpt, "bye");
        }
        let seen = drain(&mut heads);
        assert_eq!(seen.iter().filter(|s| *s == "connection").count(), 4, "{seen:?}");
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_excerpt_is_cut_and_its_connection_not_reused() {
        const LONG: &str = concat!(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        // Far more than one read: the rest is left unread.
        let long: &'static str = LONG.repeat(256 * 1024 / LONG.len()).leak();
        let (base, mut heads) = raw_receiver(Some(long), false).await;
        let outbound = Outbound::new(true, None).unwrap();
        for _ in 0..2 {
            let answer = outbound.send(request(&format!("{base}/")), Duration::from_secs(5)).await.unwrap();
            assert_eq!(answer.body_excerpt.len(), RESPONSE_EXCERPT_BYTES);
            assert_eq!(answer.body_excerpt, long[..RESPONSE_EXCERPT_BYTES]);
        }
        // The unread rest would have been read as the next answer.
        let seen = drain(&mut heads);
        assert_eq!(seen.iter().filter(|s| *s == "connection").count(), 2, "{seen:?}");
    }

    #[tokio::test]
    async fn a_request_that_times_out_closes_its_connection() {
        let (base, mut seen) = raw_receiver(None, false).await;
        let outbound = Outbound::new(true, None).unwrap();
        let err = outbound.send(request(&format!("{base}/")), Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Timeout, "{err:?}");
        // Left open, a silent receiver would hold a socket per timed-out
        // request for good. (The wait is a guard, not a pause.)
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = seen.recv().await {
                if event == "closed" {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(closed, Ok(true));
    }

    #[test]
    fn non_public_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            check(ip, false);
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            check(ip, true);
        }
    }
}

//! The one outbound HTTP client. It never follows redirects, never uses a
//! proxy from the environment, bounds what it reads of a response, and
//! refuses to connect to private, loopback, link-local and other non-public
//! addresses unless the operator allows them. The check runs on the
//! addresses a name resolves to at connect time, so DNS rebinding does not
//! get around it, and on IP-literal URLs before anything is sent.

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// The delivery client. It is hyper's pooled client with a guarded resolver
/// and rustls, and nothing between them and the engine: a webhook gateway
/// sends one kind of request, so a general client's layers (redirect and
/// retry middleware, a second URL parse, header copies) were a sixth of
/// Herald's CPU per delivery.
#[derive(Clone)]
pub struct Outbound {
    client: Client<Connector, Full<Bytes>>,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            // Many webhooks often share one host: keep as many idle connections
            // as there can be requests in flight, so bursts do not reconnect.
            .pool_max_idle_per_host(1024)
            .build(connector);
        Ok(Outbound { client, allow_private })
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
        let mut outgoing = http::Request::new(Full::new(request.body));
        *outgoing.method_mut() = request.method;
        *outgoing.uri_mut() = uri;
        let headers = outgoing.headers_mut();
        headers.reserve(request.headers.len());
        for (name, value) in request.headers {
            headers.append(name, value);
        }
        let exchange = async {
            let response = self.client.request(outgoing).await.map_err(classify)?;
            let status = response.status().as_u16();
            let retry_after =
                response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let mut body = response.into_body();
            let mut excerpt = Vec::new();
            // A body that breaks off still leaves the status we already
            // have; what was read is kept.
            while excerpt.len() < RESPONSE_EXCERPT_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            excerpt.extend_from_slice(&data);
                        }
                    }
                    _ => break,
                }
            }
            excerpt.truncate(RESPONSE_EXCERPT_BYTES);
            Ok(ReceivedResponse { status, retry_after, body_excerpt: String::from_utf8_lossy(&excerpt).into_owned() })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SendError::new(ErrorClass::Timeout, format!("no answer within {} ms", timeout.as_millis()))),
        }
    }
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

fn classify(err: hyper_util::client::legacy::Error) -> SendError {
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    let mut innermost = err.to_string();
    while let Some(cause) = source {
        if let Some(blocked) = cause.downcast_ref::<Blocked>() {
            return SendError::new(ErrorClass::Blocked, blocked.to_string());
        }
        if let Some(dns) = cause.downcast_ref::<DnsFailure>() {
            return SendError::new(ErrorClass::Dns, dns.to_string());
        }
        innermost = cause.to_string();
        source = cause.source();
    }
    let class = if err.is_connect() { ErrorClass::Connect } else { ErrorClass::Request };
    SendError::new(class, innermost)
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let outbound = Outbound::new(true, None).unwrap();
        let err =
            outbound.send(request(&format!("http://localhost:{port}/")), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Connect, "{err:?}");
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

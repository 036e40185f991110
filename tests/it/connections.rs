//! The API listener under clients that open connections and never finish a
//! request (issue "Hardening", item 4): a flood of idle connections cannot
//! lock out a client that sends a request, even under a low open-file
//! limit, and each stage of a request has its timeout.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{PATIENCE, Receiver, TestApp, spawn_herald_with_open_files, stop_gracefully};

/// `n` connections to `addr` that never send anything, made as std
/// sockets in non-blocking mode so that whether the server closed one can
/// be read without waiting. Connecting stalls once the server stops
/// accepting and its backlog is full, so the whole flood is bounded.
async fn idle_connections(addr: &str, n: usize) -> Vec<std::net::TcpStream> {
    tokio::time::timeout(PATIENCE, async {
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            streams.push(TcpStream::connect(addr).await.unwrap().into_std().unwrap());
        }
        streams
    })
    .await
    .expect("the server stopped taking connections")
}

/// How many of `streams` the server has closed by now.
fn n_closed(streams: &mut [std::net::TcpStream]) -> usize {
    let mut buf = [0u8; 64];
    let mut n = 0;
    for stream in streams {
        if !matches!(stream.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            n += 1;
        }
    }
    n
}

/// Waits until the server closes `stream` (end of file, or a reset when
/// it closed with bytes unread); returns how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server did not close the connection in time");
    start.elapsed()
}

/// Reads one HTTP/1.1 response with a `content-length` from `stream`;
/// returns its status line and body.
async fn read_response(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> (String, String) {
    tokio::time::timeout(PATIENCE, async {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("reading the response");
            assert!(n > 0, "the connection closed before a whole response: {}", String::from_utf8_lossy(&data));
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .expect("a content-length");
            if body.len() >= length {
                return (head.lines().next().unwrap().to_owned(), body[..length].to_owned());
            }
        }
    })
    .await
    .expect("no response in time")
}

fn addr_of(base: &str) -> &str {
    base.strip_prefix("http://").unwrap()
}

/// The issue's own check: 600 idle connections against a child Herald
/// limited to 256 open files, and the API still answers and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_under_a_low_open_file_limit_locks_no_one_out() {
    // This process holds the flood's 600 descriptors itself.
    herald::listener::raise_open_file_limit().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_herald_with_open_files(&dir.path().join("herald.db"), &[], 256).await;
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("herald.credentials.json")).unwrap()).unwrap();
    let token = credentials["token"].as_str().unwrap().to_owned();
    let mut receiver = Receiver::start().await;

    let mut flood = idle_connections(addr_of(&base), 600).await;

    let http = crate::support::http_client();
    let health = tokio::time::timeout(PATIENCE, http.get(format!("{base}/healthz")).send())
        .await
        .expect("/healthz did not answer under the flood")
        .unwrap();
    assert_eq!(health.status(), 200);
    let created = tokio::time::timeout(
        PATIENCE,
        http.post(format!("{base}/v1/webhooks"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(json!({"url": receiver.url}).to_string())
            .send(),
    )
    .await
    .expect("creating a webhook did not answer under the flood")
    .unwrap();
    assert_eq!(created.status(), 201);
    let sent = tokio::time::timeout(
        PATIENCE,
        http.post(format!("{base}/v1/events"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(json!({"type": "flood.survived", "payload": {"n": 1}}).to_string())
            .send(),
    )
    .await
    .expect("ingest did not answer under the flood")
    .unwrap();
    assert_eq!(sent.status(), 202);
    // The delivery needs an outbound descriptor of its own.
    assert_eq!(receiver.next().await.json()["type"], "flood.survived");
    // Room was made by closing idle connections, not by serving them all.
    assert!(n_closed(&mut flood) >= 600 - 96, "only {} of the idle connections were closed", n_closed(&mut flood));
    stop_gracefully(child).await;
}

#[tokio::test]
async fn at_the_cap_the_connection_idle_longest_makes_room() {
    let app = TestApp::spawn_with(|config| config.listener.max_connections = 8).await;
    let mut idle = idle_connections(addr_of(&app.base), 50).await;
    let receiver = Receiver::start().await;
    // Promptly: well before the 10 s header timeout would free a slot.
    let webhook = tokio::time::timeout(Duration::from_secs(5), app.create_webhook(json!({"url": receiver.url})))
        .await
        .expect("an authorised request waited behind idle connections");
    assert!(webhook["id"].is_string());
    // Every idle connection accepted past the cap closed an older one.
    assert!(n_closed(&mut idle) >= 50 - 8, "only {} of 50 idle connections were closed", n_closed(&mut idle));
}

#[tokio::test]
async fn each_stage_of_a_request_has_its_timeout() {
    let app = TestApp::spawn_with(|config| {
        config.listener.header_timeout = Duration::from_millis(300);
        config.listener.body_timeout = Duration::from_millis(400);
        config.listener.idle_timeout = Duration::from_millis(600);
    })
    .await;
    let addr = addr_of(&app.base).to_owned();

    // A connection that never sends anything.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let waited = closed_after(&mut silent).await;
    assert!(waited >= Duration::from_millis(250), "closed after {waited:?}");

    // Half a head.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /v1/events HTTP/1.1\r\nhost: herald\r\n").await.unwrap();
    let waited = closed_after(&mut half).await;
    assert!(waited >= Duration::from_millis(250), "closed after {waited:?}");

    // A body that stops half-way gets a 408 once its deadline passes.
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n",
        app.token
    );
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    let start = Instant::now();
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(br#"{"type": "#).await.unwrap();
    let (status, body) = read_response(&mut stalled).await;
    assert!(start.elapsed() >= Duration::from_millis(350), "answered after {:?}", start.elapsed());
    assert!(status.starts_with("HTTP/1.1 408"), "{status} {body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], "request_timeout", "{body}");

    // A slow drip does not renew the deadline: a byte every 50 ms would
    // take 5 s for the 100.
    let dripping = TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = dripping.into_split();
    let start = Instant::now();
    writer.write_all(head.as_bytes()).await.unwrap();
    let drip = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..100 {
            every.tick().await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let (status, body) = read_response(&mut reader).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status} {body}");
    assert!(start.elapsed() < Duration::from_secs(3), "answered after {:?}", start.elapsed());
    drip.abort();

    // A keep-alive connection is left open between requests for the idle
    // timeout (longer than the header timeout here), then closed.
    let mut keep_alive = TcpStream::connect(&addr).await.unwrap();
    keep_alive.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await.unwrap();
    let (status, _) = read_response(&mut keep_alive).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let waited = closed_after(&mut keep_alive).await;
    assert!(waited >= Duration::from_millis(550), "closed after {waited:?}");
}

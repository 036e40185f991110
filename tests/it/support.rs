//! Test support: `TestApp` (a real Herald on port 0 with a temp SQLite file
//! and a manual clock) and `Receiver` (a real HTTP server on port 0 that
//! answers from a script and hands every request to the test).
//!
//! With `HERALD_TEST_DATABASE_URL=postgres://…` every Herald the suite
//! starts (in process or as a child) uses PostgreSQL instead: a schema of
//! its own in that database, named after its temp directory, so that a
//! child restarted on the same directory finds its data again. Tests about
//! SQLite files skip themselves there (`skip_on_postgres`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use herald::app::Application;
use herald::clock::{Clock, ManualClock};
use herald::config::{ServeArgs, ServeConfig};
use herald::model::{AttemptRecord, Timestamp};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub const OPERATOR_TOKEN: &str = "hrld_test_operator_token";

/// The PostgreSQL database the suite runs on, if it does.
pub fn test_database_url() -> Option<String> {
    std::env::var("HERALD_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty())
}

/// Whether the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    test_database_url().is_some()
}

/// True (after saying why) when the suite runs on PostgreSQL and the
/// calling test is about SQLite alone: `if skip_on_postgres("…") { return; }`.
pub fn skip_on_postgres(reason: &str) -> bool {
    let skip = on_postgres();
    if skip {
        eprintln!("skipped on postgresql: {reason}");
    }
    skip
}

/// The `--database` URL of the database at `db` (a path in a temp
/// directory): that SQLite file, or on PostgreSQL a schema named after it.
pub fn database_url(db: &std::path::Path) -> String {
    let Some(base) = test_database_url() else { return format!("sqlite://{}", db.display()) };
    let separator = if base.contains('?') { '&' } else { '?' };
    // A small pool: the suite runs many Heralds at once on one server.
    format!("{base}{separator}schema={}&pool_size=4", schema_of(db))
}

/// The PostgreSQL schema of the database at `db`: FNV-1a of the path, so
/// the same directory has the same schema.
fn schema_of(db: &std::path::Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in db.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("herald_test_{hash:016x}")
}

/// A PostgreSQL client on the schema of the database at `db`, for tests
/// that look inside a stopped Herald's database (PostgreSQL runs only).
pub async fn postgres_client(db: &std::path::Path) -> tokio_postgres::Client {
    let url = test_database_url().expect("a postgresql run");
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.options(format!("-c search_path={}", schema_of(db)));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A plain HTTP client for tests to call Herald with. reqwest needs the
/// process's TLS provider in place first, which Herald itself installs
/// only once it builds its own client: a test that runs alone may not
/// have one yet.
pub fn http_client() -> reqwest::Client {
    herald::http_client::install_tls_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The longest any test waits for something to happen before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub base: String,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    /// Holds the database until the app is dropped.
    dir: tempfile::TempDir,
    attempts: broadcast::Receiver<AttemptRecord>,
    shutdown: CancellationToken,
    /// The default account's token.
    pub token: String,
    /// Set when the test drives the engine itself (`spawn_driven`).
    engine: Option<Arc<herald::delivery::Engine>>,
}

pub struct Account {
    pub id: String,
    pub token: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
        Self::start(adjust, false).await
    }

    /// A Herald whose engine sends nothing until the test runs it with
    /// `run_until_idle`: then every attempt it made has finished and is
    /// recorded, so "nothing else was sent" can be asserted soundly.
    pub async fn spawn_driven() -> TestApp {
        Self::start(|_| {}, true).await
    }

    /// `spawn_driven` with the configuration adjusted.
    pub async fn spawn_driven_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
        Self::start(adjust, true).await
    }

    async fn start(adjust: impl FnOnce(&mut ServeConfig), driven: bool) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::from_args(ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            database: Some(database_url(&dir.path().join("herald.db"))),
            allow_private_targets: true,
            admin_token: Some(OPERATOR_TOKEN.into()),
            ..Default::default()
        })
        .unwrap();
        adjust(&mut config);
        // Beside the SQLite file as ever; on PostgreSQL in the temp
        // directory rather than the test's working directory.
        config.credentials_file = match on_postgres() {
            true => Some(dir.path().join("herald.credentials.json")),
            false => herald::store::credentials_path(&config.database),
        };
        // Real wall-clock time to start with, so signature timestamps pass
        // the standard library's five-minute tolerance.
        let clock = ManualClock::new(herald::clock::SystemClock::new(1.0).now());
        let app = Application::build(config, Arc::new(clock.clone())).await.unwrap();
        let token = app.bootstrap.default_account.as_ref().unwrap().1.clone();
        let base = format!("http://{}", app.local_addr());
        let attempts = app.attempts();
        let shutdown = CancellationToken::new();
        let engine = driven.then(|| app.engine());
        match driven {
            true => drop(tokio::spawn(app.run_api(shutdown.clone()))),
            false => drop(tokio::spawn(app.run(shutdown.clone()))),
        }
        let http = http_client();
        TestApp { base, clock, http, dir, attempts, shutdown, token, engine }
    }

    /// Runs the engine of a `spawn_driven` app until nothing is due now;
    /// returns how many attempts it recorded.
    pub async fn run_until_idle(&self) -> usize {
        let engine = self.engine.as_ref().expect("run_until_idle needs TestApp::spawn_driven");
        tokio::time::timeout(PATIENCE, engine.run_until_idle()).await.expect("the engine did not go idle").unwrap()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn new_account(&self) -> Account {
        let (status, body) =
            self.call(Method::POST, "/v1/accounts", OPERATOR_TOKEN, Some(json!({"name": "other"}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Account { id: body["id"].as_str().unwrap().into(), token: body["token"].as_str().unwrap().into() }
    }

    /// Calls the API with a JSON body (or none) and returns status and JSON.
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        read(request.send().await.unwrap()).await
    }

    /// Calls the API with a raw body.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, &self.token, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, &self.token, None).await
    }

    /// Creates a webhook in the default account and returns it.
    pub async fn create_webhook(&self, body: Value) -> Value {
        let (status, webhook) = self.post("/v1/webhooks", body).await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");
        webhook
    }

    /// Ingests one event in the default account; returns the response.
    pub async fn send_event(&self, event: Value) -> Value {
        let (status, body) = self.post("/v1/events", event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// The next attempt the engine records. The feed is a broadcast of
    /// 1024: a test that falls further behind than that has lost records,
    /// and says so rather than calling the feed closed.
    pub async fn next_attempt(&mut self) -> AttemptRecord {
        match tokio::time::timeout(PATIENCE, self.attempts.recv()).await.expect("no attempt was recorded in time") {
            Ok(record) => record,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                panic!("the attempt feed lagged: {n} records were dropped before the test read them")
            }
            Err(broadcast::error::RecvError::Closed) => panic!("the attempt feed closed"),
        }
    }

    /// Checks that `receiver` (the URL of webhook `webhook_id`) got nothing
    /// more than the test has taken, without sleeping: a marker event is sent
    /// to that webhook alone and must be the next request to arrive there,
    /// and nothing may follow it. A delivery of the same webhook goes through
    /// the same lane, so one the engine had started before the marker shows
    /// up first (or, with several slots in the lane, at the latest beside it).
    #[track_caller]
    pub fn nothing_more<'a>(
        &'a self,
        receiver: &'a mut Receiver,
        webhook_id: &'a str,
    ) -> impl std::future::Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            receiver.markers_sent += 1;
            let marker = format!("herald-test-marker-{}", receiver.markers_sent);
            let event = json!({"type": "test.marker", "payload": {"marker": marker}, "webhook_id": webhook_id});
            let sent = self.send_event(event).await;
            assert_eq!(sent["deliveries"], 1, "the marker went to {webhook_id} ({caller})");
            let next = receiver.next().await;
            let body = String::from_utf8_lossy(&next.body);
            assert!(body.contains(&marker), "{caller}: a request arrived before the marker: {body}");
            let rest: Vec<String> =
                receiver.drain().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
            assert!(rest.is_empty(), "{caller}: requests after the marker: {rest:?}");
        }
    }

    pub async fn delivery(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The SQLite file, for tests that look inside it.
    pub fn database_path(&self) -> std::path::PathBuf {
        self.dir.path().join("herald.db")
    }

    /// A new Viber bot auth token of the default account.
    pub async fn viber_token(&self) -> String {
        self.viber_token_of(&self.token).await
    }

    /// A new Viber bot auth token of the account whose API token is given.
    pub async fn viber_token_of(&self, account_token: &str) -> String {
        let (status, body) = self.call(Method::POST, "/v1/viber/auth-tokens", account_token, None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// The delivery an event created for one webhook.
    pub async fn delivery_of_webhook(&self, event_id: &str, webhook_id: &str) -> Value {
        let (_, page) = self.get(&format!("/v1/deliveries?limit=250&webhook_id={webhook_id}")).await;
        let found: Vec<&Value> =
            page["data"].as_array().unwrap().iter().filter(|d| d["event_id"] == event_id).collect();
        assert_eq!(found.len(), 1, "deliveries of {event_id} to {webhook_id}: {found:?}");
        self.delivery(found[0]["id"].as_str().unwrap()).await
    }

    /// The one delivery an event created.
    pub async fn delivery_of(&self, event_id: &str) -> Value {
        let (_, page) = self.get("/v1/deliveries?limit=250").await;
        let found: Vec<&Value> =
            page["data"].as_array().unwrap().iter().filter(|d| d["event_id"] == event_id).collect();
        assert_eq!(found.len(), 1, "deliveries of {event_id}: {found:?}");
        self.delivery(found[0]["id"].as_str().unwrap()).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value)
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The address the request came from.
    pub peer: std::net::SocketAddr,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Never answer: the request stays open until the receiver is dropped.
    pub hang: bool,
    /// How long the receiver takes before it answers.
    pub delay: Duration,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { hang: false, delay: Duration::ZERO, status, headers: Vec::new(), body: String::new() }
    }

    pub fn hang() -> Reply {
        Reply { hang: true, ..Reply::status(200) }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Answers only after `delay`: a slow receiver, for attempts whose
    /// durations must differ.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }
}

/// Picks out the requests one keyed reply answers.
type Matcher = Box<dyn Fn(&Received) -> bool + Send>;

/// What the receiver has yet to answer: replies keyed by request, each for
/// the first request it matches, then replies in arrival order.
#[derive(Default)]
struct Script {
    keyed: Vec<(Matcher, Reply)>,
    queued: VecDeque<Reply>,
}

impl Script {
    fn answer(&mut self, request: &Received) -> Reply {
        if let Some(i) = self.keyed.iter().position(|(matches, _)| matches(request)) {
            return self.keyed.remove(i).1;
        }
        self.queued.pop_front().unwrap_or(Reply::status(200))
    }
}

/// A scripted receiver: answers requests with the replies keyed to them,
/// else with the queued replies in order, then 200, and hands every
/// request to the test. Where more than one request can be in flight,
/// key the replies (`reply_to`): arrival order is a race there.
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
    requests: mpsc::UnboundedReceiver<Received>,
    /// How many `TestApp::nothing_more` markers went here, so each is new.
    markers_sent: u32,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_with(Vec::new()).await
    }

    pub async fn start_with(replies: Vec<Reply>) -> Receiver {
        let script = Arc::new(Mutex::new(Script { keyed: Vec::new(), queued: VecDeque::from(replies) }));
        let (tx, requests) = mpsc::unbounded_channel();
        let answers = script.clone();
        let app = axum::Router::new().fallback(
            move |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
                  method: Method,
                  uri: Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                let request = Received { peer, method, uri, headers, body };
                let reply = answers.lock().unwrap().answer(&request);
                let _ = tx.send(request);
                async move {
                    if reply.hang {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(reply.delay).await;
                    let mut response = axum::http::Response::builder().status(reply.status);
                    for (name, value) in reply.headers {
                        response = response.header(name, value);
                    }
                    response.body(axum::body::Body::from(reply.body)).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await });
        Receiver { url, script, requests, markers_sent: 0 }
    }

    /// Answers the first request `matches` picks (whenever it arrives)
    /// with `reply`.
    pub fn reply_to(&self, matches: impl Fn(&Received) -> bool + Send + 'static, reply: Reply) {
        self.script.lock().unwrap().keyed.push((Box::new(matches), reply));
    }

    pub fn then(&self, reply: Reply) {
        self.script.lock().unwrap().queued.push_back(reply);
    }

    /// The next request, failing the test if none comes.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .expect("the receiver got no request in time")
            .expect("receiver closed")
    }

    /// Requests already received and not yet taken.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            out.push(r);
        }
        out
    }
}

/// A URL where every connection is refused, and the socket that keeps it
/// so: bound and never listening, it holds its port for as long as the
/// test keeps it, so no other test can take the port meanwhile.
pub fn refused_url() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}/hook", socket.local_addr().unwrap());
    (socket, url)
}

/// Starts `herald serve` as a child process on a free port with `db`;
/// returns the child and its base URL. The child dies with the handle.
pub async fn spawn_herald(db: &std::path::Path, extra_args: &[&str]) -> (tokio::process::Child, String) {
    spawn_herald_with_env(db, extra_args, &[]).await
}

/// `spawn_herald` with extra environment variables for the child only.
pub async fn spawn_herald_with_env(
    db: &std::path::Path,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    spawn_herald_command(herald_serve_command(db, extra_args, env)).await
}

/// `spawn_herald` with the child's log at `info` piped back to the test:
/// each line of its stderr arrives on the returned channel, so a test can
/// wait for the child to say it has done something (such as begun to shut
/// down) rather than guess how long that takes.
pub async fn spawn_herald_logging(
    db: &std::path::Path,
    extra_args: &[&str],
) -> (tokio::process::Child, String, mpsc::UnboundedReceiver<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut command = herald_serve_command(db, extra_args, &[("HERALD_LOG", "info")]);
    command.stderr(std::process::Stdio::piped());
    let (tx, log) = mpsc::unbounded_channel();
    let (child, base) = spawn_herald_command_with(command, |child| {
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    })
    .await;
    (child, base, log)
}

/// Waits for a line of a child's log that contains `text`; returns it.
pub async fn wait_for_log(log: &mut mpsc::UnboundedReceiver<String>, text: &str) -> String {
    let found = async {
        while let Some(line) = log.recv().await {
            if line.contains(text) {
                return line;
            }
        }
        panic!("herald's log ended without {text:?}");
    };
    tokio::time::timeout(PATIENCE, found).await.unwrap_or_else(|_| panic!("herald did not log {text:?} in time"))
}

/// `spawn_herald` with the child's open-file limit (soft and hard) set to
/// `open_files`.
pub async fn spawn_herald_with_open_files(
    db: &std::path::Path,
    extra_args: &[&str],
    open_files: u64,
) -> (tokio::process::Child, String) {
    let mut command = herald_serve_command(db, extra_args, &[]);
    let limit = libc::rlimit { rlim_cur: open_files as libc::rlim_t, rlim_max: open_files as libc::rlim_t };
    // SAFETY: runs in the forked child before exec and calls only
    // setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_herald_command(command).await
}

/// A command for a child process with a clean environment: only `PATH`
/// and `HOME` (and pyenv's choice of python, for the verifiers) from the
/// developer's, so a stray `WEBHOOK_URL`, `HERALD_TIME_SCALE` or
/// `HERALD_CONFIG` cannot change what the child does. The test adds the
/// rest.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.env_clear();
    for name in ["PATH", "HOME", "PYENV_ROOT", "PYENV_VERSION"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// The `herald` binary with a clean environment, working in `dir`, whose
/// `.env` it reads.
fn herald_command(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = clean_command(env!("CARGO_BIN_EXE_herald"));
    command.current_dir(dir);
    command
}

/// `herald serve` on `db`, working in the database's directory.
fn herald_serve_command(db: &std::path::Path, extra_args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = herald_command(db.parent().expect("the database is in a directory"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--allow-private-targets"])
        .arg("--database")
        .arg(database_url(db))
        .args(extra_args)
        .env("HERALD_ADMIN_TOKEN", OPERATOR_TOKEN)
        .env("HERALD_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Starts a child Herald from `command` (which must pipe its stdout) and
/// returns it with the base URL it says it listens on.
pub async fn spawn_herald_command(command: tokio::process::Command) -> (tokio::process::Child, String) {
    spawn_herald_command_with(command, |_| {}).await
}

/// Starts the child, lets `started` take its other pipes, then waits for
/// it to say where it listens.
async fn spawn_herald_command_with(
    mut command: tokio::process::Command,
    started: impl FnOnce(&mut tokio::process::Child),
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = command.spawn().unwrap();
    started(&mut child);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, url)) = line.split_once("listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("herald exited before listening");
    })
    .await
    .expect("herald did not start in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

/// Runs the `herald` binary with `args` to completion in an empty
/// directory; returns stdout, failing the test if it fails.
pub async fn run_herald(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = run_herald_in(dir.path(), args, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "herald {args:?} failed: {}{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Runs the `herald` binary with `args` to completion in `dir`, with only
/// `PATH` and `env` in its environment, whatever its exit status.
pub async fn run_herald_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let run = herald_command(dir).args(args).envs(env.iter().copied()).kill_on_drop(true).output();
    // Generous: `herald bench --smoke` runs whole scenarios in here.
    tokio::time::timeout(PATIENCE * 15, run).await.expect("herald did not finish in time").unwrap()
}

/// Runs a checker script from `tests/verifiers` with `args`, feeding it
/// `body`; panics with its output unless it exits 0. Returns its stdout.
pub async fn run_verifier(program: &str, script: &str, args: &[&str], body: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let path = format!("{}/tests/verifiers/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = clean_command(program)
        .arg(&path)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (.ci/run installs it): {e}"));
    child.stdin.take().unwrap().write_all(body).await.unwrap();
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish in time"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} rejected the request: {}{stdout}\nbody: {}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(body)
    );
    stdout
}

/// The official `viberbot` Python SDK's `verify_signature` and `parse_request`.
pub async fn viberbot_accepts(token: &str, request: &Received) -> String {
    let signature = request.header("x-viber-content-signature").expect("a Viber signature header");
    run_verifier("python3", "viber_verify.py", &[token, signature], &request.body).await
}

/// The WhatsApp Web API seed's own JavaScript verifier, under node.
pub async fn seed_js_verifier_accepts(secret: &str, request: &Received) {
    let signature = request.header("x-webhook-signature").expect("an X-Webhook-Signature header");
    run_verifier("node", "wwebjs_verify.js", &[secret, signature], &request.body).await;
}

/// Lowercase hex HMAC-SHA256, computed here independently of Herald.
pub fn hex_hmac(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The default account's token, from the credentials file a child
/// `herald serve` wrote in `dir`.
pub fn child_token(dir: &std::path::Path) -> String {
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("herald.credentials.json")).unwrap()).unwrap();
    credentials["token"].as_str().unwrap().to_owned()
}

/// Posts JSON to a child Herald; returns its answer, failing unless 2xx.
pub async fn child_post(base: &str, token: &str, path: &str, body: Value) -> Value {
    let response = http_client()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Stops a child Herald with SIGTERM and checks it exits cleanly (after
/// recording every attempt it made).
pub async fn stop_gracefully(mut child: tokio::process::Child) {
    let pid = child.id().expect("the child is running") as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(PATIENCE, child.wait()).await.expect("herald stopped in time").unwrap();
    assert!(status.success(), "herald exited with {status} on SIGTERM");
}

/// Milliseconds since the epoch of an RFC 3339 time, read by the `time`
/// crate rather than by Herald.
#[track_caller]
pub fn unix_ms(rfc3339: &str) -> i64 {
    let parsed = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"));
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// The nearest-rank percentile `p` of `values`, as the README's stats
/// define it, worked out here rather than by Herald's `stats`.
pub fn nearest_rank(values: &[u64], p: u64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    // The smallest rank r with r / n >= p / 100.
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Checks an API error: its status, its stable `code`, and that its message
/// says what is wrong (mentions `mentions`).
#[track_caller]
pub fn check_error(response: (StatusCode, Value), status: u16, code: &str, mentions: &str) {
    let (got, body) = response;
    assert_eq!(got.as_u16(), status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(mentions), "message {message:?} does not mention {mentions:?}");
}

/// Every table of the connection's main database, with its columns in order.
pub fn tables_and_columns(conn: &rusqlite::Connection) -> Vec<(String, Vec<String>)> {
    let names = |sql: &str| -> Vec<String> {
        conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    names("SELECT name FROM main.sqlite_master WHERE type = 'table'")
        .into_iter()
        .map(|table| {
            let columns = names(&format!("SELECT name FROM main.pragma_table_info('{table}')"));
            (table, columns)
        })
        .collect()
}

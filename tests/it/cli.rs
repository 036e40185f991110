//! The binary as a user runs it: `serve` as a child process, the CLI
//! finding the default account through the credentials file, every
//! `webhooks`, `deliveries` and `stats` command as a table and as `--json`,
//! errors as the server words them, `.env` files, the time scale shrinking
//! retry waits, and SIGTERM stopping it cleanly.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    Receiver, Reply, run_herald, run_herald_in, spawn_herald, spawn_herald_with_env, stop_gracefully,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_works_end_to_end_with_a_scaled_clock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let database = format!("sqlite://{}", db.display());
    let (child, _base) = spawn_herald(&db, &["--time-scale", "0.001"]).await;
    let mut receiver = Receiver::start_with(vec![Reply::status(500)]).await;

    let created: Value = serde_json::from_str(
        &run_herald(&["webhooks", "create", "--url", &receiver.url, "--json", "--database", &database]).await,
    )
    .unwrap();
    let secret = created["secret"].as_str().unwrap();
    let sent: Value = serde_json::from_str(
        &run_herald(&[
            "send",
            "--json",
            "--type",
            "whatsapp:message:status",
            "--payload",
            r#"{"id":"a418","status":"read"}"#,
            "--database",
            &database,
        ])
        .await,
    )
    .unwrap();
    assert_eq!(sent["deliveries"], 1);

    // The first attempt fails; the default policy's 10 s wait is 10 ms here.
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
    standardwebhooks::Webhook::new(secret).unwrap().verify(&second.body, &second.headers).unwrap();

    stop_gracefully(child).await;

    // A clean stop records every attempt made; a restart reads them back.
    let (_child, _base) = spawn_herald(&db, &[]).await;
    let log: Value =
        serde_json::from_str(&run_herald(&["deliveries", "list", "--json", "--database", &database]).await).unwrap();
    let delivery = &log["data"][0];
    let shown: Value = serde_json::from_str(
        &run_herald(&["deliveries", "show", delivery["id"].as_str().unwrap(), "--json", "--database", &database]).await,
    )
    .unwrap();
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2, "{shown}");
    let started: Vec<herald::model::Timestamp> = shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| herald::model::Timestamp::parse_rfc3339(a["started_at"].as_str().unwrap()).unwrap())
        .collect();
    let gap = started[1].0 - started[0].0;
    // Only a lower bound: a loaded machine may take longer, never shorter.
    assert!(gap >= 5, "the scaled wait was {gap} ms");
}

/// The CLI pointed at one database's credentials file.
struct Cli {
    database: String,
}

impl Cli {
    fn of(db: &Path) -> Cli {
        Cli { database: format!("sqlite://{}", db.display()) }
    }

    /// Runs a command that must succeed; returns what it printed (a table).
    async fn table(&self, args: &[&str]) -> String {
        run_herald(&[args, &["--database", &self.database]].concat()).await
    }

    /// Runs a command with `--json`; returns the JSON it printed.
    async fn json(&self, args: &[&str]) -> Value {
        let out = self.table(&[args, &["--json"]].concat()).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }

    /// Runs a command that must fail; returns its stderr.
    async fn error(&self, args: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let output = run_herald_in(dir.path(), &[args, &["--database", &self.database]].concat(), &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&output.stdout));
        stderr
    }
}

/// The value beside `key` in `key  value` details.
#[track_caller]
fn detail(details: &str, key: &str) -> String {
    details
        .lines()
        .find_map(|line| line.strip_prefix(key).filter(|rest| rest.starts_with("  ")))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{details}"))
        .trim()
        .to_owned()
}

/// The table's line that mentions `needle`.
#[track_caller]
fn row<'a>(table: &'a str, needle: &str) -> &'a str {
    table.lines().find(|line| line.contains(needle)).unwrap_or_else(|| panic!("no row with {needle} in:\n{table}"))
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhooks_command_reads_as_a_table_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let (_child, _base) = spawn_herald(&db, &[]).await;
    let cli = Cli::of(&db);
    let mut receiver = Receiver::start().await;
    let other_url = format!("{}/other", receiver.url);

    // create, from flags, as JSON.
    let orders = cli
        .json(&[
            "webhooks",
            "create",
            "--url",
            &receiver.url,
            "--description",
            "orders",
            "--event-type",
            "order.paid",
            "--event-type",
            "order.*",
            "--header",
            "X-Tenant=acme",
            "--timeout-ms",
            "5000",
        ])
        .await;
    let id = orders["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_"), "{orders}");
    assert_eq!(orders["url"], receiver.url.as_str());
    assert_eq!(orders["description"], "orders");
    assert_eq!(orders["event_types"], serde_json::json!(["order.paid", "order.*"]));
    assert_eq!(orders["headers"], serde_json::json!({"x-tenant": "acme"}));
    assert_eq!(orders["timeout_ms"], 5000);
    assert_eq!(orders["enabled"], true);
    let first_secret = orders["secret"].as_str().unwrap().to_owned();
    assert!(first_secret.starts_with("whsec_"), "{orders}");

    // create, as a table, with `--body` for a field that has no flag.
    let created = cli
        .table(&[
            "webhooks",
            "create",
            "--url",
            &other_url,
            "--disabled",
            "--body",
            r#"{"retry": {"schedule": [1, 2]}}"#,
        ])
        .await;
    let other = detail(&created, "id");
    assert!(other.starts_with("wh_"), "{created}");
    assert_eq!(detail(&created, "url"), other_url);
    assert_eq!(detail(&created, "state"), "disabled");
    assert_eq!(detail(&created, "events"), "every event");
    assert!(!detail(&created, "retry").contains("profile default"), "{created}");
    assert!(detail(&created, "secret").starts_with("whsec_"), "{created}");
    assert!(!created.contains('{') || created.contains("\"schedule\""), "no JSON but the retry policy:\n{created}");

    // list: aligned columns, one row each.
    let list = cli.table(&["webhooks", "list"]).await;
    let header = list.lines().next().unwrap();
    assert!(header.starts_with("ID ") && header.contains("URL"), "{list}");
    let url_column = header.find("URL").unwrap();
    for (webhook, url, state) in [(&id, &receiver.url, "enabled"), (&other, &other_url, "disabled")] {
        let line = row(&list, webhook);
        assert_eq!(line.find(url.as_str()), Some(url_column), "URL column misaligned:\n{list}");
        assert!(line.contains(state), "{line}");
    }
    assert!(row(&list, &id).contains("order.paid, order.*"), "{list}");
    assert_eq!(list.lines().count(), 3, "{list}");
    let listed = cli.json(&["webhooks", "list"]).await;
    assert_eq!(ids(&listed), [id.clone(), other.clone()]);

    // show.
    let shown = cli.table(&["webhooks", "show", &id]).await;
    assert_eq!(detail(&shown, "description"), "orders");
    assert_eq!(detail(&shown, "events"), "order.paid, order.*");
    assert_eq!(detail(&shown, "headers"), "x-tenant: acme");
    assert_eq!(detail(&shown, "timeout"), "5000 ms");
    assert_eq!(detail(&shown, "circuit"), "closed");
    assert!(!shown.contains("whsec_"), "show never prints the secret:\n{shown}");
    let shown = cli.json(&["webhooks", "show", &id]).await;
    assert_eq!(shown["circuit"]["state"], "closed");
    assert_eq!(shown["url"], receiver.url.as_str());

    // update: only what is given changes.
    let updated = cli.json(&["webhooks", "update", &id, "--disabled", "--description", "renamed"]).await;
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["description"], "renamed");
    assert_eq!(updated["url"], receiver.url.as_str());
    assert_eq!(updated["event_types"], serde_json::json!(["order.paid", "order.*"]));
    let updated = cli.table(&["webhooks", "update", &id, "--enabled", "--all-events"]).await;
    assert_eq!(detail(&updated, "state"), "enabled");
    assert_eq!(detail(&updated, "events"), "every event");
    assert_eq!(detail(&updated, "description"), "renamed");

    // rotate-secret: the old secret keeps signing beside the new one.
    let rotated = cli.json(&["webhooks", "rotate-secret", &id]).await;
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(second_secret.starts_with("whsec_") && second_secret != first_secret, "{rotated}");
    assert_eq!(rotated["previous_secret"]["secret"], first_secret.as_str());
    let rotated = cli.table(&["webhooks", "rotate-secret", &id, "--grace-seconds", "60"]).await;
    let third_secret = detail(&rotated, "secret");
    assert!(third_secret.starts_with("whsec_") && third_secret != second_secret, "{rotated}");
    assert!(detail(&rotated, "previous secret").starts_with(&format!("{second_secret} (signs until ")), "{rotated}");

    // test: a `webhook.test` event reaches the receiver, signed with the new secret.
    let sent = cli.table(&["webhooks", "test", &id]).await;
    assert!(sent.starts_with("accepted test event evt_") && sent.trim_end().ends_with(": 1 delivery"), "{sent}");
    let request = receiver.next().await;
    assert_eq!(request.json()["type"], "webhook.test");
    assert_eq!(request.json()["data"]["webhook_id"], id.as_str());
    standardwebhooks::Webhook::new(&third_secret).unwrap().verify(&request.body, &request.headers).unwrap();
    let sent = cli.json(&["webhooks", "test", &id]).await;
    assert_eq!(sent["deliveries"], 1);
    assert_eq!(receiver.next().await.header("webhook-id"), sent["id"].as_str());

    // delete.
    assert_eq!(cli.table(&["webhooks", "delete", &other]).await.trim(), format!("deleted webhook {other}"));
    assert_eq!(ids(&cli.json(&["webhooks", "list"]).await), [id.as_str()]);
    assert_eq!(cli.json(&["webhooks", "delete", &id]).await, serde_json::json!({"id": id, "deleted": true}));
    assert!(cli.table(&["webhooks", "list"]).await.starts_with("no webhooks yet"));

    // Failures print the server's code and message and exit non-zero.
    let error = cli.error(&["webhooks", "show", "wh_01NOSUCHWEBHOOK0000000000"]).await;
    assert!(error.contains("error: not_found: webhook not found"), "{error}");
    let error = cli.error(&["webhooks", "update", &id, "--timeout-ms", "5"]).await;
    assert!(error.contains("error: not_found: webhook not found"), "{error}");
    let error = cli.error(&["webhooks", "create", "--url", "ftp://example.com/x"]).await;
    assert!(error.contains("error: invalid_field: url: scheme must be http or https"), "{error}");
    let error = cli.error(&["webhooks", "create", "--url", &receiver.url, "--header", "no-equals-sign"]).await;
    assert!(error.contains("is not NAME=VALUE"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_be_reached_is_named() {
    // Port 1 on loopback: nothing listens there.
    let dir = tempfile::tempdir().unwrap();
    let output = run_herald_in(
        dir.path(),
        &["deliveries", "list"],
        &[("HERALD_URL", "http://127.0.0.1:1"), ("HERALD_TOKEN", "hrld_whatever")],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: cannot reach herald at http://127.0.0.1:1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_log_and_stats_read_as_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let (child, _base) = spawn_herald(&db, &["--time-scale", "0.001"]).await;
    let cli = Cli::of(&db);
    let mut good = Receiver::start().await;
    let mut bad = Receiver::start_with(vec![Reply::status(500).with_body("down"), Reply::status(500)]).await;
    let good_id = cli.json(&["webhooks", "create", "--url", &good.url, "--event-type", "order.paid"]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad_id = cli
        .json(&[
            "webhooks",
            "create",
            "--url",
            &bad.url,
            "--event-type",
            "order.failed",
            "--body",
            r#"{"retry": {"schedule": [1]}}"#,
        ])
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 0..3 {
        let sent = cli.table(&["send", "--type", "order.paid", "--payload", &format!(r#"{{"n":{n}}}"#)]).await;
        assert!(sent.starts_with("accepted event evt_") && sent.trim_end().ends_with(": 1 delivery"), "{sent}");
    }
    let sent = cli.json(&["send", "--type", "order.failed", "--payload", r#"{"n":3}"#]).await;
    assert_eq!(sent["deliveries"], 1);
    for _ in 0..3 {
        good.next().await;
    }
    bad.next().await;
    bad.next().await;
    // A clean stop records every attempt made; the restart reads them.
    stop_gracefully(child).await;
    let (_child, _base) = spawn_herald(&db, &[]).await;

    // list: a table of four deliveries, newest first.
    let all = cli.json(&["deliveries", "list"]).await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 4, "{all}");
    assert!(all["next_cursor"].is_null());
    let failed_id = all_ids[0].clone();
    assert_eq!(all["data"][0]["status"], "failed");
    assert_eq!(all["data"][0]["webhook_id"], bad_id.as_str());
    assert_eq!(all["data"][0]["n_attempts"], 2);
    assert!(
        all["data"].as_array().unwrap()[1..]
            .iter()
            .all(|d| d["status"] == "success" && d["webhook_id"] == good_id.as_str())
    );
    let table = cli.table(&["deliveries", "list"]).await;
    assert!(table.starts_with("ID ") && table.contains("STATUS") && !table.contains('{'), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");
    let failed_row = row(&table, &failed_id);
    for cell in ["failed", "order.failed", &bad_id, " 2 ", "500"] {
        assert!(failed_row.contains(cell), "{cell} not in {failed_row}");
    }
    for id in &all_ids[1..] {
        assert!(row(&table, id).contains("success"), "{table}");
    }

    // The API's filters.
    let failed = cli.json(&["deliveries", "list", "--status", "failed"]).await;
    assert_eq!(ids(&failed), [failed_id.as_str()]);
    assert_eq!(ids(&cli.json(&["deliveries", "list", "--type", "order.paid"]).await), all_ids[1..]);
    assert_eq!(ids(&cli.json(&["deliveries", "list", "--webhook", &good_id]).await), all_ids[1..]);
    assert_eq!(ids(&cli.json(&["deliveries", "list", "--since", "1h"]).await), all_ids);
    assert_eq!(ids(&cli.json(&["deliveries", "list", "--since", "30m", "--status", "success"]).await), all_ids[1..]);
    assert!(ids(&cli.json(&["deliveries", "list", "--until", "1h"]).await).is_empty());
    assert_eq!(cli.table(&["deliveries", "list", "--until", "2h"]).await.trim(), "no deliveries");
    let error = cli.error(&["deliveries", "list", "--since", "yesterday"]).await;
    assert!(error.contains("--since") && error.contains("`yesterday` is neither"), "{error}");
    let error = cli.error(&["deliveries", "list", "--status", "lost"]).await;
    assert!(error.contains("error: invalid_field: status: `lost` is not one of"), "{error}");

    // Paging: one page and its cursor, then every page with --all.
    let first_page = cli.json(&["deliveries", "list", "--limit", "3"]).await;
    assert_eq!(ids(&first_page), all_ids[..3]);
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let rest = cli.json(&["deliveries", "list", "--limit", "3", "--cursor", cursor]).await;
    assert_eq!(ids(&rest), all_ids[3..]);
    let every = cli.json(&["deliveries", "list", "--limit", "1", "--all"]).await;
    assert_eq!(ids(&every), all_ids);
    assert!(every["next_cursor"].is_null());
    let every = cli.table(&["deliveries", "list", "--limit", "2", "--all"]).await;
    assert_eq!(every.lines().count(), 5, "{every}");
    let paid_pages = cli.json(&["deliveries", "list", "--limit", "2", "--all", "--type", "order.paid"]).await;
    assert_eq!(ids(&paid_pages), all_ids[1..]);

    // show: the delivery and every attempt.
    let shown = cli.table(&["deliveries", "show", &failed_id]).await;
    assert_eq!(detail(&shown, "status"), "failed");
    assert_eq!(detail(&shown, "attempts"), "2");
    assert_eq!(detail(&shown, "webhook"), format!("{bad_id} ({})", bad.url));
    assert_eq!(detail(&shown, "payload"), r#"{"n":3}"#);
    let attempts: Vec<&str> = shown.lines().skip_while(|l| !l.starts_with("#  ")).skip(1).collect();
    assert_eq!(attempts.len(), 2, "{shown}");
    assert!(attempts[0].starts_with("1 ") && attempts[0].contains("500") && attempts[0].contains("down"), "{shown}");
    assert!(attempts[1].starts_with("2 ") && attempts[1].contains("status"), "{shown}");
    let shown = cli.json(&["deliveries", "show", &failed_id]).await;
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(shown["attempts"][0]["status_code"], 500);
    assert_eq!(shown["attempts"][0]["response_body"], "down");

    // stats, overall and per webhook, before any retry changes them.
    let stats = cli.json(&["stats"]).await;
    assert_eq!(stats["overall"]["deliveries"], 4);
    assert_eq!(stats["overall"]["by_status"]["success"], 3);
    assert_eq!(stats["overall"]["by_status"]["failed"], 1);
    assert_eq!(stats["overall"]["success_rate"], 0.75);
    assert_eq!(stats["overall"]["attempts"], 5);
    let per_webhook = stats["webhooks"].as_array().unwrap();
    let good_stats = per_webhook.iter().find(|s| s["webhook_id"] == good_id.as_str()).unwrap();
    assert_eq!(good_stats["by_status"]["success"], 3);
    assert_eq!(good_stats["success_rate"], 1.0);
    let table = cli.table(&["stats", "--since", "1h"]).await;
    assert!(table.starts_with("from ") && !table.contains('{'), "{table}");
    let good_row = row(&table, &good_id);
    assert!(good_row.contains("100.0 %") && good_row.contains(&good.url), "{table}");
    let bad_row = row(&table, &bad_id);
    assert!(bad_row.contains("0.0 %") && bad_row.contains(&bad.url), "{table}");
    let all_row = table.lines().find(|l| l.starts_with("all ")).expect("an `all` row");
    let cells: Vec<&str> = all_row.split_whitespace().collect();
    assert_eq!(cells[..6], ["all", "4", "0", "0", "3", "1"], "{table}");
    assert!(all_row.contains("75.0 %"), "{table}");
    let narrowed = cli.json(&["stats", "--webhook", &bad_id, "--since", "2h"]).await;
    assert_eq!(narrowed["overall"]["deliveries"], 1);
    assert_eq!(narrowed["overall"]["by_status"]["failed"], 1);
    // A window that ends two hours ago holds none of them.
    let empty = cli.table(&["stats", "--until", "2h"]).await;
    let all_row = empty.lines().find(|l| l.starts_with("all ")).expect("an `all` row");
    assert_eq!(all_row.split_whitespace().take(2).collect::<Vec<_>>(), ["all", "0"], "{empty}");

    // retry: one more attempt, which the receiver (now answering 200) takes.
    let retried = cli.table(&["deliveries", "retry", &failed_id]).await;
    assert!(retried.starts_with(&format!("retrying delivery {failed_id}: now ")), "{retried}");
    assert!(retried.trim_end().ends_with("attempt 3 next"), "{retried}");
    assert_eq!(bad.next().await.json()["data"]["n"], 3);
    let success_id = &all_ids[1];
    let retried = cli.json(&["deliveries", "retry", success_id]).await;
    assert_eq!(retried["id"], success_id.as_str());
    assert_eq!(retried["webhook_id"], good_id.as_str());
    good.next().await;
    let error = cli.error(&["deliveries", "retry", "dlv_01NOSUCHDELIVERY000000000"]).await;
    assert!(error.contains("error: not_found: delivery not found"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dotenv_file_configures_serve_and_the_environment_wins_over_it() {
    // WEBHOOK_URL only in the .env of the working directory.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut from_file = Receiver::start().await;
    std::fs::write(dir.path().join(".env"), format!("# seed 004\nWEBHOOK_URL={}\n", from_file.url)).unwrap();
    let (child, _base) = spawn_herald(&db, &[]).await;
    let cli = Cli::of(&db);
    cli.table(&["send", "--type", "message_create", "--payload", r#"{"body":"Hello!"}"#]).await;
    let request = from_file.next().await;
    assert_eq!(request.json()["event"], "message_create");
    assert_eq!(request.json()["data"]["body"], "Hello!");
    stop_gracefully(child).await;

    // The same file, and the variable in the environment: the environment wins.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut from_env = Receiver::start().await;
    std::fs::write(dir.path().join(".env"), format!("WEBHOOK_URL={}\n", from_file.url)).unwrap();
    let (_child, base) = spawn_herald_with_env(&db, &[], &[("WEBHOOK_URL", &from_env.url)]).await;
    let cli = Cli::of(&db);
    let webhooks = cli.json(&["webhooks", "list"]).await;
    assert_eq!(webhooks["data"].as_array().unwrap().len(), 1, "{webhooks}");
    assert_eq!(webhooks["data"][0]["url"], from_env.url.as_str());
    assert_eq!(webhooks["data"][0]["profile"], "wwebjs");
    cli.table(&["send", "--type", "message_create", "--payload", r#"{"body":"Hi"}"#]).await;
    assert_eq!(from_env.next().await.json()["data"]["body"], "Hi");

    // The CLI reads .env too: HERALD_URL and HERALD_TOKEN from the file.
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("herald.credentials.json")).unwrap()).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(
        elsewhere.path().join(".env"),
        format!("HERALD_URL={base}\nHERALD_TOKEN=\"{}\"\n", credentials["token"].as_str().unwrap()),
    )
    .unwrap();
    let output = run_herald_in(elsewhere.path(), &["webhooks", "list", "--json"], &[]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed["data"][0]["url"], from_env.url.as_str());
}

#[tokio::test]
async fn a_malformed_dotenv_file_is_an_error_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "# settings\nWEBHOOK_RETRY_ATTEMPTS=3\nWEBHOOK URL=http://x\n").unwrap();
    let output = run_herald_in(dir.path(), &["webhooks", "list"], &[]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: .env: cannot parse line 3 (`WEBHOOK URL=http://x`)"), "{stderr}");
    assert!(output.stdout.is_empty());
}

/// `HERALD_*` variables configure `herald serve` with no flag: the listen
/// address (a second loopback address, so the default's 127.0.0.1:8080
/// cannot pass for it), the body cap, the private-target switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_variables_configure_serve_without_flags() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut command = crate::support::clean_command(env!("CARGO_BIN_EXE_herald"));
    command
        .current_dir(dir.path())
        .arg("serve")
        .env("HERALD_LISTEN", "127.0.0.2:0")
        .env("HERALD_DATABASE", format!("sqlite://{}", db.display()))
        .env("HERALD_MAX_BODY_BYTES", "1000")
        .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
        .env("HERALD_ADMIN_TOKEN", crate::support::OPERATOR_TOKEN)
        .env("HERALD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let (child, base) = crate::support::spawn_herald_command(command).await;
    assert!(base.starts_with("http://127.0.0.2:"), "{base}");
    assert!(db.exists(), "HERALD_DATABASE was not used");
    let token = crate::support::child_token(dir.path());
    let receiver = Receiver::start().await;
    crate::support::child_post(&base, &token, "/v1/webhooks", serde_json::json!({"url": receiver.url})).await;

    // A body of exactly 1000 bytes is taken; one byte more is refused.
    let event = |size: usize| {
        let padding = "x".repeat(size - r#"{"type":"t","payload":""}"#.len());
        format!(r#"{{"type":"t","payload":"{padding}"}}"#)
    };
    let http = crate::support::http_client();
    for (size, status) in [(1000, 202), (1001, 413)] {
        let body = event(size);
        assert_eq!(body.len(), size);
        let response = http.post(format!("{base}/v1/events")).bearer_auth(&token).body(body).send().await.unwrap();
        assert_eq!(response.status(), status, "{size} bytes");
        let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        if status == 413 {
            assert_eq!(answer["code"], "payload_too_large", "{answer}");
        }
    }
    stop_gracefully(child).await;
}

/// Without `--admin-token` the first start generates an operator token,
/// writes it to the credentials file, and it keeps working after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_operator_token_is_in_the_credentials_file_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let serve = || {
        let mut command = crate::support::clean_command(env!("CARGO_BIN_EXE_herald"));
        command
            .current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--database"])
            .arg(format!("sqlite://{}", db.display()))
            .env("HERALD_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    };
    let create_account = |base: String, token: String| async move {
        let response = crate::support::http_client()
            .post(format!("{base}/v1/accounts"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(r#"{"name":"ops"}"#)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    let (child, base) = crate::support::spawn_herald_command(serve()).await;
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("herald.credentials.json")).unwrap()).unwrap();
    let operator = credentials["operator_token"].as_str().expect("a generated operator token").to_owned();
    assert_ne!(operator, credentials["token"].as_str().unwrap(), "not the account's token");
    assert_eq!(create_account(base.clone(), operator.clone()).await, 201);
    let account_token = crate::support::child_token(dir.path());
    assert_eq!(create_account(base, account_token).await, 403, "an account token cannot create accounts");
    stop_gracefully(child).await;

    let (_child, base) = crate::support::spawn_herald_command(serve()).await;
    assert_eq!(create_account(base, operator).await, 201, "the token still works after a restart");
}

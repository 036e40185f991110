//! schemathesis (issue #12, item 1) against a live Herald, from the
//! document it serves: no answer is a 5xx and every answer matches its
//! schema. `.ci/run` installs schemathesis; where it is missing the test
//! says so and passes. The engine is never run, so nothing schemathesis
//! makes up (webhook URLs included) is ever sent anywhere: its requests go
//! to Herald on loopback only.

use std::time::Duration;

use crate::support::{TestApp, clean_command};

/// The schemathesis CLI (`st`), run as a module of the `python3` that
/// `.ci/run` installs it for: no need for its script on `PATH`.
fn schemathesis() -> tokio::process::Command {
    let mut command = clean_command("python3");
    command.args(["-m", "schemathesis.cli"]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_its_schema() {
    let installed = schemathesis().arg("--version").output().await;
    if !matches!(installed, Ok(output) if output.status.success()) {
        println!("skipped: schemathesis is not installed (`pip install schemathesis`; .ci/run does)");
        return;
    }
    let app = TestApp::spawn_driven().await;
    // Something to read back: a webhook, an event and its delivery.
    let webhook = app.create_webhook(serde_json::json!({"url": "http://127.0.0.1:9/hook"})).await;
    app.send_event(serde_json::json!({"type": "t", "payload": {"a": 1}, "webhook_id": webhook["id"]})).await;
    let report = tempfile::tempdir().unwrap();
    let mut command = schemathesis();
    command
        .arg("run")
        .arg(format!("{}/openapi.json", app.base))
        .args(["--url", &app.base])
        .args(["--header", &format!("Authorization: Bearer {}", app.token)])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        // Not the stateful phase: it could pass a bot token made by
        // `/v1/viber/auth-tokens` on to `/pa/set_webhook`, whose
        // verification callback would go to whatever URL it made up.
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "20", "--workers", "1"])
        .args(["--generation-deterministic", "--no-color", "--warnings", "off"])
        .arg("--report-dir")
        .arg(report.path())
        .current_dir(report.path());
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("schemathesis finished within ten minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "schemathesis found failures:\n{stdout}\n{stderr}");
    // The summary, for the log: how many operations and cases it tried.
    println!("{}", stdout.lines().skip_while(|l| !l.contains("SUMMARY")).collect::<Vec<_>>().join("\n"));
    // Every operation it found was tested; and it found them all but
    // (it seems) `/openapi.json`, the document's own address, which it
    // leaves out unless asked for it by name.
    let document = serde_json::to_value(herald::api::document()).unwrap();
    let n_operations: usize =
        document["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
    let selected = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Operations:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no operation count:\n{stdout}"));
    assert!(selected >= n_operations - 1, "schemathesis found {selected} of {n_operations} operations:\n{stdout}");
    assert!(stdout.contains(&format!("Tested: {selected}\n")), "not all {selected} operations were tested:\n{stdout}");
}

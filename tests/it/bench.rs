//! `herald bench` runs end to end (its figures are not asserted: speed is
//! measured by the command, never by a test).

use serde_json::Value;

use crate::support::run_herald;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let table = run_herald(&[
        "bench",
        "--smoke",
        "--only",
        "baseline,ingest-single,end-to-end,fan-out,failing-receiver",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    assert!(table.contains("ingest-single"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let names: Vec<&str> =
        report["scenarios"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["baseline", "ingest-single", "end-to-end", "fan-out", "failing-receiver"]);
    let ingest = &report["scenarios"][1];
    assert!(ingest["metrics"][0]["value"].as_f64().unwrap() > 0.0);
    assert!(ingest["herald_peak_rss_mb"].as_f64().unwrap() > 0.0, "Herald's memory was read from /proc");
    // End-to-end's best round is set against the baseline's.
    let end_to_end = report["scenarios"][2]["metrics"].as_array().unwrap();
    let ratio = end_to_end.iter().find(|m| m["name"] == "ratio to baseline").expect("a ratio");
    assert!(ratio["value"].as_f64().unwrap() > 0.0, "{ratio}");
}

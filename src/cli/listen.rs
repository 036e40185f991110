//! `herald listen`: a local receiver that prints each webhook it gets and
//! says whether its signature verifies, the job the seeds give to ngrok and
//! a hand-written Express server.

use std::io::Write;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use clap::Args;

use crate::signing;

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port to listen on, on 127.0.0.1.
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// The webhook's `whsec_…` secret, to verify signatures.
    #[arg(long, env = "HERALD_LISTEN_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The status code to answer with (try 500 to watch the retries).
    #[arg(long, default_value_t = 200)]
    pub status: u16,
}

/// What the receiver says about a request's signature.
pub fn signature_verdict(secret: Option<&str>, headers: &HeaderMap, body: &[u8]) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signature)) =
        (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"))
    else {
        return "unsigned (no webhook-signature header)".to_owned();
    };
    let Some(secret) = secret else {
        return "signed (pass --secret to verify)".to_owned();
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return "INVALID: webhook-timestamp is not a number".to_owned();
    };
    if signing::verify_standard(secret, id, timestamp, body, signature) {
        "valid ✓".to_owned()
    } else {
        "INVALID ✗ (wrong secret, or the body was changed)".to_owned()
    }
}

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(args.status)?;
    let secret = args.secret.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let secret = secret.clone();
        async move {
            print_request(&method, &uri, &headers, &body, secret.as_deref());
            status
        }
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}/ — point a webhook here; Ctrl-C to stop");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn print_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], secret: Option<&str>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let pretty = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "── {method} {uri}  webhook-id: {}", header("webhook-id"));
    let _ = writeln!(out, "   signature: {}", signature_verdict(secret, headers, body));
    for line in pretty.lines() {
        let _ = writeln!(out, "   {line}");
    }
    let _ = out.flush();
}

//! `herald listen`: a local receiver that prints each webhook it gets and
//! says whether its signature verifies (with a secret, or an ed25519
//! webhook's `whpk_` public key), the job the seeds give to ngrok and a
//! hand-written Express server.

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
    /// The webhook's secret (`whsec_…`, or the seed profiles' plain
    /// secret, webhook id or Viber auth token), to verify signatures.
    #[arg(long, env = "HERALD_LISTEN_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// An ed25519 webhook's public key (`whpk_…`, its view's `public_key`),
    /// to verify its Standard Webhooks `v1a` signatures.
    #[arg(long, env = "HERALD_LISTEN_PUBLIC_KEY", value_parser = parse_public_key)]
    pub public_key: Option<String>,
    /// The status code to answer with (try 500 to watch the retries).
    #[arg(long, default_value_t = 200)]
    pub status: u16,
}

fn parse_public_key(key: &str) -> Result<String, String> {
    signing::validate_public_key(key).map(|()| key.to_owned())
}

/// What the receiver verifies with: a secret (`whsec_`, a seed profile's
/// string, or a `whsk_` key, whose public half it uses) and a `whpk_` key.
#[derive(Debug, Clone, Default)]
pub struct VerifyKeys {
    pub secret: Option<String>,
    pub public_key: Option<String>,
}

/// The hex HMAC-SHA256 headers of the seed profiles (`business` and
/// `compose`, `wwebjs`, `viber-bot`), checked against the raw body.
const HEX_SIGNATURE_HEADERS: &[&str] = &["signature", "x-webhook-signature", "x-viber-content-signature"];

/// What the receiver says about a request's signature, in whichever
/// scheme the request carries.
pub fn signature_verdict(keys: &VerifyKeys, headers: &HeaderMap, body: &[u8]) -> String {
    let secret = keys.secret.as_deref();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verdict = |valid: bool, scheme: &str| {
        if valid {
            format!("valid ✓ ({scheme})")
        } else {
            format!("INVALID ✗ ({scheme}: wrong secret, or the body was changed)")
        }
    };
    if let (Some(id), Some(timestamp), Some(signature)) =
        (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"))
    {
        let Ok(timestamp) = timestamp.parse::<i64>() else {
            return "INVALID: webhook-timestamp is not a number".to_owned();
        };
        // A `whsk_` secret verifies as its public key would.
        let public_key = keys.public_key.clone().or_else(|| secret.and_then(signing::public_key));
        return match (public_key, secret) {
            (Some(key), _) => {
                verdict(signing::verify_asymmetric(&key, id, timestamp, body, signature), "Standard Webhooks v1a")
            }
            (None, Some(secret)) => {
                verdict(signing::verify_standard(secret, id, timestamp, body, signature), "Standard Webhooks")
            }
            (None, None) => "signed (pass --secret, or --public-key for v1a, to verify)".to_owned(),
        };
    }
    if let Some((name, signature)) = HEX_SIGNATURE_HEADERS.iter().find_map(|n| header(n).map(|s| (*n, s))) {
        let Some(secret) = secret else { return format!("signed with {name} (pass --secret to verify)") };
        let expected = signing::hex_hmac(secret.as_bytes(), body);
        return verdict(expected.eq_ignore_ascii_case(signature.trim()), name);
    }
    "unsigned".to_owned()
}

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(args.status)?;
    let keys = VerifyKeys { secret: args.secret.clone(), public_key: args.public_key.clone() };
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let keys = keys.clone();
        async move {
            print_request(&method, &uri, &headers, &body, &keys);
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

fn print_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], keys: &VerifyKeys) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let pretty = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "── {method} {uri}  webhook-id: {}", header("webhook-id"));
    let _ = writeln!(out, "   signature: {}", signature_verdict(keys, headers, body));
    for line in pretty.lines() {
        let _ = writeln!(out, "   {line}");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(secret: &str) -> VerifyKeys {
        VerifyKeys { secret: Some(secret.to_owned()), public_key: None }
    }

    #[test]
    fn hex_signatures_of_the_seed_profiles_are_checked() {
        let body = br#"{"event":"ready","data":{},"timestamp":"2024-10-01T12:00:00.000Z"}"#;
        let mut headers = HeaderMap::new();
        headers.insert("x-webhook-signature", signing::hex_hmac(b"s3cret", body).parse().unwrap());
        assert!(signature_verdict(&secret("s3cret"), &headers, body).starts_with("valid"));
        assert!(signature_verdict(&secret("other"), &headers, body).starts_with("INVALID"));
        assert!(signature_verdict(&VerifyKeys::default(), &headers, body).contains("pass --secret"));
        assert_eq!(signature_verdict(&secret("s3cret"), &HeaderMap::new(), body), "unsigned");
    }

    #[test]
    fn standard_webhooks_signatures_are_checked() {
        let key = signing::generate_secret();
        let body = b"{}";
        let headers = standard_headers(&key, body);
        assert!(signature_verdict(&secret(&key), &headers, body).starts_with("valid"));
        assert!(signature_verdict(&secret(&signing::generate_secret()), &headers, body).starts_with("INVALID"));
    }

    fn standard_headers(secret: &str, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let signature = signing::standard_signature_header(&[secret], "msg_1", 1_700_000_000, body);
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", "1700000000".parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn v1a_signatures_are_checked_with_the_public_key() {
        let key = signing::generate_ed25519_secret();
        let public = VerifyKeys { secret: None, public_key: signing::public_key(&key) };
        let body = b"{}";
        let headers = standard_headers(&key, body);
        assert_eq!(signature_verdict(&public, &headers, body), "valid ✓ (Standard Webhooks v1a)");
        assert!(signature_verdict(&public, &headers, b"{ }").starts_with("INVALID ✗ (Standard Webhooks v1a"));
        let stranger =
            VerifyKeys { secret: None, public_key: signing::public_key(&signing::generate_ed25519_secret()) };
        assert!(signature_verdict(&stranger, &headers, body).starts_with("INVALID"));
        // The `whsk_` key itself verifies too, through its public half.
        assert!(signature_verdict(&secret(&key), &headers, body).starts_with("valid"));
        assert!(signature_verdict(&VerifyKeys::default(), &headers, body).contains("--public-key"));
    }
}

//! Signatures, pure: Standard Webhooks (`v1,<base64 HMAC-SHA256 of
//! id.timestamp.body>` with `whsec_` secrets) and the plain hex HMAC-SHA256
//! of the body that the seed systems use. Nothing here reads a clock or the
//! network.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh Standard Webhooks secret: `whsec_` and 24 random bytes in base64.
pub fn generate_secret() -> String {
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", BASE64.encode(key))
}

/// The HMAC key a secret stands for: the base64 after `whsec_`.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    let key = BASE64.decode(encoded).ok()?;
    (!key.is_empty()).then_some(key)
}

/// Whether a caller-supplied secret is usable: `whsec_` + base64 of 24–64 bytes.
pub fn validate_secret(secret: &str) -> Result<(), String> {
    match secret_key(secret) {
        Some(key) if (24..=64).contains(&key.len()) => Ok(()),
        Some(_) => Err("secret: the key must decode to between 24 and 64 bytes".to_owned()),
        None => Err("secret: must be `whsec_` followed by base64".to_owned()),
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// One Standard Webhooks signature, `v1,<base64>`.
pub fn standard_signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signature = String::with_capacity(47);
    push_standard_signature(&mut signature, key, msg_id, timestamp, body);
    signature
}

fn push_standard_signature(out: &mut String, key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) {
    let mut ts = itoa::Buffer::new();
    let digest = hmac_sha256(key, &[msg_id.as_bytes(), b".", ts.format(timestamp).as_bytes(), b".", body]);
    out.push_str("v1,");
    BASE64.encode_string(digest, out);
}

/// The `webhook-signature` header value: one signature per secret,
/// space-separated (several during a rotation).
pub fn standard_signature_header(secrets: &[&str], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut header = String::with_capacity(47 * secrets.len());
    for key in secrets.iter().filter_map(|s| secret_key(s)) {
        if !header.is_empty() {
            header.push(' ');
        }
        push_standard_signature(&mut header, &key, msg_id, timestamp, body);
    }
    header
}

/// Checks a `webhook-signature` header against a secret; true when any of
/// its `v1` signatures matches. Used by `herald listen`.
pub fn verify_standard(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(key) = secret_key(secret) else {
        return false;
    };
    let expected = standard_signature(&key, msg_id, timestamp, body);
    header.split(' ').any(|candidate| constant_time_eq(candidate.as_bytes(), expected.as_bytes()))
}

/// Lowercase hex HMAC-SHA256 of the body: the seeds' `Signature`,
/// `X-Viber-Content-Signature` and `X-Webhook-Signature` headers.
pub fn hex_hmac(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, &[body]))
}

/// SHA-256 of an API token, hex: how tokens are stored. Tokens carry 256
/// random bits, so a fast hash is enough; no salt or KDF is needed.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh API token.
pub fn generate_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("hrld_{}", hex::encode(raw))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference vector published with the Standard Webhooks spec and
    // used by every official library's tests.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let key = secret_key(SECRET).unwrap();
        assert_eq!(standard_signature(&key, MSG_ID, TIMESTAMP, BODY.as_bytes()), EXPECTED);
        assert!(verify_standard(SECRET, MSG_ID, TIMESTAMP, BODY.as_bytes(), EXPECTED));
        assert!(!verify_standard(SECRET, MSG_ID, TIMESTAMP + 1, BODY.as_bytes(), EXPECTED));
    }

    #[test]
    fn several_secrets_give_space_separated_signatures_each_verifying() {
        let new = generate_secret();
        let header = standard_signature_header(&[&new, SECRET], MSG_ID, TIMESTAMP, BODY.as_bytes());
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.ends_with(EXPECTED));
        assert!(verify_standard(&new, MSG_ID, TIMESTAMP, BODY.as_bytes(), &header));
        assert!(verify_standard(SECRET, MSG_ID, TIMESTAMP, BODY.as_bytes(), &header));
    }

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let a = generate_secret();
        assert!(validate_secret(&a).is_ok());
        assert_ne!(a, generate_secret());
        assert_eq!(
            validate_secret("whsec_AAAA").unwrap_err(),
            "secret: the key must decode to between 24 and 64 bytes"
        );
        assert_eq!(validate_secret("plain").unwrap_err(), "secret: must be `whsec_` followed by base64");
    }

    #[test]
    fn hex_hmac_is_lowercase_hex_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex_hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

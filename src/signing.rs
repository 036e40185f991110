//! Signatures, pure: Standard Webhooks (`v1,<base64 HMAC-SHA256 of
//! id.timestamp.body>` with `whsec_` secrets, and `v1a,<base64 ed25519
//! signature>` of the same content with `whsk_` keys, verified with `whpk_`
//! public keys) and the plain hex HMAC-SHA256 of the body that the seed
//! systems use. Nothing here reads a clock or the network.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";
/// An ed25519 signing key (Standard Webhooks' asymmetric scheme, `v1a`).
pub const ED25519_SECRET_PREFIX: &str = "whsk_";
/// The public key receivers verify `v1a` signatures with.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

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

/// Whether a caller-supplied Standard Webhooks secret is usable: `whsec_` +
/// base64 of 24–64 bytes, or an ed25519 `whsk_` key.
pub fn validate_secret(secret: &str) -> Result<(), String> {
    if secret.starts_with(ED25519_SECRET_PREFIX) {
        return validate_ed25519_secret(secret);
    }
    match secret_key(secret) {
        Some(key) if (24..=64).contains(&key.len()) => Ok(()),
        Some(_) => Err("secret: the key must decode to between 24 and 64 bytes".to_owned()),
        None => Err("secret: must be `whsec_` (or `whsk_` for ed25519) followed by base64".to_owned()),
    }
}

/// Whether a secret is an ed25519 `whsk_` key (the `v1a` scheme).
pub fn is_ed25519_secret(secret: &str) -> bool {
    secret.starts_with(ED25519_SECRET_PREFIX)
}

/// A fresh ed25519 key: `whsk_` and the base64 of its 64-byte keypair
/// (seed, then public key), the form Svix's server, the spec's reference
/// implementation, shows and accepts.
pub fn generate_ed25519_secret() -> String {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    format!("{ED25519_SECRET_PREFIX}{}", BASE64.encode(SigningKey::from_bytes(&seed).to_keypair_bytes()))
}

/// The signing key a `whsk_` secret stands for: the base64 of the 64-byte
/// keypair (whose public half must match its seed), or of the 32-byte seed
/// alone (RFC 8032's private key).
fn ed25519_key(secret: &str) -> Result<SigningKey, String> {
    let encoded = secret.strip_prefix(ED25519_SECRET_PREFIX).ok_or("secret: must start with `whsk_`")?;
    let bytes = BASE64.decode(encoded).map_err(|_| "secret: must be `whsk_` followed by base64")?;
    if let Ok(keypair) = <&[u8; 64]>::try_from(bytes.as_slice()) {
        SigningKey::from_keypair_bytes(keypair)
            .map_err(|_| "secret: the `whsk_` key's public half does not match its private half".to_owned())
    } else if let Ok(seed) = <&[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(SigningKey::from_bytes(seed))
    } else {
        Err("secret: a `whsk_` key must decode to 64 bytes (ed25519 seed and public key) or a 32-byte seed".to_owned())
    }
}

/// Whether a caller-supplied `whsk_` secret is a usable ed25519 key.
pub fn validate_ed25519_secret(secret: &str) -> Result<(), String> {
    ed25519_key(secret).map(|_| ())
}

/// The `whpk_` public key of a `whsk_` secret; `None` for any other secret.
pub fn public_key(secret: &str) -> Option<String> {
    let key = ed25519_key(secret).ok()?;
    Some(format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(key.verifying_key().as_bytes())))
}

/// The key a `whpk_` public key stands for.
fn verifying_key(public_key: &str) -> Result<VerifyingKey, String> {
    let encoded = public_key.strip_prefix(PUBLIC_KEY_PREFIX).ok_or("public key: must start with `whpk_`")?;
    let bytes = BASE64.decode(encoded).map_err(|_| "public key: must be `whpk_` followed by base64")?;
    let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "public key: must decode to 32 bytes")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "public key: not a valid ed25519 point".to_owned())
}

/// Whether a `whpk_` public key parses (for `herald listen --public-key`).
pub fn validate_public_key(public_key: &str) -> Result<(), String> {
    verifying_key(public_key).map(|_| ())
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

/// The content both schemes sign: `{id}.{timestamp}.{body}`.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut ts = itoa::Buffer::new();
    let ts = ts.format(timestamp).as_bytes();
    let mut content = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    for part in [msg_id.as_bytes(), b".", ts, b".", body] {
        content.extend_from_slice(part);
    }
    content
}

fn push_ed25519_signature(out: &mut String, key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) {
    let signature = key.sign(&signed_content(msg_id, timestamp, body));
    out.push_str("v1a,");
    BASE64.encode_string(signature.to_bytes(), out);
}

/// A secret as the scheme it signs with.
enum SigningSecret {
    Hmac(Vec<u8>),
    Ed25519(SigningKey),
}

impl SigningSecret {
    fn parse(secret: &str) -> Option<SigningSecret> {
        if is_ed25519_secret(secret) {
            ed25519_key(secret).ok().map(SigningSecret::Ed25519)
        } else {
            secret_key(secret).map(SigningSecret::Hmac)
        }
    }
}

/// The `webhook-signature` header value: one signature per secret,
/// space-separated (several during a rotation), each in its secret's
/// scheme: `v1` for a `whsec_` secret, `v1a` for a `whsk_` key.
pub fn standard_signature_header(secrets: &[&str], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut header = String::with_capacity(47 * secrets.len());
    for secret in secrets.iter().filter_map(|s| SigningSecret::parse(s)) {
        if !header.is_empty() {
            header.push(' ');
        }
        match secret {
            SigningSecret::Hmac(key) => push_standard_signature(&mut header, &key, msg_id, timestamp, body),
            SigningSecret::Ed25519(key) => push_ed25519_signature(&mut header, &key, msg_id, timestamp, body),
        }
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

/// Checks a `webhook-signature` header against a `whpk_` public key; true
/// when any of its `v1a` signatures verifies. Used by `herald listen`.
pub fn verify_asymmetric(public_key: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = verifying_key(public_key) else {
        return false;
    };
    let content = signed_content(msg_id, timestamp, body);
    header.split(' ').filter_map(|candidate| candidate.strip_prefix("v1a,")).any(|encoded| {
        let Some(bytes) = BASE64.decode(encoded).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
            return false;
        };
        // Strict: refuses the malleable and small-order forms plain `verify` lets through.
        key.verify_strict(&content, &Signature::from_bytes(&bytes)).is_ok()
    })
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
        assert_eq!(
            validate_secret("plain").unwrap_err(),
            "secret: must be `whsec_` (or `whsk_` for ed25519) followed by base64"
        );
    }

    // RFC 8032's first test key, as a `whsk_` keypair and its `whpk_`; the
    // expected `v1a` signature of the Standard Webhooks vector's content was
    // made with Python's `cryptography` package, not with this code.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const ED_SECRET: &str =
        "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==";
    const ED_PUBLIC: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const ED_EXPECTED: &str =
        "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";

    #[test]
    fn ed25519_matches_a_known_answer() {
        let seed: [u8; 32] = hex::decode(RFC8032_SEED).unwrap().try_into().unwrap();
        let keypair = [seed.as_slice(), &hex::decode(RFC8032_PUBLIC).unwrap()].concat();
        assert_eq!(ED_SECRET, format!("whsk_{}", BASE64.encode(&keypair)));
        assert_eq!(
            public_key(ED_SECRET).unwrap(),
            format!("whpk_{}", BASE64.encode(hex::decode(RFC8032_PUBLIC).unwrap()))
        );
        assert_eq!(public_key(ED_SECRET).unwrap(), ED_PUBLIC);

        let header = standard_signature_header(&[ED_SECRET], MSG_ID, TIMESTAMP, BODY.as_bytes());
        assert_eq!(header, ED_EXPECTED);
        // The 32-byte seed alone is the same key.
        let seed_only = format!("whsk_{}", BASE64.encode(seed));
        assert_eq!(standard_signature_header(&[&seed_only], MSG_ID, TIMESTAMP, BODY.as_bytes()), ED_EXPECTED);

        // dalek's own verification, from the RFC's public key bytes.
        let key = VerifyingKey::from_bytes(&hex::decode(RFC8032_PUBLIC).unwrap().try_into().unwrap()).unwrap();
        let signature: [u8; 64] = BASE64.decode(&ED_EXPECTED[4..]).unwrap().try_into().unwrap();
        let content = format!("{MSG_ID}.{TIMESTAMP}.{BODY}");
        assert!(key.verify_strict(content.as_bytes(), &Signature::from_bytes(&signature)).is_ok());

        assert!(verify_asymmetric(ED_PUBLIC, MSG_ID, TIMESTAMP, BODY.as_bytes(), ED_EXPECTED));
        assert!(!verify_asymmetric(ED_PUBLIC, MSG_ID, TIMESTAMP + 1, BODY.as_bytes(), ED_EXPECTED));
        assert!(!verify_asymmetric(ED_PUBLIC, MSG_ID, TIMESTAMP, b"{\"test\": 2432232315}", ED_EXPECTED));
        let other = public_key(&generate_ed25519_secret()).unwrap();
        assert!(!verify_asymmetric(&other, MSG_ID, TIMESTAMP, BODY.as_bytes(), ED_EXPECTED));
        // A `v1` signature is never taken for a `v1a` one.
        assert!(!verify_asymmetric(ED_PUBLIC, MSG_ID, TIMESTAMP, BODY.as_bytes(), EXPECTED));
    }

    #[test]
    fn ed25519_and_hmac_secrets_sign_side_by_side_during_a_rotation() {
        let (new, old) = (generate_ed25519_secret(), generate_ed25519_secret());
        let header = standard_signature_header(&[&new, &old, SECRET], MSG_ID, TIMESTAMP, BODY.as_bytes());
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[0].starts_with("v1a,") && parts[1].starts_with("v1a,") && parts[2] == EXPECTED);
        for secret in [&new, &old] {
            assert!(verify_asymmetric(&public_key(secret).unwrap(), MSG_ID, TIMESTAMP, BODY.as_bytes(), &header));
        }
        assert!(verify_standard(SECRET, MSG_ID, TIMESTAMP, BODY.as_bytes(), &header));
        assert_eq!(public_key(SECRET), None);
    }

    #[test]
    fn ed25519_secrets_are_validated() {
        let generated = generate_ed25519_secret();
        assert!(validate_secret(&generated).is_ok());
        assert_eq!(BASE64.decode(&generated[5..]).unwrap().len(), 64);
        assert_ne!(generated, generate_ed25519_secret());
        // The keypair of one seed with another key's public half.
        let mut mismatched = BASE64.decode(&ED_SECRET[5..]).unwrap();
        mismatched[40] ^= 1;
        assert_eq!(
            validate_secret(&format!("whsk_{}", BASE64.encode(&mismatched))).unwrap_err(),
            "secret: the `whsk_` key's public half does not match its private half"
        );
        assert_eq!(
            validate_secret("whsk_AAAA").unwrap_err(),
            "secret: a `whsk_` key must decode to 64 bytes (ed25519 seed and public key) or a 32-byte seed"
        );
        assert_eq!(validate_secret("whsk_not base64!").unwrap_err(), "secret: must be `whsk_` followed by base64");
        assert_eq!(validate_public_key(ED_PUBLIC), Ok(()));
        assert_eq!(validate_public_key(ED_SECRET).unwrap_err(), "public key: must start with `whpk_`");
        assert_eq!(validate_public_key("whpk_AAAA").unwrap_err(), "public key: must decode to 32 bytes");
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

//! Secrets at rest: the key that seals webhook signing secrets before the
//! store writes them, and the sealed form, `enc1:<key id>:<base64 of nonce
//! and ciphertext>`. The cipher is XChaCha20-Poly1305 (RustCrypto), whose
//! 24-byte nonces can be drawn at random without counting; the associated
//! data names what the value belongs to (a webhook and its column), so a
//! sealed value copied onto another webhook does not open. The key id, a
//! hash of the key, tells a wrong key from a damaged value. Pure: the nonce
//! is an argument.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// What every sealed value starts with; a stored value without it is plain.
pub const SEALED_PREFIX: &str = "enc1:";
pub const KEY_BYTES: usize = 32;
pub const NONCE_BYTES: usize = 24;

/// The key that seals secrets at rest. Its `Debug` shows only its id.
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// Why a key was refused. The messages never repeat the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not base64 (expected {KEY_BYTES} random bytes in base64)")]
    NotBase64,
    #[error("{0} bytes long, not {KEY_BYTES}")]
    WrongLength(usize),
}

/// Why a stored value could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("it is encrypted (key {sealed_with}) and no secret key is set")]
    NoKey { sealed_with: String },
    #[error("it was encrypted with key {sealed_with}, not with the key set (key {key})")]
    OtherKey { sealed_with: String, key: String },
    #[error("it does not decrypt with the key: altered, or copied from another webhook")]
    Damaged,
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, KeyError> {
        if bytes.len() != KEY_BYTES {
            return Err(KeyError::WrongLength(bytes.len()));
        }
        // The first 4 bytes of a hash of the key: enough to tell keys apart,
        // far too little to learn anything of the key from.
        let digest = Sha256::new().chain_update(b"herald secret key id\0").chain_update(bytes).finalize();
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).expect("the length was checked");
        Ok(SecretKey { cipher, id: hex::encode(&digest[..4]) })
    }

    /// A key given as base64 text (padded or not; surrounding whitespace,
    /// such as a file's final newline, is ignored).
    pub fn from_base64(text: &str) -> Result<SecretKey, KeyError> {
        let text = text.trim();
        let bytes = STANDARD.decode(text).or_else(|_| STANDARD_NO_PAD.decode(text)).map_err(|_| KeyError::NotBase64)?;
        Self::from_bytes(&bytes)
    }

    /// A key file's contents: exactly 32 raw bytes, or base64 text.
    pub fn from_file_contents(contents: &[u8]) -> Result<SecretKey, KeyError> {
        if contents.len() == KEY_BYTES {
            return Self::from_bytes(contents);
        }
        Self::from_base64(std::str::from_utf8(contents).map_err(|_| KeyError::NotBase64)?)
    }

    /// Names the key without revealing it (in logs and errors).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plain` for the place `context` names, with a fresh random
    /// `nonce`.
    pub fn seal(&self, plain: &str, context: &str, nonce: [u8; NONCE_BYTES]) -> String {
        let payload = Payload { msg: plain.as_bytes(), aad: context.as_bytes() };
        let ciphertext = self.cipher.encrypt(XNonce::from_slice(&nonce), payload).expect("a short secret always seals");
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}:{}", self.id, STANDARD_NO_PAD.encode(sealed))
    }

    /// Opens a value `seal` made for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, OpenError> {
        let (key_id, body) = sealed_parts(sealed).ok_or(OpenError::Damaged)?;
        if key_id != self.id {
            return Err(OpenError::OtherKey { sealed_with: key_id.to_owned(), key: self.id.clone() });
        }
        let bytes = STANDARD_NO_PAD.decode(body).map_err(|_| OpenError::Damaged)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Damaged);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| OpenError::Damaged)?;
        String::from_utf8(plain).map_err(|_| OpenError::Damaged)
    }
}

/// Whether a stored value is sealed (rather than plain).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// A sealed value's key id and body.
fn sealed_parts(sealed: &str) -> Option<(&str, &str)> {
    sealed.strip_prefix(SEALED_PREFIX)?.split_once(':')
}

/// How secrets are kept at rest: sealed with a key, or plain without one.
/// A store seals on every write and opens on every read through this.
#[derive(Debug, Clone, Default)]
pub struct AtRest {
    key: Option<std::sync::Arc<SecretKey>>,
}

impl AtRest {
    pub fn new(key: Option<SecretKey>) -> AtRest {
        AtRest { key: key.map(std::sync::Arc::new) }
    }

    pub fn key(&self) -> Option<&SecretKey> {
        self.key.as_deref()
    }

    /// The stored form of `plain`: sealed when there is a key. An empty
    /// secret (a profile that signs nothing) stays empty.
    pub fn store(&self, plain: &str, context: &str) -> String {
        match &self.key {
            Some(key) if !plain.is_empty() => key.seal(plain, context, rand::random()),
            _ => plain.to_owned(),
        }
    }

    /// The plain secret a stored value holds.
    pub fn load(&self, stored: &str, context: &str) -> Result<String, OpenError> {
        if !is_sealed(stored) {
            return Ok(stored.to_owned());
        }
        match &self.key {
            Some(key) => key.open(stored, context),
            None => {
                let sealed_with = sealed_parts(stored).map_or("?", |(id, _)| id).to_owned();
                Err(OpenError::NoKey { sealed_with })
            }
        }
    }
}

impl AtRest {
    /// `store` for a webhook's secret in `column`; without a key it builds
    /// no context, so the plain path costs one copy, as before.
    pub fn store_webhook_secret(&self, plain: &str, webhook_id: &str, column: &str) -> String {
        match self.key {
            Some(_) => self.store(plain, &webhook_context(webhook_id, column)),
            None => plain.to_owned(),
        }
    }

    /// `load` for a webhook's secret in `column`; a plain value is handed
    /// back as it is.
    pub fn load_webhook_secret(&self, stored: String, webhook_id: &str, column: &str) -> Result<String, OpenError> {
        match is_sealed(&stored) {
            true => self.load(&stored, &webhook_context(webhook_id, column)),
            false => Ok(stored),
        }
    }
}

/// The associated data of a webhook's secret in `column`: a sealed value
/// opens only in the column and the webhook it was sealed for.
pub fn webhook_context(webhook_id: &str, column: &str) -> String {
    format!("webhooks.{column}:{webhook_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; KEY_BYTES]).unwrap()
    }

    const NONCE: [u8; NONCE_BYTES] = [7; NONCE_BYTES];

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_context() {
        let sealed = key(1).seal("whsec_abc", "webhooks.secret:wh_1", NONCE);
        assert!(is_sealed(&sealed), "{sealed}");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(key(1).open(&sealed, "webhooks.secret:wh_1").unwrap(), "whsec_abc");
        // A fresh nonce gives a different value that opens the same.
        let again = key(1).seal("whsec_abc", "webhooks.secret:wh_1", [8; NONCE_BYTES]);
        assert_ne!(again, sealed);
        assert_eq!(key(1).open(&again, "webhooks.secret:wh_1").unwrap(), "whsec_abc");
    }

    #[test]
    fn another_key_is_named_as_such() {
        let sealed = key(1).seal("s", "c", NONCE);
        let err = key(2).open(&sealed, "c").unwrap_err();
        assert_eq!(err, OpenError::OtherKey { sealed_with: key(1).id().into(), key: key(2).id().into() });
        assert_ne!(key(1).id(), key(2).id());
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let sealed = key(1).seal("secret", "c", NONCE);
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = STANDARD_NO_PAD.decode(body).unwrap();
        for at in [0, NONCE_BYTES, bytes.len() - 1] {
            bytes[at] ^= 1;
            let tampered = format!("{head}:{}", STANDARD_NO_PAD.encode(&bytes));
            assert_eq!(key(1).open(&tampered, "c"), Err(OpenError::Damaged), "byte {at} flipped");
            bytes[at] ^= 1;
        }
        assert_eq!(key(1).open(&format!("{head}:"), "c"), Err(OpenError::Damaged));
        assert_eq!(key(1).open(&format!("{head}:not base64!"), "c"), Err(OpenError::Damaged));
    }

    #[test]
    fn a_value_moved_to_another_webhook_or_column_does_not_open() {
        let sealed = key(1).seal("secret", &webhook_context("wh_1", "secret"), NONCE);
        assert_eq!(key(1).open(&sealed, &webhook_context("wh_2", "secret")), Err(OpenError::Damaged));
        assert_eq!(key(1).open(&sealed, &webhook_context("wh_1", "previous_secret")), Err(OpenError::Damaged));
    }

    #[test]
    fn at_rest_without_a_key_keeps_plain_and_refuses_sealed() {
        let plain = AtRest::new(None);
        assert_eq!(plain.store("s", "c"), "s");
        assert_eq!(plain.load("s", "c").unwrap(), "s");
        let sealed = key(1).seal("s", "c", NONCE);
        assert_eq!(plain.load(&sealed, "c"), Err(OpenError::NoKey { sealed_with: key(1).id().into() }));

        let keyed = AtRest::new(Some(key(1)));
        let stored = keyed.store("s", "c");
        assert!(is_sealed(&stored));
        assert_eq!(keyed.load(&stored, "c").unwrap(), "s");
        assert_eq!(keyed.load("plain from before", "c").unwrap(), "plain from before");
        assert_eq!(keyed.store("", "c"), "", "an empty secret has nothing to hide");
    }

    #[test]
    fn keys_are_read_from_base64_or_raw_file_bytes() {
        let b64 = STANDARD.encode([9u8; KEY_BYTES]);
        let id = key(9).id().to_owned();
        assert_eq!(SecretKey::from_base64(&b64).unwrap().id(), id);
        assert_eq!(SecretKey::from_base64(b64.trim_end_matches('=')).unwrap().id(), id);
        assert_eq!(SecretKey::from_file_contents(format!("{b64}\n").as_bytes()).unwrap().id(), id);
        assert_eq!(SecretKey::from_file_contents(&[9u8; KEY_BYTES]).unwrap().id(), id);
        assert_eq!(SecretKey::from_base64("not a key").unwrap_err(), KeyError::NotBase64);
        assert_eq!(SecretKey::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err(), KeyError::WrongLength(16));
        assert_eq!(SecretKey::from_file_contents(&[0xff; 31]).unwrap_err(), KeyError::NotBase64);
        assert!(!format!("{:?}", key(9)).contains(&b64));
    }
}

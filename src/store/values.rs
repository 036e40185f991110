//! How domain values are kept in columns, alike in every backend: JSON
//! text for structured settings, and ids as time bounds (delivery ids are
//! ULIDs, so a time range of the log is a range of ids).

use crate::model::Timestamp;

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain values serialise")
}

/// A webhook's profile options as stored: none when they are the defaults.
pub(crate) fn options_json(options: &crate::profile::ProfileOptions) -> Option<String> {
    (options != &Default::default()).then(|| to_json(options))
}

/// The smallest id of kind `prefix` made at `at`: ids are ULIDs, so ids
/// made before `at` sort below it and ids made at or after it do not.
pub(crate) fn id_at(prefix: &str, at: Timestamp) -> String {
    let ms = u64::try_from(at.0).unwrap_or(0);
    format!("{prefix}_{}", ulid::Ulid::from_parts(ms, 0))
}

//! Times on the command line (`--since`, `--until`): RFC 3339 as the API
//! takes them, or a duration such as `2h`, `30m` or `7d` meaning that long
//! before now. Pure: `now` is an argument.

use anyhow::{anyhow, bail};

use crate::model::Timestamp;

/// Parses a `--since` / `--until` value into the RFC 3339 text the API takes.
pub fn parse(text: &str, now: Timestamp) -> anyhow::Result<String> {
    if let Some(at) = Timestamp::parse_rfc3339(text) {
        return Ok(at.to_rfc3339());
    }
    let ago = duration_ms(text).ok_or_else(|| {
        anyhow!("`{text}` is neither an RFC 3339 time (2026-12-01T06:00:00Z) nor a duration ago (45s, 30m, 2h, 7d, 2w)")
    })?;
    let Some(at) = now.0.checked_sub(ago) else {
        bail!("`{text}` reaches back too far");
    };
    Ok(Timestamp(at).to_rfc3339())
}

/// `30m` → 1 800 000: a whole number and one unit (s, m, h, d, w).
fn duration_ms(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let unit_ms: i64 = match unit {
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 3600 * 1000,
        "d" => 24 * 3600 * 1000,
        "w" => 7 * 24 * 3600 * 1000,
        _ => return None,
    };
    number.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_764_569_400_000); // 2025-12-01T06:10:00Z

    #[track_caller]
    fn check(input: &str, expected: &str) {
        assert_eq!(parse(input, NOW).unwrap(), expected);
    }

    #[test]
    fn durations_count_back_from_now() {
        check("2h", "2025-12-01T04:10:00Z");
        check("30m", "2025-12-01T05:40:00Z");
        check("7d", "2025-11-24T06:10:00Z");
        check("45s", "2025-12-01T06:09:15Z");
        check("1w", "2025-11-24T06:10:00Z");
        check("0m", "2025-12-01T06:10:00Z");
    }

    #[test]
    fn rfc3339_passes_through_in_utc() {
        check("2025-11-30T12:00:00Z", "2025-11-30T12:00:00Z");
        check("2025-11-30T14:00:00+02:00", "2025-11-30T12:00:00Z");
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_it_takes() {
        for bad in ["", "2", "h", "2x", "-2h", "2 h", "yesterday", "99999999999999999999d"] {
            let message = parse(bad, NOW).unwrap_err().to_string();
            assert!(message.contains("RFC 3339") || message.contains("too far"), "{bad}: {message}");
        }
    }
}

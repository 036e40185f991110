//! Event-type filters: which events a webhook wants. A filter is absent
//! (every event) or a list of exact names and `prefix*` patterns such as
//! `whatsapp:message:*`.

pub const MAX_PATTERNS: usize = 256;
pub const MAX_TYPE_LEN: usize = 256;

/// Herald's own operational events (`herald.webhook.disabled` …) start
/// with this. Only Herald makes them, and only a webhook whose filter names
/// them gets them: "every event" means every event of the account's own.
pub const OPERATIONAL_PREFIX: &str = "herald.";

/// Whether `event_type` passes `filter`.
pub fn matches(filter: Option<&[String]>, event_type: &str) -> bool {
    let operational = event_type.starts_with(OPERATIONAL_PREFIX);
    let Some(patterns) = filter else { return !operational };
    patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
        // `*` and other wide patterns mean the account's events: Herald's
        // own need a pattern that names them (`herald.*`, `herald.webhook.*`).
        Some(prefix) => event_type.starts_with(prefix) && (!operational || prefix.starts_with(OPERATIONAL_PREFIX)),
        None => pattern == event_type,
    })
}

/// Checks an event type name: 1 to 256 visible ASCII characters.
pub fn validate_event_type(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TYPE_LEN {
        return Err(format!("must be 1 to {MAX_TYPE_LEN} characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces".to_owned());
    }
    Ok(())
}

/// Checks a webhook's filter; `*` may only end a pattern.
pub fn validate(patterns: &[String]) -> Result<(), String> {
    if patterns.len() > MAX_PATTERNS {
        return Err(format!("event_types: at most {MAX_PATTERNS} entries"));
    }
    for (i, pattern) in patterns.iter().enumerate() {
        validate_event_type(pattern).map_err(|e| format!("event_types[{i}]: {e}"))?;
        if pattern.trim_end_matches('*').contains('*') || pattern.matches('*').count() > 1 {
            return Err(format!("event_types[{i}]: `*` may only appear once, at the end"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(filter: Option<&[&str]>, event_type: &str, expected: bool) {
        let owned: Option<Vec<String>> = filter.map(|f| f.iter().map(|s| s.to_string()).collect());
        assert_eq!(matches(owned.as_deref(), event_type), expected, "{filter:?} vs {event_type}");
    }

    #[test]
    fn exact_prefix_and_absent_filters() {
        check(None, "anything", true);
        check(Some(&[]), "anything", false);
        check(Some(&["whatsapp:message:status"]), "whatsapp:message:status", true);
        check(Some(&["whatsapp:message:status"]), "whatsapp:message:in", false);
        check(Some(&["whatsapp:message:*"]), "whatsapp:message:in", true);
        check(Some(&["whatsapp:message:*"]), "viber:message:in", false);
        check(Some(&["*"]), "viber:message:in", true);
        check(None, "herald.webhook.disabled", false);
        check(Some(&["herald.*"]), "herald.webhook.disabled", true);
        check(Some(&["herald.delivery.exhausted"]), "herald.webhook.disabled", false);
        check(Some(&["*"]), "herald.webhook.disabled", false);
        check(Some(&["her*"]), "herald.webhook.disabled", false);
        check(Some(&["herald.webhook.*"]), "herald.webhook.disabled", true);
    }

    #[test]
    fn validation() {
        assert!(validate(&["a:*".into(), "b".into()]).is_ok());
        assert!(validate(&["a*b".into()]).unwrap_err().contains("event_types[0]"));
        assert!(validate(&["ok".into(), "has space".into()]).unwrap_err().contains("event_types[1]"));
        assert_eq!(validate(&["".into()]).unwrap_err(), "event_types[0]: must be 1 to 256 characters");
        assert_eq!(validate(&["a**".into()]).unwrap_err(), "event_types[0]: `*` may only appear once, at the end");
    }
}

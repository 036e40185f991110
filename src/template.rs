//! Compose templates, pure: `@{{path}}` placeholders in a URL, header
//! values and a JSON body, resolved against an event and escaped for where
//! they land: percent-encoded in the URL, stripped of control characters in
//! headers (so no value can add a header line), JSON-escaped inside a JSON
//! string, a JSON value outside one, and form-encoded in form bodies.
//! Templates are parsed once, when saved. Rendering fails only when its
//! output would pass the limit the caller gives: a small template with a
//! placeholder repeated many times over a large payload value would
//! otherwise build a request many times the payload's size.

use serde_json::Value;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    /// A placeholder; `in_string` is true when it sits inside a JSON
    /// string literal (only meaningful in bodies).
    Var {
        path: Vec<String>,
        in_string: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

/// A syntax error: what is wrong and the byte offset where.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// A rendering stopped because its output passed `limit` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: usize,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}", self.message, self.offset)
    }
}

const OPEN: &str = "@{{";
const CLOSE: &str = "}}";
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;

/// Parses `text`. With `track_json_strings`, each placeholder records
/// whether it sits inside a JSON string literal.
pub fn parse(text: &str, track_json_strings: bool) -> Result<Template, TemplateError> {
    if text.len() > MAX_TEMPLATE_LEN {
        return Err(TemplateError {
            offset: MAX_TEMPLATE_LEN,
            message: format!("longer than {MAX_TEMPLATE_LEN} bytes"),
        });
    }
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut in_string = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(OPEN.as_bytes()) {
            let path_start = i + OPEN.len();
            let Some(len) = text[path_start..].find(CLOSE) else {
                return Err(TemplateError { offset: i, message: "`@{{` is never closed with `}}`".into() });
            };
            let raw = &text[path_start..path_start + len];
            let path = parse_path(raw).map_err(|message| TemplateError { offset: path_start, message })?;
            if i > text_start {
                pieces.push(Piece::Text(text[text_start..i].to_owned()));
            }
            pieces.push(Piece::Var { path, in_string: track_json_strings && in_string });
            i = path_start + len + CLOSE.len();
            text_start = i;
            escaped = false;
            continue;
        }
        if track_json_strings {
            match bytes[i] {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                _ => {}
            }
        }
        i += 1;
    }
    if text_start < text.len() {
        pieces.push(Piece::Text(text[text_start..].to_owned()));
    }
    Ok(Template { pieces })
}

fn parse_path(raw: &str) -> Result<Vec<String>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("empty placeholder `@{{}}`".into());
    }
    let segments: Vec<String> = trimmed.split('.').map(str::to_owned).collect();
    for segment in &segments {
        if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("`{trimmed}` is not a variable path (letters, digits, `_`, `-`, joined by `.`)"));
        }
    }
    Ok(segments)
}

impl Template {
    pub fn variables(&self) -> impl Iterator<Item = &Vec<String>> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var { path, .. } => Some(path),
            Piece::Text(_) => None,
        })
    }

    /// Renders piece by piece, stopping as soon as the output passes
    /// `limit`: what is held at once is bounded by the limit plus one value.
    fn render_with(
        &self,
        context: &Context,
        limit: usize,
        mut emit: impl FnMut(&mut String, Option<&Value>, bool),
    ) -> Result<String, TooLarge> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var { path, in_string } => emit(&mut out, context.resolve(path), *in_string),
            }
            if out.len() > limit {
                return Err(TooLarge { limit });
            }
        }
        Ok(out)
    }

    /// Renders a URL: every value percent-encoded as a URL component.
    pub fn render_url(&self, context: &Context, limit: usize) -> Result<String, TooLarge> {
        self.render_with(context, limit, |out, value, _| {
            out.extend(
                url::form_urlencoded::byte_serialize(value_text(value).as_bytes()).map(|s| s.replace('+', "%20")),
            );
        })
    }

    /// Renders a header value: control characters (CR and LF among them)
    /// become spaces, so a value can never start a new header line.
    pub fn render_header(&self, context: &Context, limit: usize) -> Result<String, TooLarge> {
        let rendered = self.render_with(context, limit, |out, value, _| out.push_str(&value_text(value)))?;
        Ok(rendered.chars().map(|c| if c.is_control() { ' ' } else { c }).collect())
    }

    /// Renders a JSON body: inside a string literal a value is JSON-escaped
    /// text; outside one it is a JSON value (`null` when missing).
    pub fn render_json(&self, context: &Context, limit: usize) -> Result<String, TooLarge> {
        self.render_with(context, limit, |out, value, in_string| {
            if in_string {
                let quoted = serde_json::to_string(&value_text(value)).expect("strings serialise");
                out.push_str(&quoted[1..quoted.len() - 1]);
            } else {
                out.push_str(&serde_json::to_string(value.unwrap_or(&Value::Null)).expect("values serialise"));
            }
        })
    }
}

/// A value as text: strings as they are, null and missing as nothing,
/// anything else as its JSON.
pub fn value_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Encodes a rendered JSON object as form data (`a=1&b=x`): string values
/// as they are, null as empty, anything else as its JSON.
pub fn form_encode(object: &serde_json::Map<String, Value>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in object {
        form.append_pair(key, &value_text(Some(value)));
    }
    form.finish()
}

/// What placeholders resolve against: `id` (the event id), `event` (its
/// type), `timestamp`, and `payload.*`, where `payload.mobile` falls back
/// to `payload.to` (the seeds' recipient number).
pub struct Context<'a> {
    pub id: Value,
    pub event: Value,
    pub timestamp: Value,
    pub payload: &'a Value,
}

impl Context<'_> {
    pub fn resolve(&self, path: &[String]) -> Option<&Value> {
        let (head, rest) = path.split_first()?;
        match head.as_str() {
            "id" if rest.is_empty() => Some(&self.id),
            "event" if rest.is_empty() => Some(&self.event),
            "timestamp" if rest.is_empty() => Some(&self.timestamp),
            "payload" => {
                let found = lookup(self.payload, rest);
                if found.is_none() && rest.len() == 1 && rest[0] == "mobile" {
                    return lookup(self.payload, &["to".to_owned()]);
                }
                found
            }
            _ => None,
        }
    }
}

fn lookup<'v>(mut value: &'v Value, path: &[String]) -> Option<&'v Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The variables the seeds document; anything else is reported as a
/// warning when a template is saved (it still renders, as empty).
pub const KNOWN_PAYLOAD_FIELDS: &[&str] = &[
    "id",
    "from",
    "to",
    "mobile",
    "status",
    "delivered_at",
    "read_at",
    "processed_at",
    "submit_time",
    "foreign_id",
    "channel",
    "timestamp",
    "channels",
    "recipient",
    "message",
];

pub fn is_known_variable(path: &[String]) -> bool {
    match path {
        [single] => matches!(single.as_str(), "id" | "event" | "timestamp" | "payload"),
        [head, field, ..] => head == "payload" && KNOWN_PAYLOAD_FIELDS.contains(&field.as_str()),
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn context(payload: &Value) -> Context<'_> {
        Context {
            id: json!("evt_1"),
            event: json!("viber:message:status"),
            timestamp: json!("2021-06-18T14:48:06Z"),
            payload,
        }
    }

    #[test]
    fn the_seed_examples_render() {
        let payload =
            json!({"id": "a418", "to": "9190199xxxxx", "status": "read", "read_at": "2021-06-18T14:48:06.886358Z"});
        let url = parse("https://www.domain.com/ack/receive?id=@{{payload.id}}&mobile=@{{payload.mobile}}&status=@{{payload.status}}", false).unwrap();
        assert_eq!(
            url.render_url(&context(&payload), usize::MAX).unwrap(),
            "https://www.domain.com/ack/receive?id=a418&mobile=9190199xxxxx&status=read"
        );
        let url = parse("https://www.domain.com/ack/receive?id=@{{id}}", false).unwrap();
        assert_eq!(
            url.render_url(&context(&payload), usize::MAX).unwrap(),
            "https://www.domain.com/ack/receive?id=evt_1"
        );
        let body = parse(
            r#"{"id": "@{{payload.id}}", "mobile": "@{{payload.mobile}}", "message_status": "@{{payload.status}}", "read_at": "@{{payload.read_at}}"}"#,
            true,
        )
        .unwrap();
        let rendered: Value = serde_json::from_str(&body.render_json(&context(&payload), usize::MAX).unwrap()).unwrap();
        assert_eq!(
            rendered,
            json!({"id": "a418", "mobile": "9190199xxxxx", "message_status": "read", "read_at": "2021-06-18T14:48:06.886358Z"})
        );
    }

    #[test]
    fn values_cannot_break_out_of_where_they_land() {
        let payload = json!({"evil": "x\"}, \"admin\": true, \"y\": \"\r\nX-Injected: 1", "n": 5, "obj": {"a": [1]}});
        let ctx = context(&payload);
        let body = parse(
            r#"{"v": "@{{payload.evil}}", "n": @{{payload.n}}, "o": @{{payload.obj}}, "m": @{{payload.missing}}}"#,
            true,
        )
        .unwrap();
        let rendered: Value = serde_json::from_str(&body.render_json(&ctx, usize::MAX).unwrap()).unwrap();
        assert_eq!(rendered["v"], payload["evil"]);
        assert_eq!(rendered["n"], 5);
        assert_eq!(rendered["o"], json!({"a": [1]}));
        assert_eq!(rendered["m"], Value::Null);
        assert!(rendered.get("admin").is_none());
        let header = parse("Bearer @{{payload.evil}}", false).unwrap().render_header(&ctx, usize::MAX).unwrap();
        assert!(!header.contains('\r') && !header.contains('\n'));
        let url = parse("https://h/p?q=@{{payload.evil}}&n=@{{payload.n}}", false)
            .unwrap()
            .render_url(&ctx, usize::MAX)
            .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [("q".to_owned(), payload["evil"].as_str().unwrap().to_owned()), ("n".to_owned(), "5".to_owned())]
        );
    }

    #[test]
    fn syntax_errors_name_their_position() {
        assert_eq!(parse("abc @{{payload.id", false).unwrap_err().offset, 4);
        assert_eq!(parse("@{{ }}", false).unwrap_err().offset, 3);
        assert!(parse("@{{payload..id}}", false).unwrap_err().message.contains("variable path"));
        let err = parse("@{{pay load}}", false).unwrap_err();
        assert_eq!(err.offset, 3);
        assert!(err.message.contains("variable path"), "{}", err.message);
        assert_eq!(parse("no placeholders", false).unwrap().pieces, [Piece::Text("no placeholders".into())]);
    }

    #[test]
    fn known_variables() {
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert!(is_known_variable(&path("id")));
        assert!(is_known_variable(&path("payload.mobile")));
        assert!(is_known_variable(&path("payload.message.payload.text")));
        assert!(!is_known_variable(&path("payload.colour")));
        assert!(!is_known_variable(&path("user.name")));
    }

    #[test]
    fn mobile_falls_back_to_to_and_arrays_index() {
        let payload = json!({"to": "123", "channels": [{"name": "viber"}]});
        let ctx = context(&payload);
        assert_eq!(ctx.resolve(&["payload".into(), "mobile".into()]), Some(&json!("123")));
        assert_eq!(
            ctx.resolve(&["payload".into(), "channels".into(), "0".into(), "name".into()]),
            Some(&json!("viber"))
        );
        assert_eq!(ctx.resolve(&["nothing".into()]), None);
    }

    /// The README's rule for a value placed in text, written out here
    /// rather than taken from `value_text`: strings as they are, null as
    /// nothing, numbers, booleans, arrays and objects as compact JSON.
    fn as_text(value: &Value) -> String {
        match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(_) | Value::Array(_) | Value::Object(_) => serde_json::to_string(value).unwrap(),
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Hardening #3: 300 copies of a 400 KB value made a 114 MiB body.
    #[test]
    fn a_placeholder_repeated_over_a_large_value_stops_at_the_limit() {
        let payload = json!({ "b": "x".repeat(400 * 1024) });
        let ctx = context(&payload);
        let body = parse(&format!("[{}0]", "\"@{{payload.b}}\",".repeat(300)), true).unwrap();
        assert_eq!(body.render_json(&ctx, 1024 * 1024), Err(TooLarge { limit: 1024 * 1024 }));
        let url = parse("https://h/?q=@{{payload.b}}", false).unwrap();
        assert_eq!(url.render_url(&ctx, 8192), Err(TooLarge { limit: 8192 }));
        let header = parse("@{{payload.b}}", false).unwrap();
        assert_eq!(header.render_header(&ctx, 8192), Err(TooLarge { limit: 8192 }));
        // Within the limit, nothing changes.
        let small = json!({ "b": "y" });
        assert_eq!(body.render_json(&context(&small), 1024 * 1024).unwrap(), format!("[{}0]", "\"y\",".repeat(300)));
    }

    proptest! {
        #[test]
        fn any_value_in_any_position_renders_to_the_format_claimed(value in any_json(), key in "k_[a-z]{1,8}") {
            let payload = json!({ "v": value });
            let ctx = context(&payload);

            let body = parse(&format!(r#"{{"s": "pre @{{{{payload.v}}}} post", "raw": @{{{{payload.v}}}}, "{key}": ["@{{{{payload.v}}}}"]}}"#), true).unwrap();
            let rendered: Value = serde_json::from_str(&body.render_json(&ctx, usize::MAX).unwrap()).unwrap();
            prop_assert_eq!(&rendered["raw"], &payload["v"]);
            prop_assert_eq!(rendered["s"].as_str().unwrap(), format!("pre {} post", as_text(&payload["v"])));

            let url = parse("https://example.com/a/@{{payload.v}}?x=@{{payload.v}}", false).unwrap().render_url(&ctx, usize::MAX).unwrap();
            let parsed = url::Url::parse(&url).unwrap();
            prop_assert_eq!(parsed.host_str(), Some("example.com"));
            let decoded: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
            prop_assert_eq!(decoded, vec![("x".to_owned(), as_text(&payload["v"]))]);

            let header = parse("k @{{payload.v}}", false).unwrap().render_header(&ctx, usize::MAX).unwrap();
            prop_assert!(http::HeaderValue::from_bytes(header.as_bytes()).is_ok());

            let object = rendered.as_object().unwrap();
            let form = form_encode(object);
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes()).into_owned().collect();
            let expected: Vec<(String, String)> = object.iter().map(|(k, v)| (k.clone(), as_text(v))).collect();
            prop_assert_eq!(pairs, expected);
        }

        #[test]
        fn a_limited_rendering_is_the_whole_one_or_refused(value in any_json(), repeat in 1usize..20, limit in 0usize..400) {
            let payload = json!({ "v": value });
            let ctx = context(&payload);
            let body = parse(&format!("[{}0]", "@{{payload.v}},".repeat(repeat)), true).unwrap();
            let whole = body.render_json(&ctx, usize::MAX).unwrap();
            match body.render_json(&ctx, limit) {
                Ok(limited) => prop_assert_eq!(limited, whole),
                Err(TooLarge { limit: reported }) => {
                    prop_assert_eq!(reported, limit);
                    prop_assert!(whole.len() > limit);
                }
            }
        }

        #[test]
        fn parsing_never_panics(text in any::<String>(), track in any::<bool>()) {
            let _ = parse(&text, track);
        }
    }
}

//! The `compose` profile (seeds 000 and 001): the receiver's request is
//! composed from a template: method (GET, POST or PUT), the webhook's URL,
//! headers and a body, each with `@{{path}}` placeholders (see `template`),
//! the body sent as JSON or as form data. Signed like `business`.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{
    MAX_RENDERED_HEADERS, MAX_RENDERED_URL, OutgoingRequest, ProfileSpec, RESERVED_HEADERS, SecretKind, business,
    payload_value,
};
use crate::model::DueDelivery;
use crate::template::{self, Context, Piece, Template};

pub(super) const SPEC: ProfileSpec = ProfileSpec {
    name: "compose",
    retry_preset: "business",
    timeout_ms: 3_000,
    secret: SecretKind::OptionalOrWebhookId,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ComposeMethod {
    GET,
    #[default]
    POST,
    PUT,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    Json,
    Form,
}

/// A compose webhook's template; its URL template is the webhook's `url`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeSpec {
    /// The identification name the seeds ask for.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub method: ComposeMethod,
    /// Header values may hold placeholders.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body template: JSON text with placeholders (given as a string,
    /// or as plain JSON when it needs no placeholder outside strings).
    #[serde(default, deserialize_with = "body_text", skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default)]
    pub body_format: BodyFormat,
}

fn body_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => Some(other.to_string()),
    })
}

fn parse_part(where_: &str, text: &str, json: bool) -> Result<Template, String> {
    template::parse(text, json).map_err(|e| format!("{where_}: {e}"))
}

/// The URL template with every placeholder filled with `x`: what must be
/// a valid target URL.
pub fn sample_url(url_template: &str) -> Result<String, String> {
    let parsed = parse_part("url", url_template, false)?;
    Ok(parsed
        .pieces
        .iter()
        .map(|p| match p {
            Piece::Text(text) => text.as_str(),
            Piece::Var { .. } => "x",
        })
        .collect())
}

/// Checks a compose template when it is saved. Returns warnings (unknown
/// variables, which render empty) or the first error, naming where it is.
pub fn check_compose(url_template: &str, spec: &ComposeSpec) -> Result<Vec<String>, String> {
    let mut parts = vec![("url".to_owned(), parse_part("url", url_template, false)?)];
    for (name, value) in &spec.headers {
        let header = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("template.headers.{name}: not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(format!("template.headers.{name}: set by herald itself and cannot be overridden"));
        }
        parts
            .push((format!("template.headers.{name}"), parse_part(&format!("template.headers.{name}"), value, false)?));
    }
    let mut warnings = Vec::new();
    if let Some(body) = &spec.body {
        let parsed = parse_part("template.body", body, true)?;
        // Every placeholder filled with nothing must still give valid JSON.
        let empty = json!({});
        let context = Context { id: Value::Null, event: Value::Null, timestamp: Value::Null, payload: &empty };
        let blank = parsed.render_json(&context, usize::MAX).unwrap_or_default();
        let sample: Value = serde_json::from_str(&blank)
            .map_err(|e| format!("template.body: not valid JSON once placeholders are filled: {e}"))?;
        if spec.body_format == BodyFormat::Form && !sample.is_object() {
            return Err("template.body: form data needs a JSON object of fields".to_owned());
        }
        if spec.method == ComposeMethod::GET {
            warnings.push("template.body: a GET request carries no body; it is ignored".to_owned());
        }
        parts.push(("template.body".to_owned(), parsed));
    }
    for (where_, parsed) in &parts {
        for path in parsed.variables() {
            if !template::is_known_variable(path) {
                warnings.push(format!(
                    "{where_}: unknown variable `{}` renders empty unless the event has it",
                    path.join(".")
                ));
            }
        }
    }
    Ok(warnings)
}

/// Renders the template for one delivery. Each part is bounded as it is
/// built (the URL by `MAX_RENDERED_URL`, the headers together by
/// `MAX_RENDERED_HEADERS`, the body by `max_body`, form-encoded or not):
/// past a bound the attempt fails with the part named, and no more is built.
pub(super) fn render(due: &DueDelivery, request: &mut OutgoingRequest, max_body: usize) -> Result<(), String> {
    let too_large = |part: &str, limit: usize| format!("compose: {part} rendered to more than {limit} bytes");
    let spec = due.webhook.options.template.clone().unwrap_or_default();
    let payload = payload_value(due);
    let context = Context {
        id: Value::String(due.event_id.clone()),
        event: Value::String(due.event_type.clone()),
        timestamp: Value::String(due.event_timestamp.to_rfc3339()),
        payload: &payload,
    };
    // Templates were parsed when saved; one that no longer parses is sent
    // as written rather than dropped.
    if let Ok(url) = template::parse(&due.webhook.url, false) {
        request.url = url.render_url(&context, MAX_RENDERED_URL).map_err(|e| too_large("the url", e.limit))?;
    }
    let mut header_room = MAX_RENDERED_HEADERS;
    for (name, value) in &spec.headers {
        let rendered = match template::parse(value, false) {
            Ok(t) => {
                t.render_header(&context, header_room).map_err(|_| too_large("the headers", MAX_RENDERED_HEADERS))?
            }
            Err(_) => String::new(),
        };
        header_room = header_room.saturating_sub(name.len() + rendered.len());
        if let (Ok(name), Ok(value)) =
            (HeaderName::try_from(name.as_str()), HeaderValue::from_bytes(rendered.as_bytes()))
        {
            request.headers.push((name, value));
        }
    }
    request.method = match spec.method {
        ComposeMethod::GET => Method::GET,
        ComposeMethod::POST => Method::POST,
        ComposeMethod::PUT => Method::PUT,
    };
    let body = match (&spec.body, spec.method) {
        (Some(body), ComposeMethod::POST | ComposeMethod::PUT) => match template::parse(body, true) {
            Ok(t) => t.render_json(&context, max_body).map_err(|e| too_large("the body", e.limit))?,
            Err(_) => String::new(),
        },
        _ => String::new(),
    };
    if spec.body_format == BodyFormat::Form && !body.is_empty() {
        let fields = serde_json::from_str::<Value>(&body).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default();
        drop(body);
        // Percent-encoding can triple the JSON's size.
        let form = template::form_encode(&fields);
        if form.len() > max_body {
            return Err(too_large("the form body", max_body));
        }
        business::sign_and_attach(due, request, form);
        for (name, value) in request.headers.iter_mut() {
            if *name == http::header::CONTENT_TYPE {
                *value = HeaderValue::from_static("application/x-www-form-urlencoded");
            }
        }
    } else if body.is_empty() {
        business::sign_and_attach(due, request, String::new());
        request.headers.retain(|(name, _)| name != http::header::CONTENT_TYPE);
    } else {
        business::sign_and_attach(due, request, body);
    }
    Ok(())
}

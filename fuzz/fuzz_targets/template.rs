//! Fuzzes the compose template parser and renderer: any template text that
//! parses must render, with any payload, into a URL that parses, header
//! values without line breaks, and (when the template is valid JSON with
//! its placeholders empty) a body that parses as JSON; and a limited
//! rendering is the unlimited one when it fits, an error when it does not.
#![no_main]

use herald::template::{self, Context};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|input: (&str, &str)| {
    let (text, value) = input;
    let payload = json!({ "v": value, "to": value });
    let context = Context { id: json!("evt"), event: json!("t"), timestamp: json!("now"), payload: &payload };
    if let Ok(parsed) = template::parse(text, false) {
        let header = parsed.render_header(&context, usize::MAX).unwrap();
        assert!(!header.contains('\n') && !header.contains('\r'));
        let url = parsed.render_url(&context, usize::MAX).unwrap();
        let limit = text.len() / 2;
        match parsed.render_url(&context, limit) {
            Ok(limited) => assert_eq!(limited, url),
            Err(_) => assert!(url.len() > limit),
        }
        if let Ok(base) = url::Url::parse("https://example.com/") {
            let _ = base.join(&url);
        }
    }
    if let Ok(parsed) = template::parse(text, true) {
        let empty = json!({});
        let blank = Context { id: Value::Null, event: Value::Null, timestamp: Value::Null, payload: &empty };
        if serde_json::from_str::<Value>(&parsed.render_json(&blank, usize::MAX).unwrap()).is_ok() {
            let rendered = parsed.render_json(&context, usize::MAX).unwrap();
            serde_json::from_str::<Value>(&rendered).expect("a valid template renders valid JSON");
        }
    }
});

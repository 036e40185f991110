//! JSON serialised exactly as JavaScript's `JSON.stringify(JSON.parse(x))`
//! would print it: compact, integer-like keys first in ascending order,
//! numbers in JavaScript's shortest form (`1e+21`, `1e-7`, `100`). Receivers
//! that check an HMAC over `JSON.stringify(req.body)` (the wwebjs seed's own
//! verifier does) accept a body only when it is already in this form.

use serde_json::{Map, Number, Value};

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&js_number(n)),
        Value::String(s) => out.push_str(&serde_json::to_string(s).expect("strings serialise")),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// JavaScript orders "array index" keys (canonical integers below 2^32 - 1)
/// first, ascending, then the others in insertion order.
fn write_object(out: &mut String, map: &Map<String, Value>) {
    let mut indices: Vec<(u32, &String, &Value)> =
        map.iter().filter_map(|(k, v)| array_index(k).map(|i| (i, k, v))).collect();
    indices.sort_by_key(|(i, _, _)| *i);
    let others = map.iter().filter(|(k, _)| array_index(k).is_none());
    out.push('{');
    let entries = indices.into_iter().map(|(_, k, v)| (k, v)).chain(others);
    for (n, (key, value)) in entries.enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).expect("strings serialise"));
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    let n: u64 = key.parse().ok()?;
    (n < u32::MAX as u64).then_some(n as u32)
}

/// `Number.prototype.toString()` of the double nearest to `n`.
pub fn js_number(n: &Number) -> String {
    let x = n.as_f64().unwrap_or(0.0);
    if x == 0.0 {
        return "0".to_owned();
    }
    if !x.is_finite() {
        return "null".to_owned();
    }
    // `{:e}` prints the shortest digits that round-trip, as d.ddde±x.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exponent.parse::<i32>().expect("exponent is a number") + 1;
    let sign = if x < 0.0 { "-" } else { "" };
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e_sign = if e >= 0 { "+" } else { "-" };
        match k {
            1 => format!("{digits}e{e_sign}{}", e.abs()),
            _ => format!("{}.{}e{e_sign}{}", &digits[..1], &digits[1..], e.abs()),
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn check(json_text: &str, expected: &str) {
        let value: Value = serde_json::from_str(json_text).unwrap();
        assert_eq!(to_string(&value), expected, "{json_text}");
    }

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        check("1", "1");
        check("1.0", "1");
        check("-0.0", "0");
        check("1.5", "1.5");
        check("100", "100");
        check("1e21", "1e+21");
        check("1e20", "100000000000000000000");
        check("123456789012345678901234", "1.2345678901234569e+23");
        check("0.000001", "0.000001");
        check("0.0000001", "1e-7");
        check("1.5e-7", "1.5e-7");
        check("12345678901234567890", "12345678901234567000");
        check("-42.25", "-42.25");
        check("1696176000", "1696176000");
        check("0.1", "0.1");
    }

    #[test]
    fn objects_put_index_keys_first_and_keep_the_rest_in_order() {
        check(r#"{"b":1,"a":2,"10":3,"2":4,"01":5,"-1":6}"#, r#"{"2":4,"10":3,"b":1,"a":2,"01":5,"-1":6}"#);
        check(r#"{ "x" : [ 1 , "a\u0001\n" , null , true ] }"#, r#"{"x":[1,"a\u0001\n",null,true]}"#);
        check(r#"{"reaction":"👍","u":"\u2028"}"#, "{\"reaction\":\"👍\",\"u\":\"\u{2028}\"}");
        assert_eq!(
            to_string(&json!({"event": "ready", "data": {}, "timestamp": "t"})),
            r#"{"event":"ready","data":{},"timestamp":"t"}"#
        );
    }
}

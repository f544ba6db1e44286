//! Compact JSON exactly as JavaScript's `JSON.stringify` writes a value that
//! `JSON.parse` read: object keys in their first-seen order (serde_json's
//! `preserve_order`), numbers as JavaScript prints them, strings escaped the same way.

use serde_json::{Number, Value};

/// Appends `JSON.stringify(value)` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// `JSON.stringify(value)` as a string.
pub fn to_string(value: &Value) -> String {
    let mut out = Vec::new();
    write_value(&mut out, value);
    String::from_utf8(out).expect("the serializer writes UTF-8")
}

/// A number as JavaScript prints it: the double nearest to the JSON text, in the
/// shortest form that reads back to it (`1e21`, `1.5`, `100` for `1e2`, `0` for `-0`).
fn write_number(out: &mut Vec<u8>, number: &Number) {
    const EXACT_IN_A_DOUBLE: u64 = 1 << 53;
    if let Some(integer) = number.as_i64()
        && integer.unsigned_abs() <= EXACT_IN_A_DOUBLE
    {
        out.extend_from_slice(integer.to_string().as_bytes());
        return;
    }
    let double = number.as_f64().unwrap_or(f64::NAN);
    if double.is_finite() {
        out.extend_from_slice(ryu_js::Buffer::new().format_finite(double).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A string escaped as `JSON.stringify` escapes it: `"` and `\`, the short escapes
/// `\b \f \n \r \t`, other C0 controls as `\u00xx` (lowercase hex); everything
/// else, `/` and non-ASCII included, as is.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    // Most strings need no escape: one pass over all their bytes (no early
    // exit, so the compiler vectorizes it), then a copy.
    let needs_escape = bytes.iter().fold(false, |found, &byte| {
        found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain_from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let short_escape = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..at]);
        plain_from = at + 1;
        out.push(b'\\');
        out.push(short_escape);
        if short_escape == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        }
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (JSON text as read by `JSON.parse`, what `JSON.stringify` writes)
    const CASES: &[(&str, &str)] = &[
        (r#"{ "b" : 1, "a" : [ 1 , 2 ] }"#, r#"{"b":1,"a":[1,2]}"#),
        (r#"{"a":1,"b":2,"a":3}"#, r#"{"a":3,"b":2}"#),
        ("1.0", "1"),
        ("1e2", "100"),
        ("1.5", "1.5"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("0.1", "0.1"),
        ("1e21", "1e+21"),
        ("1e-7", "1e-7"),
        ("123456789012345678901", "123456789012345680000"),
        ("18446744073709551615", "18446744073709552000"),
        ("9007199254740993", "9007199254740992"),
        ("-9007199254740992", "-9007199254740992"),
        ("9007199254740992", "9007199254740992"),
        ("-12", "-12"),
        ("5e-324", "5e-324"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("true", "true"),
        ("null", "null"),
        (
            r#""a\"b\\c/d\u00e9\u2028""#,
            "\"a\\\"b\\\\c/d\u{e9}\u{2028}\"",
        ),
        (
            r#""\b\f\n\r\t\u0000\u001f\u007f""#,
            "\"\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\"",
        ),
        (r#""\u000B""#, r#""\u000b""#),
        (r#"[]"#, "[]"),
        (r#"{}"#, "{}"),
    ];

    #[test]
    fn writes_what_json_stringify_writes() {
        for &(input, expected) in CASES {
            let value: Value = serde_json::from_str(input).unwrap();
            assert_eq!(
                to_string(&value),
                expected,
                "JSON.stringify(JSON.parse({input:?}))"
            );
        }
    }
}

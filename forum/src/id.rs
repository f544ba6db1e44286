//! Id parsing with the semantics of JavaScript's `parseInt(s, 10)`, which the
//! original service applied to every `:userId`/`:threadId` path parameter.

/// The largest integer a JavaScript number holds exactly (`Number.MAX_SAFE_INTEGER`).
/// Ids in the data must lie within ±this value.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Up to this many decimal digits are below 2^53, so a double holds them exactly.
const EXACT_DIGITS: usize = 15;

/// JavaScript's `parseInt(text, 10)`: skips leading JavaScript white space, reads an
/// optional `+`/`-` sign and the longest run of ASCII digits after it, and ignores
/// the rest. Returns NaN when there are no digits. The digit run is rounded to the
/// nearest double, as JavaScript does (`"99999999999999999999"` reads as `1e20`).
pub fn parse_int(text: &str) -> f64 {
    let text = text.trim_start_matches(is_js_whitespace);
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let digits_len = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    if digits_len == 0 {
        return f64::NAN;
    }
    let digits = &unsigned[..digits_len];
    let magnitude: f64 = if digits_len <= EXACT_DIGITS {
        // Every id in a request path: read as an integer, which the double
        // holds exactly (as the float parser would round it), without it.
        digits
            .bytes()
            .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0')) as f64
    } else {
        digits
            .parse()
            .expect("a non-empty run of ASCII digits is a valid f64")
    };
    if negative { -magnitude } else { magnitude }
}

/// The id that `parseInt(text, 10)` denotes, as the key of the id indexes: `None`
/// when it is NaN or cannot equal any id in the data (not an integer within
/// ±[`MAX_SAFE_INTEGER`]). `-0` reads as 0, since `-0 === 0` in JavaScript.
pub fn parse_id(text: &str) -> Option<i64> {
    id_from_number(parse_int(text))
}

/// The exact integer within ±[`MAX_SAFE_INTEGER`] that `number` holds, if any.
pub fn id_from_number(number: f64) -> Option<i64> {
    let in_range = number.abs() <= MAX_SAFE_INTEGER as f64;
    // `as` is exact here: the value is an integer of at most 53 bits.
    (in_range && number.fract() == 0.0).then_some(number as i64)
}

/// The characters JavaScript's `String.prototype.trim` (and so `parseInt`) treats
/// as white space: WhiteSpace and LineTerminator of ECMA-262. Unlike
/// `char::is_whitespace`, this excludes U+0085 and includes U+FEFF.
pub fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{0009}'
            | '\u{000A}'
            | '\u{000B}'
            | '\u{000C}'
            | '\u{000D}'
            | '\u{0020}'
            | '\u{00A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, what JavaScript's `parseInt(input, 10)` returns; None for NaN)
    const PARSE_INT_CASES: &[(&str, Option<f64>)] = &[
        ("1", Some(1.0)),
        ("1.5", Some(1.0)),
        ("1x", Some(1.0)),
        ("01", Some(1.0)),
        ("+2", Some(2.0)),
        ("  2", Some(2.0)),
        ("1e3", Some(1.0)),
        ("abc", None),
        ("0x10", Some(0.0)),
        ("-1", Some(-1.0)),
        ("0", Some(0.0)),
        ("99", Some(99.0)),
        ("99999999999999999999", Some(1e20)),
        ("", None),
        ("+", None),
        ("-", None),
        ("+-1", None),
        ("--1", None),
        (" - 1", None),
        ("\u{a0}\u{feff}\u{3000}\u{2028}\t\n\u{b}\u{c}\r7", Some(7.0)),
        ("\u{85}7", None),
        ("\u{200b}7", None),
        ("7 8", Some(7.0)),
        ("٣", None),
        ("１", None),
        ("9007199254740993", Some(9007199254740992.0)),
        ("000000000000000000000000042", Some(42.0)),
        ("Infinity", None),
    ];

    #[test]
    fn parse_int_matches_javascript() {
        for &(input, expected) in PARSE_INT_CASES {
            let actual = parse_int(input);
            match expected {
                Some(value) => assert_eq!(actual, value, "parseInt({input:?})"),
                None => assert!(actual.is_nan(), "parseInt({input:?}) = {actual}, want NaN"),
            }
        }
    }

    #[test]
    fn short_digit_runs_read_as_the_float_parser_reads_them() {
        // The integer path (up to EXACT_DIGITS digits) and the float parser
        // (longer runs) meet at 15/16 digits.
        for digits in 1..=17 {
            for text in [
                "9".repeat(digits),
                format!("1{}", "0".repeat(digits - 1)),
                "1234567890123456789"[..digits].to_owned(),
                format!("00{}", "7".repeat(digits)),
            ] {
                let expected: f64 = text.parse().unwrap();
                assert_eq!(parse_int(&text).to_bits(), expected.to_bits(), "{text}");
                assert_eq!(parse_int(&format!("-{text}")), -expected, "-{text}");
            }
        }
    }

    #[test]
    fn negative_zero_is_zero() {
        let value = parse_int("-0");
        assert!(value == 0.0 && value.is_sign_negative());
        assert_eq!(parse_id("-0"), Some(0));
        assert_eq!(parse_id("-00x"), Some(0));
    }

    /// (path parameter after percent-decoding, the id it finds; None = nothing)
    const PARSE_ID_CASES: &[(&str, Option<i64>)] = &[
        ("1.5", Some(1)),
        ("1x", Some(1)),
        ("01", Some(1)),
        ("+2", Some(2)),
        ("  2", Some(2)),
        ("1e3", Some(1)),
        ("abc", None),
        ("0x10", Some(0)),
        ("-1", Some(-1)),
        ("99999999999999999999", None),
        ("9007199254740991", Some(MAX_SAFE_INTEGER)),
        ("-9007199254740991", Some(-MAX_SAFE_INTEGER)),
        ("9007199254740992", None),
        ("-9007199254740992", None),
    ];

    #[test]
    fn parse_id_keys_only_safe_integers() {
        for &(input, expected) in PARSE_ID_CASES {
            assert_eq!(parse_id(input), expected, "parse_id({input:?})");
        }
    }

    #[test]
    fn id_from_number_rejects_fractions_and_non_finite() {
        assert_eq!(id_from_number(1.5), None);
        assert_eq!(id_from_number(f64::NAN), None);
        assert_eq!(id_from_number(f64::INFINITY), None);
        assert_eq!(id_from_number(-0.0), Some(0));
        assert_eq!(id_from_number(3.0), Some(3));
    }
}

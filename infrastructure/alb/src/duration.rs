//! Durations as every ficus tool reads them from a flag, a variable or a
//! file: the one parser of `migrate` and `local-alb`.
//!
//! The rule ([`RULE`]): a bare number is seconds (`30`, `0.5`); otherwise a
//! number and a unit, or several (`500ms`, `90s`, `5m`, `1h30m`, `1h 30m`,
//! `7d`, `2w`). Units: `ms`, `s`, `m`, `h`, `d`, `w`, and their long forms
//! (`sec`, `seconds`, `min`, `minutes`, `hours`, `days`, `weeks`...).

use std::time::Duration;

/// The rule, for `--help` texts and error messages.
pub const RULE: &str = "a bare number is seconds (30 = 30s, 0.5 = 500ms); \
     or a number with a unit: ms, s, m, h, d, w, combined as in 1h30m";

/// Parses a duration by [`RULE`]; the error names the text and the rule.
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let refused = || format!("`{trimmed}` is not a duration: {RULE}");
    if trimmed.is_empty() {
        return Err(refused());
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| refused());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let number: f64 = number.parse().map_err(|_| refused())?;
        let scale = unit_seconds(unit).ok_or_else(refused)?;
        total = total
            .checked_add(Duration::try_from_secs_f64(number * scale).map_err(|_| refused())?)
            .ok_or_else(refused)?;
        rest = after.trim_start();
    }
    Ok(total)
}

/// A duration as a user writes it, which [`parse`] reads back: `0s`, `8s`,
/// `500ms`, `1.5s`, `10m`, `1h30m` (not `Debug`'s `0ns` or `8.000000001s`).
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let nanos = duration.subsec_nanos();
    if duration < Duration::from_secs(1) && nanos.is_multiple_of(1_000_000) {
        return format!("{}ms", nanos / 1_000_000);
    }
    let whole = duration.as_secs();
    let (hours, minutes, seconds) = (whole / 3600, whole % 3600 / 60, whole % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if nanos > 0 {
        text.push_str(&format!("{}s", seconds as f64 + f64::from(nanos) / 1e9));
    } else if seconds > 0 {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

/// Seconds in one `unit`.
fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_number_is_seconds_and_units_combine() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        for (text, want) in [
            ("30", s(30)),
            ("0.5", ms(500)),
            (" 300 ", s(300)),
            ("500ms", ms(500)),
            ("1.5s", ms(1500)),
            ("90s", s(90)),
            ("5m", s(300)),
            ("1h30m", s(5400)),
            ("1h 30m", s(5400)),
            ("2 minutes", s(120)),
            ("7d", s(7 * 86_400)),
            ("2w", s(14 * 86_400)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_duration_is_written_as_a_user_writes_it_and_reads_back() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(8), "8s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(8 * 3600), "8h"),
            (Duration::from_millis(90_250), "1m30.25s"),
            (Duration::from_micros(1500), "0.0015s"),
        ] {
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Ok(duration), "{text} reads back");
        }
    }

    #[test]
    fn what_is_not_a_duration_is_refused_naming_the_units() {
        for text in ["", "soon", "5x", "-1", "m", "1h30", "1..2s", "NaN"] {
            let error = parse(text).unwrap_err();
            assert!(
                error.contains("a bare number is seconds") && error.contains("ms, s, m, h, d, w"),
                "{text}: {error}"
            );
        }
    }
}

//! The ALB access log format, as AWS documents it ("Access logs for your
//! Application Load Balancer", access log entries): one line per request,
//! fields separated by one space, in [`FIELDS`]' order, the fields of
//! [`QUOTED`] in double quotes. [`Record::render`] writes a line; the local
//! ALB writes its lines straight from its entries with the same field
//! writers ([`write_quoted`], [`write_plain`], [`write_number`],
//! [`write_address`], [`write_duration`], and [`TimeWriter`], which formats
//! the date and time of day once a second), no record in between, into any
//! [`Line`] (a `String`, or the local ALB's byte buffers); `migrate` (verify, leaks, plan, retire) reads lines with
//! [`Record::parse`], which also takes older lines that end before the newer
//! trailing fields, and newer lines with fields after the last one known here.
//!
//! Also the file layout AWS delivers to S3 ([`object_key`]) and the timestamps
//! of the format ([`format_time`], [`parse_time`]). Pure: no I/O, no clock.

use std::fmt::Write as _;

/// Where the field writers append a line: a `String`, or a byte buffer that
/// holds lines of UTF-8 (the local ALB's, which then never checks the ASCII
/// the writers make).
pub trait Line {
    /// Appends ASCII the writers made (digits and punctuation).
    fn push_ascii(&mut self, ascii: &[u8]);
    /// Appends a field's text.
    fn push_text(&mut self, text: &str);
    /// Room for `additional` more bytes.
    fn reserve_bytes(&mut self, additional: usize);
}

impl Line for String {
    fn push_ascii(&mut self, ascii: &[u8]) {
        self.push_str(std::str::from_utf8(ascii).unwrap_or_default());
    }

    fn push_text(&mut self, text: &str) {
        self.push_str(text);
    }

    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl Line for Vec<u8> {
    fn push_ascii(&mut self, ascii: &[u8]) {
        self.extend_from_slice(ascii);
    }

    fn push_text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }

    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

/// AWS's access log fields, in the order of a line.
pub const FIELDS: [&str; 33] = [
    "type",
    "time",
    "elb",
    "client:port",
    "target:port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target:port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
    "transformed_host",
    "transformed_uri",
    "request_transform_status",
];

/// The fields AWS writes in double quotes.
pub const QUOTED: [&str; 15] = [
    "request",
    "user_agent",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target:port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "transformed_host",
    "transformed_uri",
    "request_transform_status",
];

/// The fewest fields a line may have: up to `request`, the field every reader
/// needs. Older logs end after `ssl_protocol`, `target_group_arn`,
/// `trace_id`, ...; the fields they lack read as `-`.
pub const MIN_FIELDS: usize = 13;

/// The connection types a line starts with.
pub const TYPES: [&str; 6] = ["http", "https", "h2", "grpcs", "ws", "wss"];

/// One access log entry: every field as the line holds it, unquoted (`-` for
/// a value that is not there, as AWS writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    values: Vec<String>,
}

/// Why a line is not an access log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A quoted field has no closing quote.
    Unterminated,
    /// A quoted field is followed by something other than a space.
    TextAfterQuote,
    /// The first field is none of [`TYPES`].
    UnknownType,
    /// Fewer than [`MIN_FIELDS`] fields.
    TooFewFields(usize),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Unterminated => formatter.write_str("unterminated quoted field"),
            ParseError::TextAfterQuote => formatter.write_str("text directly after a quoted field"),
            ParseError::UnknownType => {
                formatter.write_str("not an ALB access log line (unknown connection type)")
            }
            ParseError::TooFewFields(_) => {
                formatter.write_str("too few fields for an ALB access log line")
            }
        }
    }
}

impl std::error::Error for ParseError {}

impl Default for Record {
    fn default() -> Self {
        Record::new()
    }
}

impl Record {
    /// An entry of type `http` with every other field `-`, except those AWS
    /// writes as numbers when there is nothing to say (`-1` times, `0` bytes).
    pub fn new() -> Record {
        let mut record = Record {
            values: vec!["-".to_owned(); FIELDS.len()],
        };
        record.set("type", "http");
        for field in [
            "request_processing_time",
            "target_processing_time",
            "response_processing_time",
        ] {
            record.set(field, "-1");
        }
        record.set("received_bytes", "0");
        record.set("sent_bytes", "0");
        record
    }

    /// The value of a field by its name in [`FIELDS`]; `-` for a field the
    /// line did not have. Panics on a name that is not in [`FIELDS`] (a
    /// programming error, never input).
    pub fn get(&self, field: &str) -> &str {
        self.values.get(index_of(field)).map_or("-", String::as_str)
    }

    /// Sets a field by its name in [`FIELDS`] (same panic as [`Record::get`]).
    pub fn set(&mut self, field: &str, value: impl Into<String>) -> &mut Record {
        let index = index_of(field);
        if self.values.len() <= index {
            self.values.resize(index + 1, "-".to_owned());
        }
        self.values[index] = value.into();
        self
    }

    /// Every field's value in [`FIELDS`]' order (as many as the line had).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Parses one line (its line ending may be there). Missing trailing
    /// fields read as `-`; fields after the last known one are kept in
    /// [`Record::values`] and otherwise ignored.
    pub fn parse(line: &str) -> Result<Record, ParseError> {
        let values = split_fields(line.trim_end_matches(['\n', '\r']))?;
        if !TYPES.contains(&values.first().map_or("", String::as_str)) {
            return Err(ParseError::UnknownType);
        }
        if values.len() < MIN_FIELDS {
            return Err(ParseError::TooFewFields(values.len()));
        }
        Ok(Record { values })
    }

    /// The line, without a line ending: every field of [`FIELDS`], quoted
    /// where AWS quotes (a `"` or `\` inside is escaped with `\`).
    pub fn render(&self) -> String {
        let mut line = String::with_capacity(400);
        self.render_into(&mut line);
        line
    }

    /// [`Record::render`] appended to `line`.
    pub fn render_into(&self, line: &mut String) {
        for (index, field) in FIELDS.iter().enumerate() {
            if index > 0 {
                line.push(' ');
            }
            let value = self.values.get(index).map_or("-", String::as_str);
            if QUOTED.contains(field) {
                write_quoted(line, value);
            } else {
                write_plain(line, value);
            }
        }
    }

    /// The request's method, URL and protocol from the `request` field
    /// (`"GET http://host:80/path?q HTTP/1.1"`); `None` when the ALB could not
    /// parse the request (`"- - -"`) or the field is not three words.
    pub fn request(&self) -> Option<(&str, &str, &str)> {
        let mut words = self.get("request").split(' ');
        let (Some(method), Some(url), Some(protocol), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return None;
        };
        (method != "-" && url != "-").then_some((method, url, protocol))
    }

    /// The path and query of the request URL (`/path?query`), `/` for a URL
    /// with no path.
    pub fn target(&self) -> Option<String> {
        let (_, url, _) = self.request()?;
        target_of_url(url)
    }

    /// The path of the request URL, without the query.
    pub fn path(&self) -> Option<String> {
        let target = self.target()?;
        Some(match target.split_once('?') {
            Some((path, _)) => path.to_owned(),
            None => target,
        })
    }

    /// The target group that served the request; `None` for `-` (the ALB
    /// answered itself).
    pub fn target_group_arn(&self) -> Option<&str> {
        Some(self.get("target_group_arn")).filter(|arn| *arn != "-")
    }

    /// The `time` field as microseconds since the Unix epoch.
    pub fn time_micros(&self) -> Option<i64> {
        parse_time(self.get("time"))
    }

    /// The client address without the port (`client:port`).
    pub fn client(&self) -> &str {
        let client = self.get("client:port");
        client
            .rsplit_once(':')
            .map_or(client, |(address, _)| address)
    }
}

impl Record {
    /// What in this entry does not have the shape AWS documents for its
    /// field (empty when every field has it): the connection type, ISO 8601
    /// times, `ip:port` addresses, times in seconds or `-1`, status codes or
    /// `-`, byte counts, three-word request, an ELBv2 target group ARN or
    /// `-`, a rule priority (`0` for the default action) or `-`.
    pub fn shape_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |field: &str, ok: bool| {
            if !ok {
                problems.push(format!("{field} is {:?}", self.get(field)));
            }
        };
        check("type", TYPES.contains(&self.get("type")));
        check("time", parse_time(self.get("time")).is_some());
        check("elb", self.get("elb").split('/').count() == 3);
        check("client:port", is_address(self.get("client:port")));
        check(
            "target:port",
            self.get("target:port") == "-" || is_address(self.get("target:port")),
        );
        for field in [
            "request_processing_time",
            "target_processing_time",
            "response_processing_time",
        ] {
            let value = self.get(field);
            check(
                field,
                value == "-1"
                    || (value.parse::<f64>().is_ok_and(|s| s >= 0.0)
                        && value
                            .split_once('.')
                            .is_some_and(|(_, decimals)| decimals.len() == 3)),
            );
        }
        for field in ["elb_status_code", "target_status_code"] {
            let value = self.get(field);
            check(
                field,
                value == "-" || (value.len() == 3 && value.parse::<u16>().is_ok()),
            );
        }
        for field in ["received_bytes", "sent_bytes"] {
            check(field, self.get(field).parse::<u64>().is_ok());
        }
        check(
            "request",
            self.request().is_some() || self.get("request") == "- - -",
        );
        let arn = self.get("target_group_arn");
        check(
            "target_group_arn",
            arn == "-"
                || (arn.starts_with("arn:aws:elasticloadbalancing:")
                    && arn.contains(":targetgroup/")),
        );
        let priority = self.get("matched_rule_priority");
        check(
            "matched_rule_priority",
            priority == "-" || priority.parse::<u32>().is_ok(),
        );
        let created = self.get("request_creation_time");
        check(
            "request_creation_time",
            created == "-" || parse_time(created).is_some(),
        );
        problems
    }
}

fn is_address(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(address, port)| {
        port.parse::<u16>().is_ok()
            && !address.is_empty()
            && address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
    })
}

fn index_of(field: &str) -> usize {
    FIELDS
        .iter()
        .position(|known| *known == field)
        .unwrap_or_else(|| panic!("{field:?} is not an ALB access log field"))
}

/// Splits a line into its fields: separated by one space; quoted fields may
/// hold spaces and backslash-escaped characters.
pub fn split_fields(line: &str) -> Result<Vec<String>, ParseError> {
    let mut fields = Vec::with_capacity(FIELDS.len());
    let mut characters = line.chars().peekable();
    while characters.peek().is_some() {
        let mut field = String::new();
        if characters.peek() == Some(&'"') {
            characters.next();
            loop {
                match characters.next() {
                    None => return Err(ParseError::Unterminated),
                    Some('\\') => match characters.next() {
                        Some(escaped) => field.push(escaped),
                        None => return Err(ParseError::Unterminated),
                    },
                    Some('"') => break,
                    Some(other) => field.push(other),
                }
            }
            match characters.next() {
                None | Some(' ') => {}
                Some(_) => return Err(ParseError::TextAfterQuote),
            }
        } else {
            for character in characters.by_ref() {
                if character == ' ' {
                    break;
                }
                field.push(character);
            }
        }
        fields.push(field);
    }
    Ok(fields)
}

/// The path and query of an absolute URL as the ALB logs it
/// (`http://host:80/path?query`), or of a path as is.
pub fn target_of_url(url: &str) -> Option<String> {
    if url.starts_with('/') {
        return Some(url.to_owned());
    }
    let (_, rest) = url.split_once("://")?;
    let target = match rest.find(['/', '?']) {
        Some(start) if rest[start..].starts_with('?') => format!("/{}", &rest[start..]),
        Some(start) => rest[start..].to_owned(),
        None => "/".to_owned(),
    };
    Some(target)
}

/// A quoted field's value appended to `line` as [`Record::render`] writes it:
/// in double quotes, a `"` or `\\` inside escaped with `\\`.
pub fn write_quoted(line: &mut impl Line, value: &str) {
    line.reserve_bytes(value.len() + 2);
    line.push_ascii(b"\"");
    let mut rest = value;
    // Up to each `"` or `\\`, then the escape: both are ASCII, so the
    // split never falls inside a character.
    while let Some(at) = rest.bytes().position(|byte| byte == b'"' || byte == b'\\') {
        line.push_text(&rest[..at]);
        line.push_ascii(&[b'\\', rest.as_bytes()[at]]);
        rest = &rest[at + 1..];
    }
    line.push_text(rest);
    line.push_ascii(b"\"");
}

/// An unquoted field's value appended to `line` as [`Record::render`] writes
/// it: `-` when empty.
pub fn write_plain(line: &mut impl Line, value: &str) {
    if value.is_empty() {
        line.push_ascii(b"-");
    } else {
        line.push_text(value);
    }
}

/// A processing time as AWS writes it: seconds with millisecond precision,
/// or `-1` when there is none (the request never reached a target).
pub fn format_seconds(seconds: Option<f64>) -> String {
    let mut text = String::with_capacity(8);
    write_seconds(&mut text, seconds);
    text
}

/// [`format_seconds`] appended to `line` (no allocation).
pub fn write_seconds(line: &mut String, seconds: Option<f64>) {
    match seconds {
        Some(seconds) if seconds >= 0.0 => {
            let _ = write!(line, "{seconds:.3}");
        }
        _ => line.push_str("-1"),
    }
}

/// A time as the `time` field writes it, ISO 8601 in UTC with microseconds:
/// `2026-12-03T11:35:16.123456Z`.
pub fn format_time(unix_micros: i64) -> String {
    let mut text = String::with_capacity(27);
    write_time(&mut text, unix_micros);
    text
}

/// [`format_time`] appended to `line` (no allocation).
pub fn write_time(line: &mut String, unix_micros: i64) {
    let seconds = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let _ = write!(
        line,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// [`write_time`] for lines written one after another: the date and time of
/// day of the last second written are kept, so a line of the same second
/// only writes its microseconds (a writer of many lines a second).
#[derive(Debug, Default, Clone)]
pub struct TimeWriter {
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    prefix: String,
}

impl TimeWriter {
    /// Appends `unix_micros` as [`write_time`] does.
    pub fn write(&mut self, line: &mut impl Line, unix_micros: i64) {
        let second = unix_micros.div_euclid(1_000_000);
        if self.second != Some(second) {
            self.prefix.clear();
            write_time(&mut self.prefix, second * 1_000_000);
            self.prefix.truncate(self.prefix.len() - "000000Z".len());
            self.second = Some(second);
        }
        line.push_text(&self.prefix);
        let micros = unix_micros.rem_euclid(1_000_000) as u32;
        let mut digits = *b"000000Z";
        fill_digits(&mut digits[..6], micros);
        line.push_ascii(&digits);
    }
}

/// Two decimal digits of each number under 100, for writing numbers two
/// digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `value`'s last `digits.len()` decimal digits into `digits`,
/// zero-padded on the left.
fn fill_digits(digits: &mut [u8], mut value: u32) {
    let mut at = digits.len();
    while at >= 2 {
        let pair = (value % 100) as usize * 2;
        digits[at - 2..at].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        value /= 100;
        at -= 2;
    }
    if at == 1 {
        digits[0] = b'0' + (value % 10) as u8;
    }
}

/// Writes `value` in decimal at the end of `buffer`; returns where it starts.
fn number_at_end(buffer: &mut [u8], mut value: u64) -> usize {
    let mut at = buffer.len();
    while value >= 100 {
        let pair = (value % 100) as usize * 2;
        buffer[at - 2..at].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        value /= 100;
        at -= 2;
    }
    if value >= 10 {
        let pair = value as usize * 2;
        buffer[at - 2..at].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        at -= 2;
    } else {
        at -= 1;
        buffer[at] = b'0' + value as u8;
    }
    at
}

/// A number appended to `line` in decimal (no formatting machinery).
pub fn write_number(line: &mut impl Line, value: u64) {
    let mut digits = [0u8; 20];
    let at = number_at_end(&mut digits, value);
    line.push_ascii(&digits[at..]);
}

/// `ip:port` as the log writes it (`client:port`, `target:port`): an
/// IPv4-mapped address as IPv4, an IPv6 address without brackets, as AWS
/// writes them.
pub fn write_address(line: &mut impl Line, ip: std::net::IpAddr, port: u16) {
    match crate::cidr::canonical_ip(ip) {
        std::net::IpAddr::V4(v4) => {
            // `255.255.255.255:65535`, built from the end in one buffer.
            let mut text = [0u8; 21];
            let mut at = number_at_end(&mut text, u64::from(port));
            at -= 1;
            text[at] = b':';
            for (index, octet) in v4.octets().into_iter().enumerate().rev() {
                at = number_at_end(&mut text[..at], u64::from(octet));
                if index > 0 {
                    at -= 1;
                    text[at] = b'.';
                }
            }
            line.push_ascii(&text[at..]);
        }
        v6 => line.push_text(&format!("{v6}:{port}")),
    }
}

/// A processing time given as a duration, as AWS writes it: seconds with
/// millisecond precision (rounded to the nearest millisecond), or `-1` when
/// there is none.
pub fn write_duration(line: &mut impl Line, duration: Option<std::time::Duration>) {
    match duration {
        Some(duration) => {
            // In u64 (a u128 division costs more than the rest of the field).
            let micros = duration
                .as_secs()
                .saturating_mul(1_000_000)
                .saturating_add(u64::from(duration.subsec_micros()));
            let millis = micros.saturating_add(500) / 1000;
            // `S.mmm`, built from the end in one buffer.
            let mut text = [0u8; 24];
            let end = text.len();
            fill_digits(&mut text[end - 3..], (millis % 1000) as u32);
            text[end - 4] = b'.';
            let at = number_at_end(&mut text[..end - 4], millis / 1000);
            line.push_ascii(&text[at..]);
        }
        None => line.push_ascii(b"-1"),
    }
}

/// [`write_duration`] as a new string.
pub fn format_duration(duration: Option<std::time::Duration>) -> String {
    let mut text = String::with_capacity(8);
    write_duration(&mut text, duration);
    text
}

/// Reads a `time` (or `request_creation_time`) field: ISO 8601 in UTC,
/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, to microseconds since the Unix epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, clock) = text.split_once('T')?;
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = whole.split(':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: i64 = clock_parts.next()?.parse().ok()?;
    if clock_parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = format!("{:0<6}", &fraction[..fraction.len().min(6)])
        .parse()
        .ok()?;
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000) + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (era arithmetic:
/// 400-year eras of 146097 days, years starting in March).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number since 1970-01-01 (the inverse of
/// [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Why `name` is not an S3 bucket name, by S3's naming rules: 3 to 63
/// characters; lowercase letters, digits, dots and hyphens; a letter or
/// digit first and last; no two dots in a row; not an IP address. `None`:
/// a valid name. A name that passes never leaves the folder it names.
pub fn bucket_name_problem(name: &str) -> Option<String> {
    let problem = if !(3..=63).contains(&name.len()) {
        "it must be 3 to 63 characters long"
    } else if !name.bytes().all(|byte| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'.' || byte == b'-'
    }) {
        "it may hold only lowercase letters, digits, dots and hyphens"
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        "it must start and end with a letter or a digit"
    } else if name.contains("..") {
        "it must not hold two dots in a row"
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        "it must not be an IP address"
    } else {
        return None;
    };
    Some(format!("'{name}' is not a valid S3 bucket name: {problem}"))
}

/// Why `prefix` can't be a log prefix that stays inside its bucket: a `.`
/// or `..` segment. `None`: fine.
pub fn prefix_problem(prefix: &str) -> Option<String> {
    prefix
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
        .then(|| format!("'{prefix}' is not valid: a prefix can't hold a '.' or '..' segment"))
}

/// Where AWS delivers a log file in the bucket:
/// `[prefix/]AWSLogs/ACCOUNT/elasticloadbalancing/REGION/YYYY/MM/DD/ACCOUNT_elasticloadbalancing_REGION_app.NAME.ID_YYYYMMDDTHHMMZ_IP_RANDOM.log.gz`.
/// `load_balancer_id` is the resource id (`app/NAME/ID`; its slashes become
/// dots), `end_unix_seconds` the end of the interval the file covers (its
/// date is the delivery folder).
pub fn object_key(
    prefix: &str,
    account: &str,
    region: &str,
    load_balancer_id: &str,
    end_unix_seconds: i64,
    node_address: &str,
    random: &str,
) -> String {
    let (year, month, day) = civil_from_days(end_unix_seconds.div_euclid(86_400));
    let of_day = end_unix_seconds.rem_euclid(86_400);
    let prefix = prefix.trim_matches('/');
    let mut key = String::new();
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('/');
    }
    let _ = write!(
        key,
        "AWSLogs/{account}/elasticloadbalancing/{region}/{year:04}/{month:02}/{day:02}/\
         {account}_elasticloadbalancing_{region}_{}_{year:04}{month:02}{day:02}T{:02}{:02}Z_{node_address}_{random}.log.gz",
        load_balancer_id.replace('/', "."),
        of_day / 3600,
        of_day / 60 % 60,
    );
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3s_rules() {
        for good in ["alb-logs", "my.alb-logs", "abc", "a1-2.b3"] {
            assert_eq!(bucket_name_problem(good), None, "{good}");
        }
        for bad in [
            "../../escape",
            "My_Bucket",
            "ab",
            &"a".repeat(64),
            "-logs",
            "logs.",
            "a..b",
            "192.168.5.4",
            "a/b",
            "",
        ] {
            assert!(bucket_name_problem(bad).is_some(), "{bad}");
        }
        assert!(prefix_problem("prod/../x").is_some());
        assert!(prefix_problem("..").is_some());
        assert_eq!(prefix_problem("prod/edge"), None);
    }

    #[test]
    fn times_round_trip_and_match_known_dates() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            parse_time("2018-11-30T22:23:00.186641Z"),
            Some(1_543_616_580_186_641)
        );
        assert_eq!(
            format_time(1_543_616_580_186_641),
            "2018-11-30T22:23:00.186641Z"
        );
        assert_eq!(
            parse_time("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000)
        );
        for micros in [
            0,
            951_782_400_123_456,
            4_102_444_799_999_999,
            1_709_164_800_000_000,
        ] {
            assert_eq!(parse_time(&format_time(micros)), Some(micros));
        }
        assert_eq!(parse_time("2018-13-30T22:23:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    /// AWS's documented example entries (an HTTP entry, and an older entry
    /// that ends after `classification_reason`, without `conn_trace_id`).
    const AWS_EXAMPLES: [&str; 2] = [
        r#"http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1234abcd5678ef90"#,
        r#"https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/ HTTP/1.1" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" 1 2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-""#,
    ];

    #[test]
    fn the_field_list_is_aws_documented_order_and_quoting() {
        // AWS's table of access log entries, in order; (name, quoted).
        let documented = [
            ("type", false),
            ("time", false),
            ("elb", false),
            ("client:port", false),
            ("target:port", false),
            ("request_processing_time", false),
            ("target_processing_time", false),
            ("response_processing_time", false),
            ("elb_status_code", false),
            ("target_status_code", false),
            ("received_bytes", false),
            ("sent_bytes", false),
            ("request", true),
            ("user_agent", true),
            ("ssl_cipher", false),
            ("ssl_protocol", false),
            ("target_group_arn", false),
            ("trace_id", true),
            ("domain_name", true),
            ("chosen_cert_arn", true),
            ("matched_rule_priority", false),
            ("request_creation_time", false),
            ("actions_executed", true),
            ("redirect_url", true),
            ("error_reason", true),
            ("target:port_list", true),
            ("target_status_code_list", true),
            ("classification", true),
            ("classification_reason", true),
            ("conn_trace_id", false),
            ("transformed_host", true),
            ("transformed_uri", true),
            ("request_transform_status", true),
        ];
        assert_eq!(FIELDS.len(), documented.len());
        for (index, (name, quoted)) in documented.iter().enumerate() {
            assert_eq!(FIELDS[index], *name, "field {index}");
            assert_eq!(QUOTED.contains(name), *quoted, "quoting of {name}");
        }
    }

    #[test]
    fn aws_documented_examples_parse_with_every_field_in_shape() {
        for line in AWS_EXAMPLES {
            let record = Record::parse(line).unwrap();
            assert_eq!(record.shape_problems(), Vec::<String>::new(), "{line}");
            assert_eq!(record.path().as_deref(), Some("/"));
            assert_eq!(
                record.target_group_arn(),
                Some(
                    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067"
                )
            );
            assert_eq!(record.client(), "192.168.131.39");
            // Rendering writes every known field: the known prefix is the line.
            let rendered = record.render();
            assert!(rendered.starts_with(line), "{rendered}");
        }
        assert_eq!(
            Record::parse(AWS_EXAMPLES[0]).unwrap().get("conn_trace_id"),
            "TID_1234abcd5678ef90"
        );
        assert_eq!(
            Record::parse(AWS_EXAMPLES[1]).unwrap().get("conn_trace_id"),
            "-"
        );
    }

    #[test]
    fn older_and_newer_lines_parse_and_broken_lines_are_named() {
        let oldest = r#"http 2016-08-10T22:08:42.945958Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/a?b=1 HTTP/1.1" "curl/7.46.0" - -"#;
        let record = Record::parse(oldest).unwrap();
        assert_eq!(record.target().as_deref(), Some("/a?b=1"));
        assert_eq!(record.target_group_arn(), None);
        let newer = format!(r#"{} "-" "-" "-" "future""#, AWS_EXAMPLES[0]);
        assert_eq!(Record::parse(&newer).unwrap().values().len(), 34);
        assert_eq!(Record::parse("tcp x"), Err(ParseError::UnknownType));
        assert_eq!(Record::parse("http a b"), Err(ParseError::TooFewFields(3)));
        assert_eq!(Record::parse(r#"http "a"#), Err(ParseError::Unterminated));
        assert_eq!(
            Record::parse(r#"http "a"b"#),
            Err(ParseError::TextAfterQuote)
        );
    }

    #[test]
    fn the_fast_writers_write_what_the_formatting_writers_write() {
        let mut clock = TimeWriter::default();
        for micros in [
            0,
            1_543_616_580_186_641,
            1_543_616_580_999_999,
            1_543_616_581_000_007,
            1_709_164_800_000_000,
        ] {
            let mut line = String::new();
            clock.write(&mut line, micros);
            assert_eq!(line, format_time(micros));
        }
        for value in [0, 7, 10, 65_535, u64::MAX] {
            let mut line = String::new();
            write_number(&mut line, value);
            assert_eq!(line, value.to_string());
        }
        for (ip, port) in [("127.0.0.1", 80), ("::ffff:10.0.0.9", 443), ("::1", 9)] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut line = String::new();
            write_address(&mut line, ip, port);
            assert_eq!(line, format!("{}:{port}", crate::cidr::canonical_ip(ip)));
        }
        let duration = |micros| Some(std::time::Duration::from_micros(micros));
        assert_eq!(format_duration(duration(0)), "0.000");
        assert_eq!(format_duration(duration(1_499)), "0.001");
        assert_eq!(format_duration(duration(1_500)), "0.002");
        assert_eq!(format_duration(duration(12_345_678)), "12.346");
        assert_eq!(format_duration(None), "-1");
    }

    proptest::proptest! {
        /// The digit-pair writers agree with Rust's own formatting on any
        /// number, IPv4 address and port, and duration.
        #[test]
        fn the_fast_writers_agree_with_formatting(
            value: u64,
            octets: [u8; 4],
            port: u16,
            micros in 0u64..100_000_000_000,
            at in 0i64..4_102_444_800_000_000,
        ) {
            let mut line = String::from("x");
            write_number(&mut line, value);
            proptest::prop_assert_eq!(line, format!("x{value}"));
            let ip = std::net::IpAddr::from(octets);
            let mut line = String::new();
            write_address(&mut line, ip, port);
            proptest::prop_assert_eq!(line, format!("{ip}:{port}"));
            let millis = (micros + 500) / 1000;
            proptest::prop_assert_eq!(
                format_duration(Some(std::time::Duration::from_micros(micros))),
                format!("{}.{:03}", millis / 1000, millis % 1000)
            );
            let mut line = String::new();
            TimeWriter::default().write(&mut line, at);
            proptest::prop_assert_eq!(line, format_time(at));
        }
    }

    #[test]
    fn object_keys_follow_aws_layout() {
        assert_eq!(
            object_key(
                "logs",
                "123456789012",
                "us-east-2",
                "app/my-lb/1234567890abcdef",
                1_644_968_400,
                "10.0.0.1",
                "2soosksgsvd6axvz"
            ),
            "logs/AWSLogs/123456789012/elasticloadbalancing/us-east-2/2022/02/15/123456789012_elasticloadbalancing_us-east-2_app.my-lb.1234567890abcdef_20220215T2340Z_10.0.0.1_2soosksgsvd6axvz.log.gz"
        );
        assert!(object_key("", "1", "r", "app/n/i", 0, "ip", "x").starts_with("AWSLogs/1/"));
    }

    #[test]
    fn quoted_fields_are_escaped_and_read_back() {
        let mut record = Record::new();
        record
            .set("time", "2026-12-03T11:35:16.000001Z")
            .set("request", "GET http://h:80/a HTTP/1.1")
            .set("user_agent", "agent \"x\" \\ y");
        let line = record.render();
        assert!(line.contains(r#""agent \"x\" \\ y""#), "{line}");
        assert_eq!(
            Record::parse(&line).unwrap().get("user_agent"),
            "agent \"x\" \\ y"
        );
    }
}

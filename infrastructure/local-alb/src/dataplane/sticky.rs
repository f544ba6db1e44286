//! Sticky sessions through the load balancer's own cookies, as on AWS:
//! `AWSALBTG`/`AWSALBTGCORS` keep a client on one target group of a weighted
//! forward (group-level stickiness), `AWSALB`/`AWSALBCORS` on one target of a
//! group (`stickiness.enabled` with `lb_cookie`).
//!
//! A cookie's value is opaque, as AWS's is: which group or target it names
//! and until when is encrypted and authenticated with a key this process
//! draws at start (HMAC-SHA256 as a stream cipher over a random nonce, then
//! as a MAC over nonce and ciphertext), so a client can neither read nor
//! choose where it is sent, nor keep a cookie past its expiry. Cookies from an
//! earlier run of the process are not recognised: their clients are routed
//! afresh and get new cookies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The group-level cookie and its CORS twin.
pub const GROUP_COOKIE: &str = "AWSALBTG";
pub const GROUP_CORS_COOKIE: &str = "AWSALBTGCORS";
/// The target-level cookie and its CORS twin.
pub const TARGET_COOKIE: &str = "AWSALB";
pub const TARGET_CORS_COOKIE: &str = "AWSALBCORS";

const NONCE: usize = 12;
const PLAIN: usize = 16;
const TAG: usize = 16;

/// The key cookies are sealed with.
pub struct CookieKey([u8; 32]);

/// What a request's cookies ask for: the sticky ids of a target group and of
/// a target, each `None` when absent, forged or expired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Presented {
    pub group: Option<u64>,
    pub target: Option<u64>,
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A stable 64-bit id of a target group (by ARN) or target (by group ARN,
/// id and port), what a cookie names.
pub fn sticky_id(parts: &[&str]) -> u64 {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"ficus-sticky-id").expect("any key length");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    let digest = mac.finalize().into_bytes();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl CookieKey {
    pub fn random() -> CookieKey {
        CookieKey(rand::random())
    }

    fn mac(&self, label: u8, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(&[label]);
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// A cookie value naming `id` until `expires`.
    pub fn seal(&self, id: u64, expires: SystemTime) -> String {
        let nonce: [u8; NONCE] = rand::random();
        let mut plain = [0u8; PLAIN];
        plain[..8].copy_from_slice(&id.to_be_bytes());
        plain[8..].copy_from_slice(&unix_seconds(expires).to_be_bytes());
        let stream = self.mac(b'k', &[&nonce]);
        let mut sealed = Vec::with_capacity(NONCE + PLAIN + TAG);
        sealed.extend_from_slice(&nonce);
        sealed.extend(plain.iter().zip(stream).map(|(p, k)| p ^ k));
        let tag = self.mac(b't', &[&sealed]);
        sealed.extend_from_slice(&tag[..TAG]);
        hex::encode(sealed)
    }

    /// The id a cookie value names, if this key sealed it and it has not
    /// expired at `now`.
    pub fn open(&self, value: &str, now: SystemTime) -> Option<u64> {
        let sealed = hex::decode(value.trim()).ok()?;
        if sealed.len() != NONCE + PLAIN + TAG {
            return None;
        }
        let (body, tag) = sealed.split_at(NONCE + PLAIN);
        let expected = self.mac(b't', &[body]);
        // Constant-time enough for a MAC compare: fold every byte.
        let differs = expected[..TAG]
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs != 0 {
            return None;
        }
        let (nonce, cipher) = body.split_at(NONCE);
        let stream = self.mac(b'k', &[nonce]);
        let plain: Vec<u8> = cipher.iter().zip(stream).map(|(c, k)| c ^ k).collect();
        let id = u64::from_be_bytes(plain[..8].try_into().ok()?);
        let expires = u64::from_be_bytes(plain[8..].try_into().ok()?);
        (expires > unix_seconds(now)).then_some(id)
    }

    /// The sticky ids the `Cookie` header values name (the plain cookie
    /// first, then its CORS twin).
    pub fn presented<'h>(
        &self,
        cookie_headers: impl Iterator<Item = &'h [u8]>,
        now: SystemTime,
    ) -> Presented {
        let headers: Vec<&[u8]> = cookie_headers.collect();
        let find = |names: [&str; 2]| {
            names.iter().find_map(|name| {
                headers
                    .iter()
                    .find_map(|header| cookie_value(header, name))
                    .and_then(|value| self.open(value, now))
            })
        };
        Presented {
            group: find([GROUP_COOKIE, GROUP_CORS_COOKIE]),
            target: find([TARGET_COOKIE, TARGET_CORS_COOKIE]),
        }
    }
}

/// The value of cookie `name` in one `Cookie` header value.
fn cookie_value<'h>(header: &'h [u8], name: &str) -> Option<&'h str> {
    let header = std::str::from_utf8(header).ok()?;
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Appends the two `Set-Cookie` header lines of a cookie pair (plain and
/// CORS) naming `id` for `duration` from `now`, as AWS writes them on an
/// HTTP listener: the CORS twin without `Secure`, which AWS adds on HTTPS
/// only (docs/data-plane.md, "The CORS twins and `Secure`").
pub fn write_set_cookies(
    out: &mut Vec<u8>,
    key: &CookieKey,
    names: [&str; 2],
    id: u64,
    duration: Duration,
    now: SystemTime,
) {
    let expires = now + duration;
    let value = key.seal(id, expires);
    let date = httpdate::fmt_http_date(expires);
    let [plain, cors] = names;
    out.extend_from_slice(
        format!(
            "set-cookie: {plain}={value}; Expires={date}; Path=/\r\n\
             set-cookie: {cors}={value}; Expires={date}; Path=/; SameSite=None\r\n"
        )
        .as_bytes(),
    );
}

/// The `Set-Cookie` lines of a response as separate header values (for the
/// HTTP/2 path).
pub fn set_cookie_values(lines: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(lines)
        .unwrap_or_default()
        .split("\r\n")
        .filter_map(|line| line.strip_prefix("set-cookie: "))
}

/// Inserts header `lines` (each ending in CRLF) before the blank line that
/// ends the response head at the start of `out`.
pub fn insert_into_head(out: &mut Vec<u8>, lines: &[u8]) {
    if lines.is_empty() {
        return;
    }
    if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
        let at = end + 2;
        out.splice(at..at, lines.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_names_its_id_until_it_expires_and_only_for_its_key() {
        let key = CookieKey::random();
        let now = SystemTime::now();
        let value = key.seal(42, now + Duration::from_secs(60));
        assert_eq!(key.open(&value, now), Some(42));
        assert_eq!(key.open(&value, now + Duration::from_secs(61)), None);
        assert_eq!(CookieKey::random().open(&value, now), None);
        // Flipping any bit (to pick another group) is detected.
        let mut bytes = hex::decode(&value).unwrap();
        bytes[NONCE] ^= 1;
        assert_eq!(key.open(&hex::encode(bytes), now), None);
        assert_ne!(
            key.seal(42, now),
            key.seal(42, now),
            "values are not linkable"
        );
    }

    #[test]
    fn cookies_are_found_among_others_and_set_before_the_end_of_the_head() {
        let key = CookieKey::random();
        let now = SystemTime::now();
        let group = key.seal(7, now + Duration::from_secs(5));
        let header = format!("a=b; AWSALBTGCORS={group}; c=d");
        let presented = key.presented(std::iter::once(header.as_bytes()), now);
        assert_eq!(
            presented,
            Presented {
                group: Some(7),
                target: None
            }
        );

        let mut out = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
        let mut lines = Vec::new();
        write_set_cookies(
            &mut lines,
            &key,
            [GROUP_COOKIE, GROUP_CORS_COOKIE],
            7,
            Duration::from_secs(5),
            now,
        );
        insert_into_head(&mut out, &lines);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nset-cookie: AWSALBTG="));
        assert!(text.ends_with("SameSite=None\r\n\r\nok"), "{text}");
        assert_eq!(set_cookie_values(&lines).count(), 2);
    }
}

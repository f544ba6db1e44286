//! Responses the load balancer generates itself (errors, fixed responses,
//! redirects) and the request-id helpers. Pure except for the random source.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use crate::dataplane::pool::PooledBody;

use crate::dataplane::table::RedirectTemplate;

/// The body of every response the data plane sends: streamed from a target
/// or generated whole.
pub type ProxyBody = Either<PooledBody, Full<Bytes>>;

const SERVER: HeaderValue = HeaderValue::from_static("awselb/2.0");

/// A whole response the load balancer generates itself, marked
/// `Server: awselb/2.0`. The HTTP/1.x path writes it out directly, the
/// HTTP/2 path turns it into a [`Response`].
pub struct Generated {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Generated {
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut response = Response::new(Either::Right(Full::new(self.body)));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

pub fn generated(status: StatusCode, content_type: &str, body: Bytes) -> Generated {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(header::SERVER, SERVER);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    Generated {
        status,
        headers,
        body,
    }
}

/// An error page like ALB's: `<html><head><title>502 Bad Gateway</title>…`.
pub fn error_page(status: StatusCode) -> Generated {
    let title = format!(
        "{} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    generated(status, "text/html", Bytes::from(body))
}

/// The request facts a redirect may reuse.
pub struct RedirectSource<'a> {
    /// Host name without port.
    pub host: &'a str,
    pub listener_port: u16,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// The `Location` of a redirect action. Placeholders: `#{protocol}` (`HTTP`),
/// `#{host}`, `#{port}` (the listener's port), `#{path}` (the path without
/// its leading `/`), `#{query}` (without `?`). The port is left out when it
/// is the scheme's default; an empty query leaves out the `?`.
pub fn redirect_location(template: &RedirectTemplate, source: &RedirectSource<'_>) -> String {
    let port = source.listener_port.to_string();
    let fill = |text: &str| {
        text.replace("#{protocol}", "HTTP")
            .replace("#{host}", source.host)
            .replace("#{port}", &port)
            .replace(
                "#{path}",
                source.path.strip_prefix('/').unwrap_or(source.path),
            )
            .replace("#{query}", source.query.unwrap_or(""))
    };
    let scheme = fill(&template.protocol).to_ascii_lowercase();
    let host = fill(&template.host);
    let target_port = fill(&template.port);
    let mut path = fill(&template.path);
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let query = fill(&template.query);
    let default_port = match scheme.as_str() {
        "https" => "443",
        _ => "80",
    };
    let mut location = format!("{scheme}://{host}");
    if !target_port.is_empty() && target_port != default_port {
        location.push(':');
        location.push_str(&target_port);
    }
    location.push_str(&path);
    if !query.is_empty() {
        location.push('?');
        location.push_str(&query);
    }
    location
}

pub fn redirect(template: &RedirectTemplate, source: &RedirectSource<'_>) -> Generated {
    let status = if template.permanent {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::FOUND
    };
    let mut response = error_page(status);
    if let Ok(location) = HeaderValue::from_str(&redirect_location(template, source)) {
        response.headers.insert(header::LOCATION, location);
    }
    response
}

thread_local! {
    static RANDOM: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
}

/// A fast per-thread pseudo-random number (xorshift64*); not for secrets.
fn next_random() -> u64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A fresh trace id, `1-<8 hex epoch seconds>-<24 hex random>`.
pub fn new_trace_id() -> String {
    let mut id = [0u8; TRACE_ID_LEN];
    write_trace_id(&mut id);
    String::from_utf8_lossy(&id).into_owned()
}

/// Length of `1-<8 hex>-<24 hex>`.
const TRACE_ID_LEN: usize = 35;

/// Writes a new trace id into `out` (the request path's allocation-free form
/// of [`new_trace_id`]).
fn write_trace_id(out: &mut [u8; TRACE_ID_LEN]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    let random = (u128::from(next_random()) << 64 | u128::from(next_random())) >> 32;
    out[0] = b'1';
    out[1] = b'-';
    for (index, slot) in out[2..10].iter_mut().enumerate() {
        *slot = HEX[(seconds >> (28 - 4 * index) & 0xf) as usize];
    }
    out[10] = b'-';
    for (index, slot) in out[11..].iter_mut().enumerate() {
        *slot = HEX[(random >> (92 - 4 * index) & 0xf) as usize];
    }
}

/// The `X-Amzn-Trace-Id` forwarded to the target. Without a header (or an
/// unreadable one) the load balancer sends `Root=<new id>`. When the client's
/// header has a `Root` field it is kept and `Self=<new id>;` is put in front
/// of it; a header without `Root` gets `Root=<new id>;` in front (ALB's
/// documented behaviour).
pub fn trace_header(incoming: Option<&HeaderValue>) -> HeaderValue {
    let incoming = incoming.and_then(|v| v.to_str().ok());
    HeaderValue::from_bytes(trace_value(incoming).as_bytes())
        .expect("a trace value is visible ASCII")
}

/// The value of [`trace_header`], for the client's value as text.
pub fn trace_value(incoming: Option<&str>) -> TraceValue {
    let Some(existing) = incoming.filter(|v| !v.is_empty()) else {
        // The common case, without allocating.
        let mut value = [0u8; 5 + TRACE_ID_LEN];
        value[..5].copy_from_slice(b"Root=");
        let id: &mut [u8; TRACE_ID_LEN] = (&mut value[5..])
            .try_into()
            .expect("the slice is TRACE_ID_LEN long");
        write_trace_id(id);
        return TraceValue::Fresh(value);
    };
    let id = new_trace_id();
    let has_root = existing
        .split(';')
        .any(|field| field.trim_start().starts_with("Root="));
    let existing = existing
        .split(';')
        .filter(|field| !field.trim_start().starts_with("Self="))
        .collect::<Vec<_>>()
        .join(";");
    let value = if has_root {
        format!("Self={id};{existing}")
    } else {
        format!("Root={id};{existing}")
    };
    // Only visible ASCII may be echoed back into a header.
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        TraceValue::Derived(value)
    } else {
        TraceValue::Derived(format!("Root={id}"))
    }
}

/// An `X-Amzn-Trace-Id` value: a fresh `Root=` id (on the stack) or one
/// derived from the client's.
pub enum TraceValue {
    Fresh([u8; 5 + TRACE_ID_LEN]),
    Derived(String),
}

impl TraceValue {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TraceValue::Fresh(value) => value,
            TraceValue::Derived(value) => value.as_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::dataplane::table::RedirectTemplate;

    fn template(
        protocol: &str,
        host: &str,
        port: &str,
        path: &str,
        query: &str,
    ) -> RedirectTemplate {
        RedirectTemplate {
            protocol: protocol.to_owned(),
            host: host.to_owned(),
            port: port.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            permanent: true,
        }
    }

    #[test]
    fn redirect_locations_fill_placeholders() {
        let defaults = || template("#{protocol}", "#{host}", "#{port}", "/#{path}", "#{query}");
        let cases: Vec<(RedirectTemplate, u16, &str, Option<&str>, &str)> = vec![
            (
                defaults(),
                80,
                "/api/users",
                Some("a=1"),
                "http://forum.test/api/users?a=1",
            ),
            (defaults(), 8080, "/x", None, "http://forum.test:8080/x"),
            (
                template("HTTPS", "#{host}", "443", "/#{path}", "#{query}"),
                80,
                "/login",
                None,
                "https://forum.test/login",
            ),
            (
                template(
                    "HTTPS",
                    "new.example.com",
                    "8443",
                    "/v2/#{path}",
                    "from=#{host}",
                ),
                80,
                "/a/b",
                Some("z=9"),
                "https://new.example.com:8443/v2/a/b?from=forum.test",
            ),
            (
                template("#{protocol}", "#{host}", "#{port}", "moved", ""),
                80,
                "/old",
                Some("q=1"),
                "http://forum.test/moved",
            ),
        ];
        for (template, port, path, query, expected) in cases {
            let source = RedirectSource {
                host: "forum.test",
                listener_port: port,
                path,
                query,
            };
            assert_eq!(redirect_location(&template, &source), expected);
        }
    }

    #[test]
    fn trace_ids_are_minted_or_extended() {
        let fresh = trace_header(None);
        let fresh = fresh.to_str().expect("ascii");
        let id = fresh.strip_prefix("Root=1-").expect("Root=1-…");
        let (seconds, random) = id.split_once('-').expect("two parts");
        assert_eq!(seconds.len(), 8);
        assert_eq!(random.len(), 24);
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let stamped = u64::from_str_radix(seconds, 16).expect("hex");
        assert!(
            now.abs_diff(stamped) < 5,
            "epoch seconds {stamped} vs {now}"
        );
        assert_ne!(trace_header(None), trace_header(None), "ids are random");

        let client =
            HeaderValue::from_static("Root=1-67891233-abcdef012345678912345678;CalledFrom=app");
        let forwarded = trace_header(Some(&client));
        let forwarded = forwarded.to_str().expect("ascii");
        let (self_field, rest) = forwarded.split_once(';').expect("Self first");
        assert!(self_field.starts_with("Self=1-"), "{forwarded}");
        assert_eq!(
            rest,
            "Root=1-67891233-abcdef012345678912345678;CalledFrom=app"
        );

        let without_root = HeaderValue::from_static("CalledFrom=app");
        let forwarded = trace_header(Some(&without_root));
        let forwarded = forwarded.to_str().expect("ascii");
        assert!(forwarded.starts_with("Root=1-"), "{forwarded}");
        assert!(forwarded.ends_with(";CalledFrom=app"), "{forwarded}");
    }
}

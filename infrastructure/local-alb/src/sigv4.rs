//! Verifying AWS Signature Version 4 on control API requests.
//!
//! The canonical request is rebuilt from what arrived (method, path, query,
//! the headers the client says it signed, the payload hash) and signed with
//! the configured secret; the result must equal the client's signature.
//! Secrets and the `Authorization` header are never logged.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

type HmacSha256 = Hmac<Sha256>;

/// The access key pair the control API accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Largest accepted difference between the request's time and ours.
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(15);

/// Why a request was refused; each maps to an AWS error code (HTTP 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Request is missing Authentication Token")]
    Missing,
    #[error("Authorization header requires a valid AWS4-HMAC-SHA256 signature: {0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid (unknown access key {0})")]
    UnknownAccessKey(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. {0}"
    )]
    SignatureDoesNotMatch(String),
    #[error("Signature expired: {0}")]
    Expired(String),
}

impl AuthError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationToken",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::UnknownAccessKey(_) => "InvalidClientTokenId",
            AuthError::SignatureDoesNotMatch(_) | AuthError::Expired(_) => "SignatureDoesNotMatch",
        }
    }
}

/// The parts of a request the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded), for example `/`.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Whom requests must be signed for.
pub struct Verifier<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    pub service: &'a str,
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

struct Authorization<'h> {
    access_key_id: &'h str,
    date: &'h str,
    region: &'h str,
    service: &'h str,
    signed_headers: &'h str,
    signature: &'h str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| AuthError::Incomplete(format!("the algorithm must be {ALGORITHM}")))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential =
        credential.ok_or_else(|| AuthError::Incomplete("Credential= is missing".into()))?;
    let signed_headers =
        signed_headers.ok_or_else(|| AuthError::Incomplete("SignedHeaders= is missing".into()))?;
    let signature =
        signature.ok_or_else(|| AuthError::Incomplete("Signature= is missing".into()))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(AuthError::Incomplete(
            "Credential must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request".into(),
        ));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

impl Verifier<'_> {
    /// Checks the `Authorization` header of `request` at time `now`.
    pub fn verify(&self, request: &SignedRequest, now: OffsetDateTime) -> Result<(), AuthError> {
        let header = match request.headers.get(http::header::AUTHORIZATION) {
            None => return Err(AuthError::Missing),
            Some(value) => value
                .to_str()
                .map_err(|_| AuthError::Incomplete("the header is not ASCII".into()))?,
        };
        let auth = parse_authorization(header)?;
        if auth.access_key_id != self.credentials.access_key_id {
            return Err(AuthError::UnknownAccessKey(auth.access_key_id.to_owned()));
        }
        if auth.region != self.region || auth.service != self.service {
            return Err(AuthError::SignatureDoesNotMatch(format!(
                "Credential should be scoped to region '{}' and service '{}', not '{}' and '{}'.",
                self.region, self.service, auth.region, auth.service
            )));
        }
        let amz_date = header_str(request.headers, "x-amz-date")
            .ok_or_else(|| AuthError::Incomplete("the X-Amz-Date header is missing".into()))?;
        let signed_at = time::PrimitiveDateTime::parse(
            amz_date,
            format_description!("[year][month][day]T[hour][minute][second]Z"),
        )
        .map_err(|_| {
            AuthError::Incomplete(format!("X-Amz-Date '{amz_date}' is not YYYYMMDDTHHMMSSZ"))
        })?
        .assume_utc();
        if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
            return Err(AuthError::SignatureDoesNotMatch(format!(
                "Credential date '{}' does not match X-Amz-Date '{amz_date}'.",
                auth.date
            )));
        }
        if (now - signed_at).abs() > MAX_CLOCK_SKEW {
            return Err(AuthError::Expired(format!(
                "{amz_date} is more than 15 minutes away from the server time {}",
                now.unix_timestamp()
            )));
        }
        let canonical = canonical_request(request, auth.signed_headers)?;
        let scope = format!(
            "{}/{}/{}/aws4_request",
            auth.date, auth.region, auth.service
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let expected = signature(
            &self.credentials.secret_access_key,
            auth.date,
            auth.region,
            auth.service,
            &string_to_sign,
        );
        if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
            return Err(AuthError::SignatureDoesNotMatch(String::new()));
        }
        Ok(())
    }
}

fn header_str<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The SigV4 canonical request for `signed_headers` (`host;x-amz-date`...).
fn canonical_request(request: &SignedRequest, signed_headers: &str) -> Result<String, AuthError> {
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = request
            .headers
            .get_all(name)
            .iter()
            .map(|v| {
                let text = String::from_utf8_lossy(v.as_bytes());
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(AuthError::SignatureDoesNotMatch(format!(
                "Signed header '{name}' is not in the request."
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // The client may state the payload hash in x-amz-content-sha256; it must
    // then be the body's (an unsigned payload is not accepted here).
    let payload_hash = hex::encode(Sha256::digest(request.body));
    if header_str(request.headers, "x-amz-content-sha256").is_some_and(|h| h != payload_hash) {
        return Err(AuthError::SignatureDoesNotMatch(
            "The x-amz-content-sha256 header is not the SHA-256 of the body.".to_owned(),
        ));
    }
    Ok(format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query)
    ))
}

/// Each path segment URI-encoded again (services other than S3 sign the
/// double-encoded path).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Query pairs decoded, re-encoded the SigV4 way and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn uri_encode(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The hex signature of `string_to_sign` with the key derived from `secret`.
fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
) -> String {
    let key = hmac(format!("AWS4{secret}").as_bytes(), date);
    let key = hmac(&key, region);
    let key = hmac(&key, service);
    let key = hmac(&key, "aws4_request");
    hex::encode(hmac(&key, string_to_sign))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example: IAM ListUsers, signed 2015-08-30T12:36:00Z.
    fn example(signature: &str) -> (http::HeaderMap, Credentials) {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
            )
            .parse()
            .unwrap(),
        );
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        (headers, credentials)
    }

    fn verify_example(signature: &str, now: OffsetDateTime) -> Result<(), AuthError> {
        let (headers, credentials) = example(signature);
        let verifier = Verifier {
            credentials: &credentials,
            region: "us-east-1",
            service: "iam",
        };
        verifier.verify(
            &SignedRequest {
                method: "GET",
                path: "/",
                query: "Version=2010-05-08&Action=ListUsers",
                headers: &headers,
                body: b"",
            },
            now,
        )
    }

    const EXAMPLE_SIGNATURE: &str =
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn example_time() -> OffsetDateTime {
        time::macros::datetime!(2015-08-30 12:40:00 UTC)
    }

    #[test]
    fn the_documented_example_verifies() {
        assert_eq!(verify_example(EXAMPLE_SIGNATURE, example_time()), Ok(()));
    }

    #[test]
    fn one_changed_digit_does_not_match() {
        let wrong = EXAMPLE_SIGNATURE.replacen('5', "6", 1);
        let err = verify_example(&wrong, example_time()).unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch");
    }

    #[test]
    fn a_request_older_than_fifteen_minutes_is_refused() {
        let late = example_time() + time::Duration::minutes(20);
        let err = verify_example(EXAMPLE_SIGNATURE, late).unwrap_err();
        assert!(matches!(err, AuthError::Expired(_)), "{err:?}");
    }

    #[test]
    fn the_secret_is_redacted_from_debug_output() {
        let (_, credentials) = example("x");
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("EXAMPLEKEY"), "{shown}");
    }
}

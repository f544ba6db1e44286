//! The pure router: what the original koa + koa-router service does with a method
//! and a raw request path, with no I/O.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::id::parse_id;
use crate::service::{Resource, Service};

/// A route of the forum API. Ids are already read the way `parseInt` reads them;
/// `None` is an id that matches nothing (NaN, or beyond any id in the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/`
    Ready,
    /// `/api` and `/api/`
    ApiReady,
    /// `/api/users`
    Users,
    /// `/api/users/:userId`
    User(Option<i64>),
    /// `/api/threads`
    Threads,
    /// `/api/threads/:threadId`
    Thread(Option<i64>),
    /// `/api/posts`
    Posts,
    /// `/api/posts/in-thread/:threadId`
    PostsInThread(Option<i64>),
    /// `/api/posts/by-user/:userId`
    PostsByUser(Option<i64>),
}

impl Route {
    /// The resource the route belongs to; `None` for the routes every service serves.
    pub fn resource(self) -> Option<Resource> {
        match self {
            Route::Ready | Route::ApiReady => None,
            Route::Users | Route::User(_) => Some(Resource::Users),
            Route::Threads | Route::Thread(_) => Some(Resource::Threads),
            Route::Posts | Route::PostsInThread(_) | Route::PostsByUser(_) => Some(Resource::Posts),
        }
    }
}

/// What a service answers to a method on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch {
    /// `GET` or `HEAD` on a known path: serve the route.
    Get(Route),
    /// `OPTIONS` on a known path: 204 with `Allow`.
    Options,
    /// `POST`, `PUT`, `PATCH` or `DELETE` on a known path: 405 with `Allow`.
    MethodNotAllowed,
    /// A standard HTTP method the router does not implement (`TRACE`, ...): 501,
    /// with `Allow` when the path is known.
    NotImplemented { known_path: bool },
    /// A method the router implements on an unknown path: 404.
    NotFound,
    /// Not an HTTP method Node.js knows (`FOO`, `get`): its HTTP parser answers 400
    /// and closes the connection.
    BadRequest,
}

/// The methods koa-router implements.
const ROUTER_METHODS: &[&str] = &["HEAD", "OPTIONS", "GET", "PUT", "PATCH", "POST", "DELETE"];

/// The other methods of Node.js's `http.METHODS`: its parser accepts them, the
/// router answers 501.
const OTHER_STANDARD_METHODS: &[&str] = &[
    "ACL",
    "BIND",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "LINK",
    "LOCK",
    "M-SEARCH",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "NOTIFY",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "TRACE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

/// Routes `method` (case-sensitive, as on the wire) on `raw_path` (the request
/// path before percent-decoding, without the query string) for `service`.
pub fn route(service: &Service, method: &str, raw_path: &str) -> RouteMatch {
    let known = match_path(raw_path).filter(|route| match route.resource() {
        Some(resource) => service.serves(resource),
        None => true,
    });
    match (method, known) {
        ("GET" | "HEAD", Some(route)) => RouteMatch::Get(route),
        ("OPTIONS", Some(_)) => RouteMatch::Options,
        (_, known) if ROUTER_METHODS.contains(&method) => match known {
            Some(_) => RouteMatch::MethodNotAllowed,
            None => RouteMatch::NotFound,
        },
        (_, known) if OTHER_STANDARD_METHODS.contains(&method) => RouteMatch::NotImplemented {
            known_path: known.is_some(),
        },
        _ => RouteMatch::BadRequest,
    }
}

/// Matches a raw path against the routes: literal segments ASCII
/// case-insensitively, one optional trailing slash, parameters are one non-empty
/// segment.
pub fn match_path(raw_path: &str) -> Option<Route> {
    let path = match raw_path.strip_suffix('/') {
        Some(stripped) if raw_path.len() > 1 => stripped,
        _ => raw_path,
    };
    if path == "/" {
        return Some(Route::Ready);
    }
    let mut rest = Some(path.strip_prefix('/')?);
    // The segments between slashes (`str::split`'s, found by a byte scan:
    // the segments are short and the slash is ASCII).
    let mut next = || {
        let text = rest?;
        match text.bytes().position(|byte| byte == b'/') {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    };
    let is = |segment: &str, word: &str| segment.eq_ignore_ascii_case(word);
    if !is(next()?, "api") {
        return None;
    }
    let Some(resource) = next() else {
        return Some(Route::ApiReady);
    };
    let first = next();
    let second = next();
    let third = next();
    let route = match (first, second, third) {
        (None, _, _) if is(resource, "users") => Route::Users,
        (None, _, _) if is(resource, "threads") => Route::Threads,
        (None, _, _) if is(resource, "posts") => Route::Posts,
        (Some(id), None, _) if is(resource, "users") => Route::User(param_id(id)?),
        (Some(id), None, _) if is(resource, "threads") => Route::Thread(param_id(id)?),
        (Some(word), Some(id), None) if is(resource, "posts") && is(word, "in-thread") => {
            Route::PostsInThread(param_id(id)?)
        }
        (Some(word), Some(id), None) if is(resource, "posts") && is(word, "by-user") => {
            Route::PostsByUser(param_id(id)?)
        }
        _ => return None,
    };
    Some(route)
}

/// A path parameter's id: `None` when the segment is empty (no match at all),
/// `Some(None)` when it matches but denotes no id.
fn param_id(raw_segment: &str) -> Option<Option<i64>> {
    if raw_segment.is_empty() {
        return None;
    }
    Some(parse_id(&decode_uri_component(raw_segment)))
}

/// JavaScript's `decodeURIComponent`, falling back to the raw text where it would
/// throw (a `%` not followed by two hex digits, or escapes that are not UTF-8), as
/// koa-router does.
pub fn decode_uri_component(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    let escapes_are_well_formed = bytes.iter().enumerate().all(|(at, &byte)| {
        byte != b'%'
            || bytes
                .get(at + 1..at + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_are_well_formed {
        return Cow::Borrowed(raw);
    }
    percent_decode_str(raw)
        .decode_utf8()
        .unwrap_or(Cow::Borrowed(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{MONOLITH, POSTS, THREADS, USERS};

    /// (raw path, the route the monolith serves for GET on it; None = 404)
    const PATH_CASES: &[(&str, Option<Route>)] = &[
        ("/", Some(Route::Ready)),
        ("//", Some(Route::Ready)),
        ("", None),
        ("///", None),
        ("/api", Some(Route::ApiReady)),
        ("/api/", Some(Route::ApiReady)),
        ("/API", Some(Route::ApiReady)),
        ("/api//", None),
        ("/apix", None),
        ("//api", None),
        ("/api/users", Some(Route::Users)),
        ("/api/users/", Some(Route::Users)),
        ("/API/USERS", Some(Route::Users)),
        ("/Api/Users/", Some(Route::Users)),
        ("/api/users//", None),
        ("//api/users", None),
        ("/api/usersx", None),
        ("/api/user", None),
        ("/api/%75sers", None),
        ("/api/users/1", Some(Route::User(Some(1)))),
        ("/api/users/1/", Some(Route::User(Some(1)))),
        ("/api/users/1//", None),
        ("/api/users/1/2", None),
        ("/api/users/1.5", Some(Route::User(Some(1)))),
        ("/api/users/1x", Some(Route::User(Some(1)))),
        ("/api/users/01", Some(Route::User(Some(1)))),
        ("/api/users/+2", Some(Route::User(Some(2)))),
        ("/api/users/%2B2", Some(Route::User(Some(2)))),
        ("/api/users/%20%202", Some(Route::User(Some(2)))),
        ("/api/users/1e3", Some(Route::User(Some(1)))),
        ("/api/users/abc", Some(Route::User(None))),
        ("/api/users/0x10", Some(Route::User(Some(0)))),
        ("/api/users/-1", Some(Route::User(Some(-1)))),
        ("/api/users/99999999999999999999", Some(Route::User(None))),
        ("/api/users/%E2%80%A82", Some(Route::User(Some(2)))),
        ("/api/users/%C2%852", Some(Route::User(None))),
        ("/api/users/%32", Some(Route::User(Some(2)))),
        ("/api/users/%32%zz", Some(Route::User(None))),
        ("/api/users/%32%FF", Some(Route::User(None))),
        ("/api/users/%3", Some(Route::User(None))),
        ("/api/threads", Some(Route::Threads)),
        ("/api/threads/", Some(Route::Threads)),
        ("/API/THREADS/2", Some(Route::Thread(Some(2)))),
        ("/api/threads/2/", Some(Route::Thread(Some(2)))),
        ("/api/threads/2/x", None),
        ("/api/posts", Some(Route::Posts)),
        ("/api/posts/", Some(Route::Posts)),
        ("/api/posts/1", None),
        ("/api/posts/in-thread", None),
        ("/api/posts/in-thread/", None),
        (
            "/api/posts/in-thread/1",
            Some(Route::PostsInThread(Some(1))),
        ),
        (
            "/api/posts/IN-THREAD/1/",
            Some(Route::PostsInThread(Some(1))),
        ),
        ("/api/posts/in-thread/1/2", None),
        ("/api/posts/in-threadx/1", None),
        ("/api/posts/by-user/99", Some(Route::PostsByUser(Some(99)))),
        ("/api/posts/By-User/2", Some(Route::PostsByUser(Some(2)))),
        ("/api/posts/by-user/", None),
        ("/api/posts/by-user//", None),
        ("/api/threads/in-thread/1", None),
        ("/api/users/in-thread/1", None),
    ];

    #[test]
    fn paths_match_like_koa_router() {
        for &(path, expected) in PATH_CASES {
            assert_eq!(match_path(path), expected, "path {path:?}");
        }
    }

    const ALL_PATHS: &[&str] = &[
        "/",
        "/api",
        "/api/",
        "/api/users",
        "/api/users/1",
        "/api/threads",
        "/api/threads/1",
        "/api/posts",
        "/api/posts/in-thread/1",
        "/api/posts/by-user/1",
    ];

    #[test]
    fn extracted_services_know_only_their_own_resource() {
        for service in [MONOLITH, USERS, THREADS, POSTS] {
            for &path in ALL_PATHS {
                let route = match_path(path).unwrap();
                let served = route.resource().is_none_or(|r| service.serves(r));
                let expected = if served {
                    RouteMatch::Get(route)
                } else {
                    RouteMatch::NotFound
                };
                assert_eq!(
                    route_of(service, "GET", path),
                    expected,
                    "{service:?} {path}"
                );
                let expected = if served {
                    RouteMatch::MethodNotAllowed
                } else {
                    RouteMatch::NotFound
                };
                assert_eq!(
                    route_of(service, "POST", path),
                    expected,
                    "{service:?} {path}"
                );
            }
        }
    }

    fn route_of(service: Service, method: &str, path: &str) -> RouteMatch {
        route(&service, method, path)
    }

    /// (method, raw path, what the monolith answers)
    const METHOD_CASES: &[(&str, &str, RouteMatch)] = &[
        ("GET", "/api/users", RouteMatch::Get(Route::Users)),
        ("HEAD", "/api/users", RouteMatch::Get(Route::Users)),
        ("OPTIONS", "/api/users", RouteMatch::Options),
        ("OPTIONS", "/", RouteMatch::Options),
        ("POST", "/api/users", RouteMatch::MethodNotAllowed),
        ("PUT", "/api/users/1", RouteMatch::MethodNotAllowed),
        ("PATCH", "/api/threads", RouteMatch::MethodNotAllowed),
        (
            "DELETE",
            "/api/posts/by-user/1",
            RouteMatch::MethodNotAllowed,
        ),
        ("GET", "/nope", RouteMatch::NotFound),
        ("HEAD", "/nope", RouteMatch::NotFound),
        ("OPTIONS", "/nope", RouteMatch::NotFound),
        ("POST", "/nope", RouteMatch::NotFound),
        ("PUT", "/nope", RouteMatch::NotFound),
        ("PATCH", "/nope", RouteMatch::NotFound),
        ("DELETE", "/nope", RouteMatch::NotFound),
        (
            "TRACE",
            "/api/users",
            RouteMatch::NotImplemented { known_path: true },
        ),
        (
            "TRACE",
            "/nope",
            RouteMatch::NotImplemented { known_path: false },
        ),
        (
            "M-SEARCH",
            "/",
            RouteMatch::NotImplemented { known_path: true },
        ),
        (
            "PROPFIND",
            "/api",
            RouteMatch::NotImplemented { known_path: true },
        ),
        (
            "QUERY",
            "/api/posts",
            RouteMatch::NotImplemented { known_path: true },
        ),
        ("FOO", "/api/users", RouteMatch::BadRequest),
        ("get", "/api/users", RouteMatch::BadRequest),
        ("FOO", "/nope", RouteMatch::BadRequest),
    ];

    #[test]
    fn methods_are_answered_like_koa_on_node() {
        for &(method, path, expected) in METHOD_CASES {
            assert_eq!(
                route_of(MONOLITH, method, path),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn every_standard_method_is_classified() {
        for method in OTHER_STANDARD_METHODS {
            assert!(matches!(
                route_of(MONOLITH, method, "/"),
                RouteMatch::NotImplemented { known_path: true }
            ));
        }
    }

    #[test]
    fn decode_uri_component_falls_back_to_raw_text() {
        assert_eq!(decode_uri_component("%2B2"), "+2");
        assert_eq!(decode_uri_component("a%20b"), "a b");
        assert_eq!(decode_uri_component("%zz"), "%zz");
        assert_eq!(decode_uri_component("%32%"), "%32%");
        assert_eq!(decode_uri_component("%C3%A9"), "é");
        assert_eq!(decode_uri_component("%C3"), "%C3");
    }
}

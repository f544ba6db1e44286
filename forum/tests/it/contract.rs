//! The forum API contract (shared/seed-api.md), row by row, against the four
//! services started in-process on free ports, over raw HTTP/1.1.

use std::net::SocketAddr;

use forum::test_support::{RawResponse, send, start_in_process, test_settings};
use forum::{MONOLITH, POSTS, Resource, Service, THREADS, USERS};

const USER: [&str; 5] = [
    "",
    r#"{"id":1,"username":"marceline","name":"Marceline Abadeer","bio":"1000 year old vampire queen, musician"}"#,
    r#"{"id":2,"username":"finn","name":"Finn 'the Human' Mertens","bio":"Adventurer and hero, last human, defender of good"}"#,
    r#"{"id":3,"username":"pb","name":"Bonnibel Bubblegum","bio":"Scientist, bearer of candy power, ruler of the candy kingdom"}"#,
    r#"{"id":4,"username":"jake","name":"Jake the Dog","bio":"Former criminal, now magical dog adventurer, and father"}"#,
];
const THREAD: [&str; 4] = [
    "",
    r#"{"id":1,"title":"What's up with the Lich?","createdBy":4}"#,
    r#"{"id":2,"title":"Party at the candy kingdom tomorrow","createdBy":3}"#,
    r#"{"id":3,"title":"In search of a new guitar","createdBy":1}"#,
];
const POST: [&str; 6] = [
    r#"{"thread":1,"text":"Has anyone checked on the lich recently?","user":4}"#,
    r#"{"thread":1,"text":"I'll stop by and see how he's doing tomorrow!","user":2}"#,
    r#"{"thread":2,"text":"Come party with the candy people tomorrow!","user":3}"#,
    r#"{"thread":2,"text":"Mathematical!","user":2}"#,
    r#"{"thread":2,"text":"I'll bring my guitar","user":1}"#,
    r#"{"thread":3,"text":"I need a new guitar to play the most savory licks in Ooo","user":1}"#,
];

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const ALLOW: &str = "HEAD, GET";

#[derive(Debug, Clone, PartialEq)]
struct Expected {
    status: u16,
    content_type: Option<&'static str>,
    allow: bool,
    /// The GET body; HEAD gets the same headers and no body.
    body: String,
}

fn json_array(records: &[&str]) -> String {
    format!("[{}]", records.join(","))
}

fn json(body: impl Into<String>) -> Expected {
    Expected {
        status: 200,
        content_type: Some(JSON),
        allow: false,
        body: body.into(),
    }
}

fn text(status: u16, body: &str, allow: bool) -> Expected {
    Expected {
        status,
        content_type: Some(TEXT),
        allow,
        body: body.to_owned(),
    }
}

fn no_content(allow: bool) -> Expected {
    Expected {
        status: 204,
        content_type: None,
        allow,
        body: String::new(),
    }
}

fn bad_request() -> Expected {
    Expected {
        status: 400,
        content_type: None,
        allow: false,
        body: String::new(),
    }
}

/// A HEAD that answers 404: the original never sets the 404 body for HEAD, so
/// no Content-Type and no Content-Length either.
fn head_not_found() -> Expected {
    Expected {
        status: 404,
        content_type: None,
        allow: false,
        body: String::new(),
    }
}

/// What any service answers `method` on a path it does not know.
fn unknown_path(method: &str) -> Expected {
    match method {
        "HEAD" => head_not_found(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => text(404, "Not Found", false),
        "TRACE" | "M-SEARCH" | "PROPFIND" | "CONNECT" | "QUERY" => {
            text(501, "Not Implemented", false)
        }
        _ => bad_request(),
    }
}

/// What any service answers `method` on a path it knows, when not GET/HEAD.
fn known_path_other_method(method: &str) -> Expected {
    match method {
        "OPTIONS" => no_content(true),
        "POST" | "PUT" | "PATCH" | "DELETE" => text(405, "Method Not Allowed", true),
        "TRACE" | "M-SEARCH" | "PROPFIND" | "QUERY" => text(501, "Not Implemented", true),
        _ => bad_request(),
    }
}

struct Case {
    method: &'static str,
    target: String,
    /// The resource whose service owns the path; None for `/`, `/api` and unknown paths.
    owner: Option<Resource>,
    expected: Expected,
}

/// Every row of the contract as the monolith answers it.
fn monolith_cases() -> Vec<Case> {
    let users = json_array(&USER[1..]);
    let threads = json_array(&THREAD[1..]);
    let posts = json_array(&POST);
    let mut get: Vec<(String, Option<Resource>, Expected)> = Vec::new();
    let mut row = |target: &str, owner: Option<Resource>, expected: Expected| {
        get.push((target.to_owned(), owner, expected))
    };

    for target in ["/", "//", "/?x=1"] {
        row(target, None, text(200, "Ready to receive requests", false));
    }
    for target in ["/api", "/api/", "/API", "/Api/?q=1"] {
        row(
            target,
            None,
            text(200, "API ready to receive requests", false),
        );
    }
    for target in [
        "/api/users",
        "/api/users/",
        "/API/USERS",
        "/Api/Users/",
        "/api/users?x=1",
    ] {
        row(target, Some(Resource::Users), json(&users));
    }
    let found_users = [
        ("1", 1),
        ("1.5", 1),
        ("1x", 1),
        ("01", 1),
        ("+2", 2),
        ("%2B2", 2),
        ("%20%202", 2),
        ("1e3", 1),
        ("1/", 1),
        ("3", 3),
        ("4?id=1", 4),
        ("%2b2", 2),
        ("%E3%80%802", 2),
        ("2%20", 2),
    ];
    for (id, user) in found_users {
        row(
            &format!("/api/users/{id}"),
            Some(Resource::Users),
            json(USER[user]),
        );
        row(
            &format!("/API/USERS/{id}"),
            Some(Resource::Users),
            json(USER[user]),
        );
    }
    for id in [
        "abc",
        "0x10",
        "-1",
        "0",
        "99",
        "99999999999999999999",
        "5",
        "%zz1",
        "-0",
        "NaN",
        "%C2%852",
    ] {
        row(
            &format!("/api/users/{id}"),
            Some(Resource::Users),
            no_content(false),
        );
    }
    for target in ["/api/threads", "/api/threads/", "/API/THREADS"] {
        row(target, Some(Resource::Threads), json(&threads));
    }
    for (id, thread) in [
        ("2", 2),
        ("2/", 2),
        ("1.9", 1),
        ("+3", 3),
        ("%203", 3),
        ("03x", 3),
    ] {
        row(
            &format!("/api/threads/{id}"),
            Some(Resource::Threads),
            json(THREAD[thread]),
        );
    }
    for id in ["4", "abc", "0", "-2"] {
        row(
            &format!("/api/threads/{id}"),
            Some(Resource::Threads),
            no_content(false),
        );
    }
    for target in ["/api/posts", "/api/posts/", "/API/POSTS"] {
        row(target, Some(Resource::Posts), json(&posts));
    }
    for (id, selected) in [
        ("1", &POST[0..2]),
        ("2", &POST[2..5]),
        ("3", &POST[5..6]),
        ("1.5", &POST[0..2]),
        ("%2B3/", &POST[5..6]),
    ] {
        row(
            &format!("/api/posts/in-thread/{id}"),
            Some(Resource::Posts),
            json(json_array(selected)),
        );
        row(
            &format!("/API/POSTS/IN-THREAD/{id}"),
            Some(Resource::Posts),
            json(json_array(selected)),
        );
    }
    for (id, selected) in [
        ("1", vec![POST[4], POST[5]]),
        ("2", vec![POST[1], POST[3]]),
        ("4x", vec![POST[0]]),
    ] {
        row(
            &format!("/api/posts/by-user/{id}"),
            Some(Resource::Posts),
            json(json_array(&selected)),
        );
    }
    for id in ["99", "0", "abc", "99999999999999999999"] {
        row(
            &format!("/api/posts/by-user/{id}"),
            Some(Resource::Posts),
            json("[]"),
        );
        row(
            &format!("/api/posts/in-thread/{id}"),
            Some(Resource::Posts),
            json("[]"),
        );
    }
    let unknown = [
        "//api/users",
        "/api/users/1/2",
        "/api/posts/in-thread/",
        "/api/posts/by-user/",
        "/api/usersx",
        "/api/user",
        "/api//",
        "/api/users//",
        "/api/users/1//",
        "/nope",
        "/api/posts/1",
        "/api/%75sers",
        "/apix",
        "/api/posts/in-thread",
        "/api/posts/in-thread/1/2",
        "/api/threads/in-thread/1",
        "///",
    ];
    for target in unknown {
        row(target, None, text(404, "Not Found", false));
    }

    let mut cases = Vec::new();
    for (target, owner, expected) in get {
        for method in ["GET", "HEAD"] {
            let expected = if method == "HEAD" && expected.status == 404 {
                head_not_found()
            } else {
                expected.clone()
            };
            cases.push(Case {
                method,
                target: target.clone(),
                owner,
                expected,
            });
        }
    }
    let known = [
        ("/", None),
        ("/api", None),
        ("/api/", None),
        ("/api/users", Some(Resource::Users)),
        ("/api/users/1", Some(Resource::Users)),
        ("/api/users/abc", Some(Resource::Users)),
        ("/api/threads", Some(Resource::Threads)),
        ("/api/threads/2", Some(Resource::Threads)),
        ("/api/posts", Some(Resource::Posts)),
        ("/api/posts/in-thread/1", Some(Resource::Posts)),
        ("/api/posts/by-user/1", Some(Resource::Posts)),
    ];
    let methods = [
        "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "M-SEARCH", "PROPFIND", "QUERY",
        "FOO", "get",
    ];
    for (target, owner) in known {
        for method in methods {
            cases.push(Case {
                method,
                target: target.to_owned(),
                owner,
                expected: known_path_other_method(method),
            });
        }
    }
    for target in ["/nope", "/api/usersx", "//api/users"] {
        for method in methods {
            cases.push(Case {
                method,
                target: target.to_owned(),
                owner: None,
                expected: unknown_path(method),
            });
        }
    }
    cases
}

/// The differences between `response` and what `expected` says `method` gets.
fn mismatches(method: &str, expected: &Expected, response: &RawResponse) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |what: &str, want: Option<String>, got: Option<String>| {
        if want != got {
            problems.push(format!("{what}: want {want:?}, got {got:?}"));
        }
    };
    let header = |name: &str| response.header(name).map(str::to_owned);
    check(
        "status",
        Some(expected.status.to_string()),
        Some(response.status.to_string()),
    );
    check(
        "content-type",
        expected.content_type.map(str::to_owned),
        header("content-type"),
    );
    check(
        "allow",
        expected.allow.then(|| ALLOW.to_owned()),
        header("allow"),
    );
    // A response with a body type states its length (HEAD: the GET's length);
    // 204, 400 and a HEAD's 404 carry neither.
    let content_length = expected
        .content_type
        .map(|_| expected.body.len().to_string());
    check("content-length", content_length, header("content-length"));
    let body = if method == "HEAD" {
        ""
    } else {
        expected.body.as_str()
    };
    check("body", Some(body.to_owned()), Some(response.text()));
    if expected.status == 400 {
        check("connection", Some("close".to_owned()), header("connection"));
    }
    problems
}

fn start(service: Service) -> SocketAddr {
    start_in_process(service, test_settings()).expect("server starts")
}

/// Runs every contract row against `service`: rows of resources it does not serve
/// must answer as unknown paths, the others as the monolith does.
fn check_service(service: Service) -> usize {
    let address = start(service);
    let mut failures = Vec::new();
    let cases = monolith_cases();
    for case in &cases {
        let served = case.owner.is_none_or(|resource| service.serves(resource));
        let expected = if served {
            case.expected.clone()
        } else {
            unknown_path(case.method)
        };
        let response = send(address, case.method, &case.target).expect("request completes");
        for problem in mismatches(case.method, &expected, &response) {
            failures.push(format!(
                "{} {} {}: {problem}",
                service.name, case.method, case.target
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases.len()
}

#[test]
fn monolith_answers_every_contract_row() {
    let rows = check_service(MONOLITH);
    assert!(rows > 300, "only {rows} rows");
}

#[test]
fn users_service_answers_its_rows_and_404_for_the_rest() {
    check_service(USERS);
}

#[test]
fn threads_service_answers_its_rows_and_404_for_the_rest() {
    check_service(THREADS);
}

#[test]
fn posts_service_answers_its_rows_and_404_for_the_rest() {
    check_service(POSTS);
}

/// A client must not tell the monolith from an extracted service: same bytes
/// (all but the Date header) for every row the service owns.
#[test]
fn extracted_services_answer_their_rows_byte_for_byte_like_the_monolith() {
    let monolith = start(MONOLITH);
    // Header order is not significant in HTTP.
    let without_date = |mut response: RawResponse| {
        response.headers.retain(|(name, _)| name != "date");
        response.headers.sort();
        response
    };
    for service in [USERS, THREADS, POSTS] {
        let address = start(service);
        for case in monolith_cases() {
            if case.owner.is_some_and(|resource| !service.serves(resource)) {
                continue;
            }
            let want = without_date(send(monolith, case.method, &case.target).unwrap());
            let got = without_date(send(address, case.method, &case.target).unwrap());
            assert_eq!(
                got, want,
                "{} {} {}",
                service.name, case.method, case.target
            );
        }
    }
}

#[test]
fn wire_data_has_the_reference_sizes() {
    let address = start(MONOLITH);
    let get = |target: &str| send(address, "GET", target).unwrap();
    assert_eq!(get("/api/users").body.len(), 460);
    assert_eq!(get("/api/posts/in-thread/1").body.len(), 150);
    let thread = get("/api/threads/2");
    assert_eq!(
        thread.text(),
        r#"{"id":2,"title":"Party at the candy kingdom tomorrow","createdBy":3}"#
    );
    assert_eq!(thread.body.len(), 68);
    assert_eq!(get("/api/posts/by-user/99").text(), "[]");
    let head = send(address, "HEAD", "/api/users").unwrap();
    assert_eq!(
        (head.status, head.header("content-length"), head.body.len()),
        (200, Some("460"), 0)
    );
}

/// Request bodies are read and dropped, as Node.js does, so the connection
/// stays open for the next request.
#[test]
fn keep_alive_connections_serve_many_requests_even_after_a_body() {
    use std::io::{Read, Write};
    let address = start(MONOLITH);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"POST /api/users HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let mut first = Vec::new();
    while !first.ends_with(b"Method Not Allowed") {
        let mut chunk = [0; 512];
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed after the 405");
        first.extend_from_slice(&chunk[..read]);
    }
    let first = String::from_utf8(first).unwrap();
    assert!(!first.contains("connection: close"), "{first}");
    // Three requests, their three answers, then the closing one: a
    // `Connection: close` request read before the earlier answers are
    // written may close those too (the servers ran on actix-http then, and
    // this test lost that race once on a loaded machine); the ALB never
    // pipelines.
    let request = "GET /api/threads/2 HTTP/1.1\r\nHost: test\r\n\r\n";
    stream.write_all(request.repeat(3).as_bytes()).unwrap();
    let mut raw = Vec::new();
    while String::from_utf8_lossy(&raw)
        .matches("Party at the candy kingdom tomorrow")
        .count()
        < 3
    {
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).unwrap();
        assert!(
            read > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&chunk[..read]);
    }
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 4, "{raw}");
    assert_eq!(
        raw.matches("Party at the candy kingdom tomorrow").count(),
        3
    );
    assert_eq!(
        raw.matches("connection: close").count(),
        1,
        "only the last response closes: {raw}"
    );
}

/// An idle keep-alive connection outlives a load balancer's reuse of it: AWS
/// advises targets to keep connections open longer than the ALB's idle timeout,
/// or the balancer may send a request on a connection the target is closing
/// (a 502 for the client). Many HTTP servers' default closes it after 5 s.
#[test]
fn idle_keep_alive_connections_stay_open_past_five_seconds() {
    use std::io::{Read, Write};
    let address = start(MONOLITH);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let request = b"GET /api/threads/2 HTTP/1.1\r\nHost: test\r\n\r\n";
    let expected_len = b"Party at the candy kingdom tomorrow".len();
    for round in 0..2 {
        if round == 1 {
            std::thread::sleep(std::time::Duration::from_millis(6_500));
        }
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\"createdBy\":3}") {
            let mut chunk = [0; 512];
            let read = stream.read(&mut chunk).unwrap();
            assert!(read > 0, "connection closed before answer {round}");
            answer.extend_from_slice(&chunk[..read]);
        }
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.len() > expected_len);
    }
}

/// A client that sends its request and then shuts its sending side (as
/// `curl`'s and netcat's `-N` can) still gets the answer, then the close:
/// the servers do not read while they answer, so they neither notice the
/// half-close mid-request nor drop the request for it.
#[test]
fn a_request_whose_client_shuts_its_sending_side_is_answered() {
    use std::io::{Read, Write};
    let address = start(MONOLITH);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /api/users/1 HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw:?}");
    assert!(raw.ends_with(USER[1]), "{raw:?}");
}

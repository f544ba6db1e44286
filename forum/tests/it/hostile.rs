//! Clients that stall or ask for a tunnel, against a server reached directly
//! (issue 25): each gets an answer or a closed connection within the client
//! timeout, never a connection held open.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use forum::MONOLITH;
use forum::test_support::{start_in_process, test_settings};

/// Sends `request` (and nothing more) and reads until the server closes;
/// returns what came and how long the server took to close.
fn held(address: std::net::SocketAddr, request: &[u8]) -> (String, Duration) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let started = Instant::now();
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn stalled_heads_and_bodies_get_408_and_connect_gets_an_answer_all_closed_in_time() {
    let mut settings = test_settings();
    settings.client_timeout = 1;
    let address = start_in_process(MONOLITH, settings).expect("server starts");
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "a body announced as 100 bytes, 10 sent",
            b"POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789",
            "HTTP/1.1 408",
        ),
        (
            "a head that stops half-way",
            b"GET /api/users HTTP/1.1\r\nHo",
            "HTTP/1.1 408",
        ),
        (
            "CONNECT",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            "HTTP/1.1 501",
        ),
    ];
    std::thread::scope(|scope| {
        for (what, request, expected) in cases {
            scope.spawn(move || {
                let (answer, after) = held(address, request);
                assert!(answer.starts_with(expected), "{what}: {answer:?}");
                // The client timeout is 1 s (a connection held would take
                // the read timeout's 15 s).
                assert!(
                    after < Duration::from_secs(5),
                    "{what}: closed after {after:?}"
                );
            });
        }
    });
}

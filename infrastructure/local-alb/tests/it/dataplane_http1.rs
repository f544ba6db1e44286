//! HTTP/1.x edge cases seen by a client over raw TCP: framing, keep-alive,
//! pipelining, odd targets. Black-box tests of what goes over the wire, so a
//! rewrite of the data plane's HTTP/1 server and client can be checked
//! against them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common_dataplane::*;
use local_alb::DataPlaneOptions;
use local_alb::model::{ActionKind, Priority};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest wait for any one response (a hang fails fast).
const READ_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------
// A raw HTTP/1 client.
// ---------------------------------------------------------------------------

/// One response as read off the wire.
#[derive(Debug)]
struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    status: u16,
    /// Names lower-cased, values as sent (trimmed).
    headers: Vec<(String, String)>,
    /// The decoded body.
    body: Vec<u8>,
    /// Whether the body came with `Transfer-Encoding: chunked`.
    chunked: bool,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The echo backend's description of the request it got.
    fn echo(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("echo body is not JSON ({e}): {:?}", self.text()))
    }
}

/// How the body of a response is delimited, for the reader.
#[derive(PartialEq, Eq)]
enum Expect {
    /// An ordinary response to a GET/POST.
    Body,
    /// A response to HEAD: never a body.
    NoBody,
}

/// A raw keep-alive connection with its unread bytes.
struct RawClient {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl RawClient {
    async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect to the alb");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buffered: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write request");
    }

    /// Reads more bytes into the buffer; 0 at EOF (a reset counts as EOF).
    async fn fill(&mut self) -> usize {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) => {
                self.buffered.extend_from_slice(&chunk[..n]);
                n
            }
            Ok(Err(_)) => 0,
            Err(_) => panic!(
                "no bytes within {READ_TIMEOUT:?}; unread so far: {:?}",
                String::from_utf8_lossy(&self.buffered)
            ),
        }
    }

    /// Takes `n` bytes off the buffer, reading more as needed.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buffered.len() < n {
            assert!(
                self.fill().await > 0,
                "EOF after {} of {n} expected bytes",
                self.buffered.len()
            );
        }
        self.buffered.drain(..n).collect()
    }

    /// Takes one CRLF-terminated line (without the CRLF).
    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buffered, b"\r\n") {
                let line: Vec<u8> = self.buffered.drain(..end + 2).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            assert!(
                self.fill().await > 0,
                "EOF inside a line: {:?}",
                String::from_utf8_lossy(&self.buffered)
            );
        }
    }

    /// Sends `request` and reads one response.
    async fn exchange(&mut self, request: &[u8]) -> RawResponse {
        self.send(request).await;
        self.response().await
    }

    /// Reads one response (interim 1xx responses are returned as they come).
    async fn response(&mut self) -> RawResponse {
        self.read_response(Expect::Body).await
    }

    async fn head_response(&mut self) -> RawResponse {
        self.read_response(Expect::NoBody).await
    }

    async fn read_response(&mut self, expect: Expect) -> RawResponse {
        let status_line = self.line().await;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        assert!(
            version == "HTTP/1.1" || version == "HTTP/1.0",
            "not a status line: {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("not a header line: {line:?}"));
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = RawResponse {
            version,
            status,
            headers,
            body: Vec::new(),
            chunked: false,
        };
        if expect == Expect::NoBody || status < 200 || status == 204 || status == 304 {
            return response;
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            response.chunked = true;
            loop {
                let size_line = self.line().await;
                let size = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await.is_empty() {}
                    break;
                }
                let data = self.take(size).await;
                response.body.extend_from_slice(&data);
                assert_eq!(self.take(2).await, b"\r\n", "chunk not followed by CRLF");
            }
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .unwrap_or_else(|_| panic!("bad content-length {length:?}"));
            response.body = self.take(length).await;
        } else {
            // Close-delimited.
            while self.fill().await > 0 {}
            response.body = std::mem::take(&mut self.buffered);
        }
        response
    }

    /// Asserts the server closes the connection with nothing more to read.
    async fn expect_eof(&mut self) {
        while self.fill().await > 0 {}
        assert!(
            self.buffered.is_empty(),
            "bytes after the last response: {:?}",
            String::from_utf8_lossy(&self.buffered)
        );
    }

    /// Reads until EOF or `within` passes; true when EOF came.
    async fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buffered.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A GET with a Host header, keep-alive by default (HTTP/1.1).
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").into_bytes()
}

/// Bytes of a recognisable ASCII pattern.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// One request on a fresh connection: its response.
async fn one_shot(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut client = RawClient::connect(addr).await;
    client.send(request).await;
    client.response().await
}

// ---------------------------------------------------------------------------
// A scripted raw backend.
// ---------------------------------------------------------------------------

/// What a scripted backend does for one request.
enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
    /// Closes the connection (and ends the script).
    Close,
}

fn write(bytes: impl AsRef<[u8]>) -> Step {
    Step::Write(bytes.as_ref().to_vec())
}

fn sleep_ms(ms: u64) -> Step {
    Step::Sleep(Duration::from_millis(ms))
}

type Script = Arc<dyn Fn(&str) -> Vec<Step> + Send + Sync>;

type RawServe = Arc<dyn Fn(TcpStream, String) -> BoxFuture + Send + Sync>;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a scripted backend answers a request other than a health check.
#[derive(Clone)]
enum Handler {
    /// Reads the Content-Length body, then plays the steps the request line
    /// picks; the connection is kept for the next request.
    Script(Script),
    /// Takes over the connection with the request's head (its body unread).
    Raw(RawServe),
}

/// A raw TCP backend: reads each request head, answers health checks
/// (`GET /`) with an empty 200 on the kept-alive connection and hands other
/// requests to its [`Handler`].
struct ScriptedBackend {
    addr: SocketAddr,
    /// Request lines received, in order.
    requests: Arc<Mutex<Vec<String>>>,
    /// Requests other than health checks whose script was played whole.
    answered: Arc<AtomicUsize>,
    /// Connections not yet closed (read to their end, or closed by a script).
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ScriptedBackend {
    /// Plays the script chosen by each request line (after reading the
    /// request's Content-Length body).
    async fn start(script: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static) -> ScriptedBackend {
        Self::with_handler(Handler::Script(Arc::new(script))).await
    }

    /// Hands each connection whose request is not a health check to
    /// `serve`, with that request's head (its body unread).
    async fn raw<F, Fut>(serve: F) -> ScriptedBackend
    where
        F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_handler(Handler::Raw(Arc::new(move |stream, head| {
            Box::pin(serve(stream, head)) as BoxFuture
        })))
        .await
    }

    async fn with_handler(handler: Handler) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind scripted");
        let addr = listener.local_addr().expect("scripted address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (seen, played, connections) = (
            Arc::clone(&requests),
            Arc::clone(&answered),
            Arc::clone(&open),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let serve = serve_scripted(
                    stream,
                    handler.clone(),
                    Arc::clone(&seen),
                    Arc::clone(&played),
                );
                let connections = Arc::clone(&connections);
                tokio::spawn(async move {
                    serve.await;
                    connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ScriptedBackend {
            addr,
            requests,
            answered,
            open,
            task,
        }
    }

    fn target(&self) -> local_alb::model::Target {
        local_alb::model::Target {
            id: "127.0.0.1".to_owned(),
            port: self.addr.port(),
        }
    }

    /// An ALB forwarding everything to this backend.
    async fn alb(&self, options: DataPlaneOptions) -> RunningAlb {
        RunningAlb::start(&scripted_state(self), options).await
    }

    /// Waits until the scripts of `count` requests (health checks aside)
    /// have been played whole: every byte they write has been written.
    async fn wait_until_answered(&self, count: usize) {
        wait_until(
            &format!("{count} requests answered by the backend"),
            READ_TIMEOUT,
            || self.answered.load(Ordering::SeqCst) >= count,
        )
        .await;
    }

    /// Waits until every connection to the backend is closed, so it has read
    /// (and recorded) every request sent on any of them.
    async fn wait_until_connections_closed(&self) {
        wait_until(
            "every connection to the backend closed",
            READ_TIMEOUT,
            || self.open.load(Ordering::SeqCst) == 0,
        )
        .await;
    }

    /// Request lines other than health checks.
    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|line| !line.starts_with("GET / "))
            .cloned()
            .collect()
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads from `stream` into `buffered` until `enough` finds what it needs,
/// and returns that; `None` at EOF or on an error.
async fn read_until(
    stream: &mut TcpStream,
    buffered: &mut Vec<u8>,
    enough: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if let Some(found) = enough(buffered) {
            return Some(found);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffered.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn serve_scripted(
    mut stream: TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<String>>>,
    answered: Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    let mut buffered = Vec::new();
    loop {
        let Some(end) = read_until(&mut stream, &mut buffered, |b| {
            find(b, b"\r\n\r\n").map(|end| end + 4)
        })
        .await
        else {
            return;
        };
        let head = String::from_utf8_lossy(&buffered[..end]).into_owned();
        buffered.drain(..end);
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let health_check = request_line.starts_with("GET / ");
        let script = match &handler {
            Handler::Raw(serve) if !health_check => {
                serve(stream, head).await;
                return;
            }
            Handler::Raw(_) => None,
            Handler::Script(script) => Some(script),
        };
        let body_length = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let enough = |b: &[u8]| (b.len() >= body_length).then_some(body_length);
        if read_until(&mut stream, &mut buffered, enough)
            .await
            .is_none()
        {
            return;
        }
        buffered.drain(..body_length);
        seen.lock().unwrap().push(request_line.clone());
        let steps = match script {
            Some(script) if !health_check => script(&request_line),
            _ => vec![write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")],
        };
        for step in steps {
            match step {
                Step::Write(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Sleep(duration) => tokio::time::sleep(duration).await,
                Step::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
        if !health_check {
            answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn scripted_state(backend: &ScriptedBackend) -> local_alb::model::State {
    StateBuilder::new()
        .target_group("scripted", vec![backend.target()], health_check(30, 5))
        .rule(Priority::Default, vec![], forward("scripted"))
        .build()
}

/// A script that answers requests whose line starts with `prefix` with
/// `steps()` and any other with [`OK_RESPONSE`].
fn ok_except(
    prefix: &'static str,
    steps: impl Fn() -> Vec<Step> + Send + Sync + 'static,
) -> impl Fn(&str) -> Vec<Step> + Send + Sync + 'static {
    move |line| {
        if line.starts_with(prefix) {
            steps()
        } else {
            vec![write(OK_RESPONSE)]
        }
    }
}

/// An ALB in front of the echo backend (which must outlive it).
async fn echo_alb() -> (Backend, RunningAlb) {
    let backend = Backend::start("echo").await;
    let alb = RunningAlb::start(&one_group_state("echo", &backend), quick_options()).await;
    (backend, alb)
}

/// [`quick_options`] with the client idle and target timeouts, in seconds.
fn timeouts(client_idle_s: u64, target_s: u64) -> DataPlaneOptions {
    let mut options = quick_options();
    options.head.idle_timeout = Duration::from_secs(client_idle_s);
    options.target_timeout = Duration::from_secs(target_s);
    options
}

/// A fixed-response action.
fn fixed(status: &str, content_type: Option<&str>, body: Option<&str>) -> ActionKind {
    ActionKind::FixedResponse {
        status_code: status.to_owned(),
        content_type: content_type.map(str::to_owned),
        message_body: body.map(str::to_owned),
    }
}

const OK_RESPONSE: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

// ---------------------------------------------------------------------------
// 1. Pipelining.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pipelined_requests_get_their_own_responses_in_order() {
    let (_backend, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;
    let mut both = get("/one?n=1");
    both.extend_from_slice(&get("/two?n=2"));
    let first = client.exchange(&both).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.echo()["uri"], "/one?n=1");
    let second = client.response().await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.echo()["uri"], "/two?n=2");

    // Three more, still on the same connection.
    let mut three = Vec::new();
    for n in 0..3 {
        three.extend_from_slice(&get(&format!("/p{n}")));
    }
    client.send(&three).await;
    for n in 0..3 {
        let response = client.response().await;
        assert_eq!(response.echo()["uri"], format!("/p{n}"));
    }
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Request bodies.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn content_length_request_body_reaches_the_backend_intact() {
    let (_backend, alb) = echo_alb().await;
    let body = "name=ficus&note=a%20b&bytes=\x01\x7f";
    let request = format!(
        "POST /submit HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(request.as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.echo();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], body);
    assert_eq!(echo["headers"]["content-length"], body.len().to_string());
    // The connection stays usable after a body.
    assert_eq!(
        client.exchange(&get("/after")).await.echo()["uri"],
        "/after"
    );
    alb.stop().await;
}

#[tokio::test]
async fn chunked_request_body_sent_in_pieces_reaches_the_backend_intact() {
    let (_backend, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;
    client
        .send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    let pieces = [
        "first ",
        "second-part ",
        "",
        "third;with=semicolon\r\n",
        "end",
    ];
    let mut expected = String::new();
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        tokio::time::sleep(Duration::from_millis(30)).await;
        client
            .send(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes())
            .await;
        expected.push_str(piece);
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    // A chunk extension and a trailer-less last chunk.
    client.send(b"3;ext=1\r\nxyz\r\n").await;
    expected.push_str("xyz");
    let response = client.exchange(b"0\r\n\r\n").await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.echo();
    assert_eq!(echo["body"], expected);
    assert_eq!(
        echo["headers"].get("content-length"),
        None,
        "the body was streamed, so the target should not see a made-up length: {echo}"
    );
    assert_eq!(
        client.exchange(&get("/after-chunked")).await.echo()["uri"],
        "/after-chunked"
    );
    alb.stop().await;
}

#[tokio::test]
async fn one_mebibyte_request_body_reaches_the_backend_intact() {
    // The echo of a mebibyte takes a debug build on a busy machine more than
    // quick_options' half-second target timeout (it answered 504 in CI).
    let backend = Backend::start("echo").await;
    let alb = RunningAlb::start(&one_group_state("echo", &backend), timeouts(60, 10)).await;
    let body = pattern(1024 * 1024);
    let mut request = format!(
        "PUT /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let mut client = RawClient::connect(alb.addr).await;
    // Write and read at the same time (the echo is as large as the body).
    let (mut reader, mut writer) = client.stream.split();
    let writing = async {
        writer.write_all(&request).await.expect("write body");
    };
    let reading = async {
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout(READ_TIMEOUT, reader.read(&mut chunk))
                .await
                .expect("response within the timeout")
                .expect("read");
            assert!(n > 0, "EOF before the whole response");
            bytes.extend_from_slice(&chunk[..n]);
            if let Some(parsed) = parse_complete(&bytes) {
                break parsed;
            }
        }
    };
    let ((), response) = tokio::join!(writing, reading);
    assert_eq!(response.status, 200);
    let echo = response.echo();
    assert_eq!(echo["headers"]["content-length"], "1048576");
    let seen = echo["body"].as_str().expect("body string");
    assert_eq!(seen.len(), body.len());
    assert!(
        seen.as_bytes() == body.as_slice(),
        "the body changed on the way"
    );
    alb.stop().await;
}

/// Parses `bytes` as one complete response (Content-Length or chunked), or
/// `None` when more bytes are needed.
fn parse_complete(bytes: &[u8]) -> Option<RawResponse> {
    let head_end = find(bytes, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut response = RawResponse {
        version: status_line.split(' ').next()?.to_owned(),
        status,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    let rest = &bytes[head_end..];
    if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().ok()?;
        if rest.len() < length {
            return None;
        }
        response.body = rest[..length].to_vec();
        return Some(response);
    }
    // Chunked.
    let mut at = 0;
    loop {
        let line_end = find(&rest[at..], b"\r\n")? + at;
        let size_text = String::from_utf8_lossy(&rest[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            find(&rest[at..], b"\r\n")?;
            response.chunked = true;
            return Some(response);
        }
        if rest.len() < at + size + 2 {
            return None;
        }
        response.body.extend_from_slice(&rest[at..at + size]);
        at += size + 2;
    }
}

// ---------------------------------------------------------------------------
// 3. Response bodies.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn chunked_response_from_the_target_arrives_decoded() {
    let backend = ScriptedBackend::start(|_| {
        vec![
            write(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            write("5\r\nhello\r\n"),
            sleep_ms(30),
            write("1;ext=x\r\n \r\n"),
            sleep_ms(30),
            write("6\r\nworld!\r\n"),
            sleep_ms(30),
            write("0\r\n\r\n"),
        ]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(&get("/chunked")).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "hello world!");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert!(
        response.chunked || response.header("content-length") == Some("12"),
        "{response:?}"
    );
    // Framing was right: the connection carries another exchange.
    assert_eq!(
        client.exchange(&get("/chunked")).await.text(),
        "hello world!"
    );
    alb.stop().await;
}

#[tokio::test]
async fn one_mebibyte_response_arrives_intact() {
    let body = pattern(1024 * 1024);
    let served = body.clone();
    let backend = ScriptedBackend::start(move |_| {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            served.len()
        )
        .into_bytes();
        response.extend_from_slice(&served);
        vec![Step::Write(response)]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(&get("/big")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), body.len());
    assert!(response.body == body, "the body changed on the way");
    assert_eq!(client.exchange(&get("/big")).await.body.len(), body.len());
    alb.stop().await;
}

#[tokio::test]
async fn close_delimited_response_arrives_whole() {
    let backend = ScriptedBackend::start(|_| {
        vec![
            write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"),
            write("part one, "),
            sleep_ms(50),
            write("part two, "),
            sleep_ms(50),
            write("the end"),
            Step::Close,
        ]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(&get("/eof")).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "part one, part two, the end");
    // If the ALB framed it (chunked or not close-delimited), the client
    // connection may be reused.
    if response.chunked {
        assert_eq!(
            client.exchange(&get("/eof")).await.text(),
            "part one, part two, the end"
        );
    }
    // Also without `Connection: close` from the target (an HTTP/1.0-style
    // server).
    let plain = ScriptedBackend::start(|_| {
        vec![
            write("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
            write("legacy body"),
            Step::Close,
        ]
    })
    .await;
    alb.plane.publish(&scripted_state(&plain));
    let response = one_shot(alb.addr, &get("/legacy")).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "legacy body");
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 4 & 5. Connection persistence.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http10_without_keep_alive_gets_a_response_then_eof() {
    let (_backend, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;
    let response = client
        .exchange(b"GET /legacy HTTP/1.0\r\nHost: app.test\r\n\r\n")
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.echo()["uri"], "/legacy");
    client.expect_eof().await;

    // Without a Host header at all (legal in HTTP/1.0).
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(b"GET /nohost HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.echo()["uri"], "/nohost");
    client.expect_eof().await;
    alb.stop().await;
}

#[tokio::test]
async fn http10_with_keep_alive_serves_a_second_request() {
    let (_backend, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;
    for path in ["/ka/1", "/ka/2"] {
        let response = client
            .exchange(
                format!("GET {path} HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(response.status, 200, "{response:?}");
        assert!(!response.chunked, "chunked is not HTTP/1.0: {response:?}");
        assert!(
            response.header("content-length").is_some(),
            "a kept-alive HTTP/1.0 response needs a length: {response:?}"
        );
        assert_eq!(response.echo()["uri"], path);
    }
    // And without keep-alive the third one ends the connection.
    assert_eq!(
        client
            .exchange(b"GET /ka/3 HTTP/1.0\r\nHost: app.test\r\n\r\n")
            .await
            .echo()["uri"],
        "/ka/3"
    );
    client.expect_eof().await;
    alb.stop().await;
}

#[tokio::test]
async fn connection_close_from_an_http11_client_ends_the_connection_after_the_response() {
    let (_backend, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;
    assert_eq!(
        client.exchange(&get("/first")).await.echo()["uri"],
        "/first"
    );
    let response = client
        .exchange(b"GET /last HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.echo();
    assert_eq!(echo["uri"], "/last");
    assert_eq!(
        echo["headers"].get("connection"),
        None,
        "Connection is hop-by-hop: {echo}"
    );
    client.expect_eof().await;
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 6 & 7. Responses without a body.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn head_gets_headers_without_body_and_the_connection_stays_in_sync() {
    let (_backend, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;

    // The GET's length, to compare the HEAD's with.
    let full = client.exchange(&get("/same")).await;
    assert_eq!(full.status, 200);

    client
        .send(b"HEAD /same HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let head = client.head_response().await;
    assert_eq!(head.status, 200, "{head:?}");
    let length: usize = head
        .header("content-length")
        .expect("HEAD keeps the content-length")
        .parse()
        .expect("numeric content-length");
    // The echo describes the method, so HEAD's body would be 1 byte shorter
    // than GET's ("HEAD" vs "GET" plus nothing else differs).
    assert_eq!(length, full.body.len() + 1, "{head:?}");
    // No body bytes may follow: any would come on this connection before the
    // next answer, which then would not begin with its status line.
    let next = client.exchange(&get("/after-head")).await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.echo()["uri"], "/after-head");
    alb.stop().await;
}

#[tokio::test]
async fn target_204_and_304_have_no_body_and_keep_the_connection_usable() {
    let backend = ScriptedBackend::start(|line| {
        if line.starts_with("GET /no-content") {
            vec![write("HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n")]
        } else if line.starts_with("GET /not-modified") {
            // A 304 may carry the representation's length; no body follows.
            vec![write(
                "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n",
            )]
        } else {
            vec![write(OK_RESPONSE)]
        }
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;

    let response = client.exchange(&get("/no-content")).await;
    assert_eq!(response.status, 204, "{response:?}");
    assert_eq!(response.header("x-kind"), Some("204"));
    assert_eq!(response.header("transfer-encoding"), None, "{response:?}");
    assert!(
        matches!(response.header("content-length"), None | Some("0")),
        "{response:?}"
    );
    let response = client.exchange(&get("/ok")).await;
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));

    let response = client
        .exchange(b"GET /not-modified HTTP/1.1\r\nHost: app.test\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .await;
    assert_eq!(response.status, 304, "{response:?}");
    assert_eq!(response.header("etag"), Some("\"v1\""));
    assert_eq!(response.header("transfer-encoding"), None, "{response:?}");
    let response = client.exchange(&get("/ok")).await;
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 8. Expect: 100-continue.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn expect_100_continue_gets_the_final_response_and_the_body_arrives() {
    let (_backend, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;
    let body = "payload after continue";
    client
        .send(
            format!(
                "POST /expect HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await;
    // Wait a little for an interim response, as curl does; send anyway.
    let mut chunk = vec![0u8; 1024];
    if let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), client.stream.read(&mut chunk)).await
    {
        client.buffered.extend_from_slice(&chunk[..n]);
    }
    let got_interim = client.buffered.starts_with(b"HTTP/1.1 100");
    assert!(
        client.buffered.is_empty() || got_interim,
        "only a 100 Continue may come before the body: {:?}",
        String::from_utf8_lossy(&client.buffered)
    );
    let mut response = client.exchange(body.as_bytes()).await;
    if response.status == 100 {
        response = client.response().await;
    }
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.echo();
    assert_eq!(echo["body"], body);
    assert_eq!(
        client.exchange(&get("/after-expect")).await.echo()["uri"],
        "/after-expect"
    );
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 9. Request smuggling guards.
// ---------------------------------------------------------------------------

/// Content-Length next to Transfer-Encoding is what AWS's desync mitigation
/// calls ambiguous: in the defensive mode (the default) it is forwarded with
/// Transfer-Encoding's framing alone, and both connections close after; in
/// the strictest mode it is refused. Either way no second request can hide
/// in the body.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_never_smuggled() {
    // A smuggled second request hides in the chunked body when a hop reads
    // Content-Length instead.
    let smuggled = "GPOST /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let request = format!(
        "POST /smuggle HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    let (_echo, alb) = echo_alb().await;
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(request.as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen: serde_json::Value = serde_json::from_str(&response.text()).expect("echo");
    assert_eq!(
        (&seen["uri"], &seen["body"]),
        (&"/smuggle".into(), &smuggled.into()),
        "one request; the smuggled one is only its body"
    );
    assert!(
        client.closes_within(Duration::from_secs(2)).await,
        "the connection must not be reused after an ambiguous request"
    );
    alb.stop().await;
    let backend = ScriptedBackend::start(|_| vec![write(OK_RESPONSE)]).await;
    let mut strictest = quick_options();
    strictest.head.desync_mitigation = local_alb::DesyncMode::Strictest;
    let alb = backend.alb(strictest).await;
    // The other order of the two headers.
    let request = format!(
        "POST /smuggle HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    let response = one_shot(alb.addr, request.as_bytes()).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(
        backend.requests(),
        Vec::<String>::new(),
        "nothing may reach the target"
    );
    let after = one_shot(alb.addr, &get("/fine")).await;
    assert_eq!((after.status, after.text().as_str()), (200, "ok"));
    assert_eq!(backend.requests(), vec!["GET /fine HTTP/1.1".to_owned()]);
    alb.stop().await;
}

#[tokio::test]
async fn non_numeric_content_length_is_rejected_with_400() {
    let (_backend, alb) = echo_alb().await;
    for bad in ["abc", "-1", "1 2", "0x10", "+5"] {
        let mut client = RawClient::connect(alb.addr).await;
        let response = client
            .exchange(
                format!(
                    "POST /bad HTTP/1.1\r\nHost: app.test\r\nContent-Length: {bad}\r\n\r\nhello"
                )
                .as_bytes(),
            )
            .await;
        assert_eq!(response.status, 400, "Content-Length: {bad}: {response:?}");
        assert!(
            client.closes_within(Duration::from_secs(2)).await,
            "Content-Length: {bad}: the connection must close after a framing error"
        );
    }
    // Two different lengths are as ambiguous.
    let response = one_shot(alb.addr, b"POST /bad HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").await;
    assert_eq!(response.status, 400, "two lengths: {response:?}");
    // The ALB still serves new connections.
    let after = one_shot(alb.addr, &get("/fine")).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.echo()["uri"], "/fine");
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 10. A target that breaks its own framing.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn truncated_target_response_does_not_hang_the_client() {
    let backend = ScriptedBackend::start(ok_except("GET /truncated", || {
        vec![
            write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"),
            write("0123456789"),
            Step::Close,
        ]
    }))
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    client.send(&get("/truncated")).await;
    // The head may already be on its way (status 200) or the ALB may answer
    // 502; either way the connection must end (or carry a complete 502) soon.
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(5);
    let mut chunk = vec![0u8; 16 * 1024];
    let closed = loop {
        if parse_complete(&client.buffered).is_some_and(|r| r.status == 502) {
            break false;
        }
        match tokio::time::timeout_at(deadline, client.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => client.buffered.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "the client hung for {:?}: {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&client.buffered)
            ),
        }
    };
    let received = String::from_utf8_lossy(&client.buffered).to_ascii_lowercase();
    if !received.starts_with("http/1.1 502") {
        assert!(closed);
        assert!(
            received.starts_with("http/1.1 200") || received.is_empty(),
            "{received:?}"
        );
        // It must not look complete: a client has to see the truncation.
        if let Some(head_end) = received.find("\r\n\r\n") {
            let (head, body) = (&received[..head_end + 2], &received[head_end + 4..]);
            let chunked = head.contains("\r\ntransfer-encoding: chunked\r\n");
            assert!(
                chunked || head.contains("\r\ncontent-length: 100\r\n"),
                "a close-delimited body would hide the truncation: {received:?}"
            );
            if chunked {
                assert!(
                    !body.ends_with("0\r\n\r\n"),
                    "a truncated body must not be terminated as if complete: {received:?}"
                );
            } else {
                assert!(body.len() < 100, "{received:?}");
            }
        }
    }
    // Others are still served, on new connections.
    for _ in 0..3 {
        let response = one_shot(alb.addr, &get("/ok")).await;
        assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    }
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 11, 12, 15. What the target sees.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn absolute_form_target_reaches_the_backend_in_origin_form() {
    let (_backend, alb) = echo_alb().await;
    let response = one_shot(
        alb.addr,
        b"GET http://example.test/api/x?y=1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.echo();
    assert_eq!(echo["uri"], "/api/x?y=1");
    assert_eq!(echo["headers"]["host"], "example.test");
    assert_eq!(echo["version"], "HTTP/1.1");
    alb.stop().await;
}

#[tokio::test]
async fn absolute_form_target_routes_by_its_path() {
    let api = Backend::start("api").await;
    let web = Backend::start("web").await;
    let state = StateBuilder::new()
        .target_group("api", vec![api.target()], health_check(30, 5))
        .target_group("web", vec![web.target()], health_check(30, 5))
        .rule(
            Priority::Number(1),
            path_pattern(&["/api/*"]),
            forward("api"),
        )
        .rule(Priority::Default, vec![], forward("web"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let response = one_shot(
        alb.addr,
        b"GET http://example.test/api/x?y=1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
    )
    .await;
    assert_eq!(response.header("x-backend"), Some("api"), "{response:?}");
    alb.stop().await;
}

#[tokio::test]
async fn repeated_header_lines_all_reach_the_backend_in_order() {
    let (_backend, alb) = echo_alb().await;
    let response = one_shot(
        alb.addr,
        b"GET /multi HTTP/1.1\r\nHost: app.test\r\nX-Multi: one\r\nX-Other: between\r\nX-Multi: two\r\nx-multi: three\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.echo();
    assert_eq!(echo["headers"]["x-multi"], "one | two | three");
    assert_eq!(echo["headers"]["x-other"], "between");
    alb.stop().await;
}

#[tokio::test]
async fn header_whitespace_around_values_is_trimmed() {
    let (_backend, alb) = echo_alb().await;
    let response = one_shot(
        alb.addr,
        b"GET /spaces HTTP/1.1\r\nHost:   app.test  \r\nX-A:   v  \r\nX-B:\tw\t\r\nX-C:inner  space\r\nX-Empty:   \r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.echo();
    assert_eq!(echo["headers"]["x-a"], "v");
    assert_eq!(echo["headers"]["x-b"], "w");
    assert_eq!(echo["headers"]["x-c"], "inner  space", "inner spaces stay");
    assert_eq!(echo["headers"]["x-empty"], "");
    assert_eq!(echo["headers"]["host"], "app.test");
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 13. Responses the ALB generates itself.
// ---------------------------------------------------------------------------

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
fn is_imf_fixdate(date: &str) -> bool {
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let fields: Vec<&str> = date.split(' ').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let time: Vec<&str> = fields.get(4).map_or(Vec::new(), |t| t.split(':').collect());
    fields.len() == 6
        && fields[0]
            .strip_suffix(',')
            .is_some_and(|d| days.contains(&d))
        && digits(fields[1], 2)
        && months.contains(&fields[2])
        && digits(fields[3], 4)
        && time.len() == 3
        && time.iter().all(|t| digits(t, 2))
        && fields[5] == "GMT"
}

fn check_generated(response: &RawResponse, status: u16) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.version, "HTTP/1.1", "{response:?}");
    let date = response.header("date").expect("a Date header");
    assert!(is_imf_fixdate(date), "an IMF-fixdate: {date:?}");
    assert_eq!(response.header_count("date"), 1, "{response:?}");
    assert!(!response.chunked, "a generated body has a known length");
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str()),
        "{response:?}"
    );
    assert_eq!(response.header("server"), Some("awselb/2.0"));
}

#[tokio::test]
async fn generated_responses_have_date_and_length_and_keep_the_connection() {
    let state = StateBuilder::new()
        .target_group("empty", vec![], health_check(30, 5))
        .rule(
            Priority::Number(1),
            path_pattern(&["/fixed"]),
            fixed("200", Some("text/plain"), Some("fixed body ✓")),
        )
        .rule(
            Priority::Number(2),
            path_pattern(&["/gone"]),
            fixed("404", None, None),
        )
        .rule(Priority::Default, vec![], forward("empty"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;

    let fixed = client.exchange(&get("/fixed")).await;
    check_generated(&fixed, 200);
    assert_eq!(fixed.text(), "fixed body ✓");
    assert_eq!(fixed.header("content-type"), Some("text/plain"));

    let empty = client.exchange(&get("/gone")).await;
    check_generated(&empty, 404);
    assert!(empty.body.is_empty(), "{empty:?}");

    let unavailable = client.exchange(&get("/anything")).await;
    check_generated(&unavailable, 503);
    assert!(
        unavailable
            .text()
            .contains("<title>503 Service Temporarily Unavailable</title>")
            || unavailable.text().contains("<title>503 "),
        "{unavailable:?}"
    );

    // HEAD of a generated response: the length, no body.
    client
        .send(b"HEAD /fixed HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let head = client.head_response().await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(fixed.body.len().to_string().as_str())
    );

    // Still the same connection.
    assert_eq!(client.exchange(&get("/fixed")).await.text(), "fixed body ✓");
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 14. Clients that go away.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn clients_that_disconnect_early_do_not_disturb_others() {
    let backend = ScriptedBackend::start(ok_except("GET /slow", || {
        let mut steps = vec![write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        )];
        for _ in 0..20 {
            steps.push(write("4\r\nslow\r\n"));
            steps.push(sleep_ms(50));
        }
        steps.push(write("0\r\n\r\n"));
        steps
    }))
    .await;
    let alb = backend.alb(quick_options()).await;
    let addr = alb.addr;

    let steady = tokio::spawn(async move {
        let mut client = RawClient::connect(addr).await;
        for _ in 0..20 {
            let response = client.exchange(&get("/ok")).await;
            assert_eq!((response.status, response.text().as_str()), (200, "ok"));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });

    let leavers = tokio::spawn(async move {
        // Half a request head, then gone.
        for _ in 0..5 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /ok HTTP/1.1\r\nHost: app.te")
                .await
                .expect("write half");
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(stream);
        }
        // Gone while the target is still answering.
        for _ in 0..3 {
            let mut client = RawClient::connect(addr).await;
            client.send(&get("/slow")).await;
            let line = client.line().await;
            assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
            tokio::time::sleep(Duration::from_millis(120)).await;
            drop(client);
        }
        // Gone before the target answered at all.
        let mut client = RawClient::connect(addr).await;
        client.send(&get("/slow")).await;
        drop(client);
    });

    tokio::time::timeout(Duration::from_secs(5), async {
        leavers.await.expect("leavers");
        steady.await.expect("steady client");
    })
    .await
    .expect("both finish");

    // A full slow response still arrives whole afterwards.
    let response = one_shot(addr, &get("/slow")).await;
    assert_eq!(response.text(), "slow".repeat(20));
    alb.stop().await;
}

// ---------------------------------------------------------------------------
// 16. Adversarial review of the HTTP/1 path.
// ---------------------------------------------------------------------------

/// `Connection: Content-Length` must not strip the length the ALB framed the
/// body by: the target would read the body as the next request (one that
/// the ALB never routed, here one a rule denies).
#[tokio::test]
async fn connection_header_naming_content_length_cannot_smuggle_a_request() {
    let backend = ScriptedBackend::start(|_| vec![write(OK_RESPONSE)]).await;
    let state = StateBuilder::new()
        .target_group("scripted", vec![backend.target()], health_check(30, 5))
        .rule(
            Priority::Number(1),
            path_pattern(&["/admin*"]),
            fixed("403", None, Some("denied")),
        )
        .rule(Priority::Default, vec![], forward("scripted"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let smuggled = "GET /admin/secret HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let request = format!(
        "POST /form HTTP/1.1\r\nHost: app.test\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(request.as_bytes()).await;
    // Stopped, the ALB closes its target connections; once the backend has
    // read each to its end, it has recorded every request sent on it.
    drop(client);
    alb.stop().await;
    backend.wait_until_connections_closed().await;
    let requests = backend.requests();
    assert!(
        !requests.iter().any(|line| line.contains("/admin")),
        "a request the ALB never routed reached the target: {requests:?} (client got {response:?})"
    );
    assert!(matches!(response.status, 200 | 400), "{response:?}");
}

/// A target's `Connection: Content-Length` must not strip the length the
/// ALB copies the body by: the client would wait for a close that never comes.
#[tokio::test]
async fn target_connection_header_naming_content_length_keeps_the_response_framed() {
    let backend = ScriptedBackend::start(|_| {
        vec![write(
            "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok",
        )]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    client.send(&get("/framed")).await;
    let head = client.head_response().await;
    let framed = head.header("content-length").is_some()
        || head
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let closes = head
        .header("connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("close"));
    assert!(
        framed || closes,
        "a kept-alive response with no length: the client cannot tell where it ends: {head:?}"
    );
    alb.stop().await;
}

/// RFC 9112 §6.3: a response with both `Transfer-Encoding: chunked` and
/// `Content-Length` is passed on without the length (a client or proxy that
/// believes the length desyncs).
#[tokio::test]
async fn target_response_with_chunked_and_content_length_loses_the_length() {
    let backend = ScriptedBackend::start(|_| {
        vec![write(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let response = client.exchange(&get("/both")).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "ok");
    assert!(
        !(response.chunked && response.header("content-length").is_some()),
        "both framings reach the client: {response:?}"
    );
    alb.stop().await;
}

/// A fixed response with status 204 (allowed by the API) and a message
/// body: no body may follow a 204 on the wire, or the next response on the
/// connection starts with it.
#[tokio::test]
async fn fixed_response_204_with_a_body_does_not_desync_the_connection() {
    let state = StateBuilder::new()
        .target_group("empty", vec![], health_check(30, 5))
        .rule(
            Priority::Number(1),
            path_pattern(&["/nc"]),
            fixed("204", None, Some("gone")),
        )
        .rule(
            Priority::Number(2),
            path_pattern(&["/fine"]),
            fixed("200", None, Some("fine")),
        )
        .rule(Priority::Default, vec![], forward("empty"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let no_content = client.exchange(&get("/nc")).await;
    assert_eq!(no_content.status, 204, "{no_content:?}");
    let next = client.exchange(&get("/fine")).await;
    assert_eq!((next.status, next.text().as_str()), (200, "fine"));
    assert!(
        matches!(no_content.header("content-length"), None | Some("0")),
        "RFC 9110 §8.6: no Content-Length in a 204: {no_content:?}"
    );
    alb.stop().await;
}

/// RFC 9112 §3.2.1: an absolute-form target with an empty path is sent as
/// `/` plus its query; the query must not be dropped.
#[tokio::test]
async fn absolute_form_target_without_a_path_keeps_its_query() {
    let (_backend, alb) = echo_alb().await;
    let response = one_shot(
        alb.addr,
        b"GET http://example.test?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.echo()["uri"], "/?x=1");
    alb.stop().await;
}

/// A pipelined request head that began arriving while the previous request
/// was with the target: its idle timeout starts when the ALB starts waiting
/// for it, not when it started waiting for the previous request.
#[tokio::test]
async fn pipelined_head_arriving_during_a_slow_response_is_not_timed_out() {
    let backend = ScriptedBackend::start(ok_except("GET /slow", || {
        vec![sleep_ms(1500), write(OK_RESPONSE)]
    }))
    .await;
    let alb = backend.alb(timeouts(1, 5)).await;
    let mut client = RawClient::connect(alb.addr).await;
    client.send(&get("/slow")).await;
    // The next request starts while the first is still being answered...
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let first = client.exchange(b"GET /ok HTTP/1.1\r\nHo").await;
    assert_eq!((first.status, first.text().as_str()), (200, "ok"));
    // ...and its head is whole 400 ms after it began (idle timeout: 1 s).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = client.exchange(b"st: app.test\r\n\r\n").await;
    assert_eq!((second.status, second.text().as_str()), (200, "ok"));
    alb.stop().await;
}

/// A client that stops reading a large response: the ALB must give up on it
/// (its idle timeout, as AWS ALB does) and release the target connection,
/// not block on the write forever.
#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_the_target_connection_forever() {
    let (released_tx, mut released) = tokio::sync::mpsc::unbounded_channel::<()>();
    let backend = ScriptedBackend::raw(move |mut stream, _head| {
        let released_tx = released_tx.clone();
        async move {
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let block = vec![b'x'; 64 * 1024];
            while stream.write_all(&block).await.is_ok() {}
            let _ = released_tx.send(());
        }
    })
    .await;
    let alb = backend.alb(timeouts(1, 1)).await;
    let mut client = RawClient::connect(alb.addr).await;
    client.send(&get("/endless")).await;
    // Never read.
    let outcome = tokio::time::timeout(Duration::from_secs(8), released.recv()).await;
    drop(client);
    drop(backend);
    assert!(
        outcome.is_ok(),
        "the target connection is still held 8 s after the client stopped reading \
         (idle timeout 1 s)"
    );
    alb.stop().await;
}

/// `Transfer-Encoding: gzip, chunked`: the body is gzip-coded; forwarding it
/// as only `chunked` hands the target gzip bytes as if they were the content.
/// Either keep the codings or refuse (501) as for `gzip` alone.
#[tokio::test]
async fn transfer_codings_before_chunked_are_not_dropped() {
    let (_backend, alb) = echo_alb().await;
    let response = one_shot(
        alb.addr,
        b"POST /coded HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    if response.status != 501 {
        assert_eq!(response.status, 200, "{response:?}");
        let echo = response.echo();
        let codings = echo["headers"]["transfer-encoding"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            codings.contains("gzip"),
            "the target was not told the body is gzip-coded: {echo}"
        );
    }
    alb.stop().await;
}

/// A target that answers before reading the request body (413, 401...) and
/// closes: the client gets that answer, not a 502.
#[tokio::test]
async fn an_early_target_answer_to_an_upload_reaches_the_client() {
    let backend = ScriptedBackend::raw(|mut stream, _head| async move {
        let _ = stream
            .write_all(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        let _ = stream.shutdown().await;
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let pieces = 16;
    client
        .send(
            format!(
                "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
                pieces * 16 * 1024
            )
            .as_bytes(),
        )
        .await;
    let piece = pattern(16 * 1024);
    for _ in 0..pieces {
        tokio::time::sleep(Duration::from_millis(30)).await;
        if client.stream.write_all(&piece).await.is_err() {
            break;
        }
    }
    let response = client.response().await;
    drop(backend);
    assert_eq!(response.status, 413, "{response:?}");
    alb.stop().await;
}

/// Malformed chunked request bodies (bare LF, sizes that are not hex or too
/// large) get a 400 and the connection closes: nothing after them is read as
/// a request.
#[tokio::test]
async fn malformed_chunked_request_bodies_get_400_and_close() {
    let (_backend, alb) = echo_alb().await;
    for body in [
        &b"5\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b";ext\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\n\r\n",
    ] {
        let mut request =
            b"POST /chunks HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        request.extend_from_slice(body);
        request.extend_from_slice(&get("/after"));
        let mut client = RawClient::connect(alb.addr).await;
        let response = client.exchange(&request).await;
        let shown = String::from_utf8_lossy(body).into_owned();
        assert_eq!(response.status, 400, "{shown:?}: {response:?}");
        assert!(
            client.closes_within(Duration::from_secs(3)).await,
            "{shown:?}: the connection must close after a framing error"
        );
        assert!(
            !String::from_utf8_lossy(&client.buffered).contains("HTTP/1.1"),
            "{shown:?}: a response after the 400: {:?}",
            String::from_utf8_lossy(&client.buffered)
        );
    }
    let after = one_shot(alb.addr, &get("/fine")).await;
    assert_eq!(after.echo()["uri"], "/fine");
    alb.stop().await;
}

/// Transfer codings the ALB cannot delimit (chunked not last, or another
/// Transfer-Encoding line after it) are refused, never forwarded.
#[tokio::test]
async fn request_transfer_encoding_not_ending_in_chunked_is_refused() {
    let backend = ScriptedBackend::start(|_| vec![write(OK_RESPONSE)]).await;
    let alb = backend.alb(quick_options()).await;
    for codings in [
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding: xchunked\r\n",
    ] {
        let request =
            format!("POST /te HTTP/1.1\r\nHost: app.test\r\n{codings}\r\n5\r\nhello\r\n0\r\n\r\n");
        let mut client = RawClient::connect(alb.addr).await;
        let response = client.exchange(request.as_bytes()).await;
        assert!(
            matches!(response.status, 400 | 501),
            "{codings:?}: {response:?}"
        );
        assert!(
            client.closes_within(Duration::from_secs(3)).await,
            "{codings:?}: the connection must close"
        );
    }
    assert_eq!(backend.requests(), Vec::<String>::new());
    alb.stop().await;
}

/// An HTTP/1.0 client cannot read chunked encoding: a chunked response
/// reaches it decoded, delimited by the connection closing.
#[tokio::test]
async fn chunked_response_reaches_an_http10_client_decoded_then_eof() {
    let backend = ScriptedBackend::start(|_| {
        vec![
            write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            write("5;x=1\r\nhello\r\n"),
            sleep_ms(30),
            write("6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
        ]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let response = client
        .exchange(b"GET /old HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(!response.chunked, "{response:?}");
    assert_eq!(response.header("transfer-encoding"), None, "{response:?}");
    assert_eq!(response.text(), "hello world");
    assert!(client.buffered.is_empty());
    alb.stop().await;
}

/// Bytes a confused target sends after a complete response (here a whole
/// second response) never reach the next request, whether they came with
/// the response or a moment later.
#[tokio::test]
async fn stray_bytes_after_a_target_response_never_reach_another_request() {
    let backend = ScriptedBackend::start(|line| {
        if line.starts_with("GET /confused-now") {
            vec![write(
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray",
            )]
        } else if line.starts_with("GET /confused-later") {
            vec![
                write(OK_RESPONSE),
                sleep_ms(50),
                write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"),
            ]
        } else if line.starts_with("HEAD /head-with-body") {
            vec![write(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray",
            )]
        } else {
            vec![write(OK_RESPONSE)]
        }
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    let mut answered = 0;
    for first in [
        &get("/confused-now")[..],
        &get("/confused-later"),
        b"HEAD /head-with-body HTTP/1.1\r\nHost: app.test\r\n\r\n",
    ] {
        client.send(first).await;
        let response = if first.starts_with(b"HEAD") {
            client.head_response().await
        } else {
            client.response().await
        };
        assert_eq!(response.status, 200);
        // The target has written its stray bytes (the later ones too).
        answered += 1;
        backend.wait_until_answered(answered).await;
        for _ in 0..3 {
            answered += 1;
            let next = client.exchange(&get("/ok")).await;
            assert_eq!(
                (next.status, next.text().as_str()),
                (200, "ok"),
                "after {:?}",
                String::from_utf8_lossy(first)
            );
        }
    }
    alb.stop().await;
}

/// The next request's head arrived in the same segment as the end of the
/// previous request's body; its remainder comes 500 ms after its first bytes
/// (idle timeout: 1 s). The idle timer must not still be the one started
/// for reading the previous body.
#[tokio::test]
async fn pipelined_head_sent_with_the_previous_body_gets_its_own_idle_timeout() {
    let backend = ScriptedBackend::start(ok_except("POST /slow", || {
        vec![sleep_ms(400), write(OK_RESPONSE)]
    }))
    .await;
    let alb = backend.alb(timeouts(1, 5)).await;
    let mut client = RawClient::connect(alb.addr).await;
    client
        .send(b"POST /slow HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let first = client.exchange(b"bodyGET /ok HTTP/1.1\r\nHo").await;
    assert_eq!((first.status, first.text().as_str()), (200, "ok"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = client.exchange(b"st: app.test\r\n\r\n").await;
    assert_eq!((second.status, second.text().as_str()), (200, "ok"));
    alb.stop().await;
}

/// RFC 9110 §9.3.2: a HEAD response carries the header fields a GET would
/// have had, `Transfer-Encoding: chunked` included (it says the GET's length
/// is unknown).
#[tokio::test]
async fn head_response_keeps_the_targets_transfer_encoding() {
    let backend = ScriptedBackend::start(ok_except("HEAD ", || {
        vec![write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        )]
    }))
    .await;
    let alb = backend.alb(quick_options()).await;
    let mut client = RawClient::connect(alb.addr).await;
    client
        .send(b"HEAD /stream HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let head = client.head_response().await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{head:?}"
    );
    assert_eq!(client.exchange(&get("/ok")).await.text(), "ok");
    alb.stop().await;
}

/// RFC 9112 §3.2.2 / RFC 9110 §4.2.4: the Host sent on for an absolute-form
/// target is the URI's host and port, never its userinfo.
#[tokio::test]
async fn absolute_form_userinfo_is_not_sent_as_the_host() {
    let (_backend, alb) = echo_alb().await;
    let response = one_shot(
        alb.addr,
        b"GET http://user:secret@example.test/p HTTP/1.1\r\nHost: example.test\r\n\r\n",
    )
    .await;
    if response.status != 400 {
        assert_eq!(response.status, 200, "{response:?}");
        let echo = response.echo();
        assert_eq!(echo["headers"]["host"], "example.test", "{echo}");
        assert_eq!(echo["uri"], "/p");
    }
    alb.stop().await;
}

/// A close-delimited response with `Transfer-Encoding: gzip`: the body is
/// gzip-coded, and dropping the header hands the client gzip bytes as if
/// they were the content. Keep the coding (or refuse the response, 502).
#[tokio::test]
async fn response_transfer_coding_other_than_chunked_is_not_dropped() {
    let backend = ScriptedBackend::start(|_| {
        vec![
            write("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n"),
            write(b"\x1f\x8b\x08\x00coded"),
            Step::Close,
        ]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let response = one_shot(alb.addr, &get("/gzip")).await;
    if response.status != 502 {
        assert_eq!(response.status, 200, "{response:?}");
        assert!(
            response
                .header("transfer-encoding")
                .is_some_and(|te| te.to_ascii_lowercase().contains("gzip")),
            "the client was not told the body is gzip-coded: {response:?}"
        );
    }
    alb.stop().await;
}

/// `Trailer` is an end-to-end field (RFC 9110 §6.6.2; only RFC 2616 listed
/// it as hop-by-hop): when the chunked body and its trailers are passed on,
/// so is the announcement.
#[tokio::test]
async fn trailer_announcement_is_passed_on_with_the_trailers() {
    let backend = ScriptedBackend::start(|_| {
        vec![write(
            "HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Checksum: 42\r\n\r\n",
        )]
    })
    .await;
    let alb = backend.alb(quick_options()).await;
    let response = one_shot(alb.addr, &get("/trailers")).await;
    assert_eq!(response.text(), "ok");
    assert!(response.chunked, "{response:?}");
    assert_eq!(
        response.header("trailer"),
        Some("X-Checksum"),
        "{response:?}"
    );
    alb.stop().await;
}

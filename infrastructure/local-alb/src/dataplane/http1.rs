//! HTTP/1.x client connections: the data plane's common path.
//!
//! One task per client connection reads request heads, routes each by the
//! current table, and either writes the load balancer's own answer or
//! forwards the request to a target over a pooled keep-alive connection
//! ([`super::upstream`]) that the same task writes to and reads from. Heads
//! are rewritten as bytes ([`super::wire`]); bodies are copied through as
//! they arrive, framed as they came (a chunked body stays chunked, except
//! towards an HTTP/1.0 client). Nothing is converted into `http` types, and
//! no other task or channel takes part in a request: this is what lets the
//! local ALB keep up with nginx.
//!
//! Limits and statuses are AWS's (docs/data-plane.md, "Limits and status
//! codes"): the head policy of the current table ([`super::policy`]) and
//! the size limits there decide what is refused, with 400, 405, 408, 414
//! or 463; a client that leaves before its answer is counted as 460.
//!
//! Timeouts: the client's idle timeout (`idle_timeout.timeout_seconds`)
//! restarts with each byte the client sends: a request that stops half-way
//! gets 408 when it passes, an idle connection is closed quietly.
//! The target timeout bounds connecting, each write of the request, the
//! whole wait for the response head (a 504 when it passes), then each read
//! of the response body.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::accesslog::{Begin, Outcome, Pending};
use crate::dataplane::DataPlane;
use crate::dataplane::policy::{self, HeadPolicy, HeadScan, OverLimit, Verdict};
use crate::dataplane::pool::Address;
use crate::dataplane::responses::{self, Generated, RedirectSource};
use crate::dataplane::sticky::{self, Presented};
use crate::dataplane::table::{
    CompiledAction, Forward, RouteTable, RouteTables, WeightedGroup, target_key,
};
use crate::dataplane::targets::{InFlight, TargetRuntime};
use crate::dataplane::upstream::{self, Upstream};
use crate::dataplane::wire::{
    self, ChunkError, ChunkedScanner, ClientFraming, Forwarding, Framing, MAX_HEADERS, Rejection,
};
use crate::matcher::{RequestHeaders, RequestView, strip_port};
use crate::metrics::ElbError;

/// What a read of request bytes from the client ended with.
enum Arrival {
    Bytes,
    /// The client closed (or the connection failed, or shutdown began).
    Closed,
    /// Nothing came for the idle timeout.
    TimedOut,
}

/// How many targets one request may try to connect to before it gets a 502.
const MAX_CONNECT_ATTEMPTS: usize = super::proxy::MAX_CONNECT_ATTEMPTS;

/// How many pooled connections one request may find closed by the target
/// before it opens a fresh one.
const STALE_RETRIES: usize = 4;

/// The largest response head accepted from a target.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Serves one HTTP/1.x client connection until it closes, times out, or
/// `closing` turns true (then after the request in progress).
pub(super) async fn serve(
    plane: Arc<DataPlane>,
    stream: TcpStream,
    peer: SocketAddr,
    worker: usize,
    node: usize,
    closing: watch::Receiver<bool>,
) {
    let options = &plane.options;
    let head = plane.tables.latest().head;
    let mut connection = ClientConnection {
        client_timer: Deadline::new(head.idle_timeout),
        target_timer: Deadline::new(options.target_timeout),
        head,
        opened: Instant::now(),
        stream,
        client_ip: alb::cidr::canonical_ip(peer.ip()),
        worker,
        node,
        input: BytesMut::with_capacity(8 * 1024),
        out: Vec::with_capacity(8 * 1024),
        closing,
        body_unread: false,
        peer,
        access: Pending::default(),
        plane: Arc::clone(&plane),
    };
    let refused = connection.run().await;
    let linger = refused || connection.body_unread;
    let _ = connection.stream.shutdown().await;
    if linger {
        // The client may still be sending what was refused: read it away for
        // a moment, so closing does not reset the connection under the
        // answer before the client has read it.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(1..) = connection.stream.read(&mut sink).await {}
        })
        .await;
    }
}

/// A timer reused for every wait of one kind on a connection. Moving a
/// timer costs a lock on the runtime's timer wheel, so the deadline is only
/// moved when it would fire too early: a wait times out between `timeout`
/// and `timeout + slack` after it began.
struct Deadline {
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    slack: Duration,
}

impl Deadline {
    fn new(timeout: Duration) -> Deadline {
        let slack = Deadline::slack_of(timeout);
        Deadline {
            sleep: Box::pin(tokio::time::sleep(timeout + slack)),
            timeout,
            slack,
        }
    }

    fn slack_of(timeout: Duration) -> Duration {
        (timeout / 8).min(Duration::from_secs(1))
    }

    /// Changes the timeout of the waits started from now on.
    fn set_timeout(&mut self, timeout: Duration) {
        if self.timeout != timeout {
            self.timeout = timeout;
            self.slack = Deadline::slack_of(timeout);
        }
    }

    /// Starts a wait: the timer fires `timeout` (plus at most `slack`) from now.
    fn start(&mut self) {
        let wanted = Instant::now() + self.timeout;
        let current = self.sleep.deadline();
        if current < wanted || current > wanted + self.slack {
            self.sleep.as_mut().reset(wanted + self.slack);
        }
    }
}

/// Reads more bytes into `buffer`; `Ok(None)` when `timer` fires first.
/// The timer restarts: `timer`'s timeout bounds this read alone.
async fn read_within(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    timer: &mut Deadline,
) -> std::io::Result<Option<usize>> {
    timer.start();
    read_before(stream, buffer, timer).await
}

/// Reads more bytes into `buffer`; `Ok(None)` when `timer` fires first.
/// The timer goes on from where it was started.
async fn read_before(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    timer: &mut Deadline,
) -> std::io::Result<Option<usize>> {
    if buffer.capacity() - buffer.len() < 2048 {
        buffer.reserve(16 * 1024);
    }
    tokio::select! {
        biased;
        read = stream.read_buf(buffer) => read.map(Some),
        () = timer.sleep.as_mut() => Ok(None),
    }
}

/// The most response bytes read from a target while the request body is
/// still being sent to it.
const MAX_EARLY_RESPONSE: usize = 1024 * 1024;

/// Reads what a target sent into `buffer`; `Err` when it closed or failed.
async fn drain(stream: &TcpStream, buffer: &mut BytesMut) -> std::io::Result<()> {
    loop {
        stream.readable().await?;
        if buffer.capacity() - buffer.len() < 2048 {
            buffer.reserve(16 * 1024);
        }
        match stream.try_read_buf(buffer) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the target closed the connection",
                ));
            }
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
}

/// Writes `bytes` to a target while reading whatever it sends meanwhile
/// (up to [`MAX_EARLY_RESPONSE`]), so a target that answers before it has
/// read the whole body cannot deadlock the exchange. `Ok(false)`: `timer`
/// fired; `Err`: the write failed or the target closed.
async fn send_draining(
    upstream: &mut Upstream,
    mut bytes: &[u8],
    timer: &mut Deadline,
) -> std::io::Result<bool> {
    timer.start();
    while !bytes.is_empty() {
        let stream = &upstream.stream;
        tokio::select! {
            biased;
            ready = stream.writable() => {
                ready?;
                match stream.try_write(bytes) {
                    Ok(written) => bytes = &bytes[written..],
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
            }
            drained = drain(stream, &mut upstream.buffer),
                if upstream.buffer.len() < MAX_EARLY_RESPONSE =>
            {
                drained?;
            }
            () = timer.sleep.as_mut() => return Ok(false),
        }
    }
    Ok(true)
}

/// Writes all of `bytes`; `Ok(false)` when `timer` fires first.
async fn write_within(
    stream: &mut TcpStream,
    bytes: &[u8],
    timer: &mut Deadline,
) -> std::io::Result<bool> {
    timer.start();
    tokio::select! {
        biased;
        written = stream.write_all(bytes) => written.map(|()| true),
        () = timer.sleep.as_mut() => Ok(false),
    }
}

/// What a request head says about the client side of the exchange.
#[derive(Debug, Clone, Copy)]
struct ClientSide {
    http10: bool,
    keep_alive: bool,
    head_request: bool,
    idempotent: bool,
    framing: Framing,
    expect_continue: bool,
    /// An ambiguous request in the defensive mode: forwarded, then both
    /// connections close.
    desync_close: bool,
}

/// What to do with a request whose head has been read.
enum Plan {
    /// The load balancer's own answer is in `out`.
    Answered { close: bool },
    /// The request head for the target is in `out`; forward by the rule at
    /// this index of the primary table, to this weighted target group (and
    /// first to the target a sticky cookie names, if any).
    Forward {
        rule: usize,
        picked: usize,
        prefer: Option<u64>,
    },
}

/// A request head read and routed: the tables it was routed by, what to do
/// with it, and what it says of the client side.
type Prepared = (Arc<RouteTables>, Plan, ClientSide);

/// Where a body stands while it is copied through.
enum BodyProgress {
    Done,
    Length(u64),
    /// The scanner, and whether the data is decoded (for an HTTP/1.0 client).
    Chunked(ChunkedScanner, bool),
    UntilClose,
}

impl BodyProgress {
    fn new(framing: Framing, decode_chunks: bool) -> BodyProgress {
        match framing {
            Framing::Empty => BodyProgress::Done,
            Framing::Length(length) => BodyProgress::Length(length),
            Framing::Chunked => BodyProgress::Chunked(ChunkedScanner::default(), decode_chunks),
            Framing::UntilClose => BodyProgress::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyProgress::Done)
    }

    /// Moves the body bytes at the front of `buffer` to the end of `out`;
    /// returns whether the body is complete.
    fn take(&mut self, buffer: &mut BytesMut, out: &mut Vec<u8>) -> Result<bool, ChunkError> {
        match self {
            BodyProgress::Done => {}
            BodyProgress::Length(remaining) => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                out.extend_from_slice(&buffer[..take]);
                buffer.advance(take);
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyProgress::Done;
                }
            }
            BodyProgress::Chunked(scanner, decode) => {
                let used = if *decode {
                    scanner.scan(buffer, |data| out.extend_from_slice(data))?
                } else {
                    let used = scanner.scan(buffer, |_| {})?;
                    out.extend_from_slice(&buffer[..used]);
                    used
                };
                buffer.advance(used);
                if scanner.is_done() {
                    *self = BodyProgress::Done;
                }
            }
            BodyProgress::UntilClose => {
                out.extend_from_slice(buffer);
                buffer.clear();
            }
        }
        Ok(self.is_done())
    }
}

/// Whether a request head that was incomplete in `input[..scanned]` may be
/// complete now: the bytes read since hold, or finish, an empty line.
/// (Always true for a head's first bytes, which usually hold all of it.)
fn may_end_head(input: &[u8], scanned: usize) -> bool {
    if scanned == 0 {
        return true;
    }
    input[scanned.saturating_sub(3)..]
        .windows(2)
        .any(|pair| pair == b"\n\n" || pair == b"\n\r")
}

/// Parses the request head at the front of `input`: its length and the
/// request, `Ok(None)` while it is incomplete. A head with more lines than
/// `lines` holds is parsed again with room for all of them in `more_lines`:
/// AWS limits sizes, not the number of headers.
fn parse_head<'b>(
    input: &'b [u8],
    lines: &'b mut [MaybeUninit<httparse::Header<'b>>],
    more_lines: &'b mut Vec<MaybeUninit<httparse::Header<'b>>>,
) -> Result<Option<(usize, httparse::Request<'b, 'b>)>, Rejection> {
    let parser = httparse::ParserConfig::default();
    let mut request = httparse::Request::new(&mut []);
    match parser.parse_request_with_uninit_headers(&mut request, input, lines) {
        Ok(httparse::Status::Complete(length)) => return Ok(Some((length, request))),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {}
        Err(_) => return Err(Rejection::Malformed("not an HTTP/1.x request head")),
    }
    let bound = input.len().min(policy::MAX_REQUEST_HEAD + 4);
    let line_count = input[..bound].iter().filter(|b| **b == b'\n').count();
    more_lines.resize_with(line_count + 1, MaybeUninit::uninit);
    let mut request = httparse::Request::new(&mut []);
    match parser.parse_request_with_uninit_headers(&mut request, input, more_lines) {
        Ok(httparse::Status::Complete(length)) => Ok(Some((length, request))),
        Ok(httparse::Status::Partial) => Ok(None),
        // Still too many: more than a 64 KiB head can hold.
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::HeadTooLarge),
        Err(_) => Err(Rejection::Malformed("not an HTTP/1.x request head")),
    }
}

/// The answer to a head over one of AWS's size limits.
fn over_limit(over: OverLimit) -> Rejection {
    match over {
        OverLimit::RequestLine => Rejection::RequestLineTooLong,
        OverLimit::HeaderLine | OverLimit::Head => Rejection::HeadTooLarge,
    }
}

/// Writes a whole answer of the load balancer into `out`.
fn write_answer(out: &mut Vec<u8>, answer: &Generated, client: &ClientSide, close: bool) {
    wire::write_generated(
        out,
        answer.status,
        &answer.headers,
        &answer.body,
        wire::ReplyTo {
            head_request: client.head_request,
            close,
            http10: client.http10,
        },
    );
}

/// How the response to a forwarded request begins.
struct ResponseStart {
    status: u16,
    framing: Framing,
    reusable: bool,
    client_framing: ClientFraming,
    close: bool,
}

/// A request a target has answered: the connection, the target, its group,
/// the response head, and the request counted in flight until it is done.
struct Exchanged<'f> {
    upstream: Upstream,
    target: &'f TargetRuntime,
    weighted: &'f WeightedGroup,
    start: ResponseStart,
    _in_flight: InFlight<'f>,
}

/// Why no response head came from a target.
enum HeadFailure {
    /// The connection ended before any byte of a response: a pooled
    /// connection the target had closed, possibly.
    EndedEarly,
    /// Broken while sending or receiving, or a malformed response.
    Broken(String),
    TimedOut,
    /// The client sent a malformed body, or its connection failed.
    ClientFailed,
    /// The client closed its connection before the answer (460; a request
    /// body cut short is counted as 400, as AWS counts it).
    ClientClosed {
        body_cut: bool,
    },
    /// The client stopped sending its body for the idle timeout (408).
    ClientTimedOut,
}

struct ClientConnection {
    plane: Arc<DataPlane>,
    stream: TcpStream,
    client_ip: IpAddr,
    worker: usize,
    /// The head policy of the table the current (or, between requests, the
    /// last) request is served by.
    head: HeadPolicy,
    /// When the connection was accepted (`client_keep_alive.seconds`).
    opened: Instant,
    /// The load balancer node serving this connection (`nodes.rs`).
    node: usize,
    /// Bytes read from the client and not handled yet.
    input: BytesMut,
    /// What is being written next (to the client or a target).
    out: Vec<u8>,
    client_timer: Deadline,
    target_timer: Deadline,
    closing: watch::Receiver<bool>,
    /// Set when the connection closes after an answer that left (part of)
    /// a request body unread: the client may still be sending it.
    body_unread: bool,
    peer: SocketAddr,
    /// The access log entry of the request in flight.
    access: Pending,
}

impl ClientConnection {
    /// Serves requests until the connection should close; returns whether
    /// the client may still be sending (a refused request).
    async fn run(&mut self) -> bool {
        loop {
            // The idle timeout of the table the last request was served by
            // (the connection's first: the newest table's); `prepare` reads
            // the tables once per request.
            self.client_timer.set_timeout(self.head.idle_timeout);
            // Wait for a whole request head, within the idle timeout from now.
            self.client_timer.start();
            // Bytes of `input` known to hold no end of head: a head that
            // arrives in pieces is parsed again only once its end may be in.
            let mut scanned = 0;
            let mut limits = HeadScan::default();
            let (tables, plan, client) = loop {
                if !self.input.is_empty() {
                    if may_end_head(&self.input, scanned) {
                        match self.prepare() {
                            Ok(Some(prepared)) => break prepared,
                            Ok(None) => {}
                            Err(rejection) => return self.refuse(rejection).await,
                        }
                    }
                    // Not complete: every byte in `input` is of this head.
                    if let Err(over) = limits.check(&self.input) {
                        return self.refuse(over_limit(over)).await;
                    }
                }
                let between_requests = self.input.is_empty();
                if between_requests && *self.closing.borrow() {
                    return false;
                }
                scanned = self.input.len();
                match self.read_request_bytes(between_requests).await {
                    Arrival::Bytes => {}
                    // Half a request: AWS answers 408 (an idle connection
                    // is closed quietly).
                    Arrival::TimedOut if !between_requests => {
                        return self.refuse(Rejection::TimedOut).await;
                    }
                    Arrival::TimedOut | Arrival::Closed => return false,
                }
            };
            let keep_open = match plan {
                Plan::Answered { close } => {
                    self.log_answered();
                    let written = self.write_client().await;
                    self.out.clear();
                    self.body_unread = close && client.framing != Framing::Empty;
                    written && !close
                }
                Plan::Forward {
                    rule,
                    picked,
                    prefer,
                } => {
                    let forward = tables
                        .primary()
                        .and_then(|table| table.rules.get(rule))
                        .and_then(|rule| match &rule.action {
                            CompiledAction::Forward(forward) => Some(forward),
                            _ => None,
                        });
                    match forward {
                        Some(forward) => self.forward(&client, forward, picked, prefer).await,
                        None => {
                            tracing::debug!(peer = %self.peer, "client connection closed: its rule is no forward in its table");
                            false
                        }
                    }
                }
            };
            if !keep_open || self.opened.elapsed() >= self.head.client_keep_alive {
                return false;
            }
        }
    }

    /// Logs an answer of the load balancer itself (fixed response, redirect,
    /// error page) whose head is in `out`.
    fn log_answered(&mut self) {
        if !self.access.is_active() {
            return;
        }
        let status = self
            .out
            .get(9..12)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let action = match status {
            301 | 302 => "redirect",
            _ => "fixed-response",
        };
        self.access.action(action);
        let outcome = Outcome {
            elb_status: status,
            ..Outcome::default()
        };
        self.access
            .finish(&self.plane.access_logs, self.worker, outcome);
    }

    /// Logs a forwarded request that the load balancer answered with an
    /// error page (`error_reason` stays `-`: AWS gives one for Lambda,
    /// authentication and WAF failures only).
    fn log_elb_error(&mut self, status: u16, group: Option<&WeightedGroup>) {
        if !self.access.is_active() {
            return;
        }
        let outcome = Outcome {
            elb_status: status,
            target_group: group
                .and_then(|weighted| weighted.group.as_ref())
                .map(|group| group.runtime.arn.as_str()),
            ..Outcome::default()
        };
        self.access
            .finish(&self.plane.access_logs, self.worker, outcome);
    }

    /// Logs a request a target answered.
    fn log_forwarded(
        &mut self,
        weighted: &WeightedGroup,
        target: &TargetRuntime,
        status: u16,
        started: std::time::Instant,
    ) {
        if !self.access.is_active() {
            return;
        }
        let outcome = Outcome {
            elb_status: status,
            target: match target.address() {
                Some(Address::Socket(socket)) => Some((socket.ip(), socket.port())),
                _ => None,
            },
            target_group: weighted
                .group
                .as_ref()
                .map(|group| group.runtime.arn.as_str()),
            target_status: Some(status),
            target_time: Some(started.elapsed()),
            error_reason: None,
        };
        self.access
            .finish(&self.plane.access_logs, self.worker, outcome);
    }

    /// Writes `out` to the client; false when that fails or the client
    /// reads nothing for the idle timeout.
    async fn write_client(&mut self) -> bool {
        self.access.sent(self.out.len());
        let written = write_within(&mut self.stream, &self.out, &mut self.client_timer).await;
        if !matches!(written, Ok(true)) {
            tracing::debug!(peer = %self.peer, ?written, "writing to the client failed");
        }
        matches!(written, Ok(true))
    }

    /// Reads request-head bytes from the client within the idle timeout,
    /// which restarts with every read (AWS's idle timer restarts with each
    /// byte); between requests a shutdown also ends the wait.
    async fn read_request_bytes(&mut self, between_requests: bool) -> Arrival {
        let read = if between_requests {
            let closing = &mut self.closing;
            tokio::select! {
                biased;
                read = read_within(&mut self.stream, &mut self.input, &mut self.client_timer) => read,
                _ = closing.changed() => return Arrival::Closed,
            }
        } else {
            read_within(&mut self.stream, &mut self.input, &mut self.client_timer).await
        };
        match read {
            Ok(Some(1..)) => Arrival::Bytes,
            Ok(None) => {
                tracing::debug!(peer = %self.peer, between_requests, "the client sent nothing for the idle timeout");
                Arrival::TimedOut
            }
            Ok(Some(0)) => {
                tracing::debug!(peer = %self.peer, between_requests, pending = self.input.len(), "the client closed its connection");
                Arrival::Closed
            }
            Err(error) => {
                tracing::debug!(peer = %self.peer, between_requests, %error, "reading from the client failed");
                Arrival::Closed
            }
        }
    }

    /// Parses and routes the request head at the front of `input`, writes
    /// what goes out next into `out`, and consumes the head. `Ok(None)`: the
    /// head is not complete yet.
    fn prepare(&mut self) -> Result<Option<Prepared>, Rejection> {
        // The head is read from `input` while the steps below write to the
        // connection's other fields.
        let mut input = std::mem::take(&mut self.input);
        let prepared = self.prepare_head(&input);
        if let Ok(Some((_, head_len))) = &prepared {
            input.advance(*head_len);
        }
        self.input = input;
        prepared.map(|prepared| prepared.map(|(prepared, _)| prepared))
    }

    /// [`ClientConnection::prepare`]'s steps for the head at the front of
    /// `input`: the routing tables, read once for the request; the head
    /// parsed and checked; the request routed, its log entry begun, and what
    /// to do with it. Also returns the head's length.
    fn prepare_head(&mut self, input: &[u8]) -> Result<Option<(Prepared, usize)>, Rejection> {
        let tables = self.plane.tables.load_full(self.node);
        self.head = tables.head;
        let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut more_lines = Vec::new();
        let Some((head_len, request)) = parse_head(input, &mut lines, &mut more_lines)? else {
            return Ok(None);
        };
        policy::check_complete(input, head_len, request.headers).map_err(over_limit)?;
        let facts = wire::request_facts(&request)?;
        let client = self.client_side(&input[..head_len], &facts, request.headers)?;
        let Some(table) = tables.primary() else {
            let page = self.plane.elb_error_page(ElbError::NoListener, None);
            write_answer(&mut self.out, &page, &client, true);
            return Ok(Some((
                (tables, Plan::Answered { close: true }, client),
                head_len,
            )));
        };
        let view = RequestView {
            method: facts.method,
            path: facts.path,
            query: facts.query,
            host: facts.host,
            headers: RequestHeaders::Lines(request.headers),
            source_ip: self.client_ip,
        };
        let routed = table.route_index(&view);
        self.begin_access_log(table, routed, &facts, request.headers, head_len);
        let plan = match routed {
            None => self.answer_plan(ElbError::NoListener, &client),
            Some(index) => self.plan(table, index, &facts, request.headers, &client),
        };
        Ok(Some(((tables, plan, client), head_len)))
    }

    /// What the head says of the client side, after the checks AWS makes of
    /// every request: no TRACE, a bounded X-Forwarded-For, and the desync
    /// mitigation mode's verdict on an ambiguous head.
    fn client_side(
        &self,
        head: &[u8],
        facts: &wire::RequestFacts<'_>,
        headers: &[httparse::Header<'_>],
    ) -> Result<ClientSide, Rejection> {
        if facts.method == "TRACE" {
            return Err(Rejection::TraceNotAllowed);
        }
        if wire::forwarded_for_count(headers) > policy::MAX_FORWARDED_FOR {
            return Err(Rejection::TooManyForwardedFor);
        }
        let class = policy::classify(facts.method, head, headers);
        let verdict = self.head.desync_mitigation.verdict(class.tier);
        if verdict == Verdict::Refuse {
            return Err(Rejection::Desync(class.reason));
        }
        let desync_close = verdict == Verdict::ForwardThenClose;
        Ok(ClientSide {
            http10: facts.http10,
            keep_alive: facts.keep_alive && !desync_close,
            head_request: facts.is_head(),
            idempotent: facts.is_idempotent(),
            framing: facts.framing,
            expect_continue: facts.expect_continue,
            desync_close,
        })
    }

    /// Begins the request's access log entry while logging is on.
    fn begin_access_log(
        &mut self,
        table: &RouteTable,
        routed: Option<usize>,
        facts: &wire::RequestFacts<'_>,
        headers: &[httparse::Header<'_>],
        head_len: usize,
    ) {
        if !self.plane.access_logs.enabled() {
            self.access.clear();
            return;
        }
        self.access.begin(
            &self.plane.access_logs,
            Begin {
                kind: "http",
                client: self.peer,
                method: facts.method,
                target: facts.target,
                host: facts.host,
                listener_port: table.port,
                http10: facts.http10,
                user_agent: crate::accesslog::header_text(headers, "user-agent"),
                rule_priority: routed.map(|index| table.rules[index].priority),
                head_bytes: head_len,
            },
        );
    }

    /// Whether the load balancer's own answer closes the connection: it
    /// does when it leaves a request body unread.
    fn closes_after_answer(&self, client: &ClientSide) -> bool {
        !client.keep_alive || client.framing != Framing::Empty || *self.closing.borrow()
    }

    /// An error page of the load balancer as the answer.
    fn answer_plan(&mut self, error: ElbError, client: &ClientSide) -> Plan {
        let close = self.closes_after_answer(client);
        let page = self.plane.elb_error_page(error, None);
        write_answer(&mut self.out, &page, client, close);
        Plan::Answered { close }
    }

    /// What to do with a request that rule `index` of `table` matched: its
    /// fixed response or redirect written into `out`, or its head for the
    /// target written there and the target group picked.
    fn plan(
        &mut self,
        table: &RouteTable,
        index: usize,
        facts: &wire::RequestFacts<'_>,
        headers: &[httparse::Header<'_>],
        client: &ClientSide,
    ) -> Plan {
        let close = self.closes_after_answer(client);
        let answer = match &table.rules[index].action {
            CompiledAction::FixedResponse {
                status,
                content_type,
                body,
                counters,
            } => {
                counters.record(status.as_u16());
                responses::generated(*status, content_type, body.clone())
            }
            CompiledAction::Redirect { template, counters } => {
                let source = RedirectSource {
                    host: facts.host.map_or("", strip_port),
                    listener_port: table.port,
                    path: facts.path,
                    query: facts.query,
                };
                let answer = responses::redirect(template, &source);
                counters.record(answer.status.as_u16());
                answer
            }
            CompiledAction::Forward(forward) => {
                let presented = self.presented_cookies(forward, headers);
                let Some(picked) = forward.pick_sticky(presented) else {
                    return self.answer_plan(ElbError::NoRegisteredTargets, client);
                };
                self.write_upstream_head(table, facts, headers);
                return Plan::Forward {
                    rule: index,
                    picked,
                    prefer: presented.target,
                };
            }
        };
        write_answer(&mut self.out, &answer, client, close);
        Plan::Answered { close }
    }

    /// Writes the request head for the target into `out`, with the trace id
    /// it carries (logged too).
    fn write_upstream_head(
        &mut self,
        table: &RouteTable,
        facts: &wire::RequestFacts<'_>,
        headers: &[httparse::Header<'_>],
    ) {
        let trace = responses::trace_value(wire::incoming_trace(headers));
        self.access.trace(trace.as_bytes());
        let attributes = self.head;
        wire::write_upstream_head(
            &mut self.out,
            facts,
            headers,
            &Forwarding {
                listener_port: table.port,
                client_ip: self.client_ip,
                trace: trace.as_bytes(),
                default_host: &table.dns_name,
                xff: attributes.xff,
                drop_invalid_header_fields: attributes.drop_invalid_header_fields,
                preserve_host_header: attributes.preserve_host_header,
            },
        );
    }

    /// Answers a request that cannot be handled and ends the connection.
    async fn refuse(&mut self, rejection: Rejection) -> bool {
        match rejection {
            Rejection::Malformed(reason) => tracing::debug!("refusing a request: {reason}"),
            Rejection::Desync(reason) => {
                tracing::debug!("refusing a request (desync mitigation): {reason}");
            }
            _ => {}
        }
        let page = responses::error_page(rejection.status());
        self.plane
            .record_elb_answer(page.status.as_u16(), None, false);
        self.out.clear();
        wire::write_generated(
            &mut self.out,
            page.status,
            &page.headers,
            &page.body,
            // A refused request: the connection closes after the answer.
            wire::ReplyTo {
                head_request: false,
                close: true,
                http10: false,
            },
        );
        let _ = self.write_client().await;
        true
    }

    /// Answers with an error page of the load balancer (after `out` held a
    /// request for a target); false when the connection must close.
    async fn answer_error(
        &mut self,
        error: ElbError,
        group: Option<&WeightedGroup>,
        client: &ClientSide,
        body_unread: bool,
    ) -> bool {
        let page = self.plane.elb_error_page(error, group);
        self.log_elb_error(page.status.as_u16(), group);
        let close = !client.keep_alive || body_unread || *self.closing.borrow();
        self.body_unread = body_unread;
        self.out.clear();
        write_answer(&mut self.out, &page, client, close);
        let written = self.write_client().await;
        self.out.clear();
        written && !close
    }

    /// Counts a client that left before its answer: 460, as AWS logs and
    /// counts it (in HTTPCode_ELB_4XX_Count), or 400 when it left in the
    /// middle of its request body.
    fn client_left(&self, group: &WeightedGroup, body_cut: bool) {
        let status = if body_cut { 400 } else { 460 };
        if !body_cut {
            self.plane.metrics.record_elb_error(ElbError::ClientClosed);
        }
        group.counters.record(status);
        self.plane.record_elb_answer(status, Some(group), true);
        tracing::info!(
            client = %self.client_ip,
            status,
            "the client closed its connection before the answer"
        );
    }

    /// Answers with an error page when a forwarded request got no response;
    /// the connection closes if the client has not sent all of its body.
    async fn answer_unsent(
        &mut self,
        error: ElbError,
        group: &WeightedGroup,
        client: &ClientSide,
        body: &BodyProgress,
    ) -> bool {
        let unread = !body.is_done();
        self.answer_error(error, Some(group), client, unread).await
    }

    /// The sticky ids a request's cookies name, when `forward` uses them.
    fn presented_cookies(&self, forward: &Forward, headers: &[httparse::Header<'_>]) -> Presented {
        if !forward.uses_cookies() {
            return Presented::default();
        }
        let cookies = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .map(|h| h.value);
        self.plane
            .cookie_key
            .presented(cookies, std::time::SystemTime::now())
    }

    /// Forwards the request whose head for the target is in `out`; returns
    /// whether the client connection stays open. A target that cannot be
    /// connected to is marked unhealthy and the next one is tried (as
    /// [`DataPlane::forward`] does for HTTP/2).
    async fn forward(
        &mut self,
        client: &ClientSide,
        forward: &Forward,
        picked: usize,
        prefer: Option<u64>,
    ) -> bool {
        let Some(mut body) = self.start_body(client).await else {
            tracing::debug!(peer = %self.peer, "client connection closed: its request body could not start");
            return false;
        };
        let started = std::time::Instant::now();
        match self
            .exchange_with_a_target(client, forward, picked, prefer, &mut body)
            .await
        {
            Ok(exchanged) => {
                self.complete_forward(client, forward, exchanged, started)
                    .await
            }
            Err(keep_open) => keep_open,
        }
    }

    /// The request body's progress, the bytes already read going out with
    /// the head; sends `100 Continue` when the client waits for it. `None`:
    /// the connection ends (a malformed body was refused, or the client
    /// could not be written to).
    async fn start_body(&mut self, client: &ClientSide) -> Option<BodyProgress> {
        let mut body = BodyProgress::new(client.framing, false);
        let body_buffered = match body.take(&mut self.input, &mut self.out) {
            Ok(complete) => complete,
            Err(ChunkError(reason)) => {
                let _ = self.refuse_body(reason).await;
                return None;
            }
        };
        if client.expect_continue && !body_buffered {
            let continued = write_within(
                &mut self.stream,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                &mut self.client_timer,
            )
            .await;
            if !matches!(continued, Ok(true)) {
                return None;
            }
        }
        Some(body)
    }

    /// Sends the request to a target of the picked group (the next one when
    /// a target cannot be connected to, at most [`MAX_CONNECT_ATTEMPTS`]) and
    /// reads its response head. `Err(keep_open)`: no response came and the
    /// client was answered (or is gone).
    async fn exchange_with_a_target<'f>(
        &mut self,
        client: &ClientSide,
        forward: &'f Forward,
        picked: usize,
        prefer: Option<u64>,
        body: &mut BodyProgress,
    ) -> Result<Exchanged<'f>, bool> {
        // A request wholly in `out` can be sent again if a pooled connection
        // turns out closed (RFC 9110 §9.2.2: idempotent methods only).
        let replayable = body.is_done() && client.idempotent;
        let first = forward.group(picked);
        let mut weighted = first;
        let mut tried = [0usize; MAX_CONNECT_ATTEMPTS];
        let mut attempts = 0;
        let mut stale = 0;
        loop {
            let Some(target) =
                forward.next_target(picked, &mut weighted, &tried[..attempts], prefer)
            else {
                let error = ElbError::no_target_left(attempts);
                return Err(self.answer_unsent(error, first, client, body).await);
            };
            let Some(address) = target.address() else {
                let error = ElbError::TargetConnectionFailed;
                return Err(self.answer_unsent(error, weighted, client, body).await);
            };
            if attempts > 0 {
                self.plane.metrics.record_retry();
            }
            tried[attempts] = target_key(target);
            attempts += 1;
            let in_flight = target.begin_request();
            loop {
                let mut upstream = match self.checkout_or_connect(target, address, stale).await {
                    Ok(upstream) => upstream,
                    Err(error) => {
                        target.connection_failed(&error);
                        if attempts == MAX_CONNECT_ATTEMPTS {
                            let error = ElbError::TargetConnectionFailed;
                            return Err(self.answer_unsent(error, weighted, client, body).await);
                        }
                        // The next target.
                        break;
                    }
                };
                match self.exchange_head(&mut upstream, body, client).await {
                    Ok(start) => {
                        return Ok(Exchanged {
                            upstream,
                            target,
                            weighted,
                            start,
                            _in_flight: in_flight,
                        });
                    }
                    Err(HeadFailure::EndedEarly) if upstream.reused && replayable => {
                        tracing::debug!(peer = %self.peer, stale, "a pooled target connection was found closed; the request goes again");
                        stale += 1;
                    }
                    Err(failure) => {
                        return Err(self
                            .head_failed(failure, target, weighted, client, body)
                            .await);
                    }
                }
            }
        }
    }

    /// Answers (or counts) a request whose target gave no response head;
    /// returns whether the client connection stays open.
    async fn head_failed(
        &mut self,
        failure: HeadFailure,
        target: &TargetRuntime,
        weighted: &WeightedGroup,
        client: &ClientSide,
        body: &BodyProgress,
    ) -> bool {
        match failure {
            HeadFailure::ClientFailed => {
                tracing::debug!(peer = %self.peer, "client connection failed while its request was forwarded");
                false
            }
            HeadFailure::ClientClosed { body_cut } => {
                self.client_left(weighted, body_cut);
                false
            }
            HeadFailure::ClientTimedOut => {
                let _ = self.refuse(Rejection::TimedOut).await;
                false
            }
            HeadFailure::TimedOut => {
                self.answer_unsent(ElbError::TargetTimeout, weighted, client, body)
                    .await
            }
            failure => {
                if let HeadFailure::Broken(reason) = failure {
                    tracing::debug!(
                        "forwarding to {}:{}: {reason}",
                        target.target.id,
                        target.target.port
                    );
                }
                self.answer_unsent(ElbError::TargetConnectionError, weighted, client, body)
                    .await
            }
        }
    }

    /// Counts the target's response, relays it to the client (with the
    /// stickiness cookies), logs the request, and pools the target
    /// connection when it can be reused; returns whether the client
    /// connection stays open.
    async fn complete_forward(
        &mut self,
        client: &ClientSide,
        forward: &Forward,
        exchanged: Exchanged<'_>,
        started: std::time::Instant,
    ) -> bool {
        let Exchanged {
            mut upstream,
            target,
            weighted,
            start,
            _in_flight,
        } = exchanged;
        weighted.counters.record(start.status);
        if let Some(cell) = &weighted.cell {
            cell.record_target(self.worker, start.status, started.elapsed());
        }
        let cookies = forward.cookie_lines(&self.plane.cookie_key, weighted, target);
        sticky::insert_into_head(&mut self.out, &cookies);
        let relayed = self.relay_response(&mut upstream, &start).await;
        self.log_forwarded(weighted, target, start.status, started);
        let Some(complete) = relayed else {
            tracing::debug!(peer = %self.peer, status = start.status, "client connection closed: the response could not be relayed whole");
            return false;
        };
        // After an ambiguous request the target connection is not reused
        // either (desync mitigation).
        if start.reusable && complete && !client.desync_close {
            target.upstreams.checkin(self.worker, upstream);
        }
        !start.close
    }

    /// Copies the response head in `out` and then the body to the client as
    /// it arrives from `upstream`. `Some(complete)`: whether the body was read
    /// to its end; `None`: the client or the target failed mid-way.
    async fn relay_response(
        &mut self,
        upstream: &mut Upstream,
        start: &ResponseStart,
    ) -> Option<bool> {
        // The response body, copied through as it arrives.
        let mut response_body = BodyProgress::new(
            start.framing,
            start.client_framing == ClientFraming::Dechunked,
        );
        let mut complete = match response_body.take(&mut upstream.buffer, &mut self.out) {
            Ok(complete) => complete,
            Err(_) => return None,
        };
        let written = self.write_client().await;
        self.out.clear();
        if !written {
            return None;
        }
        while !complete {
            match read_within(
                &mut upstream.stream,
                &mut upstream.buffer,
                &mut self.target_timer,
            )
            .await
            {
                Ok(Some(0)) if matches!(response_body, BodyProgress::UntilClose) => break,
                Ok(Some(1..)) => {}
                // Cut short or stalled: the client must not take it as whole.
                _ => return None,
            }
            complete = match response_body.take(&mut upstream.buffer, &mut self.out) {
                Ok(complete) => complete,
                Err(_) => return None,
            };
            let written = self.write_client().await;
            self.out.clear();
            if !written {
                return None;
            }
        }
        Some(complete)
    }

    /// A pooled connection to `target` for this worker (unless `stale`
    /// pooled ones were already found closed), else a new one within the
    /// target timeout.
    async fn checkout_or_connect(
        &mut self,
        target: &TargetRuntime,
        address: Address<'_>,
        stale: usize,
    ) -> std::io::Result<Upstream> {
        if stale < STALE_RETRIES
            && let Some(upstream) = target.upstreams.checkout(self.worker)
        {
            return Ok(upstream);
        }
        self.target_timer.start();
        tokio::select! {
            biased;
            connected = upstream::connect(address) => connected,
            () = self.target_timer.sleep.as_mut() => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting timed out",
            )),
        }
    }

    /// Answers 400 for a request body that is not valid chunked encoding.
    async fn refuse_body(&mut self, reason: &'static str) -> bool {
        let _ = self.refuse(Rejection::Malformed(reason)).await;
        false
    }

    /// Sends the request in `out` (and the rest of its body, read from the
    /// client) on `upstream`, reads the response head, and leaves the head
    /// for the client in `out`.
    async fn exchange_head(
        &mut self,
        upstream: &mut Upstream,
        body: &mut BodyProgress,
        client: &ClientSide,
    ) -> Result<ResponseStart, HeadFailure> {
        let broken = |error: std::io::Error| HeadFailure::Broken(error.to_string());
        match write_within(&mut upstream.stream, &self.out, &mut self.target_timer).await {
            Ok(true) => {}
            Ok(false) => return Err(HeadFailure::TimedOut),
            // A closed pooled connection usually fails only at the read.
            Err(_) if upstream.reused => return Err(HeadFailure::EndedEarly),
            Err(error) => return Err(broken(error)),
        }
        // Whether the target answered before taking the whole body.
        let answered_early = self.upload_body(upstream, body).await?;
        // The target timeout bounds the whole wait for the response head.
        self.target_timer.start();
        let mut interim_seen = false;
        loop {
            if !upstream.buffer.is_empty() {
                let mut lines =
                    [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut response,
                    &upstream.buffer,
                    &mut lines,
                );
                match parsed {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = response.code.unwrap_or(0);
                        if status == 101 {
                            return Err(HeadFailure::Broken(
                                "the target switched protocols, which the load balancer does not forward"
                                    .to_owned(),
                            ));
                        }
                        if (100..200).contains(&status) {
                            // Interim responses (100 Continue was sent by the
                            // load balancer itself) are not passed on.
                            upstream.buffer.advance(head_len);
                            interim_seen = true;
                            continue;
                        }
                        let facts = wire::response_facts(&response, client.head_request)
                            .map_err(|reason| HeadFailure::Broken(reason.to_owned()))?;
                        let client_framing =
                            ClientFraming::for_response(facts.framing, client.http10);
                        // After an early answer the rest of the request body
                        // is still on its way: neither connection is reusable.
                        let close = !client.keep_alive
                            || client_framing.closes()
                            || answered_early
                            || *self.closing.borrow();
                        self.out.clear();
                        wire::write_client_head(
                            &mut self.out,
                            &response,
                            &facts,
                            client_framing,
                            client.head_request,
                            close,
                            client.http10,
                        );
                        upstream.buffer.advance(head_len);
                        return Ok(ResponseStart {
                            status: facts.status,
                            framing: facts.framing,
                            reusable: facts.reusable && !answered_early,
                            client_framing,
                            close,
                        });
                    }
                    Ok(httparse::Status::Partial) if upstream.buffer.len() < MAX_RESPONSE_HEAD => {}
                    Ok(httparse::Status::Partial) => {
                        return Err(HeadFailure::Broken(
                            "a response head that is too large".to_owned(),
                        ));
                    }
                    Err(error) => {
                        return Err(HeadFailure::Broken(format!(
                            "a malformed response head: {error}"
                        )));
                    }
                }
            }
            let nothing_yet = upstream.buffer.is_empty() && !interim_seen;
            // A client that leaves now is counted as 460, and the target's
            // answer is not waited for.
            let read = tokio::select! {
                biased;
                read = read_before(&mut upstream.stream, &mut upstream.buffer, &mut self.target_timer) => read,
                () = client_closed(&self.stream, &mut self.input) => {
                    return Err(HeadFailure::ClientClosed { body_cut: false });
                }
            };
            response_bytes_read(read, nothing_yet)?;
        }
    }

    /// Sends the rest of the request body as the client sends it. From here
    /// on the request cannot be sent again. Whatever the target sends
    /// meanwhile is read (up to a limit), so an answer it sends before closing
    /// without the rest of the body (a 413, a 401) reaches the client instead
    /// of a 502. `Ok(true)`: the target answered (or closed) before taking the
    /// whole body.
    async fn upload_body(
        &mut self,
        upstream: &mut Upstream,
        body: &mut BodyProgress,
    ) -> Result<bool, HeadFailure> {
        if body.is_done() {
            return Ok(false);
        }
        self.out.clear();
        while !body.is_done() {
            self.client_timer.start();
            loop {
                tokio::select! {
                    biased;
                    read = read_within(&mut self.stream, &mut self.input, &mut self.client_timer) => {
                        match read {
                            Ok(Some(1..)) => break,
                            Ok(None) => return Err(HeadFailure::ClientTimedOut),
                            Ok(Some(0)) => return Err(HeadFailure::ClientClosed { body_cut: true }),
                            Err(_) => return Err(HeadFailure::ClientFailed),
                        }
                    }
                    drained = drain(&upstream.stream, &mut upstream.buffer),
                        if upstream.buffer.len() < MAX_EARLY_RESPONSE =>
                    {
                        // A target may answer and go on reading; one that
                        // closes will not take the rest of the body.
                        if drained.is_err() {
                            return Ok(true);
                        }
                    }
                }
            }
            if body.take(&mut self.input, &mut self.out).is_err() {
                let _ = self
                    .refuse(Rejection::Malformed("a malformed chunked body"))
                    .await;
                return Err(HeadFailure::ClientFailed);
            }
            match send_draining(upstream, &self.out, &mut self.target_timer).await {
                Ok(true) => {}
                Ok(false) => return Err(HeadFailure::TimedOut),
                // Closed or answered: the caller reads whether an answer came.
                Err(_) => return Ok(true),
            }
            self.out.clear();
        }
        Ok(false)
    }
}

/// What a read of a response head's bytes means. `nothing_yet`: no byte of
/// a response has come, so a closed connection means a pooled one the
/// target had closed (`EndedEarly`).
fn response_bytes_read(
    read: std::io::Result<Option<usize>>,
    nothing_yet: bool,
) -> Result<(), HeadFailure> {
    match read {
        Ok(Some(1..)) => Ok(()),
        Ok(None) => Err(HeadFailure::TimedOut),
        Ok(Some(0)) if nothing_yet => Err(HeadFailure::EndedEarly),
        Err(error)
            if nothing_yet
                && matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                ) =>
        {
            Err(HeadFailure::EndedEarly)
        }
        Ok(Some(0)) => Err(HeadFailure::Broken(
            "the target closed the connection in the middle of a response head".to_owned(),
        )),
        Err(error) => Err(HeadFailure::Broken(error.to_string())),
    }
}

/// Resolves when the client has closed its connection (or it failed) while
/// its answer is awaited. What it sends meanwhile (a pipelined request) is
/// kept in `input`, up to the largest head.
async fn client_closed(stream: &TcpStream, input: &mut BytesMut) {
    loop {
        if input.len() > policy::MAX_REQUEST_HEAD {
            // Enough read ahead: the rest waits in the socket.
            return std::future::pending().await;
        }
        if stream.readable().await.is_err() {
            return;
        }
        if input.capacity() - input.len() < 2048 {
            input.reserve(16 * 1024);
        }
        match stream.try_read_buf(input) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::may_end_head;
    use crate::dataplane::wire::MAX_HEADERS;

    #[test]
    fn a_head_in_pieces_is_parsed_again_only_when_its_end_may_have_arrived() {
        let cases: [(&[u8], usize, bool); 7] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, true),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-B: 1", 16, false),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 24, true),
            // The empty line split across reads.
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r", 25, true),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 26, true),
            (b"GET / HTTP/1.1\nHost: a\n\n", 20, true),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-", 25, false),
        ];
        for (input, scanned, expected) in cases {
            assert_eq!(
                may_end_head(input, scanned),
                expected,
                "{:?} scanned to {scanned}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// A request head, the start of its body after it, and the facts its
    /// whole head gives.
    fn head_and_body() -> impl proptest::strategy::Strategy<Value = (String, Vec<u8>)> {
        use proptest::prelude::*;
        let method = prop_oneof!["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];
        let target = prop_oneof![
            "/[a-z0-9/]{0,12}",
            "/[a-z]{1,6}\\?[a-z]=[0-9]{1,3}",
            "http://[a-z]{1,6}\\.example/[a-z]{0,6}",
        ];
        let version = prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")];
        let header = prop_oneof![
            "Host: [a-z]{1,8}(:[0-9]{2,4})?",
            "Content-Length: [0-9]{1,3}",
            "Transfer-Encoding: chunked",
            "Connection: (close|keep-alive)",
            "Expect: 100-continue",
            "X-[A-Z][a-z]{0,6}: [ -~]{0,20}",
        ];
        let newline = prop_oneof!["\r\n", "\n"];
        (
            method,
            target,
            version,
            proptest::collection::vec(header, 0..6),
            newline,
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(method, target, version, headers, newline, body)| {
                let mut head = format!("{method} {target} {version}{newline}");
                for header in headers {
                    head.push_str(&header);
                    head.push_str(&newline);
                }
                head.push_str(&newline);
                (head, body)
            })
    }

    /// Parses `input` as `prepare` does: the head's length and its facts.
    fn parse(
        input: &[u8],
    ) -> Option<(
        usize,
        Result<crate::dataplane::wire::RequestFacts<'_>, crate::dataplane::wire::Rejection>,
    )> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(input).expect("a well-formed head") {
            httparse::Status::Complete(length) => {
                Some((length, crate::dataplane::wire::request_facts(&request)))
            }
            httparse::Status::Partial => None,
        }
    }

    proptest::proptest! {
        /// However a head and the body after it are split into reads, the
        /// loop in `ClientConnection::run` (parse again only when
        /// `may_end_head`) finds the head as soon as its last byte is in, and
        /// `wire::request_facts` says of it what it says of the whole head.
        #[test]
        fn a_head_split_anywhere_gives_the_facts_of_the_whole_head(
            (head, body) in head_and_body(),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let whole: Vec<u8> = [head.as_bytes(), &body].concat();
            let expected = parse(&whole).expect("a complete head");
            proptest::prop_assert_eq!(expected.0, head.len());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (whole.len() + 1)).collect();
            cuts.push(whole.len());
            cuts.sort_unstable();
            cuts.dedup();
            let first_cut_with_head = cuts.iter().copied().find(|&c| c >= head.len());
            let mut scanned = 0;
            let mut found = None;
            for cut in cuts {
                let input = &whole[..cut];
                if !input.is_empty()
                    && may_end_head(input, scanned)
                    && let Some(parsed) = parse(input)
                {
                    found = Some((cut, parsed));
                    break;
                }
                scanned = cut;
            }
            let (arrived, parsed) = found.expect("the head is found once it is in");
            proptest::prop_assert_eq!(Some(arrived), first_cut_with_head, "found late or early");
            proptest::prop_assert_eq!(parsed, expected);
        }
    }
}

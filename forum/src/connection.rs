//! One client connection on hyper's HTTP/1 server, with the limits hyper does
//! not keep itself: a request head stalled for the client timeout gets 408
//! and the connection closes (hyper's `header_read_timeout` closes without an
//! answer, and also runs while a keep-alive connection is idle); an idle
//! connection closes after [`KEEP_ALIVE`]; a 400 is written without the
//! `content-length: 0` hyper would add (Node.js sent none).
//!
//! The socket is wrapped so that its reads and writes mark the connection's
//! phase (idle, a head begun, answering) with relaxed atomic stores; a
//! watchdog task looks every `client_timeout`, so a request costs no timer
//! and no clock read (a head is answered 408 between one and two client
//! timeouts after it began; an idle connection closes after 75 s to 75 s
//! and a client timeout).

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper::Response;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use futures_util::FutureExt;
use futures_util::future::Either;

use crate::handlers::{Answer, AppState, Handling, ResponseBody, handle_request};

/// How long an idle client connection stays open: above the ALB's 60 s idle
/// timeout, as AWS advises for targets, so the balancer never reuses a
/// connection the target just closed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;
const CLOSED: u64 = 3;

/// The connection's phase and how many heads it has begun, in one word
/// (`heads << 2 | phase`): marked with relaxed stores, no clock read.
struct Activity {
    state: AtomicU64,
    /// Wakes the watchdog when the connection has ended.
    closed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: AtomicU64::new(IDLE),
            closed: Notify::new(),
        }
    }

    fn mark(&self, phase: u64) {
        let state = self.state.load(Ordering::Relaxed);
        self.state.store(state & !3 | phase, Ordering::Relaxed);
    }

    /// A head begins (the first bytes after an answer).
    fn head_begins(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if state & 3 == IDLE {
            self.state
                .store(((state & !3) + 4) | HEAD, Ordering::Relaxed);
        }
    }

    fn phase(&self) -> u64 {
        self.state.load(Ordering::Relaxed) & 3
    }
}

/// The socket, marking reads (a head begins) and writes (an answer went out).
struct Watched {
    stream: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(context, buf);
        if buf.filled().len() > before {
            this.activity.head_begins();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(context, buf);
        if let Poll::Ready(Ok(_)) = result
            && this.activity.phase() == BUSY
        {
            this.activity.mark(IDLE);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

/// Serves `stream` until the client or the server closes it.
pub async fn serve(state: Arc<AppState>, stream: std::net::TcpStream, graceful: Watcher) {
    // A second handle on the socket, for the watchdog's 408 and close and for
    // a 400 without Content-Length, beside hyper's.
    let Ok(spare) = stream.try_clone() else {
        return;
    };
    let spare = Arc::new(spare);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    // Its own task, woken only by its timer: polled beside the connection,
    // it would be polled on every request.
    tokio::spawn(watch(
        Arc::clone(&activity),
        Arc::clone(&spare),
        state.client_timeout,
    ));
    let io = TokioIo::new(Watched {
        stream,
        activity: Arc::clone(&activity),
    });
    let marks = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request| {
        marks.mark(BUSY);
        match handle_request(&state, request) {
            // Nearly every request: the answer, ready (a small future to
            // move into place, no `Arc` cloned).
            Handling::Answered(answer) => Either::Left(std::future::ready(Ok::<_, Infallible>(
                into_response(answer, &spare),
            ))),
            Handling::ReadingBody(reading) => {
                let spare = Arc::clone(&spare);
                Either::Right(reading.map(move |answer| Ok(into_response(answer, &spare))))
            }
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // Head and body in one send, as actix-web did (measured cheaper here).
        .writev(false)
        // No read while a request is answered (hyper's check for a client
        // gone mid-request): the answer is made as soon as the request is
        // read, so there is nothing to cancel, and a client that shut its
        // sending side after its request gets the answer. That read also
        // came while the request still held the head's bytes, so hyper
        // allocated a new read buffer per request.
        .half_close(true)
        .serve_connection(io, service);
    let _ = graceful.watch(connection).await;
    activity.mark(CLOSED);
    activity.closed.notify_one();
}

/// The response hyper sends for `answer`. A 400 is written here and the
/// socket shut: hyper's own answer then fails to go out, and the connection
/// ends.
fn into_response(answer: Answer, spare: &std::net::TcpStream) -> Response<ResponseBody> {
    match answer {
        Answer::Response(response) => response,
        Answer::BadRequest => {
            write_raw(spare, b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n");
            Response::new(ResponseBody::Bytes(None))
        }
    }
}

/// Writes `head` with a Date and the blank line on `spare`, then shuts the
/// socket for writing (the client reads the answer, then the end).
fn write_raw(spare: &std::net::TcpStream, head: &[u8]) {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let mut writer = spare;
    let _ = writer.write_all(&[head, b"date: ", date.as_bytes(), b"\r\n\r\n"].concat());
    let _ = spare.shutdown(std::net::Shutdown::Write);
}

/// The connection's watchdog: ends it (a 408 for a stalled head) when
/// [`watchdog`] says so; ends itself when the connection has ended.
async fn watch(activity: Arc<Activity>, spare: Arc<std::net::TcpStream>, client_timeout: Duration) {
    match watchdog(&activity, client_timeout).await {
        Ending::Closed => {}
        Ending::Idle => {
            let _ = spare.shutdown(std::net::Shutdown::Both);
        }
        Ending::StalledHead => {
            write_raw(
                &spare,
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n",
            );
            let _ = spare.shutdown(std::net::Shutdown::Both);
        }
    }
}

enum Ending {
    Closed,
    Idle,
    StalledHead,
}

/// Completes when the connection must end: the same head in progress at two
/// looks `client_timeout` apart (stalled for at least that long), no activity
/// for [`KEEP_ALIVE`] while idle, or the connection ended.
async fn watchdog(activity: &Activity, client_timeout: Duration) -> Ending {
    let mut last = activity.state.load(Ordering::Relaxed);
    let mut idle_for = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(client_timeout) => {}
            () = activity.closed.notified() => {}
        }
        let state = activity.state.load(Ordering::Relaxed);
        match state & 3 {
            CLOSED => return Ending::Closed,
            HEAD if state == last => return Ending::StalledHead,
            IDLE if state == last => {
                idle_for += client_timeout;
                if idle_for >= KEEP_ALIVE {
                    return Ending::Idle;
                }
            }
            _ => idle_for = Duration::ZERO,
        }
        last = state;
    }
}

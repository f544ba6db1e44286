//! One client connection on hyper's HTTP/1 server, with the limits hyper does
//! not keep itself: a request head stalled for the client timeout gets 408
//! and the connection closes (hyper's `header_read_timeout` closes without an
//! answer, and also runs while a keep-alive connection is idle); an idle
//! connection closes after [`KEEP_ALIVE`]; a 400 is written without the
//! `content-length: 0` hyper would add (Node.js sent none).
//!
//! The socket is wrapped so that its reads and writes mark the connection's
//! phase (idle since, head started at, answering) with one clock read each; a
//! watchdog sleeps until the phase's deadline and re-arms its timer only when
//! it fires, so a request costs no timer.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::handlers::{Answer, AppState, handle_request};

/// How long an idle client connection stays open: above the ALB's 60 s idle
/// timeout, as AWS advises for targets, so the balancer never reuses a
/// connection the target just closed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;
const BAD_REQUEST: u64 = 3;

/// The connection's phase and when it began (milliseconds since `origin`),
/// in one word: `phase << 62 | millis`.
struct Activity {
    origin: Instant,
    state: AtomicU64,
    /// Wakes the watchdog for a 400.
    bad_request: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            state: AtomicU64::new(IDLE << 62),
            bad_request: Notify::new(),
        }
    }

    /// A phase whose start time is not needed (no clock read).
    fn mark(&self, phase: u64) {
        self.state.store(phase << 62, Ordering::Relaxed);
    }

    fn set(&self, phase: u64) {
        let millis = self.origin.elapsed().as_millis() as u64 & ((1 << 62) - 1);
        self.state.store(phase << 62 | millis, Ordering::Relaxed);
    }

    fn phase(&self) -> (u64, Instant) {
        let state = self.state.load(Ordering::Relaxed);
        (
            state >> 62,
            self.origin + Duration::from_millis(state & ((1 << 62) - 1)),
        )
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
        if buf.filled().len() > before && this.activity.phase().0 == IDLE {
            this.activity.set(HEAD);
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
            && this.activity.phase().0 == BUSY
        {
            this.activity.set(IDLE);
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
    // A second handle on the socket, to write what hyper would not (a 408, a
    // 400 without Content-Length) after hyper's connection is dropped.
    let Ok(spare) = stream.try_clone() else {
        return;
    };
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let client_timeout = state.client_timeout;
    let io = TokioIo::new(Watched {
        stream,
        activity: Arc::clone(&activity),
    });
    let marks = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        let marks = Arc::clone(&marks);
        marks.mark(BUSY);
        async move {
            match handle_request(&state, request).await {
                Answer::Response(response) => Ok::<_, std::convert::Infallible>(response),
                Answer::BadRequest => {
                    marks.mark(BAD_REQUEST);
                    marks.bad_request.notify_one();
                    std::future::pending().await
                }
            }
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // Head and body in one send, as actix-web did (measured cheaper here).
        .writev(false)
        .serve_connection(io, service);
    let connection = graceful.watch(connection);
    tokio::select! {
        _ = connection => {}
        ending = watchdog(&activity, client_timeout) => {
            let answer: &[u8] = match ending {
                Ending::Idle => return,
                Ending::StalledHead => b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n",
                Ending::BadRequest => b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n",
            };
            let mut spare = spare;
            let date = httpdate::fmt_http_date(SystemTime::now());
            let _ = spare.write_all(&[answer, b"date: ", date.as_bytes(), b"\r\n\r\n"].concat());
            let _ = spare.shutdown(std::net::Shutdown::Write);
        }
    }
}

enum Ending {
    Idle,
    StalledHead,
    BadRequest,
}

/// Completes when the connection must end: idle for [`KEEP_ALIVE`], a head
/// begun `client_timeout` ago and not whole, or a 400 to write.
async fn watchdog(activity: &Activity, client_timeout: Duration) -> Ending {
    loop {
        let (phase, since) = activity.phase();
        let deadline = match phase {
            // A head may begin any time: look again within the client timeout.
            IDLE => (since + KEEP_ALIVE).min(Instant::now() + client_timeout),
            HEAD => since + client_timeout,
            BAD_REQUEST => return Ending::BadRequest,
            // Answering: a stalled body is the handler's to time out.
            _ => Instant::now() + client_timeout,
        };
        let now = Instant::now();
        match phase {
            IDLE if since + KEEP_ALIVE <= now => return Ending::Idle,
            HEAD if deadline <= now => return Ending::StalledHead,
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = activity.bad_request.notified() => {}
        }
    }
}

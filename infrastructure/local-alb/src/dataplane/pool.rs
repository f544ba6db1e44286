//! Keep-alive HTTP/1.1 connections to one target, pooled per worker thread.
//!
//! Each target holds one idle list per data-plane worker, so a request only
//! ever touches its own worker's list (an uncontended lock, no hashing) and
//! the connection it reuses is driven by the same single-threaded runtime.
//! A connection goes back to its list when the response body has been read
//! to the end; a connection whose response was abandoned is closed instead.
//!
//! Lists are LIFO, so a steady load keeps reusing the same warm connections
//! while the ones at the cold end age out: a connection idle for longer than
//! [`IDLE_LIMIT`] is closed rather than reused, so it is never reused just
//! as a target with a short keep-alive (Node's default is 5 s) closes it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// Idle connections older than this are closed instead of reused.
pub const IDLE_LIMIT: Duration = Duration::from_secs(4);

/// Idle connections kept per target and worker; more are closed.
const MAX_IDLE_PER_WORKER: usize = 1024;

/// How many pooled connections one request may find closed before it opens
/// a fresh one.
const STALE_RETRIES: usize = 4;

/// Idle connections of some kind to one target: one LIFO list per worker
/// thread, entries older than [`IDLE_LIMIT`] dropped. Shared by this
/// module's hyper senders (HTTP/2 clients) and `upstream`'s sockets
/// (HTTP/1.x clients).
pub struct IdleLists<C> {
    slots: Box<[Mutex<IdleList<C>>]>,
}

/// One worker's idle connections, each with when it became idle; the most
/// recent at the back.
type IdleList<C> = VecDeque<(C, Instant)>;

impl<C> IdleLists<C> {
    pub fn new(workers: usize) -> IdleLists<C> {
        IdleLists {
            slots: (0..workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }
    }

    fn slot(&self, worker: usize) -> MutexGuard<'_, IdleList<C>> {
        self.slots[worker % self.slots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently returned connection of `worker` that `usable`
    /// accepts (the others are dropped), if any.
    pub fn checkout(&self, worker: usize, usable: impl Fn(&C) -> bool) -> Option<C> {
        let mut slot = self.slot(worker);
        while let Some((connection, since)) = slot.pop_back() {
            if since.elapsed() > IDLE_LIMIT {
                // Everything below it is older still.
                slot.clear();
                return None;
            }
            if usable(&connection) {
                return Some(connection);
            }
        }
        None
    }

    /// Drops the idle connections of `worker` that `usable` rejects or that
    /// are too old to be reused.
    pub fn retain(&self, worker: usize, usable: impl Fn(&C) -> bool) {
        let mut slot = self.slot(worker);
        slot.retain(|(connection, since)| since.elapsed() <= IDLE_LIMIT && usable(connection));
    }

    /// Keeps `connection` for `worker` (unless the list is full).
    pub fn checkin(&self, worker: usize, connection: C) {
        let now = Instant::now();
        let mut slot = self.slot(worker);
        while slot
            .front()
            .is_some_and(|(_, since)| now.duration_since(*since) > IDLE_LIMIT)
        {
            slot.pop_front();
        }
        if slot.len() < MAX_IDLE_PER_WORKER {
            slot.push_back((connection, now));
        }
    }
}

/// Idle hyper client connections to one target, for HTTP/2 clients.
pub type ConnectionPool = IdleLists<SendRequest<Incoming>>;

/// Why an exchange with a target produced no response.
pub enum ExchangeError {
    /// The request never left: no connection could be opened. The request is
    /// handed back so another target can take it.
    NotSent(Box<Request<Incoming>>, std::io::Error),
    /// The request was (at least partly) sent and the connection failed.
    Failed(hyper::Error),
}

/// Sends `request` to the target at `address` on a connection of `pool` (the
/// target's) for `worker`, or on a new one. A pooled connection found closed before the request was written
/// is skipped; the request is then sent on another (or a new) connection.
pub async fn exchange(
    pool: &Arc<ConnectionPool>,
    address: Address<'_>,
    worker: usize,
    mut request: Request<Incoming>,
) -> Result<(Response<Incoming>, Release), ExchangeError> {
    let mut stale = 0;
    loop {
        let pooled = if stale < STALE_RETRIES {
            pool.checkout(worker, |sender| !sender.is_closed())
        } else {
            None
        };
        let fresh = pooled.is_none();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => match connect(address).await {
                Ok(sender) => sender,
                Err(error) => return Err(ExchangeError::NotSent(Box::new(request), error)),
            },
        };
        // A new connection that closes before taking the request is the
        // target's failure; a pooled one may just have timed out.
        let closed_early = || {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the target closed a new connection before the request was sent",
            )
        };
        if sender.ready().await.is_err() {
            if fresh {
                return Err(ExchangeError::NotSent(Box::new(request), closed_early()));
            }
            stale += 1;
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => {
                let release = Release {
                    sender,
                    pool: Arc::clone(pool),
                    worker,
                };
                return Ok((response, release));
            }
            Err(mut error) => match error.take_message() {
                Some(unsent) if fresh => {
                    return Err(ExchangeError::NotSent(Box::new(unsent), closed_early()));
                }
                Some(unsent) => {
                    request = unsent;
                    stale += 1;
                }
                None => return Err(ExchangeError::Failed(error.into_error())),
            },
        }
    }
}

/// Where a target listens: a resolved socket address when its id is an IP
/// address, else `host:port` to resolve at connect time.
#[derive(Clone, Copy)]
pub enum Address<'a> {
    Socket(SocketAddr),
    HostPort(&'a str),
}

async fn connect(address: Address<'_>) -> std::io::Result<SendRequest<Incoming>> {
    let stream = match address {
        Address::Socket(address) => tokio::net::TcpStream::connect(address).await?,
        Address::HostPort(authority) => tokio::net::TcpStream::connect(authority).await?,
    };
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    // Driven on this worker's runtime, next to the requests that use it.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!("target connection: {error}");
        }
    });
    Ok(sender)
}

/// A connection on loan to one response; it returns to its pool when the
/// response body has been read to the end.
pub struct Release {
    sender: SendRequest<Incoming>,
    pool: Arc<ConnectionPool>,
    worker: usize,
}

impl Release {
    fn give_back(self) {
        if !self.sender.is_closed() {
            self.pool.checkin(self.worker, self.sender);
        }
    }
}

/// A target's response body, streamed to the client; its connection returns
/// to the pool once the body is complete.
pub struct PooledBody {
    inner: Incoming,
    release: Option<Release>,
}

impl PooledBody {
    pub fn new(inner: Incoming, release: Release) -> PooledBody {
        PooledBody {
            inner,
            release: Some(release),
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(release) = self.release.take() {
                    release.give_back();
                }
            }
            // A broken body leaves the connection unusable.
            Poll::Ready(Some(Err(_))) => self.release = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body read to its declared end (or empty, as for HEAD and 204)
        // leaves the connection idle; an abandoned one closes it.
        if let Some(release) = self.release.take()
            && self.inner.is_end_stream()
        {
            release.give_back();
        }
    }
}

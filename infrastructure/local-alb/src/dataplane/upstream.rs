//! Keep-alive HTTP/1.1 connections to one target for the HTTP/1.x fast path
//! (`http1`), pooled per worker thread.
//!
//! A connection is a bare socket and its read buffer: the request's own task
//! writes the request and reads the response on it, so no connection task,
//! channel or wake-up sits between a client and its target. The pool works
//! like [`super::pool`]'s: one LIFO list per worker (a connection is
//! registered with its worker's runtime and never leaves it), connections
//! idle for longer than [`IDLE_LIMIT`] are closed rather than reused.
//!
//! Whether an idle connection is still open is read from the readiness the
//! runtime already recorded for its socket: a target that closed it made it
//! readable, and one non-blocking read then tells end-of-file from stray
//! bytes. A live idle connection costs no system call.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::dataplane::pool::{Address, IDLE_LIMIT};

/// Idle connections kept per target and worker; more are closed.
const MAX_IDLE_PER_WORKER: usize = 1024;

/// Read buffer capacity of a target connection.
pub const READ_BUFFER: usize = 16 * 1024;

/// One HTTP/1.1 connection to a target.
pub struct Upstream {
    pub stream: TcpStream,
    /// Bytes read from the target and not consumed yet.
    pub buffer: BytesMut,
    /// Whether it came from the pool (it may have been closed by the target
    /// just as the request was sent) rather than opened for this request.
    pub reused: bool,
}

struct Idle {
    stream: TcpStream,
    buffer: BytesMut,
    since: Instant,
}

/// The idle connections to one target, one list per worker thread.
pub struct UpstreamPool {
    slots: Box<[Mutex<VecDeque<Idle>>]>,
}

impl UpstreamPool {
    pub fn new(workers: usize) -> UpstreamPool {
        UpstreamPool {
            slots: (0..workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }
    }

    fn slot(&self, worker: usize) -> MutexGuard<'_, VecDeque<Idle>> {
        self.slots[worker % self.slots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used open connection of `worker`, if any.
    pub fn checkout(&self, worker: usize) -> Option<Upstream> {
        let mut slot = self.slot(worker);
        while let Some(idle) = slot.pop_back() {
            if idle.since.elapsed() > IDLE_LIMIT {
                // Everything below it is older still.
                slot.clear();
                return None;
            }
            if still_open(&idle.stream) {
                return Some(Upstream {
                    stream: idle.stream,
                    buffer: idle.buffer,
                    reused: true,
                });
            }
        }
        None
    }

    /// Returns a connection whose last response was read to its end.
    pub fn checkin(&self, worker: usize, upstream: Upstream) {
        if !upstream.buffer.is_empty() {
            // Bytes past the end of the response: the target is confused.
            return;
        }
        let now = Instant::now();
        let mut slot = self.slot(worker);
        while slot
            .front()
            .is_some_and(|idle| now.duration_since(idle.since) > IDLE_LIMIT)
        {
            slot.pop_front();
        }
        if slot.len() < MAX_IDLE_PER_WORKER {
            slot.push_back(Idle {
                stream: upstream.stream,
                buffer: upstream.buffer,
                since: now,
            });
        }
    }
}

/// Whether an idle connection is still open, without a system call unless
/// the runtime saw it become readable.
fn still_open(stream: &TcpStream) -> bool {
    let mut context = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut context) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            // End of file or bytes nobody asked for: either way, not reusable.
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

/// Opens a new connection to a target.
pub async fn connect(address: Address<'_>) -> std::io::Result<Upstream> {
    let stream = match address {
        Address::Socket(address) => TcpStream::connect(address).await?,
        Address::HostPort(authority) => TcpStream::connect(authority).await?,
    };
    stream.set_nodelay(true)?;
    Ok(Upstream {
        stream,
        buffer: BytesMut::with_capacity(READ_BUFFER),
        reused: false,
    })
}

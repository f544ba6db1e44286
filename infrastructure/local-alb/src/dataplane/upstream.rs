//! Keep-alive HTTP/1.1 connections to one target for the HTTP/1.x fast path
//! (`http1`), pooled per worker thread.
//!
//! A connection is a bare socket and its read buffer: the request's own task
//! writes the request and reads the response on it, so no connection task,
//! channel or wake-up sits between a client and its target. The pool is
//! [`super::pool::IdleLists`]: one LIFO list per worker (a connection is
//! registered with its worker's runtime and never leaves it), connections
//! idle for longer than `IDLE_LIMIT` are closed rather than reused.
//!
//! Whether an idle connection is still open is read from the readiness the
//! runtime already recorded for its socket: a target that closed it made it
//! readable, and one non-blocking read then tells end-of-file from stray
//! bytes. A live idle connection costs no system call.

use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::dataplane::pool::{Address, IdleLists};

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

/// An idle connection: the socket and its (empty) read buffer.
pub struct Idle {
    stream: TcpStream,
    buffer: BytesMut,
}

/// The idle connections to one target, one list per worker thread.
pub struct UpstreamPool(IdleLists<Idle>);

impl UpstreamPool {
    pub fn new(workers: usize) -> UpstreamPool {
        UpstreamPool(IdleLists::new(workers))
    }

    /// The most recently used open connection of `worker`, if any.
    pub fn checkout(&self, worker: usize) -> Option<Upstream> {
        let idle = self.0.checkout(worker, |idle| still_open(&idle.stream))?;
        Some(Upstream {
            stream: idle.stream,
            buffer: idle.buffer,
            reused: true,
        })
    }

    /// Closes the idle connections of `worker` the target has closed (or
    /// that are too old), so none lingers in CLOSE_WAIT until the next
    /// request to the target. Costs no system call for a live connection.
    pub fn sweep(&self, worker: usize) {
        self.0.retain(worker, |idle| still_open(&idle.stream));
    }

    /// Returns a connection whose last response was read to its end.
    pub fn checkin(&self, worker: usize, upstream: Upstream) {
        // Bytes past the end of the response: the target is confused.
        if upstream.buffer.is_empty() {
            let idle = Idle {
                stream: upstream.stream,
                buffer: upstream.buffer,
            };
            self.0.checkin(worker, idle);
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

//! What the process asks of the kernel at start so that bursts and many
//! connections do not turn clients away: the soft open-file limit raised to
//! the hard one, and listeners with a long accept queue. Both are logged.
//! (The forum servers do the same in `forum::startup`.)

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue asked for each listener (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default since Linux 5.4). std's default is
/// 128, which a burst of a few thousand connections overflows.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Raises the soft limit on open files to the hard limit and logs both: a
/// shell's `ulimit -n 1024` would otherwise cap the connections served at
/// about a thousand. Failing to raise it is logged, never fatal.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let text = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
    if before.current != before.maximum {
        let raised = rustix::process::Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(
                soft = %text(before.current),
                hard = %text(before.maximum),
                "could not raise the open-file limit to the hard limit: {error}"
            );
            return;
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::info!(
        soft_at_start = %text(before.current),
        soft = %text(now.current),
        hard = %text(now.maximum),
        "open-file limit"
    );
}

/// Binds `address` and listens with [`LISTEN_BACKLOG`].
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio's `bind` do: a restart can bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

//! Per-core workers, as nginx's worker processes: `count` threads, each with
//! its own current-thread tokio runtime, fed accepted connections in turn by
//! one accept loop, so that a connection (and every request on it) stays on
//! one thread. The forum servers and the local ALB's data plane both serve
//! this way; what a worker does with a connection is theirs.
//!
//! The hand-over is per connection (an unbounded channel send), never per
//! request. A worker whose thread is gone is skipped; with none left the
//! accept loop ends ([`NoWorkerLeft`]). Nothing here knows HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

/// How long the accept loop waits after a failed accept (out of file
/// descriptors and the like) before it accepts again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Every worker thread is gone: no connection can be served any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoWorkerLeft;

impl std::fmt::Display for NoWorkerLeft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every worker thread died")
    }
}

impl std::error::Error for NoWorkerLeft {}

/// The worker threads and the hand-over to each; `T` is what a worker gets
/// per connection (a stream, or a stream with what the caller adds to it).
pub struct Workers<T> {
    hand_over: Vec<UnboundedSender<T>>,
    finishing: Vec<oneshot::Receiver<std::io::Result<()>>>,
    next: usize,
}

impl<T: Send + 'static> Workers<T> {
    /// Starts `count` (at least one) threads named `{name}-{index}`, each
    /// running `work(index, connections)` on its own current-thread runtime
    /// until `work` returns (it should once `connections` closes, see
    /// [`Workers::finish`]).
    pub fn start<W, F>(count: usize, name: &str, work: W) -> std::io::Result<Workers<T>>
    where
        W: Fn(usize, UnboundedReceiver<T>) -> F + Clone + Send + 'static,
        F: Future<Output = ()>,
    {
        let mut workers = Workers {
            hand_over: Vec::new(),
            finishing: Vec::new(),
            next: 0,
        };
        for index in 0..count.max(1) {
            let (hand_over, connections) = tokio::sync::mpsc::unbounded_channel();
            let (finished, finish) = oneshot::channel();
            let work = work.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|runtime| runtime.block_on(work(index, connections)));
                    let _ = finished.send(result);
                })?;
            workers.hand_over.push(hand_over);
            workers.finishing.push(finish);
        }
        Ok(workers)
    }

    /// Hands `connection` to the next worker in turn, skipping any whose
    /// thread is gone.
    pub fn hand_over(&mut self, connection: T) -> Result<(), NoWorkerLeft> {
        let mut connection = connection;
        for _ in 0..self.hand_over.len() {
            self.next = (self.next + 1) % self.hand_over.len();
            match self.hand_over[self.next].send(connection) {
                Ok(()) => return Ok(()),
                Err(returned) => connection = returned.0,
            }
        }
        Err(NoWorkerLeft)
    }

    /// Closes the hand-over (each worker's `connections` ends) and waits for
    /// every worker to return; then the first error among them: a runtime
    /// that could not be built, or a thread that died.
    pub async fn finish(self) -> std::io::Result<()> {
        drop(self.hand_over);
        let mut first = Ok(());
        for finish in self.finishing {
            let ended = finish
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("a worker thread died")));
            if first.is_ok() {
                first = ended;
            }
        }
        first
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, handing each
/// to the workers in turn as `connection(stream, peer)` makes it. A failed
/// accept is logged and accepting goes on after [`ACCEPT_BACKOFF`]; a stream
/// that cannot leave the runtime is dropped. Ends early when no worker is
/// left. The caller then drops the listener and calls [`Workers::finish`].
pub async fn accept_until<T: Send + 'static>(
    listener: &tokio::net::TcpListener,
    workers: &mut Workers<T>,
    shutdown: impl Future<Output = ()>,
    mut connection: impl FnMut(std::net::TcpStream, SocketAddr) -> T,
) -> Result<(), NoWorkerLeft> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accepting a connection failed: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        workers.hand_over(connection(stream, peer))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each worker reports the thread it ran on and each connection it got.
    fn reporting(
        count: usize,
    ) -> (
        Workers<u32>,
        std::sync::mpsc::Receiver<(usize, String, u32)>,
    ) {
        let (seen, report) = std::sync::mpsc::channel();
        let workers = Workers::start(count, "test-worker", move |index, mut connections| {
            let seen = seen.clone();
            async move {
                while let Some(connection) = connections.recv().await {
                    let thread = std::thread::current().name().unwrap_or_default().to_owned();
                    let _ = seen.send((index, thread, connection));
                }
            }
        })
        .unwrap();
        (workers, report)
    }

    #[tokio::test]
    async fn connections_go_round_robin_each_worker_on_its_own_named_thread() {
        let (mut workers, report) = reporting(3);
        for connection in 0..6 {
            workers.hand_over(connection).unwrap();
        }
        workers.finish().await.unwrap();
        let mut got: Vec<_> = report.try_iter().collect();
        got.sort_by_key(|(_, _, connection)| *connection);
        let order: Vec<usize> = got.iter().map(|(index, _, _)| *index).collect();
        assert_eq!(order, [1, 2, 0, 1, 2, 0]);
        for (index, thread, _) in &got {
            assert_eq!(thread, &format!("test-worker-{index}"));
        }
    }

    /// A hand-over whose worker is gone (its receiver dropped).
    fn gone() -> UnboundedSender<u32> {
        tokio::sync::mpsc::unbounded_channel().0
    }

    #[tokio::test]
    async fn a_dead_worker_is_skipped_and_none_left_is_an_error() {
        let (mut workers, report) = reporting(2);
        workers.hand_over[1] = gone();
        for connection in 0..3 {
            workers.hand_over(connection).unwrap();
        }
        workers.hand_over[0] = gone();
        assert_eq!(workers.hand_over(9), Err(NoWorkerLeft));
        workers.finish().await.unwrap();
        let indices: Vec<usize> = report.try_iter().map(|(index, _, _)| index).collect();
        assert_eq!(indices, [0, 0, 0]);
    }

    #[tokio::test]
    async fn the_accept_loop_hands_accepted_streams_over_and_ends_at_shutdown() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (mut workers, report) = reporting(2);
        let (stop, stopped) = oneshot::channel::<()>();
        let clients = tokio::task::spawn_blocking(move || {
            for _ in 0..4 {
                std::net::TcpStream::connect(address).unwrap();
            }
        });
        let mut count = 0u32;
        let accepting = accept_until(
            &listener,
            &mut workers,
            async {
                let _ = stopped.await;
            },
            |_stream, peer| {
                assert!(peer.ip().is_loopback());
                count += 1;
                count
            },
        );
        let (accepted, ()) = tokio::join!(accepting, async {
            clients.await.unwrap();
            // Shut down once the workers got all four.
            let mut seen = 0;
            while seen < 4 {
                seen += report.try_iter().count();
                tokio::task::yield_now().await;
            }
            let _ = stop.send(());
        });
        assert_eq!(accepted, Ok(()));
        workers.finish().await.unwrap();
    }
}

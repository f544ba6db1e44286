//! The service runtime shared by the four binaries: bind, serve, stop gracefully.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;

use crate::connection;
use crate::dataset::{DataError, Dataset};
use crate::handlers::AppState;
use crate::service::Service;
use crate::settings::{Settings, SettingsError};
use crate::telemetry;

/// At most this many dangling post references are logged one by one.
const DANGLING_REFERENCES_LOGGED: usize = 20;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("cannot listen on {address}: {error} (choose another --host/--port)")]
    Bind {
        address: String,
        error: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

impl StartupError {
    /// 2 for bad input (usage, settings, data file), 1 for runtime failures.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StartupError::Settings(_) | StartupError::Data(_) => ExitCode::from(2),
            StartupError::Bind { .. } | StartupError::Serve(_) => ExitCode::FAILURE,
        }
    }
}

/// A bound, not yet running server.
pub struct Application {
    address: SocketAddr,
    listener: TcpListener,
    state: Arc<AppState>,
    workers: usize,
    shutdown_timeout: Duration,
}

impl Application {
    /// Loads the data the settings name, binds the listener and prepares the
    /// server.
    pub fn build(service: Service, settings: &Settings) -> Result<Application, StartupError> {
        let data = match &settings.data {
            Some(path) => Dataset::from_file(path)?,
            None => Dataset::builtin(),
        };
        log_dangling_references(&data);
        let bind_error = |error| StartupError::Bind {
            address: if settings.host.contains(':') {
                format!("[{}]:{}", settings.host, settings.port)
            } else {
                format!("{}:{}", settings.host, settings.port)
            },
            error,
        };
        raise_open_file_limit();
        let listener = listen(&settings.host, settings.port).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let client_timeout = Duration::from_secs(settings.client_timeout);
        tracing::info!(
            backlog = LISTEN_BACKLOG,
            client_timeout_seconds = settings.client_timeout,
            "a stalled request head or body gets 408 and is closed after the client timeout; \
             the accept queue holds up to {LISTEN_BACKLOG} connections (capped by net.core.somaxconn)"
        );
        let workers = settings.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        Ok(Application {
            address,
            listener,
            state: Arc::new(AppState {
                service,
                data,
                client_timeout,
            }),
            workers: workers.max(1),
            shutdown_timeout: Duration::from_secs(settings.shutdown_timeout),
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting connections, lets
    /// in-flight requests finish (up to the shutdown timeout) and returns.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then stops gracefully. Call it
    /// within a tokio runtime: it accepts there and hands the connections in
    /// turn to its worker threads, each a current-thread runtime (as nginx's
    /// worker processes; a request never changes threads).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
        self.listener
            .set_nonblocking(true)
            .map_err(StartupError::Serve)?;
        let listener =
            tokio::net::TcpListener::from_std(self.listener).map_err(StartupError::Serve)?;
        let state = Arc::clone(&self.state);
        let shutdown_timeout = self.shutdown_timeout;
        let mut workers = percore::Workers::start(self.workers, "worker", move |_, accepted| {
            worker(Arc::clone(&state), accepted, shutdown_timeout)
        })
        .map_err(StartupError::Serve)?;
        tracing::info!("listening on {}", self.address);
        let accepting =
            percore::accept_until(&listener, &mut workers, shutdown, |stream, _| stream).await;
        accepting.map_err(|gone| StartupError::Serve(std::io::Error::other(gone)))?;
        tracing::info!("stopping: finishing in-flight requests");
        drop(listener);
        workers.finish().await.map_err(StartupError::Serve)?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// One worker thread: serves the connections handed to it until the
/// hand-over closes, then lets them finish their requests (idle ones close
/// at once) for at most `shutdown_timeout`.
async fn worker(
    state: Arc<AppState>,
    mut accepted: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    shutdown_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    while let Some(stream) = accepted.recv().await {
        tokio::spawn(connection::serve(
            Arc::clone(&state),
            stream,
            graceful.watcher(),
        ));
    }
    let _ = tokio::time::timeout(shutdown_timeout, graceful.shutdown()).await;
}

/// The accept queue asked for the listener (the kernel caps it at
/// `net.core.somaxconn`); std's default of 128 drops bursts.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `host:port` and listens with [`LISTEN_BACKLOG`]. Needs a tokio
/// runtime (as `Application::build` does).
fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for address in std::net::ToSocketAddrs::to_socket_addrs(&(host, port))? {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(address)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return listener.into_std(),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            "no address to listen on",
        )
    }))
}

/// Raises the soft open-file limit to the hard limit and logs both, so that
/// a shell's `ulimit -n 1024` does not cap the connections served (as the
/// local ALB does; failing is logged, never fatal).
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let text = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("could not raise the open-file limit to the hard limit: {error}");
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

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed");
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!("{name} received");
}

fn log_dangling_references(data: &Dataset) {
    let dangling = data.dangling_references();
    for reference in dangling.iter().take(DANGLING_REFERENCES_LOGGED) {
        tracing::warn!("served as is: {reference}");
    }
    if dangling.len() > DANGLING_REFERENCES_LOGGED {
        let more = dangling.len() - DANGLING_REFERENCES_LOGGED;
        tracing::warn!("served as is: {more} more post references to missing threads or users");
    }
}

/// The whole life of a server binary: settings, logging, data, serve until a
/// stop signal. Errors print as `<binary>: <error>`.
pub fn run(service: Service) -> ExitCode {
    let settings = match Settings::from_process(&service) {
        Ok(settings) => settings,
        Err(SettingsError::Usage(usage)) => {
            let _ = usage.print();
            return if usage.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Err(error) => return report(&service, StartupError::from(error)),
    };
    let _log_flush_guard = telemetry::init(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report(&service, StartupError::Serve(error)),
    };
    let outcome = runtime.block_on(async {
        Application::build(service, &settings)?
            .run_until_stopped()
            .await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&service, error),
    }
}

fn report(service: &Service, error: StartupError) -> ExitCode {
    let exit_code = error.exit_code();
    eprintln!("{}: {:#}", service.name, anyhow::Error::new(error));
    exit_code
}

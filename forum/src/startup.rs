//! The service runtime shared by the four binaries: bind, serve, stop gracefully.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::dataset::{DataError, Dataset};
use crate::handlers::{AppState, handle_request};
use crate::service::Service;
use crate::settings::{Settings, SettingsError};
use crate::telemetry;

/// How long an idle client connection stays open: above the ALB's 60 s idle
/// timeout.
const TARGET_KEEP_ALIVE_SECONDS: u64 = 75;

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
    server: Server,
}

impl Application {
    /// Loads the data the settings name, binds the listener and prepares the
    /// server. Call it within an actix (or tokio) runtime.
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
        let local_address = listener.local_addr().map_err(bind_error)?;
        let client_timeout = Duration::from_secs(settings.client_timeout);
        tracing::info!(
            backlog = LISTEN_BACKLOG,
            client_timeout_seconds = settings.client_timeout,
            "a stalled request head or body gets 408 and is closed after the client timeout; \
             the accept queue holds up to {LISTEN_BACKLOG} connections (capped by net.core.somaxconn)"
        );
        let state = web::Data::new(AppState {
            service,
            data,
            client_timeout,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(handle_request))
        })
        .disable_signals()
        .backlog(LISTEN_BACKLOG)
        // The head: actix answers 408 and closes when it is not whole in
        // time (the body's deadline is `handlers::discard`'s).
        .client_request_timeout(client_timeout)
        // Longer than a load balancer's idle timeout (ALB: 60 s), as AWS advises
        // for targets, so the balancer never reuses a connection we just closed.
        .keep_alive(Duration::from_secs(TARGET_KEEP_ALIVE_SECONDS))
        .shutdown_timeout(settings.shutdown_timeout);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener).map_err(bind_error)?.run();
        Ok(Application {
            address: local_address,
            server,
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

    /// Serves until `shutdown` completes, then stops gracefully.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
        tracing::info!("listening on {}", self.address);
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        tokio::select! {
            result = &mut server => return result.map_err(StartupError::Serve),
            () = shutdown => {}
        }
        tracing::info!("stopping: finishing in-flight requests");
        // The stop command is sent now; the server future carries it out.
        let stopped = handle.stop(true);
        server.await.map_err(StartupError::Serve)?;
        stopped.await;
        tracing::info!("stopped");
        Ok(())
    }
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
    let outcome = actix_web::rt::System::new().block_on(async {
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

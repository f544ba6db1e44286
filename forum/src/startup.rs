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
        let listener =
            TcpListener::bind((settings.host.as_str(), settings.port)).map_err(bind_error)?;
        let local_address = listener.local_addr().map_err(bind_error)?;
        let state = web::Data::new(AppState { service, data });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(handle_request))
        })
        .disable_signals()
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

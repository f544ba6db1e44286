//! The local ALB: an Application Load Balancer on one machine.
//!
//! The public API is small: [`Application`] (built from [`settings`]) binds
//! both listeners and runs them; [`model`] is the configuration as the ELBv2
//! API sees it; [`DataPlane`] (with [`DataPlaneOptions`] and
//! [`TargetHealthView`]) routes traffic by a [`model::State`] without a
//! control plane, for embedding and the data-plane tests. Everything else is
//! `pub(crate)`: inside, the stack file (`stack`) or the saved state
//! (`persist`) gives the configuration, the data plane (`dataplane`) routes
//! traffic by it and the control plane (`control`, `sigv4`) changes it
//! through the ELBv2 API.

#![forbid(unsafe_code)]

pub(crate) mod accesslog;
pub(crate) mod attributes;
pub(crate) mod cloudwatch;
pub(crate) mod control;
pub(crate) mod dataplane;
pub mod faults;
pub(crate) mod health;
pub(crate) mod limits;
pub(crate) mod matcher;
pub(crate) mod metrics;
pub mod model;
pub(crate) mod persist;
pub mod settings;
pub(crate) mod sigv4;
pub(crate) mod stack;

pub use dataplane::{
    DataPlane, DataPlaneOptions, DesyncMode, HeadPolicy, Propagation, TargetHealthView, XffMode,
};
pub use persist::PersistError;
pub use stack::StackError;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::control::ControlPlane;
use crate::persist::StateStore;
use crate::settings::{EXIT_LOCKED, EXIT_RUNTIME, EXIT_STATE, EXIT_USAGE, Settings};
use crate::stack::Stack;

/// Why the local ALB could not start; each kind has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    State(#[from] PersistError),
    #[error(
        "cannot listen on {address} ({what}): {source}; pick another address or stop whatever uses it"
    )]
    Bind {
        address: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
}

impl StartupError {
    /// The documented exit code (see `local-alb --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Usage(_) | StartupError::Stack(_) => EXIT_USAGE,
            StartupError::State(PersistError::Write { .. }) => EXIT_RUNTIME,
            StartupError::State(PersistError::Locked { .. }) => EXIT_LOCKED,
            StartupError::State(_) => EXIT_STATE,
            StartupError::Bind { .. } => EXIT_RUNTIME,
        }
    }
}

/// Whether this load balancer serves `action`, on which API, and whether it
/// changes the configuration.
fn served(action: &str) -> Option<faults::Served> {
    if cloudwatch::api::OPERATIONS.contains(&action) {
        return Some(faults::Served {
            api: faults::Api::CloudWatch,
            write: false,
        });
    }
    control::actions::handler(action).map(|handler| faults::Served {
        api: faults::Api::Elbv2,
        write: matches!(handler, control::actions::Handler::Write(_)),
    })
}

/// Reads the stack file the settings name (see [`Settings::stack`]); also
/// where it came from, for messages.
fn load_stack(settings: &Settings) -> Result<(Stack, String), StartupError> {
    let (text, origin) = match &settings.stack {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StartupError::Usage(format!(
                    "cannot read the stack file {}: {e}; check the --stack path",
                    path.display()
                ))
            })?;
            (text, path.display().to_string())
        }
        None => {
            let repo_copy = Path::new(stack::DEFAULT_STACK_PATH);
            match std::fs::read_to_string(repo_copy) {
                Ok(text) => (text, stack::DEFAULT_STACK_PATH.to_owned()),
                Err(_) => (
                    stack::BUNDLED_STACK.to_owned(),
                    format!("(built-in copy of {})", stack::DEFAULT_STACK_PATH),
                ),
            }
        }
    };
    let parsed = stack::parse(&text, &origin)?;
    tracing::info!(stack = %origin, "stack file loaded");
    Ok((parsed, origin))
}

/// Warns, as a WARN log line and a plain stderr line, when the stack file
/// differs from the one the saved state started from (or, for a state saved
/// before that was recorded, has other target groups): the saved state wins,
/// so the edit is not in effect until `--reset`.
fn warn_if_the_stack_file_changed(
    store: &StateStore,
    stack: &Stack,
    origin: &str,
    saved: &model::State,
) {
    let differences = match store.load_stack_record() {
        Some(recorded) => stack::differences(&recorded, &stack.state),
        None => stack::target_group_differences(saved, &stack.state),
    };
    if differences.is_empty() {
        return;
    }
    let summary = format!(
        "the stack file {} differs from the saved state in {} and the saved state wins: {}; \
         to use the stack file, restart with --reset (this discards the changes made through the API)",
        origin,
        store.path().display(),
        differences.join("; ")
    );
    tracing::warn!("{summary}");
    eprintln!("local-alb: warning: {summary}");
}

/// A local ALB with both listeners bound, ready to run.
pub struct Application {
    data_listener: TcpListener,
    control_listener: TcpListener,
    data_address: SocketAddr,
    control_address: SocketAddr,
    dataplane: Arc<DataPlane>,
    control: Arc<ControlPlane>,
}

impl Application {
    /// Loads the configuration (saved state, else the stack file), saves it,
    /// and binds both listeners.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        if !settings.control_listen.ip().is_loopback() && !settings.allow_remote_control {
            return Err(StartupError::Usage(format!(
                "--control-listen {} is not a loopback address; the control API changes routing, \
                 so pass --allow-remote-control to expose it on purpose",
                settings.control_listen
            )));
        }
        let (stack, stack_origin) = load_stack(&settings)?;
        let layers = faults::Layers {
            given: &settings.faults,
            sources: &settings.fault_sources,
            file: &stack.faults,
        };
        layers.check().map_err(StartupError::Usage)?;
        let faults = layers.effective();
        let mut options = settings.data_plane.clone();
        if options.access_log_root.is_none() {
            options.access_log_root = Some(settings.state_dir.join("access-logs"));
        }
        if faults.propagation.is_some() || faults.nodes.is_some() {
            let range = faults.propagation.unwrap_or(faults::PropagationRange {
                min: std::time::Duration::ZERO,
                max: std::time::Duration::ZERO,
            });
            options.propagation = Some(Propagation {
                min: range.min,
                max: range.max,
                nodes: faults.nodes.unwrap_or(1),
            });
        }
        layers
            .check_actions(|name| served(name).is_some())
            .map_err(StartupError::Usage)?;
        if faults.any() {
            tracing::warn!("fault injection is on: {}", layers.describe());
        }
        // Bind first: a second instance on the same addresses fails here,
        // before it touches the state directory.
        limits::raise_open_file_limit();
        let bind = |address: SocketAddr, what: &'static str| {
            limits::listen(address).map_err(|source| StartupError::Bind {
                address,
                what,
                source,
            })
        };
        let data_listener = bind(settings.listen, "data listener")?;
        let control_listener = bind(settings.control_listen, "control listener")?;
        tracing::info!(
            backlog = limits::LISTEN_BACKLOG,
            "listening with an accept queue of up to {} connections (capped by net.core.somaxconn)",
            limits::LISTEN_BACKLOG
        );
        let local = |listener: &TcpListener, address: SocketAddr, what: &'static str| {
            listener.local_addr().map_err(|source| StartupError::Bind {
                address,
                what,
                source,
            })
        };
        let data_address = local(&data_listener, settings.listen, "data listener")?;
        let control_address = local(
            &control_listener,
            settings.control_listen,
            "control listener",
        )?;
        // Bound: now take the state directory (one instance per directory).
        let store = StateStore::open(&settings.state_dir)?;
        let saved = if settings.reset { None } else { store.load()? };
        let state = match saved {
            Some(saved) => {
                warn_if_the_stack_file_changed(&store, &stack, &stack_origin, &saved);
                tracing::info!(path = %store.path().display(), "restored the saved state (it wins over the stack file; --reset discards it)");
                saved
            }
            None => {
                store.save(&stack.state)?;
                store.save_stack_record(&stack.state)?;
                tracing::info!(path = %store.path().display(), "state initialised from the stack file");
                stack.state.clone()
            }
        };
        let dataplane = DataPlane::with_options(&state, options);
        let region = stack.state.region.clone();
        let control = ControlPlane::new(
            state,
            store,
            Arc::clone(&dataplane),
            stack.credentials,
            region,
            faults::Faults::new(&faults, served),
        );
        Ok(Application {
            data_listener,
            control_listener,
            data_address,
            control_address,
            dataplane,
            control,
        })
    }

    /// Where the data listener (the ALB's HTTP listener) is bound.
    pub fn data_address(&self) -> SocketAddr {
        self.data_address
    }

    /// Where the control listener (ELBv2 API, /metrics) is bound.
    pub fn control_address(&self) -> SocketAddr {
        self.control_address
    }

    pub fn data_port(&self) -> u16 {
        self.data_address.port()
    }

    pub fn control_port(&self) -> u16 {
        self.control_address.port()
    }

    /// The control plane (for reading the current configuration).
    #[cfg(test)]
    pub(crate) fn control_plane(&self) -> Arc<ControlPlane> {
        Arc::clone(&self.control)
    }

    /// Runs both listeners until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopped = shutdown_signal()?;
        self.run_until(stopped).await
    }

    /// Runs both listeners until `shutdown` resolves, then stops gracefully.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let wait_for = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        self.dataplane.start_health_checks();
        let data = tokio::spawn(
            Arc::clone(&self.dataplane).serve(self.data_listener, wait_for(stopped.clone())),
        );
        let control =
            tokio::spawn(Arc::clone(&self.control).serve(self.control_listener, wait_for(stopped)));
        let (data, control) = tokio::join!(data, control);
        data.map_err(std::io::Error::other)??;
        control.map_err(std::io::Error::other)??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are
/// installed when this is called, so a signal arriving before the future is
/// first polled still stops the application instead of killing the process.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static>
{
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, stopping"),
        }
    })
}

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use local_alb::Application;
use local_alb::settings::{EXIT_OK, EXIT_RUNTIME, Settings};

/// mimalloc's thread-local free lists suit the data plane, which allocates
/// and frees small buffers per request on each worker thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let settings = match Settings::from_command_line(std::env::args_os()) {
        Ok(settings) => settings,
        Err(error) => error.exit(),
    };
    let application = match Application::build(settings).await {
        Ok(application) => application,
        Err(err) => {
            eprintln!("local-alb: {err:#}");
            return ExitCode::from(err.exit_code());
        }
    };
    let stopped = match local_alb::shutdown_signal() {
        Ok(stopped) => stopped,
        Err(err) => {
            eprintln!("local-alb: cannot install the SIGTERM/SIGINT handlers: {err:#}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "data listener on http://{}",
        application.data_address()
    );
    let _ = writeln!(
        stdout,
        "control listener on http://{}",
        application.control_address()
    );
    let _ = stdout.flush();
    match application.run_until(stopped).await {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            eprintln!("local-alb: {err:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

//! Settings of every server binary, layered: built-in defaults, then an optional
//! TOML config file, then environment variables, then command-line flags.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

use crate::service::Service;

/// How log lines are written to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything a server needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// A db.json-shaped file to serve instead of the built-in data.
    pub data: Option<PathBuf>,
    /// How long, in seconds, in-flight requests may take to finish after SIGTERM or SIGINT.
    pub shutdown_timeout: u64,
    /// Worker threads; by default one per CPU core.
    pub workers: Option<usize>,
    pub log_format: LogFormat,
    /// Seconds a client may take to send a request head, or leave its body
    /// without a byte, before the server answers 408 and closes; CONNECT
    /// and every other request get their answer at once.
    #[serde(default = "default_client_timeout")]
    pub client_timeout: u64,
}

fn default_client_timeout() -> u64 {
    10
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "0.0.0.0".to_owned(),
            port: 3000,
            data: None,
            shutdown_timeout: 10,
            workers: None,
            log_format: LogFormat::Text,
            client_timeout: default_client_timeout(),
        }
    }
}

/// The environment variables that set each setting.
const ENVIRONMENT_VARIABLES: &[&str] = &[
    "HOST",
    "PORT",
    "DATA",
    "SHUTDOWN_TIMEOUT",
    "WORKERS",
    "LOG_FORMAT",
    "CLIENT_TIMEOUT",
];

#[derive(Debug, Parser)]
#[command(
    after_help = "Settings are read from built-in defaults, then the config file, then environment \
                  variables, then flags; later ones win. RUST_LOG sets the log level (default: info).\n\
                  Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime error (e.g. port in use), \
                  2 bad usage, settings or data file."
)]
struct Flags {
    /// Address to listen on [env: HOST] [default: 0.0.0.0]
    #[arg(long, value_name = "ADDRESS")]
    host: Option<String>,
    /// Port to listen on, 0 for any free port [env: PORT] [default: 3000]
    #[arg(long)]
    port: Option<u16>,
    /// Serve this db.json-shaped file instead of the built-in data [env: DATA]
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// TOML file with any of: host, port, data, shutdown_timeout, workers, log_format, client_timeout [env: CONFIG_FILE]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT [env: SHUTDOWN_TIMEOUT] [default: 10]
    #[arg(long, value_name = "SECONDS")]
    shutdown_timeout: Option<u64>,
    /// Worker threads [env: WORKERS] [default: one per CPU core]
    #[arg(long)]
    workers: Option<usize>,
    /// Log line format [env: LOG_FORMAT] [default: text]
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Seconds a client may stall a request head or body before it gets 408
    /// and the connection closes [env: CLIENT_TIMEOUT] [default: 10]
    #[arg(long, value_name = "SECONDS")]
    client_timeout: Option<u64>,
}

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `--help`, `--version` or a usage error: clap's message, and whether it is an error.
    #[error("{0}")]
    Usage(clap::Error),
    #[error("invalid settings: {0}")]
    Invalid(config::ConfigError),
    #[error(
        "invalid settings: workers is 0; set at least 1, or leave it unset for one per CPU core"
    )]
    NoWorkers,
    #[error(
        "invalid settings: client_timeout is 0; set the seconds a client may stall a request, such as 10"
    )]
    NoClientTimeout,
}

impl Settings {
    /// Reads the settings of `service` from the process's arguments and environment.
    pub fn from_process(service: &Service) -> Result<Settings, SettingsError> {
        Settings::parse(service, std::env::args_os(), |name| {
            std::env::var(name).ok()
        })
    }

    /// Reads the settings of `service` from `args` (the first is the program
    /// name), the environment variables `env` returns and the config file that
    /// `--config` or `CONFIG_FILE` names.
    pub fn parse<I, T>(
        service: &Service,
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Flags::command()
            .name(service.name)
            .about(service.about)
            .args_override_self(true);
        let mut flags = command
            .try_get_matches_from(args)
            .and_then(|matches| Flags::from_arg_matches(&matches))
            .map_err(SettingsError::Usage)?;
        flags.config = flags
            .config
            .or_else(|| env("CONFIG_FILE").map(PathBuf::from));
        let environment = ENVIRONMENT_VARIABLES
            .iter()
            .filter_map(|&name| Some((name.to_owned(), env(name)?)))
            .collect();
        let settings = Settings::layer(flags, environment).map_err(SettingsError::Invalid)?;
        if settings.workers == Some(0) {
            return Err(SettingsError::NoWorkers);
        }
        if settings.client_timeout == 0 {
            return Err(SettingsError::NoClientTimeout);
        }
        Ok(settings)
    }

    fn layer(
        flags: Flags,
        environment: config::Map<String, String>,
    ) -> Result<Settings, config::ConfigError> {
        let mut builder = Config::builder().add_source(Config::try_from(&Settings::default())?);
        if let Some(path) = &flags.config {
            builder = builder
                .add_source(File::new(&path.to_string_lossy(), FileFormat::Toml).required(true));
        }
        let log_format = flags
            .log_format
            .and_then(|format| format.to_possible_value())
            .map(|value| value.get_name().to_owned());
        builder
            .add_source(
                Environment::default()
                    .source(Some(environment))
                    .ignore_empty(true)
                    .try_parsing(true),
            )
            .set_override_option("host", flags.host)?
            .set_override_option("port", flags.port)?
            .set_override_option(
                "data",
                flags.data.map(|path| path.to_string_lossy().into_owned()),
            )?
            .set_override_option("shutdown_timeout", flags.shutdown_timeout)?
            .set_override_option("workers", flags.workers.map(|n| n as u64))?
            .set_override_option("log_format", log_format)?
            .set_override_option("client_timeout", flags.client_timeout)?
            .build()?
            .try_deserialize()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;
    use crate::service::MONOLITH;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = std::iter::once("monolith").chain(args.iter().copied());
        Settings::parse(&MONOLITH, args, |name| env.get(name).cloned())
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn defaults_apply_without_any_source() {
        assert_eq!(parse(&[], &[]).unwrap(), Settings::default());
        assert_eq!(Settings::default().port, 3000);
        assert_eq!(Settings::default().host, "0.0.0.0");
        assert_eq!(Settings::default().shutdown_timeout, 10);
    }

    #[test]
    fn file_then_environment_then_flags_win() {
        let file = config_file(
            "host = \"127.0.0.2\"\nport = 4000\nshutdown_timeout = 3\nlog_format = \"json\"\n",
        );
        let path = file.path().to_str().unwrap();
        let from_file = parse(&["--config", path], &[]).unwrap();
        assert_eq!(
            (
                from_file.host.as_str(),
                from_file.port,
                from_file.shutdown_timeout,
                from_file.log_format
            ),
            ("127.0.0.2", 4000, 3, LogFormat::Json)
        );
        let from_env = parse(
            &[],
            &[
                ("CONFIG_FILE", path),
                ("PORT", "5000"),
                ("LOG_FORMAT", "text"),
            ],
        )
        .unwrap();
        assert_eq!(
            (from_env.host.as_str(), from_env.port, from_env.log_format),
            ("127.0.0.2", 5000, LogFormat::Text)
        );
        let from_flags = parse(
            &[
                "--config",
                path,
                "--port",
                "6000",
                "--data",
                "x.json",
                "--workers",
                "2",
                "--port",
                "6001",
            ],
            &[("PORT", "5000"), ("DATA", "y.json"), ("WORKERS", "3")],
        )
        .unwrap();
        assert_eq!(from_flags.port, 6001);
        assert_eq!(from_flags.data, Some(PathBuf::from("x.json")));
        assert_eq!(from_flags.workers, Some(2));
        let env_only = parse(
            &[],
            &[
                ("DATA", "y.json"),
                ("HOST", "::1"),
                ("SHUTDOWN_TIMEOUT", "0"),
                ("PORT", ""),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                env_only.data,
                env_only.host.as_str(),
                env_only.shutdown_timeout,
                env_only.port
            ),
            (Some(PathBuf::from("y.json")), "::1", 0, 3000)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let message = |result: Result<Settings, SettingsError>| result.unwrap_err().to_string();
        assert!(message(parse(&[], &[("PORT", "abc")])).contains("port"));
        assert!(message(parse(&[], &[("PORT", "70000")])).contains("port"));
        assert!(message(parse(&[], &[("LOG_FORMAT", "xml")])).contains("xml"));
        let file = config_file("prot = 1\n");
        assert!(message(parse(&["--config", file.path().to_str().unwrap()], &[])).contains("prot"));
        let missing = message(parse(&["--config", "/nonexistent/forum.toml"], &[]));
        assert!(missing.contains("/nonexistent/forum.toml"), "{missing}");
        assert!(
            matches!(parse(&["--port", "x"], &[]), Err(SettingsError::Usage(e)) if e.use_stderr())
        );
        assert!(matches!(parse(&["--help"], &[]), Err(SettingsError::Usage(e)) if !e.use_stderr()));
        assert!(matches!(
            parse(&[], &[("WORKERS", "0")]),
            Err(SettingsError::NoWorkers)
        ));
        assert!(matches!(
            parse(&["--workers", "0"], &[]),
            Err(SettingsError::NoWorkers)
        ));
    }
}

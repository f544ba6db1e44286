#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match chaos::run(chaos::Cli::parse()).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chaos: {err:#}");
            ExitCode::from(chaos::EXIT_FAILED)
        }
    }
}

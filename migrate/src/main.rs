//! The `migrate` binary; see the library for everything.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    migrate::main_with_args(std::env::args_os())
}

//! `gen-data`: writes a db.json-shaped file of the requested size.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use forum::gen_data::{Volume, write_dataset};

/// Writes forum data (users, threads, posts) in the shape of db.json, with skewed
/// fan-out, deterministic for a given seed. Exit codes: 0 written, 1 write error, 2 bad usage.
#[derive(Parser)]
#[command(name = "gen-data")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    users: u64,
    #[arg(long, default_value_t = 1000)]
    threads: u64,
    #[arg(long, default_value_t = 100_000)]
    posts: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let volume = Volume {
        users: args.users,
        threads: args.threads,
        posts: args.posts,
        seed: args.seed,
    };
    let written = File::create(&args.out).and_then(|file| {
        let mut out = BufWriter::new(file);
        write_dataset(&mut out, volume)?;
        out.flush()
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gen-data: cannot write {}: {error:#}", args.out.display());
            ExitCode::FAILURE
        }
    }
}

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    forum::run(posts::SERVICE)
}

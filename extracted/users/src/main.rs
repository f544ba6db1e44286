#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    forum::run(users::SERVICE)
}

fn main() -> std::process::ExitCode {
    forum::run(monolith::SERVICE)
}

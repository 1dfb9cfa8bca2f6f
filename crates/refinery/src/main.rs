fn main() -> std::process::ExitCode {
    refinery::run()
}

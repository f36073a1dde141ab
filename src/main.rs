//! The `dosod` binary: parses the command line and hands over to `dosod::cli`.

fn main() -> std::process::ExitCode {
    dosod::cli::main()
}

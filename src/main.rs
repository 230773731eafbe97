//! The `reroot` binary: parse the arguments, run the command, turn the
//! outcome into an exit code. Everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

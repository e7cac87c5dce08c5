//! The `careplan` binary: parse the command line and run it.

use std::process::ExitCode;

fn main() -> ExitCode {
    careplan_service::cli::run()
}

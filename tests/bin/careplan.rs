//! `careplan` itself, built inside the test package so the lifecycle tests can spawn it.

use std::process::ExitCode;

fn main() -> ExitCode {
    service::cli::run()
}

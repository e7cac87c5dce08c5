//! The `careplan` binary: parse the command line and run it.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    careplan_service::cli::run()
}

//! hotbak: parse, run, map the error to the one exit-code table.

use std::process::ExitCode;

use hotbak::cli::{main_with, Cli, Command};

fn main() -> ExitCode {
    main_with("hotbak", |cli: Cli| async move {
        match cli.command {
            Command::Backup(a) => hotbak::backup::run_cli(*a).await,
            Command::Prepare(a) => hotbak::prepare::run_cli(a).await,
            Command::Restore(a) => hotbak::restore::run_cli(a).await,
        }
    })
}

//! hotbak: parse, run, map the error to the one exit-code table.

use std::process::ExitCode;

use clap::Parser;
use hotbak::cli::{Cli, Command};
use hotbak::error::{exit_code, render};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hotbak: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = rt.block_on(async move {
        match cli.command {
            Command::Backup(a) => hotbak::backup::run_cli(*a).await,
            Command::Prepare(a) => hotbak::prepare::run_cli(a).await,
            Command::Restore(a) => hotbak::restore::run_cli(a).await,
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hotbak: error: {}", render(&e));
            ExitCode::from(u8::try_from(exit_code(&e)).unwrap_or(1))
        }
    }
}

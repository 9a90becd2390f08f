//! hotbak: parse, run, map the error to the one exit-code table.

use std::process::ExitCode;

use hotbak::cli::{main_with, Cli, Command};

fn main() -> ExitCode {
    main_with("hotbak", |cli: Cli| async move {
        match cli.command {
            Command::Backup(a) => hotbak::backup::run_cli(*a).await,
            Command::Prepare(a) => hotbak::prepare::run_cli(a).await,
            Command::Restore(a) => hotbak::restore::run_cli(a).await,
            Command::Verify(a) => {
                let plan = hotbak::verify::VerifyPlan {
                    target_dir: a.target_dir,
                    parallel: a.parallel.unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
                    }),
                };
                tokio::task::spawn_blocking(move || hotbak::verify::run(&plan))
                    .await
                    .map_err(|e| anyhow::anyhow!("verify task failed: {e}"))??;
                Ok(())
            }
        }
    })
}

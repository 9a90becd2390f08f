//! hotbak: parse, run, map the error to the one exit-code table.

use std::process::ExitCode;

fn main() -> ExitCode {
    hotbak::app::hotbak_main()
}

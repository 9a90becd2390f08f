//! `hotbak man` and `hotbak completions`: the man pages and shell
//! completion scripts, generated from the clap definition ([`super::args::Cli`])
//! at run time, so they can never describe another version's options.
//! A subcommand rather than a build step: `build.rs` would have to compile
//! the argument types a second time, and a packager gets the same pages
//! from the installed binary (`hotbak man --out-dir debian/man`).

use std::io::Write as _;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::args::{Cli, CompletionsArgs, ManArgs, ShellArg};

/// `hotbak.1` in roff: synopsis, options, every command.
///
/// # Errors
/// Rendering into memory does not fail in practice; the error is clap_mangen's.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

/// The completion script for `shell`.
#[must_use]
pub fn completion_script(shell: ShellArg) -> Vec<u8> {
    use clap_complete::Shell;
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hotbak", &mut out);
    out
}

fn stdout_all(bytes: &[u8]) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)
        .and_then(|()| o.flush())
        .context("writing to stdout")
}

/// `hotbak man [--out-dir DIR]`.
///
/// # Errors
/// Writing stdout or the directory's files.
pub fn man(a: &ManArgs) -> anyhow::Result<()> {
    match &a.out_dir {
        None => stdout_all(&man_page().context("rendering the man page")?),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            crate::events::info(format_args!("man pages written to {}", dir.display()));
            Ok(())
        }
    }
}

/// `hotbak completions SHELL`.
///
/// # Errors
/// Writing stdout.
pub fn completions(a: &CompletionsArgs) -> anyhow::Result<()> {
    stdout_all(&completion_script(a.shell))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_names_every_command() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH hotbak"),
            "{}",
            &page[..200]
        );
        for c in Cli::command().get_subcommands() {
            let name = c.get_name();
            assert!(
                page.contains(&format!("hotbak\\-{name}(1)")),
                "the man page does not name {name}"
            );
        }
    }

    #[test]
    fn completion_scripts_know_the_options() {
        for shell in [ShellArg::Bash, ShellArg::Zsh, ShellArg::Fish] {
            let s = String::from_utf8(completion_script(shell)).unwrap();
            assert!(s.contains("target-dir"), "{shell:?}");
            assert!(s.contains("galera-info"), "{shell:?}");
        }
    }
}

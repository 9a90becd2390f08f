//! The application layer: what the binaries share above the engines.
//!
//! - [`args`]: `hotbak`'s command line (clap types, plain data).
//! - [`plan`]: arguments checked and converted into the engines' plans
//!   (library types only; no engine sees a clap type).
//! - [`restore`]: `hotbak restore`'s arguments to the engine's layout and
//!   options (the target server's option file), and its summary.
//! - [`exit`]: error classes to the one exit-code table, and the one-line
//!   rendering of an error chain.
//! - [`main_with`]: the binaries' common edge; [`run`]: `hotbak`'s dispatch.
//! - `layers` (tests only): the check that imports obey the layer order.
//!
//! Nothing below this layer imports it (see `DEVELOPERS.md`).

pub mod args;
pub mod compat;
pub mod exit;
pub mod invocation;
mod layers;
pub mod plan;
pub mod restore;
pub mod s3;

use args::{Cli, Command};

/// `hotbak`: convert the arguments into a plan and run the engine.
///
/// # Errors
/// Usage errors from the conversion; the engine's failure.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Backup(a) => {
            let report = crate::backup::execute(plan::backup(*a)?).await?;
            eprintln!("{report}");
            Ok(())
        }
        Command::Prepare(a) => prepare(a).await,
        Command::Restore(a) => restore::run(*a).await,
        Command::Verify(a) => verify(a).await,
        Command::Keygen(a) => {
            let id = crate::encrypt::Key::write_new_file(&a.encrypt_key_file)?;
            eprintln!(
                "hotbak: wrote a new AES-256 key to {} (mode 0600, key id {id}); keep a copy apart from the backups: they cannot be read without it",
                a.encrypt_key_file.display()
            );
            eprintln!("hotbak: keygen completed OK!");
            Ok(())
        }
        Command::Upload(a) => s3::upload(*a).await,
        Command::Info(a) => s3::info(*a).await,
    }
}

/// `hotbak verify`: the directory mode's blocking engine on a blocking
/// thread; the stream mode reads stdin (its CPU work runs on the extract
/// workers).
async fn verify(args: args::VerifyArgs) -> anyhow::Result<()> {
    match plan::verify(args)? {
        plan::VerifyTarget::Store(plan, url, s3) => {
            let (_, download) = s3::open_download(&url, &s3).await?;
            let mut download = download;
            let res = crate::verify::run_stream(&plan, &mut download, &url).await;
            // The download's own error is the root cause of a read error.
            let dl = download.finish().await;
            res?;
            dl?;
        }
        plan::VerifyTarget::Stream(plan) => {
            crate::verify::run_stream(&plan, tokio::io::stdin(), "stdin").await?;
        }
        plan::VerifyTarget::Dir(plan) => {
            tokio::task::spawn_blocking(move || crate::verify::run(&plan))
                .await
                .map_err(|e| anyhow::anyhow!("verify task failed: {e}"))??;
        }
    }
    Ok(())
}

/// `hotbak prepare`: the blocking engine on a blocking thread, then the summary.
async fn prepare(args: args::PrepareArgs) -> anyhow::Result<()> {
    use crate::prepare::{Method, Options};
    let started = std::time::Instant::now();
    let export = args.export;
    let opts = Options {
        method: if args.native {
            Method::Native
        } else if args.server_recovery {
            Method::Server
        } else {
            Method::Auto
        },
        mariadbd: args.mariadbd,
        use_memory: args.use_memory,
        incremental_dir: args.incremental_dir,
        export: args.export,
        server_options: args.server_option,
    };
    let dir = args.target_dir;
    let shown = dir.clone();
    let r = tokio::task::spawn_blocking(move || crate::prepare::prepare_with(&dir, &opts))
        .await
        .map_err(|e| anyhow::anyhow!("prepare task failed: {e}"))?
        .map_err(|e| {
            let e = anyhow::Error::new(e);
            match crate::interrupt::received() {
                // The recovery server was stopped: nothing was marked prepared.
                Some(_) => e.context(format!(
                    "the backup is not prepared; run `hotbak prepare --target-dir {}` again (recovery starts over)",
                    shown.display()
                )),
                None => e,
            }
        })?;
    let total = started.elapsed().as_secs_f64();
    if let Some(n) = r.partial {
        eprintln!(
            "hotbak: partial backup: recovery ignored the redo of {n} tablespaces the backup leaves out (innodb_force_recovery=1, as mariabackup's prepare)"
        );
    }
    match r.exported {
        Some((tables, cfgs)) => eprintln!(
            "hotbak: --export: {tables} table definitions recorded in {}, {cfgs} .cfg files written for IMPORT TABLESPACE",
            crate::format::export::EXPORT_NAME
        ),
        None if export => eprintln!(
            "hotbak: --export: the backup holds its export already ({}); nothing to do",
            crate::format::export::EXPORT_NAME
        ),
        None => {}
    }
    if let Some(why) = &r.fell_back {
        eprintln!(
            "hotbak: the native applier stopped on this log ({why}); recovered with mariadbd instead \
             (rolled back: this backup cannot take incrementals)"
        );
    }
    if let Some(n) = &r.native {
        eprintln!(
            "hotbak: prepare (native): {} DDL markers applied; redo {}..{}: {} mini-transactions, {} page records, \
             {} pages written in {} batches; {:.1}s",
            r.markers, n.start_lsn, n.end_lsn, n.mtrs, n.page_records, n.pages_written, n.batches, r.recovery_secs
        );
    }
    if let Some(i) = &r.incremental {
        eprintln!(
            "hotbak: incremental applied: to_lsn {} -> {}; {} deltas ({} pages), {} tablespaces created, {} renamed, \
             {} deleted, {} whole copies, {} other files; redo {}..{}: {} pages written; total {:.1}s; \
             the backup is log-applied (more incrementals can follow)",
            i.from_lsn,
            i.to_lsn,
            i.deltas,
            i.delta_pages,
            i.created,
            i.renamed,
            i.deleted,
            i.new_copies,
            i.files_copied,
            i.redo.start_lsn,
            i.redo.end_lsn,
            i.redo.pages_written,
            total
        );
    } else if let Some(t) = &r.already_prepared {
        eprintln!(
            "hotbak: the backup is already prepared (backup_type = {t}); nothing to do, it is ready for `hotbak restore`"
        );
    } else if r.native.is_none() {
        eprintln!(
            "hotbak: prepare done: {} DDL markers applied, {} link files set aside and {} redo file names kept inside the backup during recovery, recovery {:.1}s, total {:.1}s; the backup is ready for `hotbak restore`",
            r.markers,
            r.link_files,
            r.relocated_names,
            r.recovery_secs,
            total
        );
    }
    eprintln!("hotbak: prepare completed OK!");
    Ok(())
}

/// `hotbak`'s `main`: the option files' tool groups and mariabackup's
/// invocation style ([`invocation`]), then [`main_with_args`] with [`run`].
#[must_use]
pub fn hotbak_main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let raw: Vec<String> = match std::env::args_os()
        .map(std::ffi::OsString::into_string)
        .collect::<Result<_, _>>()
    {
        Ok(r) => r,
        Err(bad) => {
            eprintln!("hotbak: error: argument {bad:?} is not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    match invocation::resolve(raw) {
        Ok(invocation::Resolved::Print(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(invocation::Resolved::Parse { args, origins }) => {
            main_with_args("hotbak", args, &origins, run)
        }
        Err(e) => {
            eprintln!("hotbak: error: {}", exit::render(&e));
            ExitCode::from(u8::try_from(exit::exit_code(&e)).unwrap_or(1))
        }
    }
}

/// The binaries' common edge: parse the arguments (exit 2 on a usage error,
/// 0 for `--help`), run `body` on a multi-threaded runtime, and map an error
/// to the exit-code table, printing it as `NAME: error: ...`.
pub fn main_with<T, F, Fut>(name: &str, body: F) -> std::process::ExitCode
where
    T: clap::Parser,
    F: FnOnce(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    main_with_args(name, std::env::args().collect(), &[], body)
}

/// [`main_with`] on given arguments; `origins` names the option files
/// options came from, for clap's refusals.
pub fn main_with_args<T, F, Fut>(
    name: &str,
    argv: Vec<String>,
    origins: &[(String, String)],
    body: F,
) -> std::process::ExitCode
where
    T: clap::Parser,
    F: FnOnce(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use std::process::ExitCode;
    let args = match T::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            if let Some(o) = invocation::origin_of(&e, origins) {
                eprintln!("{name}: that option is set in {o}");
            }
            return ExitCode::from(code);
        }
    };
    crate::sys::keep_freed_buffers();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(run_interruptible(name, body(args)));
    // A blocking read of stdin may still wait for a producer that lives
    // on (an interrupted extraction): do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {}", exit::render(&e));
            ExitCode::from(u8::try_from(exit::exit_code(&e)).unwrap_or(1))
        }
    }
}

/// How long a command may take to clean up after a signal (the backup
/// ends its session and restarts a replica's SQL thread, xbextract removes
/// its staging directory, prepare stops its `mariadbd`).
const CLEANUP_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Run `body` with SIGINT, SIGTERM and SIGHUP caught ([`crate::interrupt`]):
/// on a signal, `mariadbd` children get SIGTERM and the engines see the
/// signal and clean up; the result is then an interruption (exit 6) unless
/// the command had already finished. A second signal, or a cleanup longer
/// than [`CLEANUP_GRACE`], ends it at once.
async fn run_interruptible<Fut>(name: &str, body: Fut) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use crate::interrupt;
    if let Err(e) = interrupt::install() {
        eprintln!("{name}: warning: cannot catch SIGINT/SIGTERM/SIGHUP ({e}); a signal kills the process without cleanup");
        return body.await;
    }
    let mut body = std::pin::pin!(body);
    let sig = tokio::select! {
        r = &mut body => return r,
        sig = interrupt::wait() => sig,
    };
    eprintln!("{name}: {sig} received: stopping and cleaning up (a second signal stops at once)");
    interrupt::terminate_children();
    let first = interrupt::deliveries();
    let second = async {
        while interrupt::deliveries() <= first {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let r = tokio::select! {
        r = tokio::time::timeout(CLEANUP_GRACE, &mut body) => r.ok(),
        () = second => None,
    };
    interrupt::terminate_children();
    match r {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) if exit::classify(&e) == crate::error::ErrorClass::Interrupted => Err(e),
        Some(Err(e)) => Err(e.context(interrupt::Interrupted(sig))),
        None => Err(interrupt::Interrupted(sig).into()),
    }
}

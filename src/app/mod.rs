//! The application layer: what the binaries share above the engines.
//!
//! - [`args`]: `hotbak`'s command line (clap types, plain data).
//! - [`plan`]: arguments checked and converted into the engines' plans
//!   (library types only; no engine sees a clap type).
//! - [`restore`]: `hotbak restore`'s arguments to the engine's layout and
//!   options (the target server's option file), and its summary.
//! - [`docs`]: `hotbak man` and `hotbak completions`, from the clap definition.
//! - [`metrics`]: `backup --metrics-file`, the last run for Prometheus.
//! - [`exit`]: error classes to the one exit-code table, and the one-line
//!   rendering of an error chain.
//! - [`main_with`]: the binaries' common edge; [`run`]: `hotbak`'s dispatch.
//! - `layers` (tests only): the check that imports obey the layer order.
//!
//! Nothing below this layer imports it (see `DEVELOPERS.md`).

pub mod args;
pub mod compat;
pub mod docs;
pub mod exit;
pub mod invocation;
mod layers;
pub mod metrics;
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
            let metrics_file = a.metrics_file.clone();
            let started = unix_now();
            let result = async { Ok(crate::backup::execute(plan::backup(*a)?).await?) }.await;
            if let Some(path) = metrics_file {
                record_metrics(&path, started, &result);
            }
            let report = result?;
            if crate::events::is_json() {
                report.emit_event();
            } else {
                eprintln!("{report}");
            }
            Ok(())
        }
        Command::Prepare(a) => prepare(a).await,
        Command::Restore(a) => restore::run(*a).await,
        Command::Verify(a) => verify(a).await,
        Command::Keygen(a) => {
            let id = crate::encrypt::Key::write_new_file(&a.encrypt_key_file)?;
            crate::events::info(format_args!(
                "wrote a new AES-256 key to {} (mode 0600, key id {id}); keep a copy apart from the backups: they cannot be read without it",
                a.encrypt_key_file.display()
            ));
            crate::events::info(format_args!("keygen completed OK!"));
            Ok(())
        }
        Command::Man(a) => docs::man(&a),
        Command::Completions(a) => docs::completions(&a),
        Command::Upload(a) => s3::upload(*a).await,
        Command::Info(a) => s3::info(*a).await,
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `--metrics-file`: the run's metrics, whatever its outcome. A file that
/// cannot be written is a warning: the backup's own outcome stands.
fn record_metrics(
    path: &std::path::Path,
    start_unix: f64,
    result: &anyhow::Result<crate::backup::BackupReport>,
) {
    let outcome = metrics::Outcome {
        start_unix,
        end_unix: unix_now(),
        exit_code: match result {
            Ok(_) => exit::code::OK,
            Err(e) => exit::exit_code(e),
        },
        report: result.as_ref().ok(),
        previous_success: metrics::previous_success(path),
    };
    let text = crate::format::prometheus::render(&metrics::families(&outcome));
    if let Err(e) = metrics::write(path, &text) {
        crate::events::warn(format_args!(
            "the metrics were not written: {}",
            exit::render(&e)
        ));
    }
}

/// `hotbak verify`: the directory mode's blocking engine on a blocking
/// thread; the stream mode reads stdin (its CPU work runs on the extract
/// workers).
async fn verify(args: args::VerifyArgs) -> anyhow::Result<()> {
    match plan::verify(args)? {
        plan::VerifyTarget::Store(mut plan, url, s3) => {
            let (commit, download) = s3::open_download(&url, &s3).await?;
            plan.size = Some(commit.total_bytes());
            let mut download = download;
            let res = crate::verify::run_stream(&plan, &mut download, &url).await;
            // The download's own error is the root cause of a read error.
            let dl = download.finish().await;
            res?;
            dl?;
        }
        plan::VerifyTarget::Stream(plan) => {
            crate::verify::run_stream(&plan, crate::extract::DropBehind::stdin(), "stdin").await?;
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
        crate::events::info(format_args!(
            "partial backup: recovery ignored the redo of {n} tablespaces the backup leaves out (innodb_force_recovery=1, as mariabackup's prepare)"
        ));
    }
    match r.exported {
        Some((tables, cfgs)) => crate::events::info(format_args!(
            "--export: {tables} table definitions recorded in {}, {cfgs} .cfg files written for IMPORT TABLESPACE",
            crate::format::export::EXPORT_NAME
        )),
        None if export => crate::events::info(format_args!(
            "--export: the backup holds its export already ({}); nothing to do",
            crate::format::export::EXPORT_NAME
        )),
        None => {}
    }
    if let Some(why) = &r.fell_back {
        crate::events::info(format_args!(
            "the native applier stopped on this log ({why}); recovered with mariadbd instead \
             (rolled back: this backup cannot take incrementals)"
        ));
    }
    if let Some(n) = &r.native {
        crate::events::info(format_args!(
            "prepare (native): {} DDL markers applied; redo {}..{}: {} mini-transactions, {} page records, \
             {} pages written in {} batches; {:.1}s (log checked {:.1}s, decoded {:.1}s, pages {:.1}s, synced {:.1}s; {} MiB read ahead)",
            r.markers, n.start_lsn, n.end_lsn, n.mtrs, n.page_records, n.pages_written, n.batches, r.recovery_secs,
            n.pre_pass.as_secs_f64(), n.decode.as_secs_f64(), n.pages.as_secs_f64(), n.sync.as_secs_f64(),
            n.read_ahead >> 20
        ));
        encrypted_pages_line(n);
    }
    if let Some(i) = &r.incremental {
        crate::events::info(format_args!(
            "incremental applied: to_lsn {} -> {}; {} deltas ({} pages), {} tablespaces created, {} renamed, \
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
        ));
        encrypted_pages_line(&i.redo);
    } else if let Some(t) = &r.already_prepared {
        crate::events::info(format_args!(
            "the backup is already prepared (backup_type = {t}); nothing to do, it is ready for `hotbak restore`"
        ));
    } else if r.native.is_none() {
        crate::events::info(format_args!(
            "prepare done: {} DDL markers applied, {} link files set aside and {} redo file names kept inside the backup during recovery, recovery {:.1}s, total {:.1}s; the backup is ready for `hotbak restore`",
            r.markers,
            r.link_files,
            r.relocated_names,
            r.recovery_secs,
            total
        ));
    }
    crate::events::info(format_args!("prepare completed OK!"));
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
    let raw = match choose_log_format("hotbak", raw) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match invocation::resolve(raw) {
        Ok(invocation::Resolved::Print(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(invocation::Resolved::Parse { args, origins }) => {
            main_with_args("hotbak", args, &origins, run)
        }
        Err(e) => finish(Err(e)),
    }
}

/// `--log-format F` (`--log-format=F`, the last one wins; taken out of the
/// arguments) or else `HOTBAK_LOG_FORMAT`, given to [`crate::events::init`]
/// with the tool's name. A bad value is a usage error (exit 2), reported
/// in text.
fn choose_log_format(name: &str, args: Vec<String>) -> Result<Vec<String>, std::process::ExitCode> {
    let env = std::env::var("HOTBAK_LOG_FORMAT").ok();
    match take_log_format(args, env.as_deref()) {
        Ok((format, rest)) => {
            crate::events::init(name, format);
            Ok(rest)
        }
        Err(e) => {
            crate::events::init(name, crate::events::Format::Text);
            eprintln!("{name}: error: {e}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// The log format from the arguments (after the program name, before a
/// `--`) or `env` (`HOTBAK_LOG_FORMAT`'s value), and the arguments without
/// the option. Pure.
///
/// # Errors
/// A value other than `text` or `json`, or the option without a value.
pub fn take_log_format(
    args: Vec<String>,
    env: Option<&str>,
) -> Result<(crate::events::Format, Vec<String>), crate::error::UsageError> {
    use crate::error::UsageError;
    use crate::events::Format;
    let parse = |v: &str, from: &str| {
        Format::parse(v)
            .ok_or_else(|| UsageError(format!("{from}={v}: the log format is `text` or `json`")))
    };
    let mut format = match env.filter(|v| !v.is_empty()) {
        Some(v) => parse(v, "HOTBAK_LOG_FORMAT")?,
        None => Format::Text,
    };
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().enumerate();
    while let Some((i, a)) = it.next() {
        if i == 0 || a == "--" {
            out.push(a);
            if i > 0 {
                out.extend(it.by_ref().map(|(_, a)| a));
            }
            continue;
        }
        if let Some(v) = a.strip_prefix("--log-format=") {
            format = parse(v, "--log-format")?;
        } else if a == "--log-format" {
            let Some((_, v)) = it.next() else {
                return Err(UsageError(
                    "--log-format needs a value: text or json".into(),
                ));
            };
            format = parse(&v, "--log-format")?;
        } else {
            out.push(a);
        }
    }
    Ok((format, out))
}

/// The end of every run: the exit code, and the summary event (in text
/// mode, `NAME: error: …` for a failure).
fn finish(result: anyhow::Result<()>) -> std::process::ExitCode {
    let (code, status, message) = match &result {
        Ok(()) => (exit::code::OK, "ok", None),
        Err(e) => (
            exit::exit_code(e),
            exit::classify(e).word(),
            Some(exit::render(e)),
        ),
    };
    crate::events::summary(code, status, message.as_deref());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
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
    let argv = match choose_log_format(name, argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let args = match T::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) if e.use_stderr() && crate::events::is_json() => {
            let mut msg = e.render().to_string().trim_end().to_owned();
            if let Some(o) = invocation::origin_of(&e, origins) {
                msg.push_str(&format!("; that option is set in {o}"));
            }
            return finish(Err(crate::error::UsageError(msg).into()));
        }
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
            return finish(Err(
                anyhow::Error::new(e).context("cannot start the runtime")
            ));
        }
    };
    let result = rt.block_on(run_interruptible(body(args)));
    // A blocking read of stdin may still wait for a producer that lives
    // on (an interrupted extraction): do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    finish(result)
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
async fn run_interruptible<Fut>(body: Fut) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use crate::interrupt;
    if let Err(e) = interrupt::install() {
        crate::events::warn(format_args!(
            "cannot catch SIGINT/SIGTERM/SIGHUP ({e}); a signal kills the process without cleanup"
        ));
        return body.await;
    }
    let mut body = std::pin::pin!(body);
    let sig = tokio::select! {
        r = &mut body => return r,
        sig = interrupt::wait() => sig,
    };
    crate::events::info(format_args!(
        "{sig} received: stopping and cleaning up (a second signal stops at once)"
    ));
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

/// The native prepare's line on data-at-rest encryption, when it met any.
fn encrypted_pages_line(n: &crate::native_prepare::Report) {
    if n.pages_decrypted + n.pages_encrypted > 0 {
        crate::events::info(format_args!(
            "encrypted tablespaces (file_key_management): {} pages decrypted, {} written encrypted",
            n.pages_decrypted, n.pages_encrypted
        ));
    }
    if !n.unverified_key_ids.is_empty() {
        crate::events::warn(format_args!(
            "key id(s) {:?} could not be checked: no page encrypted with them was on disk (their tablespaces' \
             pages all came from the log), so pages were encrypted with them as the key file gives them; a \
             wrong key there shows only when the server reads those pages",
            n.unverified_key_ids
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::take_log_format;
    use crate::events::Format;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn log_format_from_the_arguments_or_the_variable() {
        let (f, rest) = take_log_format(
            v(&["hotbak", "backup", "--log-format", "JSON", "-u", "x"]),
            None,
        )
        .unwrap();
        assert_eq!(
            (f, rest),
            (Format::Json, v(&["hotbak", "backup", "-u", "x"]))
        );
        let (f, rest) = take_log_format(
            v(&["hotbak", "--log-format=json", "--log-format=text"]),
            Some("json"),
        )
        .unwrap();
        assert_eq!(
            (f, rest),
            (Format::Text, v(&["hotbak"])),
            "the last option wins over the variable"
        );
        let (f, _) = take_log_format(v(&["xbextract", "-x"]), Some("json")).unwrap();
        assert_eq!(f, Format::Json);
        let (f, _) = take_log_format(v(&["xbextract"]), Some("")).unwrap();
        assert_eq!(f, Format::Text);
        // After `--` it is a file name, and the program name is never taken.
        let (f, rest) = take_log_format(
            v(&["--log-format=json", "-c", "--", "--log-format=json"]),
            None,
        )
        .unwrap();
        assert_eq!(
            (f, rest),
            (
                Format::Text,
                v(&["--log-format=json", "-c", "--", "--log-format=json"])
            )
        );
        for bad in [
            &["hotbak", "--log-format"][..],
            &["hotbak", "--log-format=yaml"],
        ] {
            let e = take_log_format(v(bad), None).unwrap_err();
            assert!(e.0.contains("--log-format"), "{e}");
        }
        let e = take_log_format(v(&["hotbak"]), Some("xml")).unwrap_err();
        assert!(e.0.contains("HOTBAK_LOG_FORMAT=xml"), "{e}");
    }
}

//! Arguments to plans: the checks and conversions between `hotbak`'s
//! command line ([`super::args`]) and the engines' own types.

use std::time::Duration;

use super::args::{
    BackupArgs, CompressArg, DdlLockArg, LockMode, OnOff, PriorityArg, ProgressArg, QueryTypeArg,
    VerifyArgs,
};
use crate::backup::{self, BackupPlan, Compression, Destination};
use crate::compress::Algorithm;
use crate::error::UsageError;
use crate::mysql::{ConnectOptions, Defaults, LockPolicy, Password, QueryType};
use crate::progress::ProgressMode;
use crate::sched::Priority;

fn query_type(q: QueryTypeArg) -> QueryType {
    match q {
        QueryTypeArg::All => QueryType::All,
        QueryTypeArg::Select => QueryType::Select,
        QueryTypeArg::Update => QueryType::Update,
    }
}

fn algorithm(c: CompressArg) -> Algorithm {
    match c {
        CompressArg::Zstd => Algorithm::Zstd,
        CompressArg::Lz4 => Algorithm::Lz4,
    }
}

fn lock_mode(l: LockMode) -> backup::LockMode {
    match l {
        LockMode::BackupStage => backup::LockMode::BackupStage,
        LockMode::Ftwrl => backup::LockMode::Ftwrl,
    }
}

fn priority(p: PriorityArg) -> Priority {
    match p {
        PriorityArg::Idle => Priority::Idle,
        PriorityArg::Normal => Priority::Normal,
    }
}

pub(crate) fn progress(p: ProgressArg) -> ProgressMode {
    match p {
        ProgressArg::Auto => ProgressMode::Auto,
        ProgressArg::Lines => ProgressMode::Lines,
        ProgressArg::None => ProgressMode::Quiet,
    }
}

/// Check `hotbak backup`'s arguments and build the plan.
///
/// # Errors
/// [`UsageError`] naming the option; option-file errors.
pub fn backup(a: BackupArgs) -> anyhow::Result<BackupPlan> {
    let dest = match (&a.target_dir, &a.stream, &a.stream_to) {
        (Some(d), None, None) => Destination::Dir(d.clone()),
        (None, Some(f), None) => {
            if !f.eq_ignore_ascii_case("xbstream") && !f.eq_ignore_ascii_case("mbstream") {
                return Err(UsageError(format!("--stream={f}: only xbstream is supported")).into());
            }
            Destination::Stdout
        }
        (None, None, Some(t)) if t.starts_with("s3://") => Destination::S3 {
            location: crate::objstore::Location::parse(t)?,
            config: Box::new(a.s3.config()),
            upload: a.s3.upload_options(None)?,
        },
        (None, None, Some(t)) => {
            let addr = t.strip_prefix("tcp://").ok_or_else(|| {
                UsageError(format!(
                    "--stream-to {t}: expected tcp://HOST:PORT or s3://BUCKET/PREFIX"
                ))
            })?;
            Destination::Tcp(addr.to_owned())
        }
        (None, None, None) => {
            return Err(UsageError(
                "give one of --target-dir DIR, --stream, or --stream-to tcp://HOST:PORT".into(),
            )
            .into())
        }
        _ => {
            return Err(
                UsageError("--target-dir, --stream and --stream-to are exclusive".into()).into(),
            )
        }
    };
    let defaults = if a.conn.no_defaults {
        Defaults::None
    } else if let Some(f) = &a.conn.defaults_file {
        Defaults::File(f.clone())
    } else if let Some(f) = &a.conn.defaults_extra_file {
        Defaults::StandardWithExtra(f.clone())
    } else {
        Defaults::Standard
    };
    let mut conn = ConnectOptions::default()
        .with_defaults_suffixed(&defaults, a.conn.defaults_group_suffix.as_deref())?;
    if let Some(h) = &a.conn.host {
        conn.host = Some(h.clone());
    }
    if let Some(p) = a.conn.port {
        conn.port = Some(p);
    }
    if let Some(s) = &a.conn.socket {
        conn.socket = Some(s.clone());
    }
    if let Some(u) = &a.conn.user {
        conn.user = Some(u.clone());
    }
    if let Some(p) = &a.conn.password {
        conn.password = Some(Password::new(p.clone()));
    }
    if a.conn.ssl {
        conn.ssl = Some(true);
    }
    if a.conn.ssl_verify_server_cert {
        conn.ssl_verify_server_cert = Some(true);
    }
    for (slot, given) in [
        (&mut conn.ssl_ca, &a.conn.ssl_ca),
        (&mut conn.ssl_cert, &a.conn.ssl_cert),
        (&mut conn.ssl_key, &a.conn.ssl_key),
    ] {
        if given.is_some() {
            slot.clone_from(given);
        }
    }
    if conn.ssl_cert.is_some() != conn.ssl_key.is_some() {
        return Err(UsageError(
            "--ssl-cert and --ssl-key go together (the client certificate and its key)".into(),
        )
        .into());
    }
    if a.parallel == 0 {
        return Err(UsageError("--parallel must be at least 1".into()).into());
    }
    let key = match (&a.encrypt, &a.encrypt_key_file, &a.encrypt_key_env) {
        (None, None, None) => None,
        (None, _, _) => {
            return Err(
                UsageError("--encrypt-key-file/--encrypt-key-env need --encrypt".into()).into(),
            )
        }
        (Some(alg), f, e) => {
            let norm = alg.to_ascii_uppercase().replace(['-', '_'], "");
            if norm != "AES256GCM" && norm != "AES256" {
                return Err(
                    UsageError(format!("--encrypt={alg}: only AES256-GCM is supported")).into(),
                );
            }
            Some(match (f, e) {
                (Some(f), None) => crate::encrypt::Key::from_file(f)?,
                (None, Some(v)) => crate::encrypt::Key::from_env(v)?,
                _ => {
                    return Err(UsageError(
                        "--encrypt needs exactly one of --encrypt-key-file or --encrypt-key-env"
                            .into(),
                    )
                    .into())
                }
            })
        }
    };
    let threads = a
        .compress_threads
        .unwrap_or_else(|| {
            // Twice the cores: a compressor that waits for its input or
            // for the kernel leaves a core idle otherwise (measured: 6%
            // faster on 2 cores than one thread per core).
            2 * std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        })
        .max(1);
    if a.compress.is_some()
        && (a.compress_chunk_size < 4096 || a.compress_chunk_size > crate::sink::MAX_FRAME_LEN)
    {
        return Err(UsageError(format!(
            "--compress-chunk-size must be between 4096 and {}",
            crate::sink::MAX_FRAME_LEN
        ))
        .into());
    }
    if a.compress == Some(CompressArg::Zstd) {
        crate::compress::ZstdCompress::new(a.compress_level)
            .map_err(|e| UsageError(format!("--compress-level {}: {e}", a.compress_level)))?;
    }
    let pacing = match (a.pace, a.max_rate_busy) {
        (_, Some(0)) | (OnOff::Off, _) => None,
        (OnOff::On, Some(n)) => {
            return Err(UsageError(format!(
                "--max-rate-busy {n}: replaced by adaptive pacing (--pace on|off, --pace-floor MB/s); use --max-rate for a fixed cap"
            ))
            .into())
        }
        (OnOff::On, None) => Some(backup::pacing::Config {
            floor: a.pace_floor.max(1) * 1_000_000,
            ..backup::pacing::Config::default()
        }),
    };
    let incremental_lsn = match (&a.incremental_basedir, a.incremental_lsn) {
        (Some(dir), _) => {
            let p = dir.join(crate::format::metadata::Checkpoints::FILE);
            let text = std::fs::read_to_string(&p).map_err(|e| {
                UsageError(format!(
                    "--incremental-basedir {}: cannot read {}: {e}",
                    dir.display(),
                    p.display()
                ))
            })?;
            let ck = crate::format::metadata::Checkpoints::parse(&text)
                .map_err(|e| UsageError(format!("--incremental-basedir: {}: {e}", p.display())))?;
            if ck.to_lsn == 0 {
                return Err(UsageError(format!(
                    "--incremental-basedir: {} has to_lsn = 0",
                    p.display()
                ))
                .into());
            }
            Some(ck.to_lsn)
        }
        (None, Some(0)) => {
            return Err(
                UsageError("--incremental-lsn 0: the base LSN must be above 0".into()).into(),
            )
        }
        (None, l) => l,
    };
    let parent_uuid = a.incremental_basedir.as_deref().and_then(parent_uuid);
    let lock = if a.no_lock {
        None
    } else {
        Some(lock_mode(a.lock))
    };
    Ok(BackupPlan {
        dest,
        conn,
        parallel: a.parallel,
        lock,
        incremental_lsn,
        parent_uuid,
        history_base: match (&a.incremental_history_name, &a.incremental_history_uuid) {
            (Some(n), _) => Some(backup::HistoryBase::Name(n.clone())),
            (None, Some(u)) => Some(backup::HistoryBase::Uuid(u.clone())),
            (None, None) => None,
        },
        extra_lsndir: a.extra_lsndir.clone(),
        ddl_lock: match a.lock_ddl {
            DdlLockArg::Short => backup::DdlLock::Short,
            DdlLockArg::Full => backup::DdlLock::Full,
        },
        policy: LockPolicy {
            ftwrl_wait_timeout: Duration::from_secs(a.ftwrl_wait_timeout),
            ftwrl_wait_threshold: a.ftwrl_wait_threshold,
            ftwrl_wait_query_type: query_type(a.ftwrl_wait_query_type),
            kill_long_queries_timeout: Duration::from_secs(a.kill_long_queries_timeout),
            kill_long_query_type: query_type(a.kill_long_query_type),
            ..LockPolicy::default()
        },
        lock_wait_timeout: a.lock_wait_timeout,
        slave_info: a.slave_info,
        galera_info: a.galera_info,
        history: a.history.clone(),
        safe_slave: a
            .safe_slave_backup
            .then(|| Duration::from_secs(a.safe_slave_backup_timeout)),
        log_copy_interval: Duration::from_millis(a.log_copy_interval.max(10)),
        redo_warn_percent: a.redo_warn_percent,
        tmpdir: a.tmpdir.clone().unwrap_or_else(std::env::temp_dir),
        redo_spool_memory: a.redo_spool_memory.max(1) << 20,
        compress: a.compress.map(|c| Compression {
            algorithm: algorithm(c),
            level: a.compress_level,
            threads,
            chunk: a.compress_chunk_size,
        }),
        key,
        max_rate: a.max_rate,
        pacing,
        priority: priority(a.priority),
        progress: progress(a.progress),
        command_line: crate::format::metadata::mask_command_line(
            &std::env::args().collect::<Vec<_>>(),
        ),
        filter: filter(&a.filter)?,
    })
}

/// The partial-backup filter of `hotbak backup` (the `-file` options read
/// here), or `None` when no filter option is given.
///
/// # Errors
/// [`UsageError`] for an unreadable list file; the filter's own errors.
pub fn filter(a: &super::args::FilterArgs) -> anyhow::Result<Option<backup::filter::Filter>> {
    let read =
        |opt: &str, p: &Option<std::path::PathBuf>| -> anyhow::Result<Option<(String, String)>> {
            p.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|t| (p.display().to_string(), t))
                        .map_err(|e| UsageError(format!("--{opt} {}: {e}", p.display())).into())
                })
                .transpose()
        };
    let spec = backup::filter::FilterSpec {
        databases: a.databases.clone(),
        databases_file: read("databases-file", &a.databases_file)?,
        databases_exclude: a.databases_exclude.clone(),
        tables: a.tables.clone(),
        tables_file: read("tables-file", &a.tables_file)?,
        tables_exclude: a.tables_exclude.clone(),
    };
    if !spec.is_partial() {
        return Ok(None);
    }
    Ok(Some(backup::filter::Filter::new(spec)?))
}

/// What `hotbak verify` checks.
#[derive(Debug)]
pub enum VerifyTarget {
    /// An extracted backup.
    Dir(crate::verify::VerifyPlan),
    /// The xbstream on stdin.
    Stream(crate::verify::StreamPlan),
    /// The committed backup at an s3:// URL, with the store options.
    Store(crate::verify::StreamPlan, String, Box<super::s3::S3Args>),
}

/// Check `hotbak verify`'s arguments and build the plan (the key is read here).
///
/// # Errors
/// [`UsageError`] naming the option; a bad or unreadable key.
pub fn verify(a: VerifyArgs) -> anyhow::Result<VerifyTarget> {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    // Reading a directory waits on the device as much as on the CPU: with
    // at least 4 files in flight, reads overlap the checks (cold cache, 2
    // cores: 1.35x -> 1.75x and 1.08x -> 1.47x of `cat` in two runs).
    let dir_parallel = a.parallel.unwrap_or(cores.max(4));
    let parallel = a.parallel.unwrap_or(cores);
    if parallel == 0 {
        return Err(UsageError("--parallel must be at least 1".into()).into());
    }
    if let Some(url) = a.from {
        let decode =
            crate::extract::decoders(a.decrypt_key_file.as_deref(), a.decrypt_key_env.as_deref())?;
        return Ok(VerifyTarget::Store(
            crate::verify::StreamPlan {
                parallel,
                decode,
                progress: progress(a.progress),
                size: None,
            },
            url,
            Box::new(a.s3),
        ));
    }
    match (a.target_dir, a.stream) {
        (Some(target_dir), false) => {
            if a.decrypt_key_file.is_some() || a.decrypt_key_env.is_some() {
                return Err(UsageError(
                    "--decrypt-key-file/--decrypt-key-env go with --stream (an extracted backup is decrypted by xbextract)".into(),
                )
                .into());
            }
            Ok(VerifyTarget::Dir(crate::verify::VerifyPlan {
                target_dir,
                parallel: dir_parallel,
                progress: progress(a.progress),
            }))
        }
        (None, true) => {
            let decode = crate::extract::decoders(
                a.decrypt_key_file.as_deref(),
                a.decrypt_key_env.as_deref(),
            )?;
            Ok(VerifyTarget::Stream(crate::verify::StreamPlan {
                parallel,
                decode,
                progress: progress(a.progress),
                size: stdin_size(),
            }))
        }
        _ => Err(UsageError("give one of --target-dir DIR or --stream".into()).into()),
    }
}

/// The length of stdin when it is a regular file (`< backup.xbs`), for
/// the progress display's total; a pipe has none.
fn stdin_size() -> Option<u64> {
    std::fs::metadata("/proc/self/fd/0")
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
}

/// The `uuid` of `DIR/xtrabackup_info`, when it has one (an `--extra-lsndir`
/// copy has it too; a base without the file has no recorded identity).
fn parent_uuid(dir: &std::path::Path) -> Option<String> {
    let p = dir.join(crate::format::metadata::XtrabackupInfo::FILE);
    let text = std::fs::read_to_string(p).ok()?;
    crate::format::metadata::XtrabackupInfo::parse(&text)
        .ok()
        .map(|i| i.uuid)
        .filter(|u| !u.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::app::args::{Cli, Command};

    fn plan(args: &[&str]) -> anyhow::Result<BackupPlan> {
        let cli = Cli::try_parse_from(["hotbak", "backup", "--no-defaults"].iter().chain(args))?;
        let Command::Backup(a) = cli.command else {
            panic!("not a backup command");
        };
        backup(*a)
    }

    #[test]
    fn arguments_become_library_types() {
        let p = plan(&[
            "--stream",
            "--compress=lz4",
            "--compress-threads=3",
            "--priority=normal",
            "--progress=none",
            "--lock=ftwrl",
            "--ftwrl-wait-query-type=update",
        ])
        .unwrap();
        assert!(matches!(p.dest, Destination::Stdout));
        assert_eq!(
            p.compress,
            Some(Compression {
                algorithm: Algorithm::Lz4,
                level: 1,
                threads: 3,
                chunk: 1 << 20,
            })
        );
        assert_eq!(p.priority, Priority::Normal);
        assert_eq!(p.progress, ProgressMode::Quiet);
        assert_eq!(p.lock, Some(backup::LockMode::Ftwrl));
        assert_eq!(p.policy.ftwrl_wait_query_type, QueryType::Update);

        let p = plan(&["--target-dir", "/tmp/x", "--compress", "--no-lock"]).unwrap();
        assert!(matches!(p.dest, Destination::Dir(_)));
        assert_eq!(p.compress.map(|c| c.algorithm), Some(Algorithm::Zstd));
        assert_eq!(p.priority, Priority::Idle);
        assert_eq!(p.progress, ProgressMode::Auto);
        assert_eq!(p.lock, None);
    }

    #[test]
    fn verify_takes_a_directory_or_the_stream() {
        let plan = |args: &[&str]| -> anyhow::Result<VerifyTarget> {
            let cli = Cli::try_parse_from(["hotbak", "verify"].iter().chain(args))?;
            let Command::Verify(a) = cli.command else {
                panic!("not a verify command");
            };
            verify(a)
        };
        assert!(matches!(
            plan(&["--target-dir", "d"]).unwrap(),
            VerifyTarget::Dir(_)
        ));
        match plan(&["--stream", "--parallel", "3"]).unwrap() {
            VerifyTarget::Stream(p) => {
                assert_eq!(p.parallel, 3);
                assert!(p.decode.decrypt.is_none());
            }
            VerifyTarget::Dir(_) | VerifyTarget::Store(..) => panic!("the stream mode"),
        }
        match plan(&["--from", "s3://bkt/p", "--s3-parallel", "2"]).unwrap() {
            VerifyTarget::Store(_, url, s3) => {
                assert_eq!(url, "s3://bkt/p");
                assert_eq!(s3.s3_parallel, 2);
            }
            _ => panic!("the store mode"),
        }
        for bad in [
            &[][..],
            &["--stream", "--target-dir", "d"],
            &["--target-dir", "d", "--decrypt-key-env", "K"],
            &["--stream", "--parallel", "0"],
            &["--stream", "--decrypt-key-file", "/nonexistent/key"],
        ] {
            let e = plan(bad).map(|_| ()).unwrap_err();
            // clap's own refusals exit 2 in main_with.
            let code = e.downcast_ref::<clap::Error>().map_or_else(
                || crate::app::exit::exit_code(&e),
                |c| 2 * i32::from(c.use_stderr()),
            );
            assert_eq!(code, 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn enum_values_ignore_case() {
        let p = plan(&[
            "--stream=XBSTREAM",
            "--kill-long-query-type=ALL",
            "--ftwrl-wait-query-type=UPDATE",
            "--lock=FTWRL",
            "--compress=ZSTD",
            "--priority=Normal",
            "--progress=LINES",
            "--lock-ddl=FULL",
        ])
        .unwrap();
        assert!(matches!(p.dest, Destination::Stdout));
        assert_eq!(p.policy.kill_long_query_type, QueryType::All);
        assert_eq!(p.policy.ftwrl_wait_query_type, QueryType::Update);
        assert_eq!(p.lock, Some(backup::LockMode::Ftwrl));
        assert_eq!(p.compress.map(|c| c.algorithm), Some(Algorithm::Zstd));
        assert_eq!(p.priority, Priority::Normal);
        assert_eq!(p.progress, ProgressMode::Lines);
        assert_eq!(p.ddl_lock, backup::DdlLock::Full);
    }

    #[test]
    fn bad_combinations_are_usage_errors() {
        for args in [
            &["--stream", "--parallel=0"][..],
            &["--stream=tar"],
            &["--stream-to", "host:1"],
            &[],
            &["--stream", "--compress", "--compress-level=99"],
            &["--stream", "--encrypt-key-env=K"],
        ] {
            let e = plan(args).map(|_| ()).unwrap_err();
            assert_eq!(crate::app::exit::exit_code(&e), 2, "{args:?}: {e}");
        }
    }
}

//! `hotbak backup`: copies a running MariaDB server into the datasink graph.
//!
//! Sequence (see README "How a backup works"):
//! 1. Connect, check flavour and version (MariaDB ≥ 10.8 redo format), read
//!    the datadir and InnoDB geometry, set `lock_wait_timeout`.
//! 2. Start the redo follower: the backup's `ib_logfile0` prefix is written
//!    first (final from the start), then the log is tailed every
//!    `--log-copy-interval` ms from the newest checkpoint.
//! 3. `BACKUP STAGE START`; the InnoDB files copied with `--parallel`
//!    workers, page-validated, while DDL runs (the redo follower records the
//!    log's file records, see [`ddl`]). Then `FLUSH`, `BLOCK_DDL`, the redo up
//!    to the lock, the files listed again and checked against the catalog,
//!    the DDL fix-up (`.del`, `.ren` markers, `.new` copies in mariabackup's
//!    layout) and the non-transactional files. With [`DdlLock::Full`]
//!    BLOCK_DDL is taken first and held across the whole copy instead.
//! 4. `BLOCK_COMMIT`: the Aria log and system tables, the CSV log tables, the
//!    binlog position and GTID, the InnoDB LSN; `FLUSH ENGINE LOGS`; wait
//!    until the follower has copied up to that LSN; stop it; every
//!    tablespace the copied redo names accounted for. `END`.
//! 5. Metadata in mariabackup's format (`xtrabackup_binlog_info`,
//!    `xtrabackup_checkpoints`, `backup-my.cnf`, `xtrabackup_info`), then
//!    the graph's manifest.
//!
//! Each step is a function of [`phases`] (the metadata of step 5 in
//! `metadata`); the plan is [`BackupPlan`], the summary [`BackupReport`].
//!
//! With `--lock=ftwrl` the InnoDB copy runs unlocked and
//! `FLUSH TABLES WITH READ LOCK` covers step 4 and the non-InnoDB files;
//! InnoDB DDL seen in the redo during the copy then fails the backup (it
//! would need DDL tracking). `--no-lock` takes no lock at all.

pub mod catalog;
pub mod datafiles;
pub mod ddl;
mod direct;
pub mod filter;
pub mod load;
mod metadata;
pub mod pacing;
mod phases;
mod plan;
pub mod progress;
pub mod redo;
mod report;
pub mod spool;

use std::sync::Arc;

use crate::compress::Algorithm;
use crate::error::{Classify, ErrorClass};
use crate::sched::{Bulk, Priority};
use crate::sink::{GraphInput, Output, Pipeline};
pub use plan::{BackupPlan, Compression, DdlLock, Destination, HistoryBase, LockMode};
use progress::Progress;
pub use progress::ProgressMode;
pub use report::BackupReport;

/// Errors of the backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Server errors (connection, version, locks).
    #[error(transparent)]
    Server(#[from] crate::mysql::Error),
    /// Stopped by a signal; the locks were released (and a stopped
    /// replica SQL thread started again).
    #[error("{0}: the backup was stopped and is incomplete (no manifest)")]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// The server went away during the backup.
    #[error("server connection lost: {0}")]
    ServerGone(String),
    /// The redo log was overwritten before it was copied.
    #[error("redo log overrun: {0}")]
    RedoOverrun(String),
    /// The server's redo log could not be followed.
    #[error("redo log: {0}")]
    Redo(String),
    /// A data file failed validation.
    #[error("corrupt data file: {0}")]
    Corrupt(String),
    /// Unsupported server layout.
    #[error("{0}")]
    Layout(String),
    /// The datasink graph failed.
    #[error(transparent)]
    Sink(#[from] crate::sink::Error),
    /// File system error on the server's files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// InnoDB DDL ran while the copy was unprotected.
    #[error("DDL ran during the backup without BACKUP STAGE BLOCK_DDL ({0}); the backup would be inconsistent. Use the default --lock=backup-stage.")]
    UnprotectedDdl(String),
    /// A task failed.
    #[error("task failed: {0}")]
    Task(String),
    /// `--incremental-history-*` found no base in the history table.
    #[error("{0}")]
    NoHistoryBase(String),
    /// The server serves data the backup would not hold.
    #[error("the backup would be incomplete: {0}")]
    Incomplete(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Server(e) => e.class(),
            Error::ServerGone(_) | Error::RedoOverrun(_) | Error::UnprotectedDdl(_) => {
                ErrorClass::Server
            }
            Error::Redo(_) | Error::Layout(_) | Error::Task(_) | Error::Incomplete(_) => {
                ErrorClass::Failed
            }
            Error::Corrupt(_) => ErrorClass::Corrupt,
            Error::NoHistoryBase(_) => ErrorClass::Usage,
            Error::Sink(e) => e.class(),
            Error::Io { .. } => ErrorClass::Io,
            Error::Interrupted(e) => e.class(),
        }
    }
}

impl Error {
    fn is_closed(&self) -> bool {
        matches!(self, Error::Sink(e) if e.is_closed())
    }
}

/// Open the plan's destination and run the backup into it.
///
/// # Errors
/// Connecting to a `--stream-to` address; any [`Error`] of [`run`].
pub async fn execute(mut plan: BackupPlan) -> Result<BackupReport, Error> {
    if let Some(base) = plan.history_base.clone() {
        let (uuid, lsn) = history_base(&plan.conn, &base).await?;
        plan.incremental_lsn = Some(lsn);
        plan.parent_uuid = Some(uuid);
    }
    let output = match &plan.dest {
        Destination::Dir(d) => Output::Dir {
            root: d.clone(),
            sync: true,
        },
        Destination::Stdout => Output::stdout(),
        Destination::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a)
                .await
                .map_err(|source| Error::Io {
                    path: format!("tcp://{a}"),
                    source,
                })?;
            s.set_nodelay(true).ok();
            Output::Xbstream {
                writer: Box::new(s),
                dest: format!("tcp://{a}"),
            }
        }
        Destination::S3 {
            location,
            config,
            upload,
        } => {
            // Checked before the server is touched: the store is reachable,
            // takes the credentials, and the prefix holds no backup yet.
            let client = crate::objstore::Client::new((**config).clone(), &location.bucket)
                .map_err(crate::sink::Error::Store)?;
            // A live backup is an attempt: a retake after a failure or kill
            // reuses the files an earlier attempt stored with the same
            // transforms (objstore::reuse).
            let transform = format!(
                "compress={:?};encrypt={}",
                plan.compress.map(|c| (c.algorithm, c.level, c.chunk)),
                plan.key.is_some()
            );
            let attempt = crate::objstore::upload::AttemptOptions {
                segment_bytes: upload.segment_bytes,
                transform,
                reuse: upload.reuse,
            };
            let (up, notes) = crate::objstore::upload::Uploader::start_attempt(
                client,
                location.clone(),
                *upload,
                attempt,
            )
            .await
            .map_err(crate::sink::Error::Store)?;
            for n in notes {
                crate::events::info(format_args!("{n}"));
            }
            Output::Object(Box::new(up))
        }
    };
    run(plan, output).await
}

fn build_pipeline(plan: &BackupPlan, output: Output, exec: &Bulk) -> (GraphInput, Pipeline) {
    let mut b = Pipeline::builder().executor(exec.clone());
    if let Some(c) = plan.compress {
        let (threads, chunk) = (c.threads, c.chunk);
        match c.algorithm {
            Algorithm::Zstd => {
                let z = crate::compress::ZstdCompress::new(c.level)
                    .expect("level validated when the plan was built");
                b = b.stage_chunked(z, threads, chunk, |m| m.compress);
            }
            Algorithm::Lz4 => {
                b = b.stage_chunked(crate::compress::Lz4Compress::new(), threads, chunk, |m| {
                    m.compress
                })
            }
        }
    }
    if let Some(key) = &plan.key {
        let seal = crate::encrypt::Seal::new(key.clone());
        b = b.key_id(Some(hex::encode(key.id().0)));
        b = b.stage(seal, 2, |m| m.encrypt);
    }
    b.build(output)
}

/// `--incremental-history-name`/`-uuid`: the base's `uuid` and
/// `innodb_to_lsn` from `mysql.mariadb_backup_history` (the newest of the
/// series), as mariabackup 10.11 looks it up.
async fn history_base(
    conn: &crate::mysql::ConnectOptions,
    base: &HistoryBase,
) -> Result<(String, u64), Error> {
    use crate::format::metadata::history::{self, Value};
    let (q, key, what) = match base {
        HistoryBase::Name(n) => (history::LAST_LSN_BY_NAME, n, "--incremental-history-name"),
        HistoryBase::Uuid(u) => (history::LAST_LSN_BY_UUID, u, "--incremental-history-uuid"),
    };
    let mut s = crate::mysql::Session::connect(conn).await?;
    let rows = s.query_with(q, &[Value::Text(key.clone())]).await?;
    let _ = s.close().await;
    let row = rows.first().ok_or_else(|| {
        Error::NoHistoryBase(format!(
            "{what}={key}: no backup with a to_lsn in {} (take a backup with --history={key} first)",
            history::TABLE
        ))
    })?;
    let uuid = row.at(0).unwrap_or_default().to_owned();
    let lsn = row
        .at(1)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&l| l > 0)
        .ok_or_else(|| {
            Error::NoHistoryBase(format!(
                "{what}={key}: backup {uuid} in {} has no usable innodb_to_lsn ({:?})",
                history::TABLE,
                row.at(1)
            ))
        })?;
    Ok((uuid, lsn))
}

/// `--history`: the row of a completed backup in
/// `mysql.mariadb_backup_history`, over a new connection (the backup's own
/// is closed by then). Only a complete backup gets a row; a failure to
/// write it is a warning, as in mariabackup: the backup itself is whole.
async fn record_history(
    plan: &BackupPlan,
    info: &crate::format::metadata::XtrabackupInfo,
    report: &BackupReport,
    progress: &Progress,
) {
    let row = crate::format::metadata::history::Row::new(info, report.start_unix, report.end_unix);
    let res = async {
        let mut s = crate::mysql::Session::connect(&plan.conn).await?;
        s.insert_history(&row).await?;
        s.close().await
    }
    .await;
    match res {
        Ok(()) => progress.line(&format!(
            "--history: recorded backup {} in {}",
            info.uuid,
            crate::format::metadata::history::TABLE
        )),
        Err(e) => progress.warn(&format!(
            "--history: the backup is complete, but its row in {} was not written: {e}",
            crate::format::metadata::history::TABLE
        )),
    }
}

/// Run a backup into `output`.
///
/// # Errors
/// Any [`Error`]; the graph is aborted and nothing reports success.
pub async fn run(plan: BackupPlan, output: Output) -> Result<BackupReport, Error> {
    let dest = match &plan.dest {
        Destination::Dir(d) => d.display().to_string(),
        Destination::Stdout => "stdout (xbstream)".into(),
        Destination::Tcp(a) => format!("tcp://{a} (xbstream)"),
        Destination::S3 { location, .. } => format!("{location} (xbstream objects, committed)"),
    };
    let progress = Arc::new(Progress::new(plan.progress));
    let threads = plan.parallel.max(plan.compress.map_or(1, |c| c.threads));
    // Reads get idle-class threads of their own (one per read in flight), so
    // they never queue behind compression.
    let exec = Bulk::with_io(
        plan.priority,
        threads,
        plan.parallel * (1 + datafiles::READ_AHEAD),
    );
    if plan.priority == Priority::Idle && !exec.idle_class_active() {
        progress.warn(
            "--priority idle: the kernel refused SCHED_IDLE; bulk work runs at normal priority",
        );
    }
    let (input, pipeline) = build_pipeline(&plan, output, &exec);
    let ticker = progress.start();
    let res = phases::body(&plan, &input, &progress, &exec).await;
    drop(input);
    let out = match res {
        Ok(mut report) => match pipeline.finish().await {
            Ok(g) => {
                report.files = g.files;
                report.bytes_out = g.bytes_out;
                report.bytes_in = progress.bytes_done();
                report.elapsed = progress.elapsed();
                report.dest = dest;
                report.locks = progress.lock_timings();
                if let Some(info) = plan.history.as_ref().and(report.info.as_ref()) {
                    record_history(&plan, info, &report, &progress).await;
                }
                Ok(report)
            }
            Err(e) => Err(Error::Sink(e)),
        },
        Err(e) => {
            // A closed graph is a consequence: report the graph's root cause instead.
            let root = pipeline.abort().await;
            match root {
                Some(r) if e.is_closed() => Err(Error::Sink(r)),
                _ => Err(e),
            }
        }
    };
    drop(ticker);
    progress.done();
    out
}

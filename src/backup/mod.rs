//! `hotbak backup`: copies a running MariaDB server into the datasink graph.
//!
//! Sequence (see README "How a backup works"):
//! 1. Connect, check flavour and version (MariaDB ≥ 10.8 redo format), read
//!    the datadir and InnoDB geometry, set `lock_wait_timeout`.
//! 2. Start the redo follower: the backup's `ib_logfile0` prefix is written
//!    first (final from the start), then the log is tailed every
//!    `--log-copy-interval` ms from the newest checkpoint.
//! 3. `BACKUP STAGE START`, `FLUSH`, `BLOCK_DDL`. hotbak **holds BLOCK_DDL
//!    across the InnoDB copy**: DDL waits (InnoDB DML does not), so no
//!    `.new/.ren/.del` tracking is needed and prepare is a plain crash
//!    recovery. Then all InnoDB files are copied with `--parallel` workers,
//!    page-validated; the same workers copy the non-transactional files
//!    (MyISAM, CSV, ARCHIVE, `.frm`, ...), which BLOCK_DDL keeps still,
//!    interleaved with them by size.
//! 4. `BLOCK_COMMIT`: the Aria log and system tables, the CSV log tables, the
//!    binlog position and GTID, the InnoDB LSN; `FLUSH ENGINE LOGS`; wait
//!    until the follower has copied up to that LSN; stop it. `END`.
//! 5. Metadata in mariabackup's format (`xtrabackup_binlog_info`,
//!    `xtrabackup_checkpoints`, `backup-my.cnf`, `xtrabackup_info`), then
//!    the graph's manifest.
//!
//! With `--lock=ftwrl` the InnoDB copy runs unlocked and
//! `FLUSH TABLES WITH READ LOCK` covers step 4 and the non-InnoDB files;
//! InnoDB DDL seen in the redo during the copy then fails the backup (it
//! would need DDL tracking). `--no-lock` takes no lock at all.

pub mod catalog;
pub mod datafiles;
mod direct;
pub mod load;
mod plan;
pub mod progress;
pub mod redo;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::compress::Algorithm;
use crate::error::{Classify, ErrorClass};
use crate::format::metadata::{BackupType, Checkpoints, XtrabackupInfo};
use crate::format::path::RelPath;
use crate::innodb::Lsn;
use crate::mysql::{LockPolicy, Session};
use crate::sched::{Bulk, Priority};
use crate::sink::{FileMeta, GraphInput, Output, Pipeline};
pub use plan::{BackupPlan, Compression, Destination, LockMode};
pub use progress::ProgressMode;
use progress::{human, Progress};

/// Errors of the backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Server errors (connection, version, locks).
    #[error(transparent)]
    Server(#[from] crate::mysql::Error),
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
            Error::Sink(e) => e.class(),
            Error::Io { .. } => ErrorClass::Io,
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
pub async fn execute(plan: BackupPlan) -> Result<BackupReport, Error> {
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
    };
    run(plan, output).await
}

/// What the backup did (the one-screen summary).
#[derive(Debug, Default)]
pub struct BackupReport {
    /// Wall time.
    pub elapsed: Duration,
    /// Files in the backup.
    pub files: u64,
    /// Bytes read from the server's files.
    pub bytes_in: u64,
    /// Bytes written (after compression and encryption).
    pub bytes_out: u64,
    /// Redo range.
    pub first_lsn: u64,
    /// End of the copied redo.
    pub last_lsn: u64,
    /// Checkpoint at BLOCK_COMMIT.
    pub to_lsn: u64,
    /// Binlog position.
    pub binlog: Option<String>,
    /// Time BLOCK_DDL (or FTWRL) was held.
    pub ddl_lock: Duration,
    /// Time BLOCK_COMMIT was held.
    pub commit_lock: Duration,
    /// Smallest redo headroom seen.
    pub min_headroom: u64,
    /// Destination.
    pub dest: String,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        writeln!(f, "hotbak: backup completed OK")?;
        writeln!(f, "  destination      {}", self.dest)?;
        writeln!(f, "  files            {}", self.files)?;
        writeln!(
            f,
            "  data read        {} in {:.1}s ({}/s)",
            human(self.bytes_in),
            secs,
            human((self.bytes_in as f64 / secs) as u64)
        )?;
        writeln!(f, "  bytes written    {}", human(self.bytes_out))?;
        writeln!(
            f,
            "  redo             LSN {} .. {} ({}), checkpoint {}",
            self.first_lsn,
            self.last_lsn,
            human(self.last_lsn - self.first_lsn),
            self.to_lsn
        )?;
        writeln!(f, "  min redo headroom {}", human(self.min_headroom))?;
        writeln!(
            f,
            "  DDL lock held    {:.2}s; commits blocked {:.3}s",
            self.ddl_lock.as_secs_f64(),
            self.commit_lock.as_secs_f64()
        )?;
        write!(
            f,
            "  binlog position  {}",
            self.binlog.as_deref().unwrap_or("(binlog off)")
        )
    }
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

async fn write_meta(
    input: &GraphInput,
    name: &str,
    text: String,
    compress: bool,
) -> Result<(), Error> {
    let p = RelPath::new(name).map_err(|e| Error::Layout(e.to_string()))?;
    let meta = if compress {
        FileMeta::new(p)
    } else {
        FileMeta::uncompressed(p)
    };
    input.write_file(meta, Bytes::from(text)).await?;
    Ok(())
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
    let ticker = {
        let p = progress.clone();
        tokio::spawn(async move {
            let iv = p.interval();
            loop {
                tokio::time::sleep(iv).await;
                p.tick();
            }
        })
    };
    let res = body(&plan, &input, &progress, &exec).await;
    drop(input);
    let out = match res {
        Ok(mut report) => match pipeline.finish().await {
            Ok(g) => {
                report.files = g.files;
                report.bytes_out = g.bytes_out;
                report.bytes_in = progress.bytes_done();
                report.elapsed = progress.elapsed();
                report.dest = dest;
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
    ticker.abort();
    progress.done();
    out
}

struct Locker<'a> {
    s: &'a mut Session,
    mode: Option<LockMode>,
    policy: &'a LockPolicy,
}

async fn body(
    plan: &BackupPlan,
    input: &GraphInput,
    progress: &Arc<Progress>,
    exec: &Bulk,
) -> Result<BackupReport, Error> {
    let start_time = chrono::Local::now();
    let mut s = Session::connect(&plan.conn).await?;
    s.execute(&format!(
        "SET SESSION lock_wait_timeout={}",
        plan.lock_wait_timeout
    ))
    .await?;
    let info = s.server_info().await?;
    if info.innodb_encrypt_log {
        return Err(Error::Layout("innodb_encrypt_log=ON is not supported yet (the backup log would need the encryption plugin)".into()));
    }
    progress.line(&format!(
        "connected to {} ({}), datadir {}",
        s.version().text,
        plan.conn.describe(),
        info.datadir.display()
    ));
    // Redo follower first: the log must be followed from the checkpoint before any page is read.
    let log_path = info.redo_log_dir().join("ib_logfile0");
    let follower = redo::Follower::start(
        &log_path,
        input,
        redo::FollowerOptions {
            interval: plan.log_copy_interval,
            warn_percent: plan.redo_warn_percent,
            conn: plan.conn.clone(),
        },
        progress.clone(),
    )
    .await?;
    progress.line(&format!(
        "redo follower started at checkpoint LSN {} (log capacity {})",
        follower.start_checkpoint,
        human(follower.capacity)
    ));

    let ctx = CopyCtx {
        plan,
        input,
        progress,
        info: &info,
        start_time,
        exec,
    };
    let r = locked_copy(&ctx, &mut s, follower).await;
    if r.is_err() {
        // Release whatever we hold; ignore errors (the server may be gone).
        let _ = s.execute("UNLOCK TABLES").await;
        if plan.lock == Some(LockMode::BackupStage) {
            let _ = s.stage_end().await;
        }
    }
    // A clean goodbye: the server logs dropped connections as aborted.
    let _ = s.close().await;
    r
}

/// Copy plain files with up to `parallel` copies at a time (the reads and
/// any compression run on the bulk executor's threads).
async fn copy_all(
    mut files: Vec<datafiles::Source>,
    parallel: usize,
    input: &GraphInput,
    progress: &Arc<Progress>,
    limit: &datafiles::RateLimit,
    exec: &Bulk,
) -> Result<(), Error> {
    use futures::{StreamExt, TryStreamExt};
    files.sort_by_key(|s| std::cmp::Reverse(s.size));
    futures::stream::iter(files)
        .map(|src| datafiles::copy(src, input, progress, None, limit, exec))
        .buffer_unordered(parallel.max(1))
        .try_collect::<()>()
        .await
}

/// What the locked part of a backup works with.
struct CopyCtx<'a> {
    plan: &'a BackupPlan,
    input: &'a GraphInput,
    progress: &'a Arc<Progress>,
    info: &'a crate::mysql::ServerInfo,
    start_time: chrono::DateTime<chrono::Local>,
    exec: &'a Bulk,
}

/// `--safe-slave-backup` around [`locked_copy_inner`]: the replica SQL
/// threads are stopped first and started again afterwards, also when the
/// backup fails (a failed backup must not leave replication stopped).
async fn locked_copy(
    ctx: &CopyCtx<'_>,
    s: &mut Session,
    follower: redo::Follower,
) -> Result<BackupReport, Error> {
    let progress = ctx.progress;
    let replica = match ctx.plan.safe_slave {
        Some(t) => {
            let r = s.safe_slave_backup(t).await?;
            if !r.stopped_sql_threads.is_empty() {
                progress.line(&format!(
                    "--safe-slave-backup: replica SQL thread stopped ({}), no temporary tables open",
                    r.stopped_sql_threads.len()
                ));
            }
            Some(r)
        }
        None => None,
    };
    let result = locked_copy_inner(ctx, s, follower).await;
    if let Some(r) = replica.filter(|r| !r.stopped_sql_threads.is_empty()) {
        match s.restart_replica_sql(&r).await {
            Ok(()) => progress.line("replica SQL thread started again"),
            Err(e) if result.is_ok() => return Err(e.into()),
            Err(e) => progress.warn(&format!(
                "could not start the replica SQL thread again after the failure ({e}); run START SLAVE SQL_THREAD"
            )),
        }
    }
    result
}

#[allow(clippy::too_many_lines)]
async fn locked_copy_inner(
    ctx: &CopyCtx<'_>,
    s: &mut Session,
    follower: redo::Follower,
) -> Result<BackupReport, Error> {
    let &CopyCtx {
        plan,
        input,
        progress,
        info,
        start_time,
        exec,
    } = ctx;
    let mut report = BackupReport::default();
    let lk = Locker {
        s,
        mode: plan.lock,
        policy: &plan.policy,
    };
    if lk.mode.is_some() && !lk.policy.ftwrl_wait_timeout.is_zero() {
        progress.line(&format!(
            "waiting up to {}s for queries running longer than {}s before locking (--ftwrl-wait-timeout)",
            lk.policy.ftwrl_wait_timeout.as_secs(),
            lk.policy.ftwrl_wait_threshold
        ));
    }
    if lk.mode == Some(LockMode::BackupStage) {
        lk.s.stage_start(lk.policy).await?;
        lk.s.stage_flush(lk.policy).await?;
        lk.s.stage_block_ddl(lk.policy).await?;
        progress.line(
            "BACKUP STAGE BLOCK_DDL taken: DDL and writes to non-transactional tables wait; InnoDB DML continues",
        );
    }
    let ddl_locked_at = Instant::now();
    // List the files only now: under BLOCK_DDL no table can appear, vanish or be renamed.
    let layout = datafiles::Layout {
        datadir: &info.datadir,
        data_home: info.innodb_data_home_dir.as_deref(),
        data_file_path: &info.innodb_data_file_path,
        undo_dir: info.innodb_undo_directory.as_deref(),
        aria_log_dir: info.aria_log_dir_path.as_deref(),
    };
    let mut inv = datafiles::inventory(&layout).map_err(|e| unprotected(e, lk.mode))?;
    // Completeness against the server's catalog (with FTWRL, again under
    // that lock below, when the non-InnoDB files are listed anew).
    let cat = catalog::read(lk.s).await?;
    add_remote_tablespaces(&mut inv, &cat, &info.datadir);
    if lk.mode != Some(LockMode::Ftwrl) {
        ensure_complete(&inv, &cat, &info.datadir, progress)?;
    }
    let links = std::mem::take(&mut inv.links);
    if !links.is_empty() {
        progress.line(&format!(
            "{} files or directories outside the datadir (symlinks, DATA DIRECTORY tables): stored by content, their places recorded in {}",
            links.len(),
            crate::format::links::LINKS_NAME
        ));
    }
    let total: u64 = inv
        .innodb
        .iter()
        .chain(&inv.nontx_ddl)
        .chain(&inv.nontx_commit)
        .map(|s| s.size)
        .sum();
    progress.add_total(
        (inv.innodb.len() + inv.nontx_ddl.len() + inv.nontx_commit.len()) as u64,
        total,
    );

    // InnoDB copy.
    if lk.mode == Some(LockMode::Ftwrl) {
        progress.phase(&format!(
            "copying {} InnoDB files with {} workers",
            inv.innodb.len(),
            plan.parallel
        ));
    } else {
        progress.phase(&format!(
            "copying {} InnoDB and {} non-InnoDB files with {} workers",
            inv.innodb.len(),
            inv.nontx_ddl.len(),
            plan.parallel
        ));
    }
    let sys_format = inv
        .innodb
        .iter()
        .find(|s| s.innodb == Some(datafiles::InnoKind::SystemFirst))
        .map(|s| read_format(&s.abs))
        .transpose()?;
    let limit = Arc::new(datafiles::RateLimit::new(plan.max_rate, plan.max_rate_busy));
    let monitor = (plan.max_rate_busy > 0).then(|| {
        load::Monitor::start(
            plan.conn.clone(),
            limit.clone(),
            exec.clone(),
            progress.clone(),
        )
    });
    // Under BLOCK_DDL (or with no lock at all) the non-transactional files
    // are already still, so the same workers copy them too, interleaved with
    // the InnoDB files by size (largest first, so no worker is left with one
    // big file at the end). With FTWRL they wait for that lock.
    let mut first = inv.innodb;
    let mut nontx_ddl = inv.nontx_ddl;
    if lk.mode != Some(LockMode::Ftwrl) {
        first.append(&mut nontx_ddl);
        first.sort_by_key(|s| std::cmp::Reverse(s.size));
    }
    let queue = Arc::new(tokio::sync::Mutex::new(
        first.into_iter().collect::<std::collections::VecDeque<_>>(),
    ));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.parallel {
        let q = queue.clone();
        let input = input.clone();
        let p = progress.clone();
        let limit = limit.clone();
        let exec = exec.clone();
        workers.spawn(async move {
            loop {
                let next = q.lock().await.pop_front();
                let Some(src) = next else {
                    return Ok::<(), Error>(());
                };
                datafiles::copy(src, &input, &p, sys_format, &limit, &exec).await?;
            }
        });
    }
    let mut copy_err: Option<Error> = None;
    let mut follower = Some(follower);
    loop {
        tokio::select! {
            r = workers.join_next() => {
                match r {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        let e = unprotected(e, lk.mode); if copy_err.as_ref().map_or(true, Error::is_closed) { copy_err = Some(e); } workers.abort_all(); }
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(Err(e)) => { copy_err = Some(Error::Task(e.to_string())); workers.abort_all(); }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if follower.as_ref().is_some_and(redo::Follower::has_failed) {
                    if let Some(f) = follower.take() {
                        if let Some(e) = f.take_error().await { copy_err = Some(e); }
                    }
                    workers.abort_all();
                }
            }
        }
    }
    let Some(follower) = follower else {
        return Err(copy_err.unwrap_or_else(|| Error::Redo("redo follower stopped".into())));
    };
    if let Some(e) = copy_err {
        // A follower failure explains a closed graph better than the copier's "closed".
        if e.is_closed() && follower.has_failed() {
            if let Some(fe) = follower.take_error().await {
                return Err(fe);
            }
        } else {
            follower.abort();
        }
        return Err(e);
    }

    // From here on the server waits for us (non-transactional writes, then
    // commits): full speed, nothing more in the idle class.
    if let Some(m) = monitor {
        m.stop().await;
    }
    limit.set_busy(false);
    exec.escalate();

    // With FTWRL, the non-transactional files wait for that lock.
    if lk.mode == Some(LockMode::Ftwrl) {
        lk.s.flush_tables_with_read_lock(lk.policy).await?;
        progress.line("FLUSH TABLES WITH READ LOCK taken");
        // Tables may have been created or dropped during the unlocked
        // InnoDB copy: list the non-InnoDB files again under the lock, and
        // check the catalog against what the backup holds.
        let mut again = datafiles::inventory(&layout)?;
        let cat = catalog::read(lk.s).await?;
        add_remote_tablespaces(&mut again, &cat, &info.datadir);
        ensure_complete(&again, &cat, &info.datadir, progress)?;
        nontx_ddl = again.nontx_ddl;
        progress.phase(&format!("copying {} non-InnoDB files", nontx_ddl.len()));
        copy_all(nontx_ddl, plan.parallel, input, progress, &limit, exec).await?;
    }

    // BLOCK_COMMIT: the consistent point.
    let commit_locked_at = Instant::now();
    if lk.mode == Some(LockMode::BackupStage) {
        lk.s.stage_block_commit(lk.policy).await?;
        progress.line(&format!(
            "BACKUP STAGE BLOCK_COMMIT taken; copying {} Aria/log-table files",
            inv.nontx_commit.len()
        ));
    }
    copy_all(
        inv.nontx_commit,
        plan.parallel,
        input,
        progress,
        &limit,
        exec,
    )
    .await?;
    let binlog = if lk.mode.is_some() && info.log_bin {
        lk.s.binlog_position().await?
    } else {
        None
    };
    let slave = if plan.slave_info {
        let si = lk.s.slave_info().await?;
        if si.is_none() {
            progress.warn("--slave-info: this server is not a replica; ignoring the option");
        }
        si
    } else {
        None
    };
    let lsn = lk.s.innodb_lsn().await?;
    lk.s.flush_engine_logs().await?;
    let target = Lsn(lsn.current);
    progress.line(&format!("waiting for the redo copy to reach LSN {target}"));
    let fr = follower.finish(target).await?;
    let to_lsn = lsn
        .last_checkpoint
        .map_or(fr.server_checkpoint, Lsn)
        .min(fr.last_lsn);
    report.commit_lock = commit_locked_at.elapsed();
    report.ddl_lock = ddl_locked_at.elapsed();
    match lk.mode {
        Some(LockMode::BackupStage) => {
            lk.s.stage_end().await?;
        }
        Some(LockMode::Ftwrl) => lk.s.unlock_tables().await?,
        None => {}
    }
    progress.line(&format!(
        "locks released; redo copied LSN {} .. {}",
        fr.first_lsn, fr.last_lsn
    ));
    if lk.mode != Some(LockMode::BackupStage) && !fr.file_ops.is_empty() {
        return Err(Error::UnprotectedDdl(fr.file_ops.join("; ")));
    }

    // Metadata, in mariabackup's format; they come last, before the manifest.
    if let Some(b) = &binlog {
        write_meta(
            input,
            "xtrabackup_binlog_info",
            b.binlog_info().render(),
            true,
        )
        .await?;
        report.binlog = Some(b.binlog_info().render().trim_end().to_owned());
    }
    if let Some(si) = &slave {
        write_meta(input, "xtrabackup_slave_info", si.sql.clone(), true).await?;
    }
    if !links.is_empty() {
        let l = crate::format::links::Links {
            version: crate::format::links::LINKS_VERSION,
            datadir: info.datadir.display().to_string(),
            links,
        };
        write_meta(input, crate::format::links::LINKS_NAME, l.render(), false).await?;
    }
    let ck = Checkpoints {
        backup_type: BackupType::FullBackuped,
        from_lsn: 0,
        to_lsn: to_lsn.0,
        last_lsn: fr.last_lsn.0,
        recover_binlog_info: false,
    };
    write_meta(input, Checkpoints::FILE, ck.render(), false).await?;
    write_meta(
        input,
        crate::format::metadata::BackupMyCnf::FILE,
        info.backup_my_cnf().render(),
        true,
    )
    .await?;
    let end_time = chrono::Local::now();
    let xi = XtrabackupInfo {
        uuid: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        tool_name: "hotbak".into(),
        tool_command: plan.command_line.clone(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        ibbackup_version: env!("CARGO_PKG_VERSION").into(),
        server_version: info.version.clone(),
        start_time: crate::format::metadata::format_time(&start_time),
        end_time: crate::format::metadata::format_time(&end_time),
        lock_time: i64::try_from(report.ddl_lock.as_secs()).unwrap_or(0),
        binlog_pos: binlog
            .as_ref()
            .map(|b| b.binlog_info().binlog_pos_text())
            .unwrap_or_default(),
        innodb_from_lsn: 0,
        innodb_to_lsn: to_lsn.0,
        partial: false,
        incremental: false,
        format: if matches!(plan.dest, Destination::Dir(_)) {
            "file".into()
        } else {
            "xbstream".into()
        },
        compressed: if plan.compress.is_some() {
            "compressed".into()
        } else {
            "N".into()
        },
        extra: Vec::new(),
    };
    write_meta(input, XtrabackupInfo::FILE, xi.render(), true).await?;
    report.first_lsn = fr.first_lsn.0;
    report.last_lsn = fr.last_lsn.0;
    report.to_lsn = to_lsn.0;
    report.min_headroom = fr.min_headroom;
    Ok(report)
}

/// Tablespaces the server has outside the datadir that no `.isl` in the
/// datadir named (or named differently): the server's path wins.
fn add_remote_tablespaces(
    inv: &mut datafiles::Inventory,
    cat: &catalog::Catalog,
    datadir: &std::path::Path,
) {
    for ts in &cat.tablespaces {
        // User tablespaces only (`db/t`); the system and undo files are
        // listed from the server's variables.
        if !ts.name.contains('/') || !catalog::is_remote(&ts.filename, datadir) {
            continue;
        }
        let rel = catalog::tablespace_rel(&ts.filename, datadir);
        let abs = std::path::Path::new(&ts.filename);
        let listed = inv
            .innodb
            .iter()
            .any(|s| s.rel.as_str() == rel && s.abs == abs);
        if !listed {
            if let Ok(r) = RelPath::new(&rel) {
                inv.add_remote_tablespace(r, abs);
            }
        }
    }
}

/// Fail the backup when a table the server serves has a file the backup
/// would not hold; warn about unreadable entries no table needs.
fn ensure_complete(
    inv: &datafiles::Inventory,
    cat: &catalog::Catalog,
    datadir: &std::path::Path,
    progress: &Progress,
) -> Result<(), Error> {
    let expected = catalog::expected_files(cat, datadir);
    let unreadable: std::collections::BTreeMap<String, (String, String)> = inv
        .unreadable
        .iter()
        .map(|u| {
            (
                u.rel.clone(),
                (u.abs.display().to_string(), u.reason.clone()),
            )
        })
        .collect();
    let missing = catalog::check(&expected, &inv.rels(), &unreadable);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
        return Err(Error::Incomplete(list.join("; ")));
    }
    let needed: std::collections::BTreeSet<&str> =
        expected.iter().map(|e| e.rel.as_str()).collect();
    for u in inv
        .unreadable
        .iter()
        .filter(|u| !needed.contains(u.rel.as_str()))
    {
        progress.warn(&format!(
            "{} ({}) cannot be read and no table of the server's catalog uses it; not in the backup: {}",
            u.rel,
            u.abs.display(),
            u.reason
        ));
    }
    progress.line(&format!(
        "catalog check: {} InnoDB tablespaces and {} tables of the server, every file in the backup",
        cat.tablespaces.len(),
        cat.tables.len()
    ));
    Ok(())
}

/// Without BLOCK_DDL, a file that vanished during the backup means DDL ran.
fn unprotected(e: Error, mode: Option<LockMode>) -> Error {
    match (&e, mode) {
        (Error::Io { source, .. }, Some(LockMode::Ftwrl) | None)
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Error::UnprotectedDdl(e.to_string())
        }
        _ => e,
    }
}

fn read_format(p: &std::path::Path) -> Result<crate::innodb::page::PageFormat, Error> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).map_err(|source| Error::Io {
        path: p.display().to_string(),
        source,
    })?;
    let mut b = vec![0u8; 16384];
    let n = f.read(&mut b).map_err(|source| Error::Io {
        path: p.display().to_string(),
        source,
    })?;
    crate::innodb::page::parse_page0(&b[..n])
        .map(|i| i.format)
        .map_err(|e| Error::Corrupt(format!("{}: {e}", p.display())))
}

//! The backup's sequence, one function per step of the README's numbered
//! list (see the module doc of [`super`]):
//!
//! 1. [`body`]: connect, check the server, set `lock_wait_timeout`.
//! 2. [`body`]: start the redo follower.
//! 3. The copy. By default ([`DdlLock::Short`], [`short_lock_copy`]):
//!    `BACKUP STAGE START`, the InnoDB files copied while DDL runs
//!    ([`bulk_copy`], files that vanish are left to the DDL fix-up);
//!    then `FLUSH`, `BLOCK_DDL`, the redo copied up to the LSN under the
//!    lock, the files listed again and checked against the catalog,
//!    [`fix_ddl`] (markers and `.new` copies, see [`super::ddl`]) and the
//!    non-InnoDB files. With [`DdlLock::Full`] or FTWRL: [`block_ddl`],
//!    [`list_files`] (under BLOCK_DDL nothing appears or vanishes; checked
//!    against the server's catalog), [`bulk_copy`] (InnoDB and, except
//!    with FTWRL, the non-InnoDB files, while the follower is watched).
//! 4. [`copy_under_ftwrl`] (`--lock=ftwrl` only), [`block_commit`] (the
//!    consistent point: last files, binlog position, LSN, the follower's
//!    end), [`account_for_redo`], [`release_locks`].
//! 5. [`super::metadata::write_all`].
//!
//! [`locked_copy`] wraps 3–5 in `--safe-slave-backup`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::progress::{human, Progress};
use super::{catalog, datafiles, ddl, load, metadata, redo};
use super::{BackupPlan, BackupReport, DdlLock, Error, LockMode};
use crate::format::links::Link;
use crate::format::metadata::{GaleraInfo, SlaveInfo};
use crate::format::path::RelPath;
use crate::innodb::Lsn;
use crate::mysql::{BinlogPosition, LockPolicy, ReplicaState, ServerInfo, Session};
use crate::sched::Bulk;
use crate::sink::GraphInput;

/// The session that holds the locks, with the plan's lock mode and policy.
struct Locker<'a> {
    s: &'a mut Session,
    mode: Option<LockMode>,
    policy: &'a LockPolicy,
}

/// What the locked part of a backup works with.
pub(super) struct CopyCtx<'a> {
    pub(super) plan: &'a BackupPlan,
    pub(super) input: &'a GraphInput,
    pub(super) progress: &'a Arc<Progress>,
    pub(super) info: &'a ServerInfo,
    pub(super) start_time: chrono::DateTime<chrono::Local>,
    pub(super) exec: &'a Bulk,
    /// The server's activity before the backup read anything.
    pub(super) before: Option<(std::time::Instant, crate::mysql::Activity)>,
}

/// Steps 1 and 2, then the locked part; locks are released on failure.
pub(super) async fn body(
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
    // The pacing's reference: what the server runs before we read a byte.
    let before = if plan.pacing.is_some() {
        s.activity()
            .await
            .ok()
            .map(|a| (std::time::Instant::now(), a))
    } else {
        None
    };
    if info.var("wsrep_on") == Some("ON") {
        // A Galera node: our status reads must not wait for the cluster
        // (wsrep_sync_wait) while we hold the backup locks (as mariabackup).
        s.execute("SET SESSION wsrep_sync_wait=0").await?;
    }
    let log_keys = encrypted_log_keys(&info, progress);
    progress.phase(
        "connect",
        &format!(
            "connected to {} ({}), datadir {}",
            s.version().text,
            plan.conn.describe(),
            info.datadir.display()
        ),
    );
    // Redo follower first: the log must be followed from the checkpoint before any page is read.
    let log_path = info.redo_log_dir().join("ib_logfile0");
    let follower = redo::Follower::start(
        &log_path,
        input,
        redo::FollowerOptions {
            interval: plan.log_copy_interval,
            warn_percent: plan.redo_warn_percent,
            conn: plan.conn.clone(),
            spool_dir: plan.tmpdir.clone(),
            spool_memory: plan.redo_spool_memory,
            log_keys,
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
        before,
    };
    let r = locked_copy(&ctx, &mut s, follower).await;
    // An interrupted session was ended from another connection (its
    // locks went with it): nothing more to say on it.
    if matches!(r, Err(Error::Interrupted(_))) {
        return r;
    }
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

/// `--safe-slave-backup` around [`locked_copy_inner`]: the replica SQL
/// threads are stopped first and started again afterwards, also when the
/// backup fails (a failed backup must not leave replication stopped).
pub(super) async fn locked_copy(
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
    let result = tokio::select! {
        r = locked_copy_inner(ctx, s, follower) => r,
        sig = crate::interrupt::wait() => Err(crate::interrupt::Interrupted(sig).into()),
    };
    if matches!(result, Err(Error::Interrupted(_))) {
        after_interrupt(ctx, s.connection_id(), replica.as_ref()).await;
        return result;
    }
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

/// After a signal: the backup's session may be in the middle of a
/// statement (waiting for a lock, say), so it is ended from a fresh
/// connection with `KILL CONNECTION`, which releases its locks at once; a
/// replica SQL thread we stopped is started again from there.
async fn after_interrupt(ctx: &CopyCtx<'_>, id: u64, replica: Option<&ReplicaState>) {
    let progress = ctx.progress;
    let mut fresh = match Session::connect(&ctx.plan.conn).await {
        Ok(f) => f,
        Err(e) => {
            progress.warn(&format!(
                "interrupted: cannot connect to end the backup's session {id} ({e}); its locks go when the process exits{}",
                if replica.is_some_and(|r| !r.stopped_sql_threads.is_empty()) {
                    "; run START SLAVE SQL_THREAD"
                } else {
                    ""
                }
            ));
            return;
        }
    };
    match fresh.execute(&format!("KILL CONNECTION {id}")).await {
        Ok(()) => progress.line(&format!(
            "interrupted: the backup's session {id} was ended, its locks released"
        )),
        Err(e) => progress.warn(&format!("interrupted: KILL CONNECTION {id} failed: {e}")),
    }
    if let Some(r) = replica.filter(|r| !r.stopped_sql_threads.is_empty()) {
        match fresh.restart_replica_sql(r).await {
            Ok(()) => progress.line("replica SQL thread started again"),
            Err(e) => progress.warn(&format!(
                "could not start the replica SQL thread again after the interruption ({e}); run START SLAVE SQL_THREAD"
            )),
        }
    }
    let _ = fresh.close().await;
}

/// Steps 3 to 5 under the plan's locks.
async fn locked_copy_inner(
    ctx: &CopyCtx<'_>,
    s: &mut Session,
    follower: redo::Follower,
) -> Result<BackupReport, Error> {
    let mut lk = Locker {
        s,
        mode: ctx.plan.lock,
        policy: &ctx.plan.policy,
    };
    if lk.mode == Some(LockMode::BackupStage) && ctx.plan.ddl_lock == DdlLock::Short {
        return short_lock_copy(ctx, &mut lk, follower).await;
    }
    // 3. BLOCK_DDL, the file list, the bulk copy.
    block_ddl(ctx, &mut lk).await?;
    let ddl_locked_at = Instant::now();
    let (inv, links) = list_files(ctx, &mut lk).await?;
    add_totals(
        ctx.progress,
        [&inv.innodb, &inv.nontx_ddl, &inv.nontx_commit],
    );
    let copied = bulk_copy(ctx, lk.mode, inv.innodb, inv.nontx_ddl, follower, false).await?;
    // 4. The consistent point.
    if lk.mode == Some(LockMode::Ftwrl) {
        copy_under_ftwrl(ctx, &mut lk, &copied.limit).await?;
    }
    let commit = block_commit(
        ctx,
        &mut lk,
        inv.nontx_commit,
        &copied.limit,
        copied.follower,
    )
    .await?;
    let mut report = BackupReport {
        commit_lock: commit.locked_at.elapsed(),
        ddl_lock: ddl_locked_at.elapsed(),
        pacing: copied.pacing.clone(),
        ..BackupReport::default()
    };
    write_pending_metas(ctx, &copied.files, &commit.redo.tracker).await?;
    if lk.mode == Some(LockMode::BackupStage) {
        let t = &commit.redo.tracker;
        let in_backup = copied
            .files
            .iter()
            .filter_map(|(rel, f)| t.resolve(rel, f.space))
            .collect();
        account_for_redo(ctx, &commit, &in_backup)?;
    }
    release_locks(ctx, &mut lk, &commit).await?;
    // 5. Metadata.
    metadata::write_all(ctx, &commit, links, &mut report).await?;
    Ok(report)
}

/// Steps 3 to 5 with the short DDL lock ([`DdlLock::Short`]).
async fn short_lock_copy(
    ctx: &CopyCtx<'_>,
    lk: &mut Locker<'_>,
    follower: redo::Follower,
) -> Result<BackupReport, Error> {
    let (info, progress) = (ctx.info, ctx.progress);
    // 3a. START: DDL and writes go on.
    let asked = Instant::now();
    lk.s.stage_start(lk.policy).await?;
    progress.lock_taken(
        "BACKUP STAGE START",
        asked.elapsed(),
        "BACKUP STAGE START taken: DDL and writes go on; InnoDB DDL during the copy is tracked through the redo log",
    );
    // 3b. The InnoDB files as they are now, copied while DDL runs.
    let mut inv = datafiles::inventory(&layout(info))?;
    let cat = catalog::read(lk.s).await?;
    add_remote_tablespaces(&mut inv, &cat, &info.datadir);
    exclude(ctx, &mut inv);
    add_totals(progress, [&inv.innodb]);
    let bulk = bulk_copy(ctx, lk.mode, inv.innodb, Vec::new(), follower, true).await?;
    let Copied {
        mut follower,
        limit,
        files: copied,
        pacing,
    } = bulk;
    // 3c. FLUSH, BLOCK_DDL; the redo up to the lock tells what DDL ran.
    if !lk.policy.ftwrl_wait_timeout.is_zero() {
        progress.line(&format!(
            "waiting up to {}s for queries running longer than {}s before locking (--ftwrl-wait-timeout)",
            lk.policy.ftwrl_wait_timeout.as_secs(),
            lk.policy.ftwrl_wait_threshold
        ));
    }
    let asked = Instant::now();
    lk.s.stage_flush(lk.policy).await?;
    lk.s.stage_block_ddl(lk.policy).await?;
    let ddl_locked_at = Instant::now();
    progress.lock_taken("BACKUP STAGE BLOCK_DDL", asked.elapsed(), "BACKUP STAGE BLOCK_DDL taken: DDL and writes to non-transactional tables wait; InnoDB DML continues");
    let lsn = Lsn(lk.s.innodb_lsn().await?.current);
    let tracker = follower.sync_to(lsn).await?;
    // 3d. The files again, still now; checked against the catalog.
    let (inv, links) = list_files(ctx, lk).await?;
    let fixed = fix_ddl(ctx, &copied, &inv.innodb, &tracker, &limit).await?;
    add_totals(progress, [&inv.nontx_ddl, &inv.nontx_commit]);
    progress.phase(
        "copy_non_innodb",
        &format!("copying {} non-InnoDB files", inv.nontx_ddl.len()),
    );
    copy_all(
        inv.nontx_ddl,
        ctx.plan.parallel,
        ctx.input,
        progress,
        &limit,
        ctx.exec,
    )
    .await?;
    // 4. The consistent point.
    let commit = block_commit(ctx, lk, inv.nontx_commit, &limit, follower).await?;
    let mut report = BackupReport {
        commit_lock: commit.locked_at.elapsed(),
        ddl_lock: ddl_locked_at.elapsed(),
        pacing,
        ..BackupReport::default()
    };
    write_pending_metas(ctx, &copied, &commit.redo.tracker).await?;
    account_for_redo(ctx, &commit, &fixed)?;
    release_locks(ctx, lk, &commit).await?;
    // 5. Metadata.
    metadata::write_all(ctx, &commit, links, &mut report).await?;
    Ok(report)
}

/// Step 3d, short DDL lock: compare the InnoDB files copied in bulk with
/// the ones present under BLOCK_DDL (by tablespace id, see [`ddl::plan`]),
/// write the `.del` and `.ren` markers and copy what is new as `.new`.
/// Returns the tablespace ids the backup holds once prepare has applied
/// the markers.
async fn fix_ddl(
    ctx: &CopyCtx<'_>,
    copied: &[(String, datafiles::Copied)],
    present: &[datafiles::Source],
    tracker: &ddl::Tracker,
    limit: &datafiles::RateLimit,
) -> Result<std::collections::BTreeSet<u32>, Error> {
    use std::collections::BTreeMap;
    let progress = ctx.progress;
    let is_ibd = |rel: &str| rel.ends_with(".ibd");
    // The system and undo tablespaces are named by the server's variables,
    // not by DDL: they are in the backup whatever happens.
    let mut in_backup: std::collections::BTreeSet<u32> = copied
        .iter()
        .filter(|(rel, _)| !is_ibd(rel))
        .filter_map(|(_, f)| f.space)
        .collect();
    let copied_by_rel: BTreeMap<&str, &datafiles::Copied> = copied
        .iter()
        .filter(|(rel, _)| is_ibd(rel))
        .map(|(rel, f)| (rel.as_str(), f))
        .collect();
    let copied_files: Vec<ddl::CopiedFile> = copied_by_rel
        .iter()
        .map(|(rel, f)| ddl::CopiedFile {
            rel: (*rel).to_owned(),
            space: tracker.resolve(rel, f.space),
        })
        .collect();
    let copied_ids: BTreeMap<&str, Option<u32>> = copied_files
        .iter()
        .map(|c| (c.rel.as_str(), c.space))
        .collect();
    // Under the lock, so cheap: a stat per file, and page 0 read only for a
    // file that is not the very one copied (another inode, or DDL named it).
    let sources: BTreeMap<String, &datafiles::Source> = present
        .iter()
        .filter(|s| is_ibd(s.rel.as_str()))
        .map(|s| (s.rel.as_str().to_owned(), s))
        .collect();
    type Probe = (
        String,
        std::path::PathBuf,
        Option<(u64, Option<u32>)>,
        Option<u32>,
    );
    let probe: Vec<Probe> = sources
        .iter()
        .map(|(rel, s)| {
            let id = copied_ids.get(rel.as_str()).copied().flatten();
            let copied = copied_by_rel
                .get(rel.as_str())
                .filter(|_| !tracker.touched(rel, id))
                .map(|c| (c.ino, id));
            (rel.clone(), s.abs.clone(), copied, tracker.id_for_name(rel))
        })
        .collect();
    let now = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        probe
            .into_iter()
            .map(|(rel, abs, copied, redo_id)| {
                let ino = std::fs::metadata(&abs)
                    .map_err(|source| Error::Io {
                        path: abs.display().to_string(),
                        source,
                    })?
                    .ino();
                Ok(match copied {
                    Some((c_ino, space)) if c_ino == ino => ddl::Present {
                        rel,
                        space,
                        same_file_copied: true,
                    },
                    _ => {
                        let (space, _) = datafiles::read_space_id(&abs)?;
                        ddl::Present {
                            space: space.or(redo_id),
                            rel,
                            same_file_copied: false,
                        }
                    }
                })
            })
            .collect::<Result<Vec<_>, Error>>()
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    in_backup.extend(now.iter().filter_map(|p| p.space));
    let fx = ddl::plan(&copied_files, &now);
    if fx.is_empty() {
        progress.line(&format!(
            "DDL tracking: no InnoDB tablespace to mark or copy again ({} create/rename/delete records in the copied redo)",
            tracker.ddl().len()
        ));
        return Ok(in_backup);
    }
    progress.line(&format!(
        "DDL tracking: during the copy {} tablespaces were dropped, {} renamed, {} created or rebuilt; marked and copied again under BLOCK_DDL",
        fx.del.len(),
        fx.ren.len(),
        fx.new.len()
    ));
    const SHOWN: usize = 20;
    for (lsn, op) in tracker.ddl().iter().take(SHOWN) {
        progress.line(&format!("DDL tracking: {op} at LSN {lsn}"));
    }
    if tracker.ddl().len() > SHOWN {
        progress.line(&format!(
            "DDL tracking: {} more file records",
            tracker.ddl().len() - SHOWN
        ));
    }
    let rel = |s: String| RelPath::new(&s).map_err(|e| Error::Layout(format!("{s}: {e}")));
    for d in &fx.del {
        write_small(ctx.input, rel(ddl::marker(d, "del"))?, Vec::new()).await?;
    }
    for (from, to) in &fx.ren {
        write_small(
            ctx.input,
            rel(ddl::marker(from, "ren"))?,
            ddl::ren_target(to).into_bytes(),
        )
        .await?;
    }
    let mut again = Vec::new();
    for n in &fx.new {
        let Some(src) = sources.get(n.as_str()) else {
            continue;
        };
        again.push(datafiles::Source {
            abs: src.abs.clone(),
            rel: rel(ddl::marker(n, "new"))?,
            size: src.size,
            innodb: Some(datafiles::InnoKind::Tablespace),
        });
    }
    add_totals(progress, [&again]);
    copy_all(
        again,
        ctx.plan.parallel,
        ctx.input,
        progress,
        limit,
        ctx.exec,
    )
    .await?;
    Ok(in_backup)
}

/// The `.meta` files of incremental copies whose tablespace id was in no
/// page: the redo's file records name it (the tablespace was created after
/// the checkpoint the copied log starts at).
async fn write_pending_metas(
    ctx: &CopyCtx<'_>,
    copied: &[(String, datafiles::Copied)],
    tracker: &ddl::Tracker,
) -> Result<(), Error> {
    for (rel, f) in copied {
        let Some((page_size, zip)) = f.meta_pending else {
            continue;
        };
        let space = tracker.resolve(rel, None).ok_or_else(|| {
                Error::Incomplete(format!(
                    "{rel}: its page 0 was never written and the copied redo log names no tablespace there; \
                     the incremental's .meta cannot name the tablespace id (take the incremental again)"
                ))
            })?;
        let r = RelPath::new(rel).map_err(|e| Error::Layout(format!("{rel}: {e}")))?;
        datafiles::write_delta_meta(ctx.input, &r, page_size, zip, space).await?;
    }
    Ok(())
}

/// Write one small file into the graph.
async fn write_small(input: &GraphInput, rel: RelPath, data: Vec<u8>) -> Result<(), Error> {
    let mut w = input.open(crate::sink::FileMeta::new(rel)).await?;
    if !data.is_empty() {
        w.write(bytes::Bytes::from(data)).await?;
    }
    w.close().await?;
    Ok(())
}

/// Step 4, before the locks are released: every tablespace a file record
/// of the copied redo names is in the backup or dropped by that redo, or
/// recovery would stop at it; the backup fails naming each one.
fn account_for_redo(
    ctx: &CopyCtx<'_>,
    c: &CommitPoint,
    in_backup: &std::collections::BTreeSet<u32>,
) -> Result<(), Error> {
    // A tablespace a partial backup's filter leaves out is accounted for:
    // prepare ignores the redo of tablespaces the backup does not hold.
    let named = c.redo.tracker.named();
    let missing = ddl::unaccounted_where(&c.redo.tracker, in_backup, |id| {
        ctx.plan
            .filter
            .as_ref()
            .is_some_and(|f| named.get(&id).is_some_and(|name| f.skips(name)))
    });
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Incomplete(missing.join("; ")))
}

/// Step 3a: wait for long queries if asked, then `BACKUP STAGE START`,
/// `FLUSH`, `BLOCK_DDL` (with `--lock=backup-stage`).
async fn block_ddl(ctx: &CopyCtx<'_>, lk: &mut Locker<'_>) -> Result<(), Error> {
    let progress = ctx.progress;
    if lk.mode.is_some() && !lk.policy.ftwrl_wait_timeout.is_zero() {
        progress.line(&format!(
            "waiting up to {}s for queries running longer than {}s before locking (--ftwrl-wait-timeout)",
            lk.policy.ftwrl_wait_timeout.as_secs(),
            lk.policy.ftwrl_wait_threshold
        ));
    }
    if lk.mode == Some(LockMode::BackupStage) {
        let asked = Instant::now();
        lk.s.stage_start(lk.policy).await?;
        lk.s.stage_flush(lk.policy).await?;
        lk.s.stage_block_ddl(lk.policy).await?;
        progress.lock_taken(
            "BACKUP STAGE BLOCK_DDL",
            asked.elapsed(),
            "BACKUP STAGE BLOCK_DDL taken: DDL and writes to non-transactional tables wait; InnoDB DML continues",
        );
    }
    Ok(())
}

/// Where the server keeps its files (from its variables).
fn layout(info: &ServerInfo) -> datafiles::Layout<'_> {
    datafiles::Layout {
        datadir: &info.datadir,
        data_home: info.innodb_data_home_dir.as_deref(),
        data_file_path: &info.innodb_data_file_path,
        undo_dir: info.innodb_undo_directory.as_deref(),
        aria_log_dir: info.aria_log_dir_path.as_deref(),
    }
}

/// Step 3b: list the files under BLOCK_DDL, where no table can appear,
/// vanish or be renamed. Checks them against the server's catalog (with
/// FTWRL that check waits for the lock, in [`copy_under_ftwrl`]) and
/// takes out the places outside the datadir (recorded in step 5).
async fn list_files(
    ctx: &CopyCtx<'_>,
    lk: &mut Locker<'_>,
) -> Result<(datafiles::Inventory, Vec<Link>), Error> {
    let (info, progress) = (ctx.info, ctx.progress);
    let mut inv = datafiles::inventory(&layout(info)).map_err(|e| unprotected(e, lk.mode))?;
    let cat = catalog::read(lk.s).await?;
    add_remote_tablespaces(&mut inv, &cat, &info.datadir);
    exclude(ctx, &mut inv);
    if lk.mode != Some(LockMode::Ftwrl) {
        ensure_complete(ctx, &inv, &cat)?;
    }
    let links = std::mem::take(&mut inv.links);
    if !links.is_empty() {
        progress.line(&format!(
            "{} files or directories outside the datadir (symlinks, DATA DIRECTORY tables): stored by content, their places recorded in {}",
            links.len(),
            crate::format::links::LINKS_NAME
        ));
    }
    Ok((inv, links))
}

/// A partial backup: take the files its filter leaves out of `inv`,
/// before any of them is opened.
fn exclude(ctx: &CopyCtx<'_>, inv: &mut datafiles::Inventory) {
    let Some(f) = &ctx.plan.filter else {
        return;
    };
    let ex = f.retain(inv);
    ctx.progress.line(&format!(
        "partial backup ({}): {} files ({}) left out, not read",
        f.spec().describe(),
        ex.files,
        human(ex.bytes)
    ));
}

/// Add files to the progress totals.
fn add_totals<const N: usize>(progress: &Progress, lists: [&Vec<datafiles::Source>; N]) {
    let files = lists.iter().map(|l| l.len() as u64).sum();
    let bytes = lists.iter().flat_map(|l| l.iter()).map(|s| s.size).sum();
    progress.add_total(files, bytes);
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
    ctx: &CopyCtx<'_>,
    inv: &datafiles::Inventory,
    cat: &catalog::Catalog,
) -> Result<(), Error> {
    let (datadir, progress) = (&ctx.info.datadir, ctx.progress);
    let mut expected = catalog::expected_files(cat, datadir);
    if let Some(f) = &ctx.plan.filter {
        // A partial backup holds only what its filter keeps.
        expected.retain(|e| !f.skips(&e.rel));
    }
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
    match &ctx.plan.filter {
        None => progress.line(&format!(
            "catalog check: {} InnoDB tablespaces and {} tables of the server, every file in the backup",
            cat.tablespaces.len(),
            cat.tables.len()
        )),
        Some(f) => progress.line(&format!(
            "catalog check: of {} InnoDB tablespaces and {} tables of the server, every file the filter keeps is in the backup ({})",
            cat.tablespaces.len(),
            cat.tables.len(),
            f.spec().describe()
        )),
    }
    Ok(())
}

/// What the bulk copy leaves for the steps after it.
struct Copied {
    follower: redo::Follower,
    limit: Arc<datafiles::RateLimit>,
    /// Each file copied (its name in the backup, what the copy learnt);
    /// files that vanished before they could be opened are not here.
    files: Vec<(String, datafiles::Copied)>,
    /// What the pacing did (None: pacing off).
    pacing: Option<String>,
}

/// Step 3c: the InnoDB files (page-validated) and, under BLOCK_DDL or with
/// no lock, the non-InnoDB files, with `--parallel` workers; the redo
/// follower is polled so that its failure stops the copy. With
/// `vanish_ok` (DDL running) a file gone before it could be opened is
/// noted and left out: the DDL fix-up under BLOCK_DDL accounts for it.
async fn bulk_copy(
    ctx: &CopyCtx<'_>,
    mode: Option<LockMode>,
    innodb: Vec<datafiles::Source>,
    mut nontx_ddl: Vec<datafiles::Source>,
    follower: redo::Follower,
    vanish_ok: bool,
) -> Result<Copied, Error> {
    let &CopyCtx {
        plan,
        input,
        progress,
        exec,
        ..
    } = ctx;
    if mode == Some(LockMode::Ftwrl) || vanish_ok {
        progress.phase(
            "copy_innodb",
            &format!(
                "copying {} InnoDB files with {} workers",
                innodb.len(),
                plan.parallel
            ),
        );
    } else {
        progress.phase(
            "copy_innodb",
            &format!(
                "copying {} InnoDB and {} non-InnoDB files with {} workers",
                innodb.len(),
                nontx_ddl.len(),
                plan.parallel
            ),
        );
    }
    let sys_format = innodb
        .iter()
        .find(|s| s.innodb == Some(datafiles::InnoKind::SystemFirst))
        .map(|s| read_format(&s.abs))
        .transpose()?;
    let delta = plan.incremental_lsn.map(|from_lsn| datafiles::DeltaSpec {
        from_lsn,
        page_size: usize::try_from(ctx.info.innodb_page_size).unwrap_or(16384),
    });
    if delta.is_some()
        && innodb
            .iter()
            .any(|s| s.innodb == Some(datafiles::InnoKind::SystemNext))
    {
        return Err(Error::Layout(
            "incremental backups of a system tablespace in several files (innodb_data_file_path) are not supported yet".into(),
        ));
    }
    let limit = Arc::new(datafiles::RateLimit::new(plan.max_rate));
    let monitor = load::Monitor::start(
        plan.conn.clone(),
        limit.clone(),
        exec.clone(),
        progress.clone(),
        plan.pacing,
        ctx.before,
    );
    // Under BLOCK_DDL (or with no lock at all) the non-transactional files
    // are already still, so the same workers copy them too, interleaved with
    // the InnoDB files by size (largest first, so no worker is left with one
    // big file at the end). With FTWRL they wait for that lock.
    let mut first = innodb;
    if mode != Some(LockMode::Ftwrl) {
        first.append(&mut nontx_ddl);
        first.sort_by_key(|s| std::cmp::Reverse(s.size));
    }
    let queue = Arc::new(tokio::sync::Mutex::new(
        first.into_iter().collect::<VecDeque<_>>(),
    ));
    let done = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.parallel {
        let q = queue.clone();
        let input = input.clone();
        let p = progress.clone();
        let limit = limit.clone();
        let exec = exec.clone();
        let done = done.clone();
        workers.spawn(async move {
            loop {
                let next = q.lock().await.pop_front();
                let Some(src) = next else {
                    return Ok::<(), Error>(());
                };
                let rel = src.rel.as_str().to_owned();
                let abs = src.abs.clone();
                match datafiles::copy(src, &input, &p, sys_format, &limit, &exec, delta).await {
                    Ok(facts) => {
                        if let Ok(mut d) = done.lock() {
                            d.push((rel, facts));
                        }
                    }
                    Err(Error::Io { source, .. })
                        if vanish_ok && source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        p.line(&format!(
                            "{rel}: gone before it was copied ({}); DDL ran, the fix-up under BLOCK_DDL accounts for it",
                            abs.display()
                        ));
                        p.file_done();
                    }
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound
                            && catalog::is_intermediate(&rel) =>
                    {
                        // Under the DDL lock no DDL completes, but one that
                        // began before it and then timed out waiting for it
                        // drops its intermediate tablespace on the way out.
                        p.line(&format!(
                            "{rel}: gone before it was copied ({}): the intermediate file of a DDL statement that was abandoned \
                             (it timed out waiting for the DDL lock); no table of the server lives in it",
                            abs.display()
                        ));
                        p.file_done();
                    }
                    Err(e) => return Err(e),
                }
            }
        });
    }
    let follower = watch_copy(&mut workers, follower, mode).await?;
    let files = std::mem::take(
        &mut *done
            .lock()
            .map_err(|_| Error::Task("copy results poisoned".into()))?,
    );

    // From here on the server waits for us (non-transactional writes, then
    // commits): full speed, nothing more in the idle class.
    let summary = monitor.stop().await;
    let pacing = plan.pacing.map(|_| summary.to_string());
    if let Some(p) = &pacing {
        progress.line(&format!("pacing: {p}"));
    }
    limit.set_paced(None);
    exec.escalate();
    Ok(Copied {
        follower,
        limit,
        files,
        pacing,
    })
}

/// Wait for the copy workers while polling the follower; the first real
/// error wins (a follower failure explains a closed graph better than a
/// copier's "closed").
async fn watch_copy(
    workers: &mut tokio::task::JoinSet<Result<(), Error>>,
    follower: redo::Follower,
    mode: Option<LockMode>,
) -> Result<redo::Follower, Error> {
    let mut copy_err: Option<Error> = None;
    let mut follower = Some(follower);
    loop {
        tokio::select! {
            r = workers.join_next() => {
                match r {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        let e = unprotected(e, mode);
                        if copy_err.as_ref().map_or(true, Error::is_closed) {
                            copy_err = Some(e);
                        }
                        workers.abort_all();
                    }
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(Err(e)) => {
                        copy_err = Some(Error::Task(e.to_string()));
                        workers.abort_all();
                    }
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
        if e.is_closed() && follower.has_failed() {
            if let Some(fe) = follower.take_error().await {
                return Err(fe);
            }
        } else {
            follower.abort();
        }
        return Err(e);
    }
    Ok(follower)
}

/// Step 4, `--lock=ftwrl`: the non-InnoDB files wait for
/// `FLUSH TABLES WITH READ LOCK`. Tables may have been created or dropped
/// during the unlocked InnoDB copy: they are listed again under the lock,
/// and the catalog is checked against what the backup holds.
async fn copy_under_ftwrl(
    ctx: &CopyCtx<'_>,
    lk: &mut Locker<'_>,
    limit: &datafiles::RateLimit,
) -> Result<(), Error> {
    let (info, progress) = (ctx.info, ctx.progress);
    let asked = Instant::now();
    lk.s.flush_tables_with_read_lock(lk.policy).await?;
    progress.lock_taken(
        "FLUSH TABLES WITH READ LOCK",
        asked.elapsed(),
        "FLUSH TABLES WITH READ LOCK taken",
    );
    let mut again = datafiles::inventory(&layout(info))?;
    let cat = catalog::read(lk.s).await?;
    add_remote_tablespaces(&mut again, &cat, &info.datadir);
    exclude(ctx, &mut again);
    ensure_complete(ctx, &again, &cat)?;
    let nontx = again.nontx_ddl;
    progress.phase(
        "copy_non_innodb",
        &format!("copying {} non-InnoDB files", nontx.len()),
    );
    copy_all(
        nontx,
        ctx.plan.parallel,
        ctx.input,
        progress,
        limit,
        ctx.exec,
    )
    .await
    .map(|_| ())
}

/// The consistent point, as the metadata records it.
pub(super) struct CommitPoint {
    /// When BLOCK_COMMIT (or its FTWRL equivalent) was taken.
    pub(super) locked_at: Instant,
    /// Binlog position and GTID (with a lock and the binlog on).
    pub(super) binlog: Option<BinlogPosition>,
    /// `--slave-info`: the replication source position.
    pub(super) slave: Option<SlaveInfo>,
    /// `--galera-info` on a Galera node: its state under the lock.
    pub(super) galera: Option<GaleraInfo>,
    /// The checkpoint LSN the backup ends at.
    pub(super) to_lsn: Lsn,
    /// The follower's end.
    pub(super) redo: redo::FollowerReport,
}

/// Step 4: `BLOCK_COMMIT`; the Aria log and system tables, the CSV log
/// tables; the binlog position and GTID; the InnoDB LSN; `FLUSH ENGINE
/// LOGS`; the follower copies up to that LSN and stops.
async fn block_commit(
    ctx: &CopyCtx<'_>,
    lk: &mut Locker<'_>,
    nontx_commit: Vec<datafiles::Source>,
    limit: &datafiles::RateLimit,
    follower: redo::Follower,
) -> Result<CommitPoint, Error> {
    let &CopyCtx {
        plan,
        input,
        progress,
        info,
        exec,
        ..
    } = ctx;
    let locked_at = Instant::now();
    if lk.mode == Some(LockMode::BackupStage) {
        lk.s.stage_block_commit(lk.policy).await?;
        progress.lock_taken(
            "BACKUP STAGE BLOCK_COMMIT",
            locked_at.elapsed(),
            &format!(
                "BACKUP STAGE BLOCK_COMMIT taken; copying {} Aria/log-table files",
                nontx_commit.len()
            ),
        );
    }
    copy_all(nontx_commit, plan.parallel, input, progress, limit, exec).await?;
    // mariabackup 10.11's order: the replica position, the Galera state
    // (which may rotate the binlog), then the binlog position.
    let galera = if plan.galera_info {
        galera_state(ctx, lk).await?
    } else {
        None
    };
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
    progress.phase(
        "redo_catchup",
        &format!("waiting for the redo copy to reach LSN {target}"),
    );
    let redo = follower.finish(target).await?;
    let to_lsn = lsn
        .last_checkpoint
        .map_or(redo.server_checkpoint, Lsn)
        .min(redo.last_lsn);
    Ok(CommitPoint {
        locked_at,
        binlog,
        slave,
        galera,
        to_lsn,
        redo,
    })
}

/// `--galera-info`, under BLOCK_COMMIT (commits blocked, so the seqno is
/// the backup's): the node's state, and as mariabackup 10.11 does, with
/// the binlog on and a GTID binlog state, `FLUSH BINARY LOGS` and the new
/// (current) binlog file copied into the backup's root, so a node started
/// on the backup keeps the cluster's GTID state. Not a Galera node: a
/// warning and no file, as mariabackup.
async fn galera_state(ctx: &CopyCtx<'_>, lk: &mut Locker<'_>) -> Result<Option<GaleraInfo>, Error> {
    let Some(g) = lk.s.galera_state().await? else {
        ctx.progress.warn(
            "--galera-info: the server is not a Galera node (no wsrep_local_state_uuid/wsrep_last_committed \
             in SHOW STATUS); no xtrabackup_galera_info written",
        );
        return Ok(None);
    };
    ctx.progress.line(&format!(
        "Galera state {}:{} (domain {})",
        g.uuid,
        g.seqno,
        g.domain_id.unwrap_or(0)
    ));
    let info = ctx.info;
    let state =
        lk.s.query_value("SELECT @@global.gtid_binlog_state")
            .await?
            .unwrap_or_default();
    if info.log_bin && !state.trim().is_empty() {
        lk.s.execute("FLUSH BINARY LOGS").await?;
        let file =
            lk.s.binlog_position()
                .await?
                .map(|b| b.file)
                .ok_or_else(|| {
                    Error::Layout(
                        "--galera-info: SHOW MASTER STATUS is empty after FLUSH BINARY LOGS".into(),
                    )
                })?;
        let dir = info
            .log_bin_basename
            .as_deref()
            .and_then(std::path::Path::parent)
            .map_or_else(|| info.datadir.clone(), std::path::Path::to_path_buf);
        let path = dir.join(&file);
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        // Just rotated and commits are blocked: a header and the GTID list.
        let len = tokio::fs::metadata(&path).await.map_err(io)?.len();
        if len > MAX_ROTATED_BINLOG {
            return Err(Error::Layout(format!(
                "--galera-info: {} is {len} bytes right after FLUSH BINARY LOGS (limit {MAX_ROTATED_BINLOG})",
                path.display()
            )));
        }
        let data = tokio::fs::read(&path).await.map_err(io)?;
        let rel = RelPath::new(&file)
            .map_err(|e| Error::Layout(format!("binlog file name {file:?}: {e}")))?;
        write_small(ctx.input, rel, data).await?;
    }
    Ok(Some(g))
}

/// The largest binlog file `--galera-info` copies right after rotating it.
const MAX_ROTATED_BINLOG: u64 = 64 << 20;

/// Step 4, end: `BACKUP STAGE END` or `UNLOCK TABLES`; without BLOCK_DDL,
/// InnoDB DDL seen in the redo fails the backup.
async fn release_locks(
    ctx: &CopyCtx<'_>,
    lk: &mut Locker<'_>,
    c: &CommitPoint,
) -> Result<(), Error> {
    match lk.mode {
        Some(LockMode::BackupStage) => {
            lk.s.stage_end().await?;
        }
        Some(LockMode::Ftwrl) => lk.s.unlock_tables().await?,
        None => {}
    }
    ctx.progress.locks_released(&format!(
        "locks released; redo copied LSN {} .. {}",
        c.redo.first_lsn, c.redo.last_lsn
    ));
    if lk.mode != Some(LockMode::BackupStage) && !c.redo.tracker.ddl().is_empty() {
        return Err(Error::UnprotectedDdl(c.redo.tracker.describe().join("; ")));
    }
    Ok(())
}

/// Copy files with up to `parallel` copies at a time (the reads and any
/// compression run on the bulk executor's threads); returns what each
/// copy learnt, by name in the backup.
async fn copy_all(
    mut files: Vec<datafiles::Source>,
    parallel: usize,
    input: &GraphInput,
    progress: &Arc<Progress>,
    limit: &datafiles::RateLimit,
    exec: &Bulk,
) -> Result<Vec<(String, datafiles::Copied)>, Error> {
    use futures::{StreamExt, TryStreamExt};
    files.sort_by_key(|s| std::cmp::Reverse(s.size));
    futures::stream::iter(files)
        .map(|src| async move {
            let rel = src.rel.as_str().to_owned();
            let facts = datafiles::copy(src, input, progress, None, limit, exec, None).await?;
            Ok::<_, Error>((rel, facts))
        })
        .buffer_unordered(parallel.max(1))
        .try_collect()
        .await
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

/// The `file_key_management` keys of a server whose redo log is encrypted,
/// when they can be read here (the key file as the server names it,
/// relative names against its datadir). The backup can go on without them
/// (the log is copied and validated without keys), but cannot then tell
/// which tablespace a DDL during the copy touched: it says so now, and
/// fails if such a DDL happens.
fn encrypted_log_keys(
    info: &ServerInfo,
    progress: &Progress,
) -> Option<crate::mysql::keys::FileKeys> {
    use crate::mysql::keys::FileKeySettings;
    if !info.innodb_encrypt_log {
        return None;
    }
    let Some(settings) = FileKeySettings::from_lookup(|k| info.var(k)) else {
        progress.warn(
            "innodb_encrypt_log=ON and the server's key-management plugin is not file_key_management: \
             the encrypted redo log is copied and validated without keys, but a DDL during the backup will fail it",
        );
        return None;
    };
    match settings.load(&info.datadir) {
        Ok(k) => {
            progress.line(&format!(
                "redo log is encrypted: file records are read with the keys of {}",
                k.path.display()
            ));
            Some(k)
        }
        Err(e) => {
            progress.warn(&format!(
                "innodb_encrypt_log=ON and {e}: the encrypted redo log is copied and validated \
                 without keys, but a DDL during the backup will fail it"
            ));
            None
        }
    }
}

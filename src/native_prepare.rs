//! Native prepare: apply a backup's `ib_logfile0` to its tablespaces in
//! Rust, without `mariadbd`, the way `mariabackup --prepare` does (redo
//! only; the server rolls back in-flight transactions when it starts).
//!
//! Steps:
//! 1. Check the directory is an unprepared full backup and read its
//!    geometry (`xtrabackup_checkpoints`, `backup-my.cnf`).
//! 2. Map space ids to files: the system tablespace files of
//!    `innodb_data_file_path`, `undoNNN`, and every `*.ibd` (page 0 says
//!    the space id and the page format).
//! 3. Pre-pass over the log from its checkpoint to `last_lsn`: validate and
//!    decode every mini-transaction, refuse (before touching any file)
//!    anything this applier cannot reproduce exactly, and collect the
//!    sizes page 0 records demand. The pages the records name are read
//!    ahead meanwhile, on a thread of their own ([`readahead`]: the device
//!    is otherwise idle while the CPU decodes).
//! 4. Apply pass: buffer decoded page records up to the memory budget,
//!    then apply them page by page (read, replay with the recovery rules of
//!    [`crate::innodb::apply`], stamp LSN and checksum, write), and
//!    continue.
//! 5. Replace `ib_logfile0` with the empty log mariabackup leaves
//!    (a checkpoint at `last_lsn - 16` and one FILE_CHECKPOINT mtr) and
//!    mark the backup `log-applied`.
//!
//! In both passes the log is read and its checksums verified on a thread
//! of its own ([`feed`]), ahead of the threads that decode it.
//!
//! DDL markers (`.del`, `.ren`, `.new`) must be applied by the caller
//! first; this function refuses a directory that still has them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::encrypt::mariadb::{Algorithm, KeyFile, LogKey};
use crate::encrypt::mariadb_page::{self as page_crypt, CryptData, SpaceKey};

use crate::error::{Classify, ErrorClass};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::innodb::apply::{
    self, decode_mtr_into, finish_page, recover_page_at, LoggedOp, PageId, PageOp, Record,
    Recovered, KIND_NAMES,
};
use crate::innodb::page::{parse_page0, PageFormat, FIL_PAGE_DATA, FSP_SIZE, FSP_SPACE_FLAGS};
use crate::innodb::redo::{
    self, build_backup_log_prefix, parse_log_prefix, scan_mtrs, Checkpoint, FileOp, LogGeometry,
    ScanStop, DEFAULT_BACKUP_CREATOR, MTR_SIZE_MAX, START_OFFSET,
};
use crate::innodb::{Lsn, PageNo};

mod feed;
mod readahead;

/// Errors of the native prepare.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory is not an unprepared full backup.
    #[error("{dir}: {reason}")]
    NotABackup {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// A metadata file or data file header is malformed.
    #[error("{path}: {reason}")]
    Metadata {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The redo log is unreadable or ends early.
    #[error("ib_logfile0: {0}")]
    Log(String),
    /// A record that the native applier refuses (nothing was written).
    #[error("record {what} in the mini-transaction at LSN {lsn} is not supported by the native prepare (nothing was changed)")]
    Unsupported {
        /// Start LSN of the mtr.
        lsn: Lsn,
        /// The record or case.
        what: String,
    },
    /// The keys of an encrypted backup are missing or wrong (nothing was
    /// changed): the message names the key id and the key file.
    #[error("{0}. Nothing was changed")]
    Key(String),
    /// Applying a record failed.
    #[error("applying the mini-transaction at LSN {lsn}: {source}")]
    Apply {
        /// Start LSN of the mtr (the first one for the page in the batch
        /// when the failure is found while replaying a page).
        lsn: Lsn,
        /// The cause.
        #[source]
        source: apply::Error,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::NotABackup { .. } | Error::Key(_) => ErrorClass::Usage,
            Error::Metadata { .. } | Error::Log(_) => ErrorClass::Corrupt,
            Error::Io { .. } => ErrorClass::Io,
            Error::Unsupported { .. } => ErrorClass::Failed,
            Error::Apply { source, .. } => source.class(),
        }
    }
}

type Result<T> = std::result::Result<T, Error>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Options.
#[derive(Clone, Debug)]
pub struct NativeOptions {
    /// Memory for buffered log records per batch, in bytes (mariabackup's
    /// `--use-memory`). At least 1 MiB is used.
    pub use_memory: u64,
    /// Threads applying a batch's pages (each thread takes a contiguous run
    /// of pages); at least 1.
    pub threads: usize,
    /// The keys of a backup of a server with data-at-rest encryption
    /// (`file_key_management`): encrypted redo records and pages are
    /// decrypted with them, and pages re-encrypted on write.
    pub keys: Option<Arc<Keys>>,
}

/// The `file_key_management` keys a native prepare decrypts with, and the
/// server's `innodb_encrypt_tables` (pages of tablespaces in the default
/// encryption mode are written encrypted only while it is on, as InnoDB
/// writes them; mariabackup reads it from `backup-my.cnf` too).
#[derive(Clone, Debug)]
pub struct Keys {
    /// The keys.
    pub keys: KeyFile,
    /// `file_key_management_encryption_algorithm`.
    pub algorithm: Algorithm,
    /// The key file (for messages).
    pub path: PathBuf,
    /// `innodb_encrypt_tables` is ON or FORCE.
    pub encrypt_tables: bool,
}

impl Default for NativeOptions {
    fn default() -> Self {
        NativeOptions {
            use_memory: 128 << 20,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keys: None,
        }
    }
}

/// What the native prepare did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Checkpoint LSN where applying started.
    pub start_lsn: u64,
    /// End LSN (the backup's `last_lsn`).
    pub end_lsn: u64,
    /// Mini-transactions read.
    pub mtrs: u64,
    /// Page records decoded.
    pub page_records: u64,
    /// Page records for tablespaces not in the backup (dropped), skipped.
    pub skipped_records: u64,
    /// Batches applied.
    pub batches: u64,
    /// Pages written.
    pub pages_written: u64,
    /// Pages whose records were all older than the page (not written).
    pub pages_unchanged: u64,
    /// Pages left freed (not written, as the server does): counted once per
    /// page whose last record is FREE_PAGE.
    pub pages_freed: u64,
    /// Files extended to the size page 0 records demand.
    pub files_extended: u64,
    /// Encrypted pages read and decrypted.
    pub pages_decrypted: u64,
    /// Pages encrypted on write.
    pub pages_encrypted: u64,
    /// Key ids of encrypted tablespaces that no encrypted page on disk (nor
    /// the log's checkpoint record) could check: all their pages came from
    /// the log, so a wrong key there goes unnoticed until the server reads
    /// them (as with mariabackup).
    pub unverified_key_ids: Vec<u32>,
    /// Count of each record kind seen.
    pub record_kinds: BTreeMap<&'static str, u64>,
    /// Files written or extended.
    pub touched: BTreeSet<PathBuf>,
    /// Time spent in the pre-pass (reading, checking and decoding the log).
    pub pre_pass: Duration,
    /// Time spent reading and decoding the log into batches.
    pub decode: Duration,
    /// Time spent reading, replaying and writing pages.
    pub pages: Duration,
    /// Time spent making the written files durable.
    pub sync: Duration,
    /// Bytes of tablespace pages read ahead while the log was decoded.
    pub read_ahead: u64,
}

/// One data file of a tablespace.
#[derive(Clone, Debug)]
struct SpaceFile {
    path: PathBuf,
    /// First page of the space in this file.
    first_page: u32,
    /// Pages in this file (`u32::MAX` for the last, growing file).
    pages: u32,
}

#[derive(Clone, Debug)]
struct Space {
    files: Vec<SpaceFile>,
    format: PageFormat,
    /// Largest FSP_SIZE written to page 0 by the log.
    recv_size: u32,
    /// The crypt data of page 0 (as read, then as the log writes it).
    crypt: Option<CryptData>,
    /// The tablespace's key, when it has encrypted pages.
    key: Option<Arc<SpaceKey>>,
    /// Pages written are encrypted with `key`.
    encrypt_writes: bool,
}

/// Tablespaces by id.
type Spaces = FxHashMap<u32, Space>;

/// Add a one-file tablespace; a space id seen twice is an error.
fn add_space(
    spaces: &mut Spaces,
    id: u32,
    path: &Path,
    format: PageFormat,
    crypt: Option<CryptData>,
) -> Result<()> {
    if spaces.contains_key(&id) {
        return Err(Error::Metadata {
            path: path.display().to_string(),
            reason: format!("space id {id} appears in two files"),
        });
    }
    let mut sp = Space::single(path, format);
    sp.crypt = crypt;
    spaces.insert(id, sp);
    Ok(())
}

impl Space {
    /// A tablespace in one file.
    fn single(path: &Path, format: PageFormat) -> Self {
        Space {
            files: vec![SpaceFile {
                path: path.to_path_buf(),
                first_page: 0,
                pages: u32::MAX,
            }],
            format,
            recv_size: 0,
            crypt: None,
            key: None,
            encrypt_writes: false,
        }
    }
}

const MARKERS: [&str; 3] = ["del", "ren", "new"];

/// Run the native prepare on `dir`.
///
/// # Errors
/// See [`Error`]; on [`Error::Unsupported`] and on any error before the
/// apply pass, no file was changed.
pub fn native_prepare(dir: &Path, opts: &NativeOptions) -> Result<Report> {
    let not = |reason: String| Error::NotABackup {
        dir: dir.display().to_string(),
        reason,
    };
    let ck_path = dir.join(Checkpoints::FILE);
    let ck = read_checkpoints(&ck_path)?;
    if ck.backup_type != BackupType::FullBackuped {
        return Err(not(format!(
            "backup_type is {}, not full-backuped",
            ck.backup_type.as_str()
        )));
    }
    let cnf = read_backup_my_cnf(dir)?;
    let log_path = dir.join("ib_logfile0");
    let report = apply_log(
        &LogJob {
            data_dir: dir,
            log_path: &log_path,
            end: Lsn(ck.last_lsn),
            cnf: &cnf,
        },
        opts,
    )?;
    // The log mariabackup leaves, and the new state.
    write_empty_log(&log_path, Lsn(ck.last_lsn))?;
    let done = Checkpoints {
        backup_type: BackupType::LogApplied,
        ..ck
    };
    write_atomic(&ck_path, done.render().as_bytes())?;
    Ok(report)
}

/// Read and parse an `xtrabackup_checkpoints`.
///
/// # Errors
/// [`Error::Io`], [`Error::Metadata`].
pub fn read_checkpoints(path: &Path) -> Result<Checkpoints> {
    Checkpoints::parse(&read_text(path)?).map_err(|e| Error::Metadata {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Read and parse `dir/backup-my.cnf`.
///
/// # Errors
/// [`Error::Io`], [`Error::Metadata`].
pub fn read_backup_my_cnf(dir: &Path) -> Result<BackupMyCnf> {
    let cnf_path = dir.join(BackupMyCnf::FILE);
    BackupMyCnf::parse(&read_text(&cnf_path)?).map_err(|e| Error::Metadata {
        path: cnf_path.display().to_string(),
        reason: e.to_string(),
    })
}

/// One application of a redo log to a directory of tablespaces.
#[derive(Clone, Copy, Debug)]
pub struct LogJob<'a> {
    /// The directory holding the tablespaces (the backup, or the base of a
    /// chain).
    pub data_dir: &'a Path,
    /// The log to apply (the backup's `ib_logfile0`, or an incremental's).
    pub log_path: &'a Path,
    /// Apply up to this LSN (the backup's `last_lsn`).
    pub end: Lsn,
    /// The geometry (`backup-my.cnf` of the backup whose log this is).
    pub cnf: &'a BackupMyCnf,
}

/// Apply `job.log_path` from its checkpoint to `job.end` to the tablespaces
/// under `job.data_dir`, and make the pages durable. The log and the
/// metadata files are left as they are (the caller replaces them).
///
/// # Errors
/// See [`Error`]; on [`Error::Unsupported`] and on any error before the
/// apply pass, no file was changed.
pub fn apply_log(job: &LogJob<'_>, opts: &NativeOptions) -> Result<Report> {
    let dir = job.data_dir;
    let cnf = job.cnf;
    let not = |reason: String| Error::NotABackup {
        dir: dir.display().to_string(),
        reason,
    };
    let page_size = page_size_of(dir, cnf)?;
    let mut files = Vec::new();
    collect_files(dir, &mut files, 0)?;
    if let Some(m) = files.iter().find(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MARKERS.contains(&e))
    }) {
        return Err(not(format!(
            "DDL marker {} must be applied before the native prepare",
            m.display()
        )));
    }
    let (mut spaces, pending) = map_spaces(dir, cnf, page_size, &files)?;

    // The log.
    let log_path = job.log_path;
    let (info, geo) = read_log_prefix(log_path)?;
    let start = info.newest.checkpoint_lsn;
    let end = job.end;
    if end < start {
        return Err(Error::Log(format!(
            "last_lsn {end} in xtrabackup_checkpoints is before the checkpoint {start}"
        )));
    }
    let (log_key, log_key_proved) = log_key(log_path, &info, geo, end, opts.keys.as_deref())?;
    // Shared with the thread that reads the log.
    let log_key_shared = log_key.map(std::sync::Arc::new);
    let log_key = log_key_shared.as_deref();
    let mut report = Report {
        start_lsn: start.0,
        end_lsn: end.0,
        ..Report::default()
    };

    // Pre-pass: validate, collect names, sizes and flags, then refuse
    // what cannot be reproduced before any file is touched. It also plans
    // the batches: each ends where the records it buffers (and the log
    // bytes they borrow) reach the memory budget.
    let t0 = Instant::now();
    let budget = usize::try_from(opts.use_memory.max(1 << 20)).unwrap_or(usize::MAX);
    let mut pre = PrePass::default();
    let mut batch_ends = Vec::new();
    let mut used = 0usize;
    let threads = opts.threads.clamp(1, 64);
    // The reader keeps two windows ahead of the decoding.
    let mut rd = feed::Feed::start(
        log_path,
        geo,
        (start, end),
        vec![end],
        4 * threads,
        log_key_shared.clone(),
    );
    let crypt_at = crypt_offsets(page_size);
    // Kept until the apply pass is done: it goes on reading ahead while the
    // first batches are decoded.
    let ahead = readahead::Readahead::start(&spaces, readahead::default_budget());
    let mut at_end = false;
    while !at_end {
        // A window of chunks, decoded on `threads` threads, each taking a
        // contiguous run and learning what a single pass over it would.
        let mut chunks = Vec::new();
        while chunks.len() < 2 * threads {
            match rd.next()? {
                Some(c) => chunks.push(c),
                None => {
                    at_end = true;
                    break;
                }
            }
        }
        if chunks.is_empty() {
            break;
        }
        let parts = par_runs(&chunks, threads, |run| {
            let mut part = PrePass::default();
            let mut sizes = Vec::with_capacity(run.len());
            let mut recs = Vec::new();
            for chunk in run {
                let mut n = 0usize;
                for (lsn, _, m) in chunk.mtrs() {
                    recs.clear();
                    decode_mtr_into(m, page_size, &mut recs)
                        .map_err(|source| Error::Apply { lsn, source })?;
                    part.mtr(lsn, &recs, &crypt_at);
                    n += recs.len();
                }
                sizes.push((chunk.end_lsn(), chunk.bytes.len() + OP_COST * n));
            }
            Ok((part, sizes))
        })?;
        for (mut part, sizes) in parts {
            let mut fresh = std::mem::take(&mut part.fresh);
            fresh.retain(|id| !pre.last_free.contains_key(id));
            ahead.send(fresh);
            pre.merge(part);
            for (chunk_end, bytes) in sizes {
                used += bytes;
                if used >= budget {
                    batch_ends.push(chunk_end);
                    used = 0;
                }
            }
        }
        for c in chunks {
            rd.recycle(c);
        }
    }
    pre.finish();
    batch_ends.push(end);
    report.pre_pass = t0.elapsed();
    resolve_deferred(dir, &mut spaces, &pending, &pre)?;
    pre.check(&mut spaces)?;
    let mut checked = space_keys(
        &mut spaces,
        &pre.crypts,
        |id| pre.first.get(&id).copied(),
        opts.keys.as_deref(),
    )?;
    if log_key.is_some() && log_key_proved {
        checked.verified.insert(redo::LOG_KEY_ID);
    }
    report.unverified_key_ids = checked
        .used
        .difference(&checked.verified)
        .copied()
        .collect();
    report.pages_freed = pre.freed_at_end.len() as u64;

    // Extend files first, as recovery does before applying.
    for sp in spaces.values() {
        if sp.recv_size > 0 && extend_space(sp)? {
            report.files_extended += 1;
            if let Some(f) = sp.files.last() {
                report.touched.insert(f.path.clone());
            }
        }
    }
    // Apply pass, batch by batch: the chunks of the batch are read, their
    // records (borrowing the chunks' bytes) sorted by page, then applied.
    let mut kinds = [0u64; KIND_NAMES.len()];
    let mut rd = feed::Feed::start(
        log_path,
        geo,
        (start, end),
        batch_ends.clone(),
        4 * threads,
        log_key_shared.clone(),
    );
    for _ in &batch_ends {
        let t1 = Instant::now();
        let mut chunks = Vec::new();
        while let Some(c) = rd.next()? {
            chunks.push(c);
        }
        let parts = par_runs(&chunks, threads, |run| {
            let mut part = DecodedRun::default();
            let mut recs = Vec::new();
            // What to do with the previous record's page (most records repeat it).
            let mut last: Option<(PageId, Keep)> = None;
            for chunk in run {
                for (lsn, len, m) in chunk.mtrs() {
                    part.mtrs += 1;
                    let end_lsn = Lsn(lsn.0 + len as u64);
                    recs.clear();
                    decode_mtr_into(m, page_size, &mut recs)
                        .map_err(|source| Error::Apply { lsn, source })?;
                    for r in recs.drain(..) {
                        let Record::Page { id, op } = r else {
                            continue;
                        };
                        part.page_records += 1;
                        part.kinds[op.kind()] += 1;
                        let keep = match last {
                            Some((l, k)) if l == id => k,
                            _ => {
                                let k = pre.keep(id, spaces.contains_key(&id.space.0));
                                last = Some((id, k));
                                k
                            }
                        };
                        match keep {
                            Keep::NoSpace => part.skipped_records += 1,
                            k if !k.admits(lsn) => {}
                            _ => {
                                let e = part.batch.ops(id);
                                if matches!(op, PageOp::InitPage | PageOp::FreePage) {
                                    // Recovery forgets what came before (it will not read the page).
                                    e.clear();
                                }
                                e.push(LoggedOp {
                                    start_lsn: lsn,
                                    end_lsn,
                                    op,
                                });
                            }
                        }
                    }
                }
            }
            Ok(part)
        })?;
        let mut batch = Batch::default();
        for part in parts {
            report.mtrs += part.mtrs;
            report.page_records += part.page_records;
            report.skipped_records += part.skipped_records;
            for (k, n) in kinds.iter_mut().zip(part.kinds) {
                *k += n;
            }
            batch.absorb(part.batch);
        }
        let t2 = Instant::now();
        report.decode += t2 - t1;
        apply_batch(&spaces, batch.pages, threads, &mut report)?;
        report.pages += t2.elapsed();
        #[cfg(feature = "testkit")]
        crate::sys::failpoint("native-prepare-batch", report.batches);
        for c in chunks {
            rd.recycle(c);
        }
    }
    for (name, n) in KIND_NAMES.iter().zip(kinds) {
        if n > 0 {
            report.record_kinds.insert(name, n);
        }
    }
    report.read_ahead = ahead.finish();
    // Make the pages durable before the log that no longer covers them.
    let t3 = Instant::now();
    for path in &report.touched {
        File::open(path)
            .and_then(|h| h.sync_data())
            .map_err(io(path))?;
    }
    report.sync = t3.elapsed();
    Ok(report)
}

/// A log's header and checkpoints, and its geometry.
fn read_log_prefix(log_path: &Path) -> Result<(redo::LogFileInfo, LogGeometry)> {
    let mut log = File::open(log_path).map_err(io(log_path))?;
    let log_len = log.metadata().map_err(io(log_path))?.len();
    let mut prefix = vec![0u8; START_OFFSET as usize];
    log.read_exact(&mut prefix).map_err(io(log_path))?;
    let info = parse_log_prefix(&prefix).map_err(|e| Error::Log(e.to_string()))?;
    let geo = LogGeometry::for_header(&info.header, log_len.max(START_OFFSET + 16))
        .map_err(|e| Error::Log(e.to_string()))?;
    Ok((info, geo))
}

fn page_size_of(dir: &Path, cnf: &BackupMyCnf) -> Result<u32> {
    u32::try_from(cnf.innodb_page_size)
        .ok()
        .filter(|p| p.is_power_of_two() && (4096..=65536).contains(p))
        .ok_or_else(|| Error::Metadata {
            path: dir.join(BackupMyCnf::FILE).display().to_string(),
            reason: format!("innodb_page_size {} is invalid", cnf.innodb_page_size),
        })
}

/// Check, reading only, that `keys` open what a native prepare of
/// `data_dir` will decrypt: each log of `logs` (path, `last_lsn`) whose
/// records are encrypted, and every encrypted (full_crc32) tablespace
/// under `data_dir`: its key id is in the key file and its first
/// encrypted page decrypts. Run before anything changes (DDL markers,
/// deltas).
///
/// # Errors
/// [`Error::Key`] naming the key id and the key file; [`Error::Io`],
/// [`Error::Log`], [`Error::Metadata`] for unreadable input.
pub fn check_keys(
    data_dir: &Path,
    cnf: &BackupMyCnf,
    logs: &[(&Path, Lsn)],
    keys: Option<&Keys>,
) -> Result<()> {
    for &(log_path, end) in logs {
        let (info, geo) = read_log_prefix(log_path)?;
        log_key(log_path, &info, geo, end, keys)?;
    }
    let page_size = page_size_of(data_dir, cnf)?;
    let mut files = Vec::new();
    collect_files(data_dir, &mut files, 0)?;
    let (mut spaces, _) = map_spaces(data_dir, cnf, page_size, &files)?;
    // Every tablespace, as if the log touched it; the legacy formats are
    // refused only when it does (by the apply).
    space_keys(&mut spaces, &FxHashMap::default(), |_| None, keys).map(|_| ())
}

/// The key of an encrypted log, checked before anything changes: the
/// checkpoint's FILE_CHECKPOINT mini-transaction (at the checkpoint's end
/// LSN) holds the checkpoint LSN, a known plaintext, so a wrong key file
/// or mode reads as another LSN there. `None` for a plain log.
fn log_key(
    path: &Path,
    info: &redo::LogFileInfo,
    geo: LogGeometry,
    end: Lsn,
    keys: Option<&Keys>,
) -> Result<(Option<LogKey>, bool)> {
    let Some(crypt) = info.header.crypt else {
        return Ok((None, false));
    };
    let (id, version) = (crypt.key_id, crypt.key_version);
    let Some(k) = keys else {
        return Err(Error::Key(format!(
            "{}: the redo log is encrypted (innodb_encrypt_log) with key id {id} version {version}: \
             the native prepare needs the file_key_management key file (file_key_management_filename \
             in backup-my.cnf, or --server-option file_key_management_filename=PATH)",
            path.display()
        )));
    };
    let key = LogKey::from_key_file(&crypt, &k.keys, k.algorithm).map_err(|e| {
        Error::Key(format!(
            "{}: the redo log is encrypted with key id {id} version {version}: key file {}: {e}",
            path.display(),
            k.path.display()
        ))
    })?;
    let ck = info.newest;
    let mut proved = false;
    if ck.end_lsn < end {
        let mut rd = LogReader::new(path, geo, (ck.end_lsn, end), Some(&key))?;
        if let Some(chunk) = rd.next(end)? {
            if let Some((lsn, _, records)) = chunk.mtrs().next() {
                // The checkpoint's mtr: FILE_MODIFY records of the
                // tablespaces changed since, then FILE_CHECKPOINT.
                let mut wrong = None;
                for op in redo::file_records(records) {
                    match op {
                        Ok(FileOp::Checkpoint { lsn: got }) if got == ck.checkpoint_lsn => {
                            proved = true;
                        }
                        Ok(FileOp::Checkpoint { lsn: got }) => {
                            wrong.get_or_insert_with(|| {
                                format!(
                                    "its checkpoint record reads as LSN {got}, not {}",
                                    ck.checkpoint_lsn
                                )
                            });
                        }
                        Ok(_) => {}
                        Err(e) => {
                            wrong.get_or_insert_with(|| {
                                format!("its file records do not decode ({e})")
                            });
                        }
                    }
                }
                if let Some(why) = wrong {
                    return Err(Error::Key(format!(
                        "{}: the redo log does not decrypt with key id {id} version {version} of key file {}: \
                         at LSN {lsn} (the checkpoint's mini-transaction) {why}: a wrong key file, or \
                         another file_key_management_encryption_algorithm",
                        path.display(),
                        k.path.display(),
                    )));
                }
            }
        }
    }
    Ok((Some(key), proved))
}

/// The key ids [`space_keys`] gave tablespaces, and those an encrypted
/// page on disk proved right.
#[derive(Default)]
struct KeyCheck {
    used: BTreeSet<u32>,
    verified: BTreeSet<u32>,
}

/// Give each tablespace its crypt data (page 0's, or the last `crypts`,
/// from the log, writes) and, when it has some, its key; a missing key,
/// or one that does not decrypt the tablespace's first encrypted page,
/// fails here, before anything changes. Encrypted tablespaces in the
/// legacy page formats get no key, and are refused
/// ([`Error::Unsupported`]) when `touched` says the log changes them (at
/// that LSN).
fn space_keys(
    spaces: &mut Spaces,
    crypts: &FxHashMap<(u32, usize), CryptData>,
    touched: impl Fn(u32) -> Option<Lsn>,
    keys: Option<&Keys>,
) -> Result<KeyCheck> {
    let mut checked = KeyCheck::default();
    let mut ids: Vec<u32> = spaces.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let Some(sp) = spaces.get_mut(&id) else {
            continue;
        };
        if let Some(c) = crypts.get(&(id, page_crypt::crypt_data_offset(&sp.format))) {
            sp.crypt = Some(*c);
        }
        let Some(c) = sp.crypt else {
            continue;
        };
        let path = sp
            .files
            .first()
            .map(|f| f.path.display().to_string())
            .unwrap_or_default();
        let needed = c.scheme == 1;
        if sp.format.is_page_compressed() {
            if let Some(lsn) = touched(id).filter(|_| needed) {
                return Err(Error::Unsupported {
                    lsn,
                    what: format!(
                        "page records for tablespace {id} ({path}), page_compressed and encrypted, \
                         which the native prepare does not decrypt"
                    ),
                });
            }
            continue;
        }
        let Some(k) = keys else {
            if needed {
                return Err(Error::Key(format!(
                    "tablespace {id} ({path}) is encrypted with key id {}: the native prepare needs \
                     the file_key_management key file",
                    c.key_id
                )));
            }
            continue;
        };
        let key = match SpaceKey::from_key_file((id, sp.format), &c, &k.keys, k.algorithm) {
            Ok(key) => key,
            Err(e) if needed => {
                return Err(Error::Key(format!(
                    "tablespace {id} ({path}) is encrypted with key id {}: key file {}: {e}",
                    c.key_id,
                    k.path.display()
                )))
            }
            Err(_) => continue,
        };
        checked.used.insert(c.key_id);
        if !checked.verified.contains(&c.key_id) && probe_key(sp, &key, &k.path)? {
            checked.verified.insert(c.key_id);
        }
        sp.encrypt_writes = c.encrypts_writes(k.encrypt_tables);
        sp.key = Some(Arc::new(key));
    }
    Ok(checked)
}

/// Pages [`probe_key`] reads at most per tablespace.
const PROBE_PAGES: u64 = 1024;

/// Decrypt the first encrypted page among the first [`PROBE_PAGES`] of a
/// tablespace: a key that does not decrypt it is the wrong key. Whether a
/// page was found to check the key with. Pages whose checksum fails are
/// left for the apply pass to report if it needs them.
fn probe_key(sp: &Space, key: &SpaceKey, key_file: &Path) -> Result<bool> {
    let Some(f) = sp.files.first() else {
        return Ok(false);
    };
    let size = sp.format.physical_size() as usize;
    let file = File::open(&f.path).map_err(io(&f.path))?;
    let mut page = vec![0u8; size];
    for no in 1..PROBE_PAGES {
        match file.read_exact_at(&mut page, no * size as u64) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(&f.path)(e)),
        }
        if page_crypt::key_version(&page, &sp.format) == 0 {
            continue;
        }
        match key.decrypt_page(&mut page) {
            Ok(()) => return Ok(true),
            Err(page_crypt::Error::Checksum { .. }) => continue,
            Err(e) => {
                return Err(Error::Key(format!(
                    "{}: {e} (key file {})",
                    f.path.display(),
                    key_file.display()
                )))
            }
        }
    }
    Ok(false)
}

/// What the apply pass does with a page's records.
#[derive(Clone, Copy)]
enum Keep {
    Yes,
    /// The tablespace is not in the backup (dropped): skipped.
    NoSpace,
    /// The page ends freed: never written.
    FreedAtEnd,
    /// The log initialises or frees the page in the mtr at this LSN: the
    /// records of earlier mtrs are dropped.
    From(Lsn),
}

impl Keep {
    /// Whether a record of the mtr at `lsn` is applied.
    fn admits(self, lsn: Lsn) -> bool {
        match self {
            Keep::Yes => true,
            Keep::From(at) => lsn >= at,
            Keep::NoSpace | Keep::FreedAtEnd => false,
        }
    }
}

/// One batch's records by page, pages in the order first seen.
#[derive(Default)]
struct Batch<'a> {
    index: FxHashMap<PageId, usize>,
    pages: Vec<(PageId, Vec<LoggedOp<'a>>)>,
    /// The previous page and its place in `pages`.
    last: Option<(PageId, usize)>,
}

impl<'a> Batch<'a> {
    /// The records of page `id` (an empty list for a new page).
    fn ops(&mut self, id: PageId) -> &mut Vec<LoggedOp<'a>> {
        let i = match self.last {
            Some((l, i)) if l == id => i,
            _ => {
                let n = self.pages.len();
                let i = *self.index.entry(id).or_insert(n);
                if i == n {
                    self.pages.push((id, Vec::new()));
                }
                self.last = Some((id, i));
                i
            }
        };
        &mut self.pages[i].1
    }
}

impl<'a> Batch<'a> {
    /// Append the records a later run of the log decoded.
    fn absorb(&mut self, later: Batch<'a>) {
        if self.pages.is_empty() {
            *self = later;
            return;
        }
        for (id, ops) in later.pages {
            let e = self.ops(id);
            // A run's list starts at its INIT_PAGE/FREE_PAGE, if any.
            if e.is_empty()
                || ops
                    .first()
                    .is_some_and(|o| matches!(o.op, PageOp::InitPage | PageOp::FreePage))
            {
                *e = ops;
            } else {
                e.extend(ops);
            }
        }
    }
}

/// What one thread decoded of a batch's log.
#[derive(Default)]
struct DecodedRun<'a> {
    batch: Batch<'a>,
    mtrs: u64,
    page_records: u64,
    skipped_records: u64,
    kinds: [u64; KIND_NAMES.len()],
}

/// Run `f` over `chunks` split into at most `threads` contiguous runs,
/// each on its own thread; the results in log order (the first error in
/// log order wins).
fn par_runs<'c, T: Send>(
    chunks: &'c [Chunk],
    threads: usize,
    f: impl Fn(&'c [Chunk]) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let per = chunks.len().div_ceil(threads.max(1)).max(1);
    if per >= chunks.len() {
        return Ok(vec![f(chunks)?]);
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .chunks(per)
            .map(|run| s.spawn(move || f(run)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Log("a redo-log thread panicked".into())))
            })
            .collect()
    })
}

/// Memory one buffered record costs beyond its log bytes (the op, its
/// share of the per-page list and of the page map).
const OP_COST: usize = std::mem::size_of::<LoggedOp<'static>>() + 16;

fn read_text(p: &Path) -> Result<String> {
    let meta = std::fs::metadata(p).map_err(io(p))?;
    if meta.len() > 1 << 20 {
        return Err(Error::Metadata {
            path: p.display().to_string(),
            reason: format!("{} bytes is too large for a metadata file", meta.len()),
        });
    }
    std::fs::read_to_string(p).map_err(io(p))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let ty = e.file_type().map_err(io(dir))?;
        let p = e.path();
        if ty.is_dir() && depth == 0 {
            collect_files(&p, out, depth + 1)?;
        } else if ty.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// Parse a size like `12M`, `1G`, `10485760` into bytes.
#[must_use]
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

enum Page0 {
    Info(crate::innodb::page::SpaceInfo, Option<CryptData>),
    /// Missing or all zero.
    Zero,
}

fn read_page0(path: &Path, page_size: u32) -> Result<Page0> {
    let f = File::open(path).map_err(io(path))?;
    let mut buf = vec![0u8; page_size as usize];
    let mut got = 0;
    while got < buf.len() {
        let n = f.read_at(&mut buf[got..], got as u64).map_err(io(path))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    if buf.iter().all(|&b| b == 0) {
        return Ok(Page0::Zero);
    }
    let bad = |reason: String| Error::Metadata {
        path: path.display().to_string(),
        reason,
    };
    let info = parse_page0(&buf).map_err(|e| bad(e.to_string()))?;
    let crypt = CryptData::from_page0(&buf, &info.format).map_err(|e| bad(e.to_string()))?;
    Ok(Page0::Info(info, crypt))
}

fn map_spaces(
    dir: &Path,
    cnf: &BackupMyCnf,
    page_size: u32,
    files: &[PathBuf],
) -> Result<(Spaces, Vec<PathBuf>)> {
    let mut spaces = Spaces::default();
    let mut pending = Vec::new();
    // System tablespace.
    let mut sys_files = Vec::new();
    let mut first = 0u32;
    let specs: Vec<&str> = cnf
        .innodb_data_file_path
        .split(';')
        .filter(|t| !t.is_empty())
        .collect();
    for (i, spec) in specs.iter().enumerate() {
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or_default();
        let size = parts
            .next()
            .and_then(parse_size)
            .ok_or_else(|| Error::Metadata {
                path: dir.join(BackupMyCnf::FILE).display().to_string(),
                reason: format!("cannot parse innodb_data_file_path entry {spec:?}"),
            })?;
        let pages = u32::try_from(size / u64::from(page_size)).unwrap_or(u32::MAX);
        let last = i + 1 == specs.len();
        sys_files.push(SpaceFile {
            path: dir.join(name),
            first_page: first,
            pages: if last { u32::MAX } else { pages },
        });
        first = first.saturating_add(pages);
    }
    let Some(f0) = sys_files.first() else {
        return Err(Error::Metadata {
            path: dir.join(BackupMyCnf::FILE).display().to_string(),
            reason: "empty innodb_data_file_path".into(),
        });
    };
    let Page0::Info(sys, sys_crypt) = read_page0(&f0.path, page_size)? else {
        return Err(Error::Metadata {
            path: f0.path.display().to_string(),
            reason: "page 0 of the system tablespace is empty".into(),
        });
    };
    spaces.insert(
        0,
        Space {
            files: sys_files,
            format: sys.format,
            recv_size: 0,
            crypt: sys_crypt,
            key: None,
            encrypt_writes: false,
        },
    );
    for p in files {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let is_undo = p.parent() == Some(dir)
            && name.len() == 7
            && name.starts_with("undo")
            && name[4..].bytes().all(|b| b.is_ascii_digit());
        let is_ibd = name.ends_with(".ibd") && p.parent() != Some(dir);
        if !(is_undo || is_ibd) {
            continue;
        }
        let (info, crypt) = match read_page0(p, page_size)? {
            Page0::Info(i, c) => (i, c),
            Page0::Zero => {
                // Created recently: page 0 is still only in the log.
                pending.push(p.clone());
                continue;
            }
        };
        let id = info.space_id.0;
        add_space(&mut spaces, id, p, info.format, crypt)?;
    }
    Ok((spaces, pending))
}

/// What the pre-pass learns from the log.
#[derive(Default)]
struct PrePass {
    /// Latest file name per space (FILE_CREATE / FILE_MODIFY / FILE_RENAME).
    names: FxHashMap<u32, Vec<u8>>,
    /// Last FSP_SIZE written to page 0.
    sizes: FxHashMap<u32, u32>,
    /// Last FSP_SPACE_FLAGS written to page 0.
    flags: FxHashMap<u32, u32>,
    /// Last crypt data written to page 0 (as recovery's `fil_crypt_parse`
    /// takes it from the log), by space and offset (which depends on the
    /// page format, not yet known for tablespaces created in the log).
    crypts: FxHashMap<(u32, usize), CryptData>,
    /// First mtr with a page record, per space.
    first: FxHashMap<u32, Lsn>,
    /// FILE_DELETE per space.
    deleted: FxHashMap<u32, Lsn>,
    /// First record the applier refuses.
    refused: Option<(Lsn, String)>,
    /// First EXTENDED record per space (refused for compressed pages).
    zip_extended: FxHashMap<u32, Lsn>,
    /// Per page, whether its last record so far is FREE_PAGE.
    last_free: FxHashMap<PageId, bool>,
    /// Per page, the mtr of its last INIT_PAGE or FREE_PAGE so far. The
    /// records before it never reach the page recovery leaves, in any
    /// batch: InnoDB may have dropped the page unwritten once it was
    /// freed, so the copy on disk can be older than those records (seen
    /// on a sysbench backup: a DELETE at the checkpoint's start did not
    /// fit the page the backup holds, which the log frees 50 MB later).
    resets: FxHashMap<PageId, Lsn>,
    /// Pages whose last record in the whole log is FREE_PAGE: the server
    /// (in one batch) never writes them, so no batch may (set by
    /// [`PrePass::finish`]).
    freed_at_end: FxHashSet<PageId>,
    /// The space of the previous page record (most records repeat it).
    last_space: Option<u32>,
    /// The previous page record's page and whether it was FREE_PAGE.
    last_page: Option<(PageId, bool)>,
    /// Pages met for the first time in this stretch of the log whose first
    /// record reads the page (for the read-ahead; emptied by the caller).
    fresh: Vec<PageId>,
}

impl PrePass {
    fn mtr(&mut self, lsn: Lsn, recs: &[Record<'_>], crypt_at: &[usize]) {
        for r in recs {
            match r {
                Record::File(FileOp::Create { space, path } | FileOp::Modify { space, path }) => {
                    self.names.insert(space.0, path.to_vec());
                }
                Record::File(FileOp::Rename { space, to, .. }) => {
                    self.names.insert(space.0, to.to_vec());
                }
                Record::File(FileOp::Delete { space, .. }) => {
                    self.deleted.insert(space.0, lsn);
                }
                Record::File(_) => {}
                Record::Page { id, op } => {
                    if self.last_space != Some(id.space.0) {
                        self.first.entry(id.space.0).or_insert(lsn);
                        self.last_space = Some(id.space.0);
                    }
                    let free = matches!(op, PageOp::FreePage);
                    if self.last_page != Some((*id, free)) {
                        if self.last_free.insert(*id, free).is_none()
                            && !matches!(op, PageOp::InitPage | PageOp::FreePage)
                        {
                            self.fresh.push(*id);
                        }
                        self.last_page = Some((*id, free));
                    }
                    if matches!(op, PageOp::InitPage | PageOp::FreePage) {
                        self.resets.insert(*id, lsn);
                    }
                    if op.is_extended() {
                        self.zip_extended.entry(id.space.0).or_insert(lsn);
                    }
                    if matches!(op, PageOp::TrimPages) && self.refused.is_none() {
                        self.refused = Some((lsn, format!("{} for {id}", op.name())));
                    }
                    if id.page.0 == 0 {
                        if let Some(v) = field_written(op, FIL_PAGE_DATA + FSP_SIZE) {
                            self.sizes.insert(id.space.0, v);
                        }
                        if let Some(v) = field_written(op, FIL_PAGE_DATA + FSP_SPACE_FLAGS) {
                            self.flags.insert(id.space.0, v);
                        }
                        for (at, body) in crypt_at
                            .iter()
                            .filter_map(|&at| Some((at, crypt_written(op, at)?)))
                        {
                            match CryptData::from_body(body) {
                                Ok(c) => {
                                    self.crypts.insert((id.space.0, at), c);
                                }
                                Err(e) if self.refused.is_none() => {
                                    self.refused =
                                        Some((lsn, format!("{} for {id}: {e}", op.name())));
                                }
                                Err(_) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// Add what a later stretch of the log taught `later` (each field keeps
    /// the first or the last value, as a single pass would).
    fn merge(&mut self, later: PrePass) {
        self.names.extend(later.names);
        self.sizes.extend(later.sizes);
        self.flags.extend(later.flags);
        self.crypts.extend(later.crypts);
        self.deleted.extend(later.deleted);
        self.last_free.extend(later.last_free);
        self.resets.extend(later.resets);
        for (k, v) in later.first {
            self.first.entry(k).or_insert(v);
        }
        for (k, v) in later.zip_extended {
            self.zip_extended.entry(k).or_insert(v);
        }
        if self.refused.is_none() {
            self.refused = later.refused;
        }
    }

    /// After the whole log: the pages it leaves freed.
    fn finish(&mut self) {
        self.freed_at_end = self
            .last_free
            .iter()
            .filter_map(|(id, &free)| free.then_some(*id))
            .collect();
        self.last_free = FxHashMap::default();
    }

    /// What the apply pass does with the records of page `id` (after
    /// [`PrePass::finish`]); `in_backup`: its tablespace is in the backup.
    fn keep(&self, id: PageId, in_backup: bool) -> Keep {
        if !in_backup {
            Keep::NoSpace
        } else if self.freed_at_end.contains(&id) {
            Keep::FreedAtEnd
        } else if let Some(&at) = self.resets.get(&id) {
            Keep::From(at)
        } else {
            Keep::Yes
        }
    }

    /// Refuse what the applier cannot reproduce; set the recovered sizes.
    fn check(&self, spaces: &mut Spaces) -> Result<()> {
        if let Some((lsn, what)) = &self.refused {
            return Err(Error::Unsupported {
                lsn: *lsn,
                what: what.clone(),
            });
        }
        for (space, lsn) in &self.deleted {
            if spaces.contains_key(space) {
                return Err(Error::Unsupported {
                    lsn: *lsn,
                    what: format!("FILE_DELETE of tablespace {space}, whose file is in the backup"),
                });
            }
        }
        for (space, lsn) in &self.first {
            let Some(sp) = spaces.get_mut(space) else {
                continue;
            };
            if sp.format.is_page_compressed() {
                return Err(Error::Unsupported {
                    lsn: *lsn,
                    what: format!("page records for page_compressed tablespace {space}"),
                });
            }
            if sp.format.is_zip() {
                if let Some(l) = self.zip_extended.get(space) {
                    return Err(Error::Unsupported {
                        lsn: *l,
                        what: format!(
                            "EXTENDED record for ROW_FORMAT=COMPRESSED tablespace {space} (the server treats it as corrupt)"
                        ),
                    });
                }
            }
            if let Some(&size) = self.sizes.get(space) {
                sp.recv_size = size;
            }
        }
        Ok(())
    }
}

/// Give the files whose page 0 is still empty the space id the log names
/// them with, and the page format page 0 records write.
fn resolve_deferred(
    dir: &Path,
    spaces: &mut Spaces,
    pending: &[PathBuf],
    pre: &PrePass,
) -> Result<()> {
    for p in pending {
        // `./db/t.ibd`, or the absolute path of a DATA DIRECTORY
        // tablespace, whose copy the backup holds as `db/t.ibd`.
        let found = pre.names.iter().find(|(_, name)| {
            std::str::from_utf8(name)
                .ok()
                .and_then(crate::innodb::relocate::backup_name)
                .is_some_and(|n| dir.join(n) == *p)
        });
        let Some((&id, _)) = found else {
            return Err(Error::Metadata {
                path: p.display().to_string(),
                reason: "page 0 is empty and the log does not name this file".into(),
            });
        };
        let Some(&flags) = pre.flags.get(&id) else {
            return Err(Error::Metadata {
                path: p.display().to_string(),
                reason: format!(
                    "page 0 is empty and the log does not write the flags of space {id}"
                ),
            });
        };
        let format = PageFormat::from_flags(flags).map_err(|e| Error::Metadata {
            path: p.display().to_string(),
            reason: e.to_string(),
        })?;
        add_space(spaces, id, p, format, None)?;
    }
    Ok(())
}

/// Where page 0 holds the crypt data, for each page format the backup's
/// page size allows (its own, and the ROW_FORMAT=COMPRESSED sizes below).
fn crypt_offsets(page_size: u32) -> Vec<usize> {
    let mut out = Vec::new();
    let mut flags_of = |f: u32| {
        if let Ok(fmt) = PageFormat::from_flags(f) {
            if fmt.logical_size() == page_size {
                out.push(page_crypt::crypt_data_offset(&fmt));
            }
        }
    };
    // full_crc32 with the page size; legacy ROW_FORMAT=COMPRESSED flags
    // (POST_ANTELOPE | ATOMIC_BLOBS, zip size 1..5, page size field).
    let ssize = page_size.trailing_zeros().saturating_sub(9);
    flags_of(0x10 | ssize);
    let legacy_ssize = if page_size == 16384 { 0 } else { ssize };
    for z in 1..=5u32 {
        flags_of(1 | (z << 1) | (1 << 5) | (legacy_ssize << 6));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The crypt data after its magic on page 0 (at `crypt_at`), if a record
/// writes all of it (InnoDB logs it whole, even unchanged bytes, for
/// recovery to read).
fn crypt_written<'a>(op: &PageOp<'a>, crypt_at: usize) -> Option<&'a [u8]> {
    let PageOp::Write { offset, data } = op else {
        return None;
    };
    let at = crypt_at + page_crypt::CRYPT_MAGIC.len();
    let off = *offset as usize;
    let end = at + page_crypt::CRYPT_BODY_LEN;
    (off <= at && off + data.len() >= end).then(|| &data[at - off..end - off])
}

/// The 4-byte field at `at`, if a record writes all four of its bytes.
fn field_written(op: &PageOp<'_>, at: usize) -> Option<u32> {
    let PageOp::Write { offset, data } = op else {
        return None;
    };
    let off = *offset as usize;
    if off <= at && off + data.len() >= at + 4 {
        let i = at - off;
        Some(u32::from_be_bytes([
            data[i],
            data[i + 1],
            data[i + 2],
            data[i + 3],
        ]))
    } else {
        None
    }
}

/// Whole mini-transactions of the log, read in one piece.
struct Chunk {
    /// LSN of the first mtr.
    lsn: Lsn,
    /// The mtrs, back to back.
    bytes: Vec<u8>,
    /// The length of each mtr, in order.
    lens: Vec<usize>,
    /// Bytes after each mtr's records (termination byte, nonce, CRC).
    trailer: usize,
}

impl Chunk {
    /// The LSN after the last mtr.
    fn end_lsn(&self) -> Lsn {
        Lsn(self.lsn.0 + self.bytes.len() as u64)
    }

    /// Each mtr's start LSN, length and record bytes (without the trailer).
    fn mtrs(&self) -> impl Iterator<Item = (Lsn, usize, &[u8])> {
        let mut pos = 0usize;
        let mut lsn = self.lsn;
        self.lens.iter().map(move |&len| {
            let m = &self.bytes[pos..pos + len];
            let at = lsn;
            pos += len;
            lsn = Lsn(lsn.0 + len as u64);
            (at, len, &m[..len - self.trailer])
        })
    }
}

/// Reads the backup's linear log from its checkpoint to `last_lsn` in
/// chunks of whole, checksum-verified mini-transactions.
struct LogReader<'p> {
    file: File,
    path: &'p Path,
    /// The key of an encrypted log: records are decrypted as read.
    key: Option<&'p LogKey>,
    geo: LogGeometry,
    /// Where the next read starts in the file.
    file_off: u64,
    /// LSN of the first byte of `carry`.
    lsn: Lsn,
    end: Lsn,
    /// Bytes read but not yet returned (the start of an incomplete mtr).
    carry: Vec<u8>,
    /// Buffers of chunks given back, for the next reads.
    spare: Vec<Vec<u8>>,
}

impl<'p> LogReader<'p> {
    const CHUNK: usize = 4 << 20;
    const READ_AHEAD: u64 = 32 << 20;
    const WHOLE_LOG_AHEAD: u64 = 1 << 30;

    fn new(
        path: &'p Path,
        geo: LogGeometry,
        (start, end): (Lsn, Lsn),
        key: Option<&'p LogKey>,
    ) -> Result<Self> {
        let file = File::open(path).map_err(io(path))?;
        let file_off = geo.offset(start).map_err(|e| Error::Log(e.to_string()))?;
        Ok(LogReader {
            file,
            path,
            key,
            geo,
            file_off,
            lsn: start,
            end,
            carry: Vec::new(),
            spare: Vec::new(),
        })
    }

    /// Ask the device for the whole stretch still to read (bounded), so
    /// that it is queued before the read-ahead of pages asks for more. A
    /// hint, for a reader that goes on to the end (not a key check that
    /// reads one chunk).
    fn prefetch_stretch(&self) {
        if let Ok(end_off) = self.geo.offset(self.end) {
            let len = end_off
                .saturating_sub(self.file_off)
                .min(Self::WHOLE_LOG_AHEAD);
            let _ = crate::sys::prefetch(&self.file, self.file_off, len);
        }
    }

    /// Give a chunk's buffer back for the next reads.
    fn recycle(&mut self, chunk: Chunk) {
        self.spare.push(chunk.bytes);
    }

    /// The next chunk, none of whose mtrs starts at or after `limit`
    /// (clamped to the end); `None` once `limit` is reached.
    fn next(&mut self, limit: Lsn) -> Result<Option<Chunk>> {
        let limit = limit.min(self.end);
        if self.lsn >= limit {
            return Ok(None);
        }
        loop {
            let mut buf = std::mem::take(&mut self.carry);
            let old = buf.len();
            let want = Self::CHUNK.saturating_sub(old).max(MTR_SIZE_MAX);
            buf.resize(old + want, 0);
            self.file
                .seek(SeekFrom::Start(self.file_off))
                .map_err(io(self.path))?;
            let n = read_full(&mut self.file, &mut buf[old..]).map_err(io(self.path))?;
            buf.truncate(old + n);
            self.file_off += n as u64;
            // Keep the next chunks coming from the device while this one is
            // decoded (a hint; pages already cached cost nothing).
            let _ = crate::sys::prefetch(&self.file, self.file_off, Self::READ_AHEAD);
            let scan =
                scan_mtrs(&self.geo, self.lsn, &buf).map_err(|e| Error::Log(e.to_string()))?;
            let mut lens = Vec::with_capacity(scan.mtr_lens.len());
            let (mut pos, mut lsn) = (0usize, self.lsn);
            for &len in &scan.mtr_lens {
                if lsn >= limit {
                    break;
                }
                lens.push(len);
                pos += len;
                lsn = Lsn(lsn.0 + len as u64);
            }
            if lsn > self.end {
                return Err(Error::Log(format!(
                    "an mtr crosses last_lsn {}: the log continues to {lsn}",
                    self.end
                )));
            }
            if !lens.is_empty() {
                if let Some(key) = self.key {
                    // The CRCs (over the ciphertext) were checked by the
                    // scan: decrypt the records in place.
                    let (mut at, mut mlsn) = (0usize, self.lsn);
                    let t = self.geo.trailer();
                    for &len in &lens {
                        let (records, tail) = buf[at..at + len].split_at_mut(len - t);
                        key.crypt_records(records, &tail[1..1 + redo::MTR_NONCE], false)
                            .map_err(|e| Error::Log(format!("at LSN {mlsn}: {e}")))?;
                        at += len;
                        mlsn = Lsn(mlsn.0 + len as u64);
                    }
                }
                let mut carry = self.spare.pop().unwrap_or_default();
                carry.clear();
                carry.extend_from_slice(&buf[pos..]);
                buf.truncate(pos);
                self.carry = carry;
                let chunk = Chunk {
                    lsn: self.lsn,
                    bytes: buf,
                    lens,
                    trailer: self.geo.trailer(),
                };
                self.lsn = lsn;
                return Ok(Some(chunk));
            }
            match scan.stop {
                ScanStop::NeedMore if n > 0 => self.carry = buf,
                stop => {
                    let why = match stop {
                        ScanStop::EndOfLog(e) => e.to_string(),
                        ScanStop::NeedMore => "end of file".into(),
                    };
                    return Err(Error::Log(format!(
                        "the log ends at LSN {} ({why}), before last_lsn {}",
                        self.lsn, self.end
                    )));
                }
            }
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Extend the (last) file of a space so the space holds `recv_size` pages.
fn extend_space(sp: &Space) -> Result<bool> {
    let Some(last) = sp.files.last() else {
        return Ok(false);
    };
    let pages_here = sp.recv_size.saturating_sub(last.first_page);
    let want = u64::from(pages_here) * u64::from(sp.format.physical_size());
    let f = OpenOptions::new()
        .write(true)
        .open(&last.path)
        .map_err(io(&last.path))?;
    let len = f.metadata().map_err(io(&last.path))?.len();
    if want > len {
        f.set_len(want).map_err(io(&last.path))?;
        return Ok(true);
    }
    Ok(false)
}

fn locate(sp: &Space, page: PageNo) -> Option<(&Path, u64)> {
    let page_size = sp.format.physical_size();
    let f = sp
        .files
        .iter()
        .find(|f| page.0 >= f.first_page && page.0 - f.first_page < f.pages)?;
    Some((
        &f.path,
        u64::from(page.0 - f.first_page) * u64::from(page_size),
    ))
}

/// Ask the kernel for every page `pages` will read before the first is
/// read, so that the scattered reads overlap on the device (the recovery
/// server reads ahead the same way). Only a hint: a file that cannot be
/// opened here fails, with its name, when the page is read.
fn prefetch_batch(spaces: &Spaces, pages: &[(PageId, Vec<LoggedOp<'_>>)]) {
    let mut locs = Vec::with_capacity(pages.len());
    for (id, ops) in pages {
        if !apply::needs_read(ops) {
            continue;
        }
        let Some(sp) = spaces.get(&id.space.0) else {
            continue;
        };
        if let Some((path, off)) = locate(sp, id.page) {
            locs.push((path, off, u64::from(sp.format.physical_size())));
        }
    }
    // Neighbouring pages as one request each (no gap: the batch's own
    // pages only).
    let mut open: Option<(&Path, File)> = None;
    for (path, off, len) in readahead::runs(&locs, 0, 1 << 20) {
        if open.as_ref().map(|(p, _)| *p) != Some(path) {
            open = File::open(path).ok().map(|f| (path, f));
        }
        if let Some((_, f)) = &open {
            let _ = crate::sys::prefetch(f, off, len);
        }
    }
}

/// Apply one batch: pages in (space, page) order, split into `threads`
/// contiguous runs of about the same number of records, each run applied
/// by its own thread (pages are independent of one another).
fn apply_batch(
    spaces: &Spaces,
    mut pages: Vec<(PageId, Vec<LoggedOp<'_>>)>,
    threads: usize,
    report: &mut Report,
) -> Result<()> {
    if pages.is_empty() {
        return Ok(());
    }
    report.batches += 1;
    pages.sort_unstable_by_key(|(id, _)| *id);
    prefetch_batch(spaces, &pages);
    let records: usize = pages.iter().map(|(_, ops)| ops.len()).sum();
    let threads = threads.clamp(1, 64).min(pages.len().div_ceil(64).max(1));
    let per = records.div_ceil(threads).max(1);
    let mut runs: Vec<&[(PageId, Vec<LoggedOp<'_>>)]> = Vec::with_capacity(threads);
    let (mut from, mut acc) = (0usize, 0usize);
    for (i, (_, ops)) in pages.iter().enumerate() {
        acc += ops.len();
        if acc >= per && runs.len() + 1 < threads {
            runs.push(&pages[from..=i]);
            from = i + 1;
            acc = 0;
        }
    }
    runs.push(&pages[from..]);
    let parts: Vec<Result<RunReport>> = if runs.len() == 1 {
        vec![apply_run(spaces, runs[0])]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = runs
                .iter()
                .map(|run| s.spawn(move || apply_run(spaces, run)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Log("a redo-apply thread panicked".into())))
                })
                .collect()
        })
    };
    for part in parts {
        let part = part?;
        report.pages_written += part.written;
        report.pages_unchanged += part.unchanged;
        report.pages_decrypted += part.decrypted;
        report.pages_encrypted += part.encrypted;
        report.touched.extend(part.touched);
    }
    Ok(())
}

/// What one thread of [`apply_batch`] did.
#[derive(Default)]
struct RunReport {
    written: u64,
    unchanged: u64,
    decrypted: u64,
    encrypted: u64,
    touched: BTreeSet<PathBuf>,
}

fn apply_run(spaces: &Spaces, pages: &[(PageId, Vec<LoggedOp<'_>>)]) -> Result<RunReport> {
    let mut out = RunReport::default();
    let mut page_buf = vec![0u8; apply::MAX_PAGE_SIZE];
    let mut open: Option<(PathBuf, File)> = None;
    for (id, ops) in pages {
        let id = *id;
        let Some(sp) = spaces.get(&id.space.0) else {
            continue;
        };
        let Some((path, off)) = locate(sp, id.page) else {
            return Err(Error::Unsupported {
                lsn: ops.first().map_or(Lsn(0), |o| o.start_lsn),
                what: format!("page {id} outside the system tablespace files"),
            });
        };
        if open.as_ref().map(|(p, _)| p.as_path()) != Some(path) {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io(path))?;
            open = Some((path.to_path_buf(), f));
            out.touched.insert(path.to_path_buf());
        }
        let Some((_, file)) = open.as_ref() else {
            continue;
        };
        let Some(buf) = page_buf.get_mut(..sp.format.physical_size() as usize) else {
            continue;
        };
        let mut was_encrypted = false;
        if apply::needs_read(ops) {
            let mut got = 0usize;
            while got < buf.len() {
                let n = file
                    .read_at(&mut buf[got..], off + got as u64)
                    .map_err(io(path))?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            // Past the end of the file: zeros, as the server reads them.
            buf[got..].fill(0);
            let kv = page_crypt::key_version(buf, &sp.format);
            if id.page.0 != 0 && kv != 0 && sp.crypt.is_some() {
                // InnoDB's rule: a key version and crypt data.
                let Some(key) = sp.key.as_deref() else {
                    return Err(Error::Unsupported {
                        lsn: ops.first().map_or(Lsn(0), |o| o.start_lsn),
                        what: format!("page {id} is encrypted and its tablespace has no key"),
                    });
                };
                key.decrypt_page(buf).map_err(|e| page_error(path, id, e))?;
                out.decrypted += 1;
                was_encrypted = true;
            } else if let Some(what) = encrypted(buf, id, &sp.format) {
                return Err(Error::Unsupported {
                    lsn: ops.first().map_or(Lsn(0), |o| o.start_lsn),
                    what: format!("page {id} is {what} and its tablespace has no crypt data"),
                });
            }
        } else {
            buf.fill(0);
        }
        match recover_page_at(buf, id, ops).map_err(|(lsn, source)| Error::Apply { lsn, source })? {
            Recovered::Applied { end_lsn } => {
                if was_encrypted {
                    // The key version (and, legacy, the checksum of the
                    // encrypted page): InnoDB clears them on a page it
                    // writes unencrypted (and sets them when it encrypts).
                    if sp.format.is_full_crc32() {
                        buf[..4].fill(0);
                    } else {
                        buf[26..34].fill(0);
                    }
                }
                finish_page(buf, id, &sp.format, end_lsn).map_err(|source| Error::Apply {
                    lsn: ops.last().map_or(Lsn(0), |o| o.start_lsn),
                    source,
                })?;
                if let Some(key) = sp.key.as_deref().filter(|_| sp.encrypt_writes) {
                    if page_crypt::page_kind_encryptable(id.space.0, id.page.0, buf, &sp.format) {
                        key.encrypt_page(buf).map_err(|e| page_error(path, id, e))?;
                        out.encrypted += 1;
                    }
                }
                file.write_all_at(buf, off).map_err(io(path))?;
                out.written += 1;
            }
            Recovered::Unchanged => out.unchanged += 1,
            // Only pages freed and re-initialised within a batch get here.
            Recovered::Freed => {}
        }
    }
    Ok(out)
}

/// A page that does not decrypt or encrypt, with its file.
fn page_error(path: &Path, id: PageId, e: page_crypt::Error) -> Error {
    match e {
        page_crypt::Error::WrongKey { .. } | page_crypt::Error::Key(_) => {
            Error::Key(format!("{}: page {id}: {e}", path.display()))
        }
        page_crypt::Error::Unsupported(what) => Error::Unsupported {
            lsn: Lsn(0),
            what: format!("page {id} of {}: {what}", path.display()),
        },
        _ => Error::Metadata {
            path: path.display().to_string(),
            reason: format!("page {id}: {e}"),
        },
    }
}

/// Whether a page read from disk is encrypted: a non-zero key version
/// (bytes 0..4 in full_crc32, 26..30 on legacy pages other than page 0).
fn encrypted(page: &[u8], id: PageId, fmt: &PageFormat) -> Option<&'static str> {
    let key = |at: usize| page.get(at..at + 4).is_some_and(|b| b != [0; 4]);
    if fmt.is_full_crc32() {
        key(0).then_some("encrypted (full_crc32 key version set)")
    } else if id.page.0 != 0 && !fmt.is_zip() {
        key(26).then_some("encrypted (key version set)")
    } else {
        None
    }
}

/// The FILE_CHECKPOINT mtr for `lsn` (16 bytes, sequence bit 1).
fn checkpoint_mtr(lsn: Lsn) -> Vec<u8> {
    let mut m = vec![redo::FILE_CHECKPOINT | 0x0A, 0, 0];
    m.extend_from_slice(&lsn.0.to_be_bytes());
    let crc = crc32c::crc32c(&m);
    m.push(1);
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

/// Replace `path` with the empty log mariabackup's prepare leaves: a
/// checkpoint at `end - 16` and one FILE_CHECKPOINT mini-transaction.
///
/// # Errors
/// [`Error::Io`], [`Error::Log`].
pub fn write_empty_log(path: &Path, end: Lsn) -> Result<()> {
    let at = Lsn(end.0.saturating_sub(16).max(START_OFFSET));
    let ck = Checkpoint {
        checkpoint_lsn: at,
        end_lsn: at,
    };
    let mut out = build_backup_log_prefix(ck, DEFAULT_BACKUP_CREATOR)
        .map_err(|e| Error::Log(e.to_string()))?;
    out.extend_from_slice(&checkpoint_mtr(at));
    write_atomic(path, &out)
}

/// Write `path` through a temporary file, synced, then renamed.
///
/// # Errors
/// [`Error::Io`].
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("hotbak-tmp");
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_pages_are_recognised() {
        let full = PageFormat::from_flags(0x15).expect("full_crc32");
        let legacy = PageFormat::from_flags(0x21).expect("legacy");
        let id = PageId {
            space: crate::innodb::SpaceId(5),
            page: PageNo(3),
        };
        let mut p = vec![0u8; 16384];
        assert_eq!(encrypted(&p, id, &full), None);
        assert_eq!(encrypted(&p, id, &legacy), None);
        p[2] = 1;
        assert!(encrypted(&p, id, &full).is_some());
        p[2] = 0;
        p[28] = 1;
        assert!(encrypted(&p, id, &legacy).is_some());
        assert_eq!(encrypted(&p, id, &full), None);
    }

    #[test]
    fn records_before_a_later_init_or_free_are_dropped_in_every_batch() {
        let pg = |n| PageId {
            space: crate::innodb::SpaceId(5),
            page: PageNo(n),
        };
        let (x, y, z) = (pg(7), pg(8), pg(9));
        let w = |id| Record::Page {
            id,
            op: PageOp::Write {
                offset: 100,
                data: &[1],
            },
        };
        let op = |id, op| Record::Page { id, op };
        // Three stretches of the log, decoded apart and merged in order,
        // as the pre-pass's threads do.
        let mut first = PrePass::default();
        first.mtr(Lsn(100), &[w(x), w(y), w(z)], &[]);
        let mut second = PrePass::default();
        second.mtr(Lsn(200), &[op(x, PageOp::FreePage)], &[]);
        second.mtr(Lsn(300), &[op(x, PageOp::InitPage), w(x)], &[]);
        second.mtr(Lsn(310), &[w(x), op(y, PageOp::FreePage)], &[]);
        let mut third = PrePass::default();
        third.mtr(Lsn(400), &[w(x), w(z)], &[]);
        let mut pre = PrePass::default();
        pre.merge(first);
        pre.merge(second);
        pre.merge(third);
        pre.finish();
        // x: freed, then initialised at 300 and written on; the write at
        // 100 (in the first batch, say) must not touch the page on disk.
        let kx = pre.keep(x, true);
        assert!(!kx.admits(Lsn(100)) && !kx.admits(Lsn(200)));
        assert!(kx.admits(Lsn(300)) && kx.admits(Lsn(310)) && kx.admits(Lsn(400)));
        // y ends freed: never written; z never reset: every record.
        assert!(!pre.keep(y, true).admits(Lsn(100)));
        assert!(pre.keep(z, true).admits(Lsn(100)) && pre.keep(z, true).admits(Lsn(400)));
        assert!(matches!(pre.keep(z, false), Keep::NoSpace));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("12M"), Some(12 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn fsp_size_from_page0_writes() {
        let at = (FIL_PAGE_DATA + FSP_SIZE) as u32;
        let op = PageOp::Write {
            offset: at - 2,
            data: &[0, 0, 0, 1, 0, 0, 0, 0],
        };
        assert_eq!(
            field_written(&op, FIL_PAGE_DATA + FSP_SIZE),
            Some(0x0001_0000)
        );
        let op = PageOp::Write {
            offset: at + 1,
            data: &[1, 2, 3, 4],
        };
        assert_eq!(field_written(&op, FIL_PAGE_DATA + FSP_SIZE), None);
    }

    #[test]
    fn empty_log_parses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ib_logfile0");
        write_empty_log(&p, Lsn(100_000)).expect("write");
        let b = std::fs::read(&p).expect("read");
        assert_eq!(b.len(), 12288 + 16);
        let info = parse_log_prefix(&b).expect("valid");
        assert_eq!(info.newest.checkpoint_lsn, Lsn(100_000 - 16));
        let g = LogGeometry::new(info.header.first_lsn, b.len() as u64).expect("geo");
        let s = scan_mtrs(&g, Lsn(100_000 - 16), &b[12288..]).expect("scan");
        assert_eq!(s.mtr_lens, vec![16]);
        let ops: Vec<_> = redo::file_records(&b[12288..]).collect();
        assert_eq!(
            ops,
            vec![Ok(FileOp::Checkpoint {
                lsn: Lsn(100_000 - 16)
            })]
        );
    }
}

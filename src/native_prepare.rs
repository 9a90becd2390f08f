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
//!    sizes page 0 records demand.
//! 4. Apply pass: buffer decoded page records up to the memory budget,
//!    then apply them page by page (read, replay with the recovery rules of
//!    [`crate::innodb::apply`], stamp LSN and checksum, write), and
//!    continue.
//! 5. Replace `ib_logfile0` with the empty log mariabackup leaves
//!    (a checkpoint at `last_lsn - 16` and one FILE_CHECKPOINT mtr) and
//!    mark the backup `log-applied`.
//!
//! DDL markers (`.del`, `.ren`, `.new`) must be applied by the caller
//! first; this function refuses a directory that still has them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints};
use crate::innodb::apply::{
    self, decode_mtr, finish_page, recover_page, LoggedOp, PageId, PageOp, Record, Recovered,
};
use crate::innodb::page::{parse_page0, PageFormat, FIL_PAGE_DATA, FSP_SIZE, FSP_SPACE_FLAGS};
use crate::innodb::redo::{
    self, build_backup_log_prefix, parse_log_prefix, scan_mtrs, Checkpoint, FileOp, LogGeometry,
    ScanStop, DEFAULT_BACKUP_CREATOR, MTR_SIZE_MAX, MTR_TRAILER, START_OFFSET,
};
use crate::innodb::{Lsn, PageNo};

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
            Error::NotABackup { .. } => ErrorClass::Usage,
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
}

impl Default for NativeOptions {
    fn default() -> Self {
        NativeOptions {
            use_memory: 128 << 20,
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
    /// Count of each record kind seen.
    pub record_kinds: BTreeMap<&'static str, u64>,
    /// Files written or extended.
    pub touched: std::collections::BTreeSet<PathBuf>,
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
}

/// Add a one-file tablespace; a space id seen twice is an error.
fn add_space(
    spaces: &mut HashMap<u32, Space>,
    id: u32,
    path: &Path,
    format: PageFormat,
) -> Result<()> {
    if spaces.contains_key(&id) {
        return Err(Error::Metadata {
            path: path.display().to_string(),
            reason: format!("space id {id} appears in two files"),
        });
    }
    spaces.insert(id, Space::single(path, format));
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
    let cnf_path = dir.join(BackupMyCnf::FILE);
    let page_size = u32::try_from(cnf.innodb_page_size)
        .ok()
        .filter(|p| p.is_power_of_two() && (4096..=65536).contains(p))
        .ok_or_else(|| Error::Metadata {
            path: cnf_path.display().to_string(),
            reason: format!("innodb_page_size {} is invalid", cnf.innodb_page_size),
        })?;
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
    let mut log = File::open(log_path).map_err(io(log_path))?;
    let log_len = log.metadata().map_err(io(log_path))?.len();
    let mut prefix = vec![0u8; START_OFFSET as usize];
    log.read_exact(&mut prefix).map_err(io(log_path))?;
    let info = parse_log_prefix(&prefix).map_err(|e| Error::Log(e.to_string()))?;
    let geo = LogGeometry::new(info.header.first_lsn, log_len.max(START_OFFSET + 16))
        .map_err(|e| Error::Log(e.to_string()))?;
    let start = info.newest.checkpoint_lsn;
    let end = job.end;
    if end < start {
        return Err(Error::Log(format!(
            "last_lsn {end} in xtrabackup_checkpoints is before the checkpoint {start}"
        )));
    }
    let mut report = Report {
        start_lsn: start.0,
        end_lsn: end.0,
        ..Report::default()
    };

    // Pre-pass: validate, collect names, sizes and flags, then refuse
    // what cannot be reproduced before any file is touched.
    let mut pre = PrePass::default();
    let mut src = LogSource {
        file: log,
        path: log_path,
        geo,
        range: (start, end),
        page_size,
    };
    src.walk(|lsn, _len, recs| {
        pre.mtr(lsn, recs);
        Ok(())
    })?;
    resolve_deferred(dir, &mut spaces, &pending, &pre)?;
    pre.check(&mut spaces)?;
    report.pages_freed = pre.freed_at_end.len() as u64;

    // Apply pass.
    let budget = usize::try_from(opts.use_memory.max(1 << 20)).unwrap_or(usize::MAX);
    let mut batch: BTreeMap<PageId, Vec<LoggedOp>> = BTreeMap::new();
    let mut used = 0usize;
    let mut page_buf = vec![0u8; apply::MAX_PAGE_SIZE];
    // Extend files first, as recovery does before applying.
    for sp in spaces.values() {
        if sp.recv_size > 0 && extend_space(sp)? {
            report.files_extended += 1;
            if let Some(f) = sp.files.last() {
                report.touched.insert(f.path.clone());
            }
        }
    }
    src.walk(|lsn, len, recs| {
        report.mtrs += 1;
        let end_lsn = Lsn(lsn.0 + len as u64);
        for r in recs {
            let Record::Page { id, op } = r else {
                continue;
            };
            report.page_records += 1;
            *report.record_kinds.entry(op.name()).or_insert(0) += 1;
            if !spaces.contains_key(&id.space.0) {
                report.skipped_records += 1;
                continue;
            }
            if pre.freed_at_end.contains(&id) {
                continue;
            }
            used += 64 + op.heap_bytes();
            let e = batch.entry(id).or_default();
            if matches!(op, PageOp::InitPage | PageOp::FreePage) {
                // Recovery forgets what came before (it will not read the page).
                for o in e.drain(..) {
                    used = used.saturating_sub(64 + o.op.heap_bytes());
                }
            }
            e.push(LoggedOp {
                start_lsn: lsn,
                end_lsn,
                op,
            });
        }
        if used >= budget {
            apply_batch(&spaces, &mut batch, &mut page_buf, &mut report)?;
            used = 0;
        }
        Ok(())
    })?;
    apply_batch(&spaces, &mut batch, &mut page_buf, &mut report)?;
    // Make the pages durable before the log that no longer covers them.
    for path in &report.touched {
        File::open(path)
            .and_then(|h| h.sync_data())
            .map_err(io(path))?;
    }
    Ok(report)
}

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
    Info(crate::innodb::page::SpaceInfo),
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
    match parse_page0(&buf) {
        Ok(i) => Ok(Page0::Info(i)),
        Err(e) => Err(Error::Metadata {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

fn map_spaces(
    dir: &Path,
    cnf: &BackupMyCnf,
    page_size: u32,
    files: &[PathBuf],
) -> Result<(HashMap<u32, Space>, Vec<PathBuf>)> {
    let mut spaces = HashMap::new();
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
    let Page0::Info(sys) = read_page0(&f0.path, page_size)? else {
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
        let info = match read_page0(p, page_size)? {
            Page0::Info(i) => i,
            Page0::Zero => {
                // Created recently: page 0 is still only in the log.
                pending.push(p.clone());
                continue;
            }
        };
        let id = info.space_id.0;
        add_space(&mut spaces, id, p, info.format)?;
    }
    Ok((spaces, pending))
}

/// What the pre-pass learns from the log.
#[derive(Default)]
struct PrePass {
    /// Latest file name per space (FILE_CREATE / FILE_MODIFY / FILE_RENAME).
    names: HashMap<u32, Vec<u8>>,
    /// Last FSP_SIZE written to page 0.
    sizes: HashMap<u32, u32>,
    /// Last FSP_SPACE_FLAGS written to page 0.
    flags: HashMap<u32, u32>,
    /// First mtr with a page record, per space.
    first: HashMap<u32, Lsn>,
    /// FILE_DELETE per space.
    deleted: HashMap<u32, Lsn>,
    /// First record the applier refuses.
    refused: Option<(Lsn, String)>,
    /// First EXTENDED record per space (refused for compressed pages).
    zip_extended: HashMap<u32, Lsn>,
    /// Pages whose last record in the whole log is FREE_PAGE: the server
    /// (in one batch) never writes them, so no batch may.
    freed_at_end: HashSet<PageId>,
}

impl PrePass {
    fn mtr(&mut self, lsn: Lsn, recs: Vec<Record<'_>>) {
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
                    self.first.entry(id.space.0).or_insert(lsn);
                    if matches!(op, PageOp::FreePage) {
                        self.freed_at_end.insert(id);
                    } else if !self.freed_at_end.is_empty() {
                        self.freed_at_end.remove(&id);
                    }
                    if op.is_extended() {
                        self.zip_extended.entry(id.space.0).or_insert(lsn);
                    }
                    if matches!(op, PageOp::TrimPages) && self.refused.is_none() {
                        self.refused = Some((lsn, format!("{} for {id}", op.name())));
                    }
                    if id.page.0 == 0 {
                        if let Some(v) = field_written(&op, FIL_PAGE_DATA + FSP_SIZE) {
                            self.sizes.insert(id.space.0, v);
                        }
                        if let Some(v) = field_written(&op, FIL_PAGE_DATA + FSP_SPACE_FLAGS) {
                            self.flags.insert(id.space.0, v);
                        }
                    }
                }
            }
        }
    }

    /// Refuse what the applier cannot reproduce; set the recovered sizes.
    fn check(&self, spaces: &mut HashMap<u32, Space>) -> Result<()> {
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
    spaces: &mut HashMap<u32, Space>,
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
        add_space(spaces, id, p, format)?;
    }
    Ok(())
}

/// The 4-byte field at `at`, if a record writes all four of its bytes.
fn field_written(op: &PageOp, at: usize) -> Option<u32> {
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

/// The backup's log between its checkpoint and `last_lsn`.
struct LogSource<'p> {
    file: File,
    path: &'p Path,
    geo: LogGeometry,
    range: (Lsn, Lsn),
    page_size: u32,
}

impl LogSource<'_> {
    /// Read the linear backup log over `range` in chunks and call
    /// `f(start_lsn, len, records)` for each mtr.
    fn walk(&mut self, f: impl FnMut(Lsn, usize, Vec<Record<'_>>) -> Result<()>) -> Result<()> {
        let (start, end) = self.range;
        walk_log(
            &mut self.file,
            self.path,
            &self.geo,
            (start, end),
            self.page_size,
            f,
        )
    }
}

fn walk_log(
    log: &mut File,
    path: &Path,
    geo: &LogGeometry,
    (start, end): (Lsn, Lsn),
    page_size: u32,
    mut f: impl FnMut(Lsn, usize, Vec<Record<'_>>) -> Result<()>,
) -> Result<()> {
    const CHUNK: usize = 4 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + MTR_SIZE_MAX);
    let mut lsn = start;
    let mut file_off = geo.offset(start).map_err(|e| Error::Log(e.to_string()))?;
    loop {
        // Refill.
        let want = CHUNK.saturating_sub(buf.len()).max(MTR_SIZE_MAX);
        let old = buf.len();
        buf.resize(old + want, 0);
        log.seek(SeekFrom::Start(file_off)).map_err(io(path))?;
        let n = read_full(log, &mut buf[old..]).map_err(io(path))?;
        buf.truncate(old + n);
        file_off += n as u64;
        let scan = scan_mtrs(geo, lsn, &buf).map_err(|e| Error::Log(e.to_string()))?;
        let mut pos = 0usize;
        for &len in &scan.mtr_lens {
            if lsn >= end {
                break;
            }
            let m = &buf[pos..pos + len];
            let recs = decode_mtr(&m[..len - MTR_TRAILER], page_size)
                .map_err(|source| Error::Apply { lsn, source })?;
            f(lsn, len, recs)?;
            pos += len;
            lsn = Lsn(lsn.0 + len as u64);
        }
        if lsn >= end {
            if lsn != end {
                return Err(Error::Log(format!(
                    "an mtr crosses last_lsn {end}: the log continues to {lsn}"
                )));
            }
            return Ok(());
        }
        match scan.stop {
            ScanStop::NeedMore if n > 0 => {
                buf.drain(..pos);
            }
            stop => {
                let why = match stop {
                    ScanStop::EndOfLog(e) => e.to_string(),
                    ScanStop::NeedMore => "end of file".into(),
                };
                return Err(Error::Log(format!(
                    "the log ends at LSN {lsn} ({why}), before last_lsn {end}"
                )));
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

/// Ask the kernel for every page `batch` will read before the first is
/// read, so that the scattered reads overlap on the device (the recovery
/// server reads ahead the same way). Only a hint: a file that cannot be
/// opened here fails, with its name, when the page is read.
fn prefetch_batch(spaces: &HashMap<u32, Space>, batch: &BTreeMap<PageId, Vec<LoggedOp>>) {
    let mut open: Option<(&Path, File)> = None;
    for (id, ops) in batch {
        if !apply::needs_read(ops) {
            continue;
        }
        let Some(sp) = spaces.get(&id.space.0) else {
            continue;
        };
        let Some((path, off)) = locate(sp, id.page) else {
            continue;
        };
        if open.as_ref().map(|(p, _)| *p) != Some(path) {
            open = File::open(path).ok().map(|f| (path, f));
        }
        if let Some((_, f)) = &open {
            let _ = crate::sys::prefetch(f, off, u64::from(sp.format.physical_size()));
        }
    }
}

fn apply_batch(
    spaces: &HashMap<u32, Space>,
    batch: &mut BTreeMap<PageId, Vec<LoggedOp>>,
    buf: &mut [u8],
    report: &mut Report,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    report.batches += 1;
    prefetch_batch(spaces, batch);
    let mut open: Option<(PathBuf, File)> = None;
    for (id, ops) in std::mem::take(batch) {
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
            report.touched.insert(path.to_path_buf());
        }
        let Some((_, file)) = open.as_ref() else {
            continue;
        };
        let Some(buf) = buf.get_mut(..sp.format.physical_size() as usize) else {
            continue;
        };
        buf.fill(0);
        if apply::needs_read(&ops) {
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
            if let Some(what) = encrypted(buf, id, &sp.format) {
                return Err(Error::Unsupported {
                    lsn: ops.first().map_or(Lsn(0), |o| o.start_lsn),
                    what: format!("page {id} is {what} (records apply to decrypted pages)"),
                });
            }
        }
        let first_lsn = ops.first().map_or(Lsn(0), |o| o.start_lsn);
        match recover_page(buf, id, &ops).map_err(|source| Error::Apply {
            lsn: first_lsn,
            source,
        })? {
            Recovered::Applied { end_lsn } => {
                finish_page(buf, id, &sp.format, end_lsn).map_err(|source| Error::Apply {
                    lsn: first_lsn,
                    source,
                })?;
                file.write_all_at(buf, off).map_err(io(path))?;
                report.pages_written += 1;
            }
            Recovered::Unchanged => report.pages_unchanged += 1,
            // Only pages freed and re-initialised within a batch get here.
            Recovered::Freed => {}
        }
    }
    Ok(())
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
            data: vec![0, 0, 0, 1, 0, 0, 0, 0],
        };
        assert_eq!(
            field_written(&op, FIL_PAGE_DATA + FSP_SIZE),
            Some(0x0001_0000)
        );
        let op = PageOp::Write {
            offset: at + 1,
            data: vec![1, 2, 3, 4],
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

//! Incremental prepare: `hotbak prepare --target-dir BASE --incremental-dir INC`.
//!
//! Applies one incremental backup (hotbak's or mariabackup's) onto a base
//! that was prepared without rollback (`backup_type = log-applied`), the
//! way `mariabackup --prepare --incremental-dir` does, with the redo part
//! done by the native applier ([`crate::native_prepare::apply_log`]):
//!
//! 1. Check the chain before touching anything: the incremental's
//!    `from_lsn` must be the base's `to_lsn` (else: out of order, twice, or
//!    the wrong base, each named with both LSNs), the page sizes must
//!    agree, the parent identity recorded by hotbak must match, and every
//!    `.meta`/`.delta` must parse.
//! 2. The incremental's DDL markers, in mariabackup's order, as a view
//!    ([`view`], pure): `.del` drops a delta, `.ren` renames it,
//!    `.new.meta`/`.new.delta` replace it, `.new` (a whole copy) is copied
//!    into the base as `.ibd`.
//! 3. Deltas are matched to the base's tablespaces **by space id**
//!    ([`plan`], pure): a file of another id in the way is set aside as
//!    `xtrabackup_tmp_#ID.ibd`, a file of the same id under another name is
//!    renamed, a missing one is created (4 pages). Pages are written at
//!    `page_no × page_size`; page 0 in a delta extends the file to its
//!    `FSP_SIZE` (never shrinks). Base tablespaces the incremental does not
//!    name are deleted.
//! 4. The incremental's redo log is applied natively from its checkpoint to
//!    its `last_lsn`; the base gets the empty log mariabackup leaves.
//! 5. The incremental's non-InnoDB files replace the base's (mariabackup's
//!    extension list, `aria_log*`, the `xtrabackup_*` info files, hotbak's
//!    links file); database directories the incremental no longer has are
//!    removed.
//! 6. `xtrabackup_checkpoints`: `log-applied`, `to_lsn`/`last_lsn` of the
//!    incremental. Written last: a run interrupted before it can be rerun.
//!
//! Unlike mariabackup, the incremental directory is left unchanged
//! (mariabackup deletes each `.delta` after applying it and moves `.new`
//! files into the base): a failed or interrupted run can be repeated.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::delta::{self, Meta, MAGIC_LAST, MAGIC_MORE};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints, XtrabackupInfo};
use crate::format::path::RelPath;
use crate::innodb::page::{parse_page0, FIL_PAGE_DATA, FSP_SIZE};
use crate::innodb::Lsn;
use crate::native_prepare::{self, LogJob, NativeOptions};

/// Errors of the incremental prepare.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The two directories do not form a chain (nothing was changed).
    #[error("{0} (nothing was changed)")]
    Chain(String),
    /// A malformed `.meta`, `.delta`, marker or metadata file.
    #[error("{path}: {reason}")]
    Corrupt {
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
    /// The native applier (metadata or redo of the incremental).
    #[error(transparent)]
    Native(#[from] native_prepare::Error),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Chain(_) => ErrorClass::Usage,
            Error::Corrupt { .. } => ErrorClass::Corrupt,
            Error::Io { .. } => ErrorClass::Io,
            Error::Native(e) => e.class(),
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

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// What the incremental prepare did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The base's `to_lsn` before.
    pub from_lsn: u64,
    /// The base's `to_lsn` after.
    pub to_lsn: u64,
    /// `.delta` files applied.
    pub deltas: usize,
    /// Pages written from the deltas.
    pub delta_pages: u64,
    /// Tablespaces created in the base.
    pub created: usize,
    /// Tablespaces renamed in the base (set aside or moved to their new name).
    pub renamed: usize,
    /// Base tablespaces deleted (not in the incremental).
    pub deleted: usize,
    /// Whole `.new` tablespace copies taken from the incremental.
    pub new_copies: usize,
    /// Non-InnoDB files copied from the incremental.
    pub files_copied: usize,
    /// The native redo apply of the incremental's log.
    pub redo: native_prepare::Report,
}

// ---------------------------------------------------------------- chain

/// Identity of a backup as its metadata says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// `xtrabackup_checkpoints`.
    pub ck: Checkpoints,
    /// `uuid` of `xtrabackup_info`, when present.
    pub uuid: Option<String>,
    /// hotbak's record of the parent (`parent_uuid` in `xtrabackup_info`).
    pub parent_uuid: Option<String>,
}

/// Check that `inc` applies onto `base` (pure). `base` and `inc` name the
/// directories in messages.
///
/// # Errors
/// [`Error::Chain`] naming both LSNs.
pub fn check_chain(base: &Link, inc: &Link, base_dir: &str, inc_dir: &str) -> Result<()> {
    let (b, i) = (&base.ck, &inc.ck);
    if i.backup_type != BackupType::Incremental {
        return Err(Error::Chain(format!(
            "{inc_dir} is not an incremental backup (backup_type = {})",
            i.backup_type.as_str()
        )));
    }
    match b.backup_type {
        BackupType::LogApplied | BackupType::FullBackuped => {}
        BackupType::FullPrepared => {
            return Err(Error::Chain(format!(
                "{base_dir} was prepared by starting mariadbd on it (backup_type = full-prepared), which rolled back \
                 its open transactions: incrementals cannot be applied to it any more. Prepare a fresh copy of the base \
                 with `hotbak prepare --native` (or mariabackup --prepare), then apply the incrementals"
            )))
        }
        ref t => {
            return Err(Error::Chain(format!(
                "{base_dir} cannot take an incremental: backup_type is {}, expected a full backup (prepared with \
                 log-applied, or not yet prepared)",
                t.as_str()
            )))
        }
    }
    // hotbak records the parent's identity; the LSNs alone cannot tell
    // a chain apart when the server did not checkpoint between two backups.
    if inc.uuid.is_some() && inc.uuid == base.uuid {
        return Err(Error::Chain(format!(
            "{inc_dir} (from_lsn {}, to_lsn {}) is already applied to {base_dir} (to_lsn {}): applying it twice is refused",
            i.from_lsn, i.to_lsn, b.to_lsn
        )));
    }
    if let (Some(want), Some(have)) = (&inc.parent_uuid, &base.uuid) {
        if want != have {
            return Err(Error::Chain(format!(
                "{inc_dir} (from_lsn {}) was taken from the backup {want}, but {base_dir} (to_lsn {}) is the backup {have}: \
                 the wrong base, or out of order (the incremental taken from {want} must be applied first)",
                i.from_lsn, b.to_lsn
            )));
        }
    }
    if i.from_lsn != b.to_lsn {
        let why = if i.to_lsn == b.to_lsn && i.last_lsn == b.last_lsn {
            "this incremental is already applied to the base (applying it twice is refused)"
                .to_owned()
        } else if i.from_lsn > b.to_lsn {
            "out of order: the incrementals between them must be applied first".to_owned()
        } else if i.to_lsn <= b.to_lsn {
            "the base is already past this incremental (an incremental is applied once, in order)"
                .to_owned()
        } else {
            "this incremental was taken from another base".to_owned()
        };
        return Err(Error::Chain(format!(
            "{inc_dir} starts at from_lsn {} but {base_dir} ends at to_lsn {}: {why}",
            i.from_lsn, b.to_lsn
        )));
    }
    if i.to_lsn < i.from_lsn || i.last_lsn < i.to_lsn {
        return Err(Error::Chain(format!(
            "{inc_dir}: inconsistent LSNs (from_lsn {}, to_lsn {}, last_lsn {})",
            i.from_lsn, i.to_lsn, i.last_lsn
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- view

/// One file of the incremental as the view sees it (relative paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaSource {
    /// The `.delta` (relative to the incremental).
    pub delta: String,
    /// The `.meta` (relative to the incremental).
    pub meta: String,
}

/// The incremental after its DDL markers, without changing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Tablespace path in the base (`db/t.ibd`, `ibdata1`, `undo001`) →
    /// its delta.
    pub deltas: BTreeMap<String, DeltaSource>,
    /// Whole copies: source in the incremental (`db/t.new`) → `db/t.ibd`.
    pub new_copies: Vec<(String, String)>,
}

/// Build the [`View`] from the incremental's file list (relative paths)
/// and the contents of its `.ren` markers (pure).
///
/// # Errors
/// [`Error::Corrupt`] for a marker that cannot be followed.
pub fn view(files: &[String], ren_targets: &BTreeMap<String, String>) -> Result<View> {
    let mut v = View::default();
    let set: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    for f in files {
        let Some(base) = f.strip_suffix(".delta") else {
            continue;
        };
        if base.ends_with(".new") {
            continue;
        }
        let meta = format!("{base}.meta");
        if set.contains(meta.as_str()) {
            v.deltas.insert(
                base.to_owned(),
                DeltaSource {
                    delta: f.clone(),
                    meta,
                },
            );
        }
    }
    // .del
    for f in files {
        if let Some(stem) = f.strip_suffix(".del") {
            v.deltas.remove(&format!("{stem}.ibd"));
        }
    }
    // .ren, all at once (swaps and chains resolve as mariabackup's parking does).
    let mut moved = Vec::new();
    for (marker, target) in ren_targets {
        let Some(stem) = marker.strip_suffix(".ren") else {
            continue;
        };
        let target = target.trim();
        RelPath::new(&format!("{target}.ibd")).map_err(|e| Error::Corrupt {
            path: marker.clone(),
            reason: format!("rename target {target:?}: {e}"),
        })?;
        if let Some(src) = v.deltas.remove(&format!("{stem}.ibd")) {
            moved.push((format!("{target}.ibd"), src, marker));
        }
    }
    for (to, src, marker) in moved {
        if v.deltas.insert(to.clone(), src).is_some() {
            return Err(Error::Corrupt {
                path: marker.clone(),
                reason: format!("renames a tablespace onto {to}, which another delta already is"),
            });
        }
    }
    // .new.meta / .new.delta replace the delta of the same name.
    for f in files {
        let Some(stem) = f.strip_suffix(".new.delta") else {
            continue;
        };
        let meta = format!("{stem}.new.meta");
        if set.contains(meta.as_str()) {
            v.deltas.insert(
                format!("{stem}.ibd"),
                DeltaSource {
                    delta: f.clone(),
                    meta,
                },
            );
        }
    }
    // .new: whole copies.
    for f in files {
        if let Some(stem) = f.strip_suffix(".new") {
            let to = format!("{stem}.ibd");
            v.deltas.remove(&to);
            v.new_copies.push((f.clone(), to));
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------- plan

/// A step on the base's tablespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Rename a base file (`from` → `to`, relative).
    Rename {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// Create an empty tablespace file of `pages` pages.
    Create {
        /// Relative path.
        rel: String,
        /// Pages.
        pages: u32,
    },
    /// Apply the delta to the file.
    Apply {
        /// Base file, relative.
        rel: String,
        /// The view's delta.
        src: DeltaSource,
        /// Its `.meta`.
        meta: Meta,
    },
    /// Delete a base tablespace the incremental does not name.
    Delete {
        /// Relative path.
        rel: String,
    },
}

/// Whether a relative path is a file-per-table tablespace (in a database
/// directory), as opposed to the system and undo tablespaces at the top.
fn is_user(rel: &str) -> bool {
    rel.contains('/')
}

/// Match the view's deltas to the base's tablespaces by space id (pure).
///
/// `base` maps each base tablespace file (relative) to its space id
/// (`None` when page 0 does not say); `deltas` is the view with each
/// `.meta` parsed. The steps come in order: for each delta, the renames
/// or creation it needs, then its application; the deletions last.
#[must_use]
pub fn plan(
    base: &BTreeMap<String, Option<u32>>,
    deltas: &[(String, DeltaSource, Meta)],
) -> Vec<Step> {
    let mut files = base.clone();
    let mut steps = Vec::new();
    let mut keep = BTreeSet::new();
    for (rel, src, meta) in deltas {
        let id = meta.space_id;
        if is_user(rel) {
            keep.insert(rel.clone());
            match files.get(rel) {
                Some(Some(have)) if *have == id => {}
                Some(other) => {
                    // Another tablespace under this name: set it aside.
                    let aside_id = other.map_or_else(|| "unknown".to_owned(), |i| i.to_string());
                    let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
                    let mut to = format!("{dir}/xtrabackup_tmp_#{aside_id}.ibd");
                    let mut n = 1;
                    while files.contains_key(&to) {
                        to = format!("{dir}/xtrabackup_tmp_#{aside_id}_{n}.ibd");
                        n += 1;
                    }
                    let v = files.remove(rel).flatten();
                    files.insert(to.clone(), v);
                    steps.push(Step::Rename {
                        from: rel.clone(),
                        to,
                    });
                }
                None => {}
            }
            if !files.contains_key(rel) {
                let same = files
                    .iter()
                    .find(|(r, i)| **i == Some(id) && is_user(r))
                    .map(|(r, _)| r.clone());
                if let Some(from) = same {
                    files.remove(&from);
                    steps.push(Step::Rename {
                        from,
                        to: rel.clone(),
                    });
                } else {
                    steps.push(Step::Create {
                        rel: rel.clone(),
                        pages: 4,
                    });
                }
                files.insert(rel.clone(), Some(id));
            }
        }
        steps.push(Step::Apply {
            rel: rel.clone(),
            src: src.clone(),
            meta: *meta,
        });
    }
    for rel in files.keys() {
        if is_user(rel) && !keep.contains(rel) {
            steps.push(Step::Delete { rel: rel.clone() });
        }
    }
    steps
}

// ---------------------------------------------------------------- I/O

/// Files of a backup directory (top level and one level of database
/// directories), relative, sorted.
fn list(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let ty = e.file_type().map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if ty.is_dir() {
            let sub = e.path();
            for f in std::fs::read_dir(&sub).map_err(io(&sub))? {
                let f = f.map_err(io(&sub))?;
                if f.file_type().map_err(io(&sub))?.is_file() {
                    out.push(format!("{name}/{}", f.file_name().to_string_lossy()));
                }
            }
        } else if ty.is_file() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn read_small(p: &Path) -> Result<String> {
    let len = std::fs::metadata(p).map_err(io(p))?.len();
    if len > 1 << 20 {
        return Err(corrupt(
            p,
            format!("{len} bytes is too large for a metadata file"),
        ));
    }
    std::fs::read_to_string(p).map_err(io(p))
}

/// Read a backup's chain identity.
///
/// # Errors
/// [`Error::Native`] for a missing or malformed `xtrabackup_checkpoints`.
pub fn read_link(dir: &Path) -> Result<Link> {
    let ck = native_prepare::read_checkpoints(&dir.join(Checkpoints::FILE))?;
    let info_path = dir.join(XtrabackupInfo::FILE);
    let (uuid, parent_uuid) = if info_path.is_file() {
        let text = read_small(&info_path)?;
        let field = |k: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(key, _)| key.trim() == k)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        (field("uuid"), field(PARENT_UUID_KEY))
    } else {
        (None, None)
    };
    Ok(Link {
        ck,
        uuid,
        parent_uuid,
    })
}

/// The `xtrabackup_info` key under which hotbak records the parent's uuid.
pub const PARENT_UUID_KEY: &str = "hotbak_parent_uuid";

/// The space id in page 0 of a base file (`None` when page 0 is empty or
/// unreadable as a header).
fn space_id_of(path: &Path, page_size: usize) -> Result<Option<u32>> {
    let f = File::open(path).map_err(io(path))?;
    let mut buf = vec![0u8; page_size];
    let n = read_full_at(&f, &mut buf, 0).map_err(io(path))?;
    buf.truncate(n);
    if buf.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    Ok(parse_page0(&buf).ok().map(|i| i.space_id.0))
}

fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Check a `.delta`'s structure (cluster headers and length) without
/// reading its pages; the number of pages.
fn check_delta(path: &Path, page_size: usize) -> Result<u64> {
    let f = File::open(path).map_err(io(path))?;
    let len = f.metadata().map_err(io(path))?.len();
    let ps = page_size as u64;
    let mut head = vec![0u8; page_size];
    let mut at = 0u64;
    let mut pages = 0u64;
    loop {
        let (last, numbers) = read_cluster_header(&f, path, &mut head, at)?;
        at += ps * (1 + numbers.len() as u64);
        pages += numbers.len() as u64;
        if !last && numbers.len() != page_size / 4 - 1 {
            return Err(corrupt(
                path,
                format!("cluster before offset {at} is not full but not the last"),
            ));
        }
        if at > len {
            return Err(corrupt(
                path,
                format!("cut short: {len} bytes, the clusters need {at}"),
            ));
        }
        if last {
            if at != len {
                return Err(corrupt(
                    path,
                    format!("{} bytes after the last cluster (offset {at})", len - at),
                ));
            }
            return Ok(pages);
        }
    }
}

/// Read and parse the cluster header page at `at` of the `.delta` `path`.
fn read_cluster_header(
    f: &File,
    path: &Path,
    head: &mut [u8],
    at: u64,
) -> Result<(bool, Vec<u32>)> {
    if read_full_at(f, head, at).map_err(io(path))? != head.len() {
        return Err(corrupt(
            path,
            format!("cluster header at offset {at} cut short"),
        ));
    }
    cluster_header(head).map_err(|e| corrupt(path, format!("offset {at}: {e}")))
}

/// Parse one cluster header page: (last, page numbers).
fn cluster_header(head: &[u8]) -> std::result::Result<(bool, Vec<u32>), delta::Error> {
    let last = match head.get(..4) {
        Some(m) if m == MAGIC_LAST => true,
        Some(m) if m == MAGIC_MORE => false,
        m => {
            return Err(delta::Error::Corrupt(format!(
                "magic {m:02x?} is neither xtra nor XTRA"
            )))
        }
    };
    let mut numbers = Vec::new();
    for slot in head.chunks_exact(4).skip(1) {
        let n = u32::from_be_bytes([slot[0], slot[1], slot[2], slot[3]]);
        if n == u32::MAX {
            break;
        }
        numbers.push(n);
    }
    Ok((last, numbers))
}

/// The system tablespace's files and their first page, from
/// `innodb_data_file_path`.
fn system_files(cnf: &BackupMyCnf, page_size: u64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut first = 0u64;
    for spec in cnf
        .innodb_data_file_path
        .split(';')
        .filter(|s| !s.is_empty())
    {
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or_default().to_owned();
        let bytes = parts
            .next()
            .and_then(native_prepare::parse_size)
            .unwrap_or(0);
        out.push((name, first));
        first += bytes / page_size;
    }
    out
}

/// Write the delta's pages into `dst`; page 0 extends the file to its
/// `FSP_SIZE` (for the system tablespace: its last file). Returns the
/// pages written.
fn apply_delta(src: &Path, dst: &Path, page_size: usize, sys: Option<&SysGeometry>) -> Result<u64> {
    const CHUNK_PAGES: usize = 64;
    let f = File::open(src).map_err(io(src))?;
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dst)
        .map_err(io(dst))?;
    let ps = page_size as u64;
    let mut head = vec![0u8; page_size];
    let mut buf = vec![0u8; page_size * CHUNK_PAGES];
    let mut at = 0u64;
    let mut written = 0u64;
    loop {
        let (last, numbers) = read_cluster_header(&f, src, &mut head, at)?;
        at += ps;
        for chunk in numbers.chunks(CHUNK_PAGES) {
            let want = chunk.len() * page_size;
            if read_full_at(&f, &mut buf[..want], at).map_err(io(src))? != want {
                return Err(corrupt(src, format!("pages at offset {at} cut short")));
            }
            at += want as u64;
            for (i, &page_no) in chunk.iter().enumerate() {
                let page = &buf[i * page_size..(i + 1) * page_size];
                if page_no == 0 {
                    let at = FIL_PAGE_DATA + FSP_SIZE;
                    let n_pages = u64::from(u32::from_be_bytes([
                        page[at],
                        page[at + 1],
                        page[at + 2],
                        page[at + 3],
                    ]));
                    let space = u32::from_be_bytes([page[34], page[35], page[36], page[37]]);
                    if space != 0 {
                        extend_to(dst, &out, n_pages * ps)?;
                    } else if let Some(g) = sys {
                        g.extend(dst, n_pages)?;
                    }
                }
                out.write_all_at(page, u64::from(page_no) * ps)
                    .map_err(io(dst))?;
                written += 1;
            }
        }
        if last {
            break;
        }
    }
    out.sync_data().map_err(io(dst))?;
    Ok(written)
}

fn extend_to(path: &Path, f: &File, bytes: u64) -> Result<()> {
    let len = f.metadata().map_err(io(path))?.len();
    if bytes > len {
        f.set_len(bytes).map_err(io(path))?;
    }
    Ok(())
}

/// The system tablespace: only page 0 of its first file says its size;
/// only the last file grows.
struct SysGeometry {
    first: PathBuf,
    last: PathBuf,
    last_first_page: u64,
    page_size: u64,
}

impl SysGeometry {
    fn extend(&self, dst: &Path, n_pages: u64) -> Result<()> {
        if dst != self.first {
            return Ok(());
        }
        let f = OpenOptions::new()
            .write(true)
            .open(&self.last)
            .map_err(io(&self.last))?;
        extend_to(
            &self.last,
            &f,
            n_pages.saturating_sub(self.last_first_page) * self.page_size,
        )
    }
}

/// mariabackup's list of non-InnoDB file extensions copied from an
/// incremental (`ibx_copy_incremental_over_full`).
const NON_INNODB_EXT: &[&str] = &[
    "frm", "isl", "MYD", "MYI", "MAD", "MAI", "MRG", "TRG", "TRN", "ARM", "ARZ", "CSM", "CSV",
    "opt", "par",
];
/// The top-level information files taken from the incremental.
const SUPPLEMENTARY: &[&str] = &[
    "xtrabackup_binlog_info",
    "xtrabackup_galera_info",
    "donor_galera_info",
    "xtrabackup_slave_info",
    "xtrabackup_info",
    "ib_lru_dump",
    crate::format::links::LINKS_NAME,
];

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).map_err(io(p))?;
    }
    let tmp = to.with_extension("hotbak-tmp");
    std::fs::copy(from, &tmp).map_err(io(from))?;
    std::fs::rename(&tmp, to).map_err(io(to))
}

/// Everything [`apply`] checks before the base changes.
struct Inspected {
    bl: Link,
    il: Link,
    bcnf: BackupMyCnf,
    icnf: BackupMyCnf,
    page_size: usize,
    v: View,
    deltas: Vec<(String, DeltaSource, Meta)>,
}

/// Check that `inc` can be applied onto `base` (a prepared or not yet
/// prepared full backup, or one with earlier incrementals applied)
/// without changing either: the chain, the geometry, every `.meta` and
/// the structure of every `.delta`.
///
/// # Errors
/// As [`apply`]'s checks.
pub fn precheck(base: &Path, inc: &Path) -> Result<()> {
    inspect(base, inc).map(|_| ())
}

fn inspect(base: &Path, inc: &Path) -> Result<Inspected> {
    let bl = read_link(base)?;
    let il = read_link(inc)?;
    let (bd, id) = (base.display().to_string(), inc.display().to_string());
    check_chain(&bl, &il, &bd, &id)?;
    let bcnf = native_prepare::read_backup_my_cnf(base)?;
    let icnf = native_prepare::read_backup_my_cnf(inc)?;
    if bcnf.innodb_page_size != icnf.innodb_page_size {
        return Err(Error::Chain(format!(
            "{id} has innodb_page_size {} but {bd} has {}",
            icnf.innodb_page_size, bcnf.innodb_page_size
        )));
    }
    let page_size = usize::try_from(icnf.innodb_page_size).unwrap_or(0);
    if !inc.join("ib_logfile0").is_file() {
        return Err(Error::Chain(format!("{id}: ib_logfile0 is missing")));
    }

    // The view, and every .meta/.delta checked before anything changes.
    let files = list(inc)?;
    let mut rens = BTreeMap::new();
    for f in files.iter().filter(|f| f.ends_with(".ren")) {
        rens.insert(f.clone(), read_small(&inc.join(f))?);
    }
    let v = view(&files, &rens)?;
    // Every incremental has a delta of the system tablespace: without one
    // the files are still compressed or encrypted (or not an incremental),
    // and going on would delete every base tablespace the view lacks.
    let sys_first = system_files(&icnf, page_size.max(1) as u64)
        .first()
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| "ibdata1".to_owned());
    if !v.deltas.contains_key(&sys_first) {
        let packed = files.iter().find(|f| {
            [".qp", ".zst", ".lz4", ".hbenc", ".xbcrypt"]
                .iter()
                .any(|e| f.ends_with(e))
        });
        return Err(Error::Chain(format!(
            "{id} has no {sys_first}.delta + {sys_first}.meta{}: not an extracted incremental",
            packed.map_or_else(String::new, |p| format!(
                " ({p} is still compressed or encrypted: extract it with xbextract first)"
            ))
        )));
    }
    let mut deltas = Vec::new();
    for (rel, src) in &v.deltas {
        let mp = inc.join(&src.meta);
        let meta = Meta::parse(&read_small(&mp)?).map_err(|e| corrupt(&mp, e.to_string()))?;
        let ps = usize::try_from(meta.page_size).unwrap_or(0);
        let logical = if meta.zip_size == 0 { page_size } else { ps };
        if !ps.is_power_of_two() || !(1024..=65536).contains(&ps) || logical != ps {
            return Err(corrupt(
                &mp,
                format!(
                    "page_size {} does not fit innodb_page_size {page_size}",
                    meta.page_size
                ),
            ));
        }
        if meta.zip_size != 0 && meta.zip_size != meta.page_size {
            return Err(corrupt(
                &mp,
                format!(
                    "zip_size {} differs from page_size {}",
                    meta.zip_size, meta.page_size
                ),
            ));
        }
        check_delta(&inc.join(&src.delta), ps)?;
        RelPath::new(rel).map_err(|e| corrupt(&inc.join(&src.delta), e.to_string()))?;
        if !is_user(rel) && !base.join(rel).is_file() {
            return Err(Error::Chain(format!(
                "{id}/{} is a delta of {rel}, which {bd} does not have (innodb_data_file_path or innodb_undo_tablespaces differ)",
                src.delta
            )));
        }
        deltas.push((rel.clone(), src.clone(), meta));
    }
    for (from, _) in &v.new_copies {
        RelPath::new(from).map_err(|e| corrupt(&inc.join(from), e.to_string()))?;
    }

    Ok(Inspected {
        bl,
        il,
        bcnf,
        icnf,
        page_size,
        v,
        deltas,
    })
}

/// Apply the incremental `inc` onto the base `base` (see the module text).
/// The base must be prepared (`log-applied`); the caller prepares a
/// `full-backuped` base natively first.
///
/// # Errors
/// [`Error::Chain`] (nothing changed) when they are not a chain; the
/// other variants for damaged input or I/O.
pub fn apply(base: &Path, inc: &Path, opts: &NativeOptions) -> Result<Report> {
    let Inspected {
        bl,
        il,
        bcnf,
        icnf,
        page_size,
        v,
        deltas,
    } = inspect(base, inc)?;
    let bd = base.display().to_string();
    if bl.ck.backup_type != BackupType::LogApplied {
        return Err(Error::Chain(format!(
            "{bd} must be prepared before an incremental is applied (backup_type is {})",
            bl.ck.backup_type.as_str()
        )));
    }
    let mut report = Report {
        from_lsn: bl.ck.to_lsn,
        to_lsn: il.ck.to_lsn,
        ..Report::default()
    };
    // From here on the base changes.
    for (from, to) in &v.new_copies {
        copy_file(&inc.join(from), &base.join(to))?;
        report.new_copies += 1;
    }
    let new_names: BTreeSet<&str> = v.new_copies.iter().map(|(_, to)| to.as_str()).collect();
    let mut base_ts = BTreeMap::new();
    for f in list(base)? {
        if f.ends_with(".ibd") && is_user(&f) {
            let id = space_id_of(&base.join(&f), page_size)?;
            base_ts.insert(f, id);
        }
    }
    let sys = system_files(&bcnf, page_size as u64);
    let sys_geo = match (sys.first(), sys.last()) {
        (Some((first, _)), Some((last, last_first))) => Some(SysGeometry {
            first: base.join(first),
            last: base.join(last),
            last_first_page: *last_first,
            page_size: page_size as u64,
        }),
        _ => None,
    };
    for step in plan(&base_ts, &deltas) {
        match step {
            Step::Rename { from, to } => {
                std::fs::rename(base.join(&from), base.join(&to)).map_err(io(&base.join(&from)))?;
                report.renamed += 1;
            }
            Step::Create { rel, pages } => {
                let p = base.join(&rel);
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d).map_err(io(d))?;
                }
                let f = File::create(&p).map_err(io(&p))?;
                f.set_len(u64::from(pages) * page_size as u64)
                    .map_err(io(&p))?;
                report.created += 1;
            }
            Step::Apply { rel, src, meta } => {
                let ps = meta.page_size as usize;
                let dst = base.join(&rel);
                let sys = (meta.space_id == 0).then_some(sys_geo.as_ref()).flatten();
                report.delta_pages += apply_delta(&inc.join(&src.delta), &dst, ps, sys)?;
                report.deltas += 1;
            }
            Step::Delete { rel } => {
                if new_names.contains(rel.as_str()) {
                    continue;
                }
                let p = base.join(&rel);
                match std::fs::remove_file(&p) {
                    Ok(()) => report.deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&p)(e)),
                }
            }
        }
    }

    // The incremental's redo, natively, onto the base.
    let log = inc.join("ib_logfile0");
    report.redo = native_prepare::apply_log(
        &LogJob {
            data_dir: base,
            log_path: &log,
            end: Lsn(il.ck.last_lsn),
            cnf: &icnf,
        },
        opts,
    )?;
    native_prepare::write_empty_log(&base.join("ib_logfile0"), Lsn(il.ck.last_lsn))?;

    report.files_copied = copy_non_innodb(base, inc)?;

    let done = Checkpoints {
        backup_type: BackupType::LogApplied,
        to_lsn: il.ck.to_lsn.max(bl.ck.to_lsn),
        last_lsn: if il.ck.to_lsn > bl.ck.to_lsn {
            il.ck.last_lsn
        } else {
            bl.ck.last_lsn
        },
        ..bl.ck
    };
    native_prepare::write_atomic(&base.join(Checkpoints::FILE), done.render().as_bytes())?;
    Ok(report)
}

/// mariabackup's `apply_log_finish` for an incremental: the base's
/// database directories keep only tablespaces, the incremental's
/// non-InnoDB files and information files are copied in, and database
/// directories the incremental does not have are removed once empty.
fn copy_non_innodb(base: &Path, inc: &Path) -> Result<usize> {
    for f in list(base)? {
        if !is_user(&f) {
            continue;
        }
        let keep = [".ibd", ".delta", ".meta"].iter().any(|e| f.ends_with(e));
        if !keep {
            let p = base.join(&f);
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    let mut n = 0;
    let inc_files = list(inc)?;
    for f in &inc_files {
        let ext = f.rsplit_once('.').map(|(_, e)| e);
        let take = if is_user(f) {
            ext.is_some_and(|e| NON_INNODB_EXT.contains(&e))
        } else {
            f.starts_with("aria_log")
                || f.starts_with("aws-kms-key")
                || f.contains(".mrn")
                || SUPPLEMENTARY.contains(&f.as_str())
        };
        if take {
            copy_file(&inc.join(f), &base.join(f))?;
            n += 1;
        }
    }
    // A links file the incremental does not have no longer applies.
    let links = crate::format::links::LINKS_NAME;
    if !inc_files.iter().any(|f| f == links) && base.join(links).is_file() {
        std::fs::remove_file(base.join(links)).map_err(io(&base.join(links)))?;
    }
    // DROP DATABASE between the two: empty base directories the
    // incremental does not have.
    for e in std::fs::read_dir(base).map_err(io(base))? {
        let e = e.map_err(io(base))?;
        if !e.file_type().map_err(io(base))?.is_dir() {
            continue;
        }
        let p = e.path();
        let empty = std::fs::read_dir(&p).map_err(io(&p))?.next().is_none();
        if empty && !inc.join(e.file_name()).is_dir() {
            std::fs::remove_dir(&p).map_err(io(&p))?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ck(t: BackupType, from: u64, to: u64, last: u64) -> Checkpoints {
        Checkpoints {
            backup_type: t,
            from_lsn: from,
            to_lsn: to,
            last_lsn: last,
            recover_binlog_info: false,
        }
    }

    fn link(c: Checkpoints, uuid: Option<&str>, parent: Option<&str>) -> Link {
        Link {
            ck: c,
            uuid: uuid.map(str::to_owned),
            parent_uuid: parent.map(str::to_owned),
        }
    }

    #[test]
    fn chain_checks_name_both_lsns() {
        let base = link(ck(BackupType::LogApplied, 0, 1000, 1100), Some("b"), None);
        let inc1 = link(
            ck(BackupType::Incremental, 1000, 2000, 2100),
            Some("i1"),
            Some("b"),
        );
        let inc2 = link(
            ck(BackupType::Incremental, 2000, 3000, 3100),
            Some("i2"),
            Some("i1"),
        );
        check_chain(&base, &inc1, "B", "I1").expect("in order");
        let e = check_chain(&base, &inc2, "B", "I2")
            .expect_err("out of order")
            .to_string();
        assert!(
            e.contains("2000") && e.contains("1000") && e.contains("out of order"),
            "{e}"
        );
        let after = link(ck(BackupType::LogApplied, 0, 2000, 2100), Some("i1"), None);
        let e = check_chain(&after, &inc1, "B", "I1")
            .expect_err("twice")
            .to_string();
        assert!(
            e.contains("already applied") && e.contains("1000") && e.contains("2000"),
            "{e}"
        );
        let other = link(ck(BackupType::LogApplied, 0, 1000, 1100), Some("x"), None);
        let e = check_chain(&other, &inc1, "B", "I1")
            .expect_err("wrong base")
            .to_string();
        assert!(e.contains("wrong base") && e.contains('x'), "{e}");
        // Twice, seen by identity when the LSNs cannot tell (no checkpoint
        // between the two backups).
        let same = link(
            ck(BackupType::Incremental, 1000, 1000, 1200),
            Some("i1"),
            Some("b"),
        );
        let applied = link(ck(BackupType::LogApplied, 0, 1000, 1200), Some("i1"), None);
        let e = check_chain(&applied, &same, "B", "I1")
            .expect_err("twice")
            .to_string();
        assert!(e.contains("already applied"), "{e}");
        let next = link(
            ck(BackupType::Incremental, 1000, 1000, 1300),
            Some("i2"),
            Some("i1"),
        );
        let e = check_chain(&base, &next, "B", "I2")
            .expect_err("skips one")
            .to_string();
        assert!(e.contains("out of order") && e.contains("i1"), "{e}");
        let rolled = link(ck(BackupType::FullPrepared, 0, 1000, 1100), None, None);
        let e = check_chain(&rolled, &inc1, "B", "I1")
            .expect_err("rolled back")
            .to_string();
        assert!(e.contains("full-prepared") && e.contains("--native"), "{e}");
        let e = check_chain(&base, &base, "B", "B")
            .expect_err("not inc")
            .to_string();
        assert!(e.contains("not an incremental"), "{e}");
        // No identity on one side (mariabackup's chains): the LSNs decide.
        let anon = link(ck(BackupType::Incremental, 1000, 2000, 2100), None, None);
        check_chain(&base, &anon, "B", "I").expect("no identity");
        let e = check_chain(
            &link(ck(BackupType::LogApplied, 0, 5000, 5100), None, None),
            &anon,
            "B",
            "I",
        )
        .expect_err("behind")
        .to_string();
        assert!(e.contains("already past"), "{e}");
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn view_follows_markers() {
        let files = s(&[
            "ibdata1.delta",
            "ibdata1.meta",
            "a/t.ibd.delta",
            "a/t.ibd.meta",
            "a/gone.ibd.delta",
            "a/gone.ibd.meta",
            "a/gone.del",
            "a/x.ibd.delta",
            "a/x.ibd.meta",
            "a/y.ibd.delta",
            "a/y.ibd.meta",
            "a/x.ren",
            "a/y.ren",
            "a/n.new",
            "a/n.ibd.delta",
            "a/n.ibd.meta",
            "a/m.new.delta",
            "a/m.new.meta",
            "a/nometa.ibd.delta",
        ]);
        let mut rens = BTreeMap::new();
        rens.insert("a/x.ren".to_owned(), "a/y".to_owned());
        rens.insert("a/y.ren".to_owned(), "a/x\n".to_owned());
        let v = view(&files, &rens).expect("view");
        let keys: Vec<&str> = v.deltas.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["a/m.ibd", "a/t.ibd", "a/x.ibd", "a/y.ibd", "ibdata1"]
        );
        assert_eq!(v.deltas["a/x.ibd"].delta, "a/y.ibd.delta", "swapped");
        assert_eq!(v.deltas["a/y.ibd"].delta, "a/x.ibd.delta", "swapped");
        assert_eq!(v.deltas["a/m.ibd"].meta, "a/m.new.meta");
        assert_eq!(
            v.new_copies,
            vec![("a/n.new".to_owned(), "a/n.ibd".to_owned())]
        );
        let mut bad = BTreeMap::new();
        bad.insert("a/x.ren".to_owned(), "a/t".to_owned());
        assert!(view(&files, &bad).is_err(), "rename onto a live delta");
        let mut hostile = BTreeMap::new();
        hostile.insert("a/x.ren".to_owned(), "../../etc/passwd".to_owned());
        assert!(view(&files, &hostile).is_err(), "hostile rename target");
    }

    fn meta(id: u32) -> Meta {
        Meta {
            page_size: 16384,
            zip_size: 0,
            space_id: id,
        }
    }

    fn src(n: &str) -> DeltaSource {
        DeltaSource {
            delta: format!("{n}.delta"),
            meta: format!("{n}.meta"),
        }
    }

    #[test]
    fn plan_matches_by_space_id() {
        let mut base = BTreeMap::new();
        base.insert("a/t.ibd".to_owned(), Some(5));
        base.insert("a/old_name.ibd".to_owned(), Some(6));
        base.insert("a/dropped.ibd".to_owned(), Some(7));
        base.insert("a/reused.ibd".to_owned(), Some(8));
        let deltas = vec![
            ("ibdata1".to_owned(), src("ibdata1"), meta(0)),
            ("a/new_name.ibd".to_owned(), src("a/new_name.ibd"), meta(6)),
            ("a/reused.ibd".to_owned(), src("a/reused.ibd"), meta(9)),
            ("a/t.ibd".to_owned(), src("a/t.ibd"), meta(5)),
            ("b/created.ibd".to_owned(), src("b/created.ibd"), meta(10)),
        ];
        let steps = plan(&base, &deltas);
        let want = vec![
            Step::Apply {
                rel: "ibdata1".into(),
                src: src("ibdata1"),
                meta: meta(0),
            },
            Step::Rename {
                from: "a/old_name.ibd".into(),
                to: "a/new_name.ibd".into(),
            },
            Step::Apply {
                rel: "a/new_name.ibd".into(),
                src: src("a/new_name.ibd"),
                meta: meta(6),
            },
            Step::Rename {
                from: "a/reused.ibd".into(),
                to: "a/xtrabackup_tmp_#8.ibd".into(),
            },
            Step::Create {
                rel: "a/reused.ibd".into(),
                pages: 4,
            },
            Step::Apply {
                rel: "a/reused.ibd".into(),
                src: src("a/reused.ibd"),
                meta: meta(9),
            },
            Step::Apply {
                rel: "a/t.ibd".into(),
                src: src("a/t.ibd"),
                meta: meta(5),
            },
            Step::Create {
                rel: "b/created.ibd".into(),
                pages: 4,
            },
            Step::Apply {
                rel: "b/created.ibd".into(),
                src: src("b/created.ibd"),
                meta: meta(10),
            },
            Step::Delete {
                rel: "a/dropped.ibd".into(),
            },
            Step::Delete {
                rel: "a/xtrabackup_tmp_#8.ibd".into(),
            },
        ];
        assert_eq!(steps, want);
    }

    #[test]
    fn cluster_headers() {
        let mut h = vec![0u8; 1024];
        h[..4].copy_from_slice(MAGIC_LAST);
        h[4..8].copy_from_slice(&7u32.to_be_bytes());
        h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(cluster_header(&h).expect("ok"), (true, vec![7]));
        h[..4].copy_from_slice(b"nope");
        assert!(cluster_header(&h).is_err());
    }

    #[test]
    fn delta_structure_is_checked_before_use() {
        let dir = tempfile::tempdir().expect("tmp");
        let ps = 1024;
        let mut w = delta::DeltaWriter::new(ps).expect("writer");
        let mut out = Vec::new();
        for n in 0..300u32 {
            let mut p = vec![0u8; ps];
            p[4..8].copy_from_slice(&n.to_be_bytes());
            if let Some(c) = w.push(n, &p).expect("push") {
                out.extend(c);
            }
        }
        out.extend(w.finish());
        let p = dir.path().join("t.ibd.delta");
        std::fs::write(&p, &out).expect("write");
        assert_eq!(check_delta(&p, ps).expect("valid"), 300);
        std::fs::write(&p, &out[..out.len() - 1]).expect("write");
        assert!(check_delta(&p, ps).is_err(), "cut short");
        let mut extra = out.clone();
        extra.extend_from_slice(&[0u8; 1024]);
        std::fs::write(&p, &extra).expect("write");
        assert!(check_delta(&p, ps).is_err(), "trailing bytes");
        // And applied: every page lands at its number.
        std::fs::write(&p, &out).expect("write");
        let dst = dir.path().join("t.ibd");
        File::create(&dst).expect("create");
        assert_eq!(apply_delta(&p, &dst, ps, None).expect("apply"), 300);
        let got = std::fs::read(&dst).expect("read");
        assert_eq!(got.len(), 300 * ps);
        for n in [0usize, 1, 254, 255, 299] {
            assert_eq!(&got[n * ps + 4..n * ps + 8], &(n as u32).to_be_bytes());
        }
    }
}

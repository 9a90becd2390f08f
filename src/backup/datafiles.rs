//! Finding and copying the server's files.
//!
//! InnoDB data files (system tablespace, undo tablespaces, every `.ibd`)
//! are read in batches of pages; every page's checksum is checked with the
//! tablespace's own algorithm and page size (from page 0), and a batch with
//! a bad page is re-read up to [`MAX_ATTEMPTS`] times (a torn read against
//! a concurrent page write heals on re-read) before the copy fails, naming
//! the file, the page and both checksums. Non-transactional files are
//! copied as they are, under the backup lock.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::progress::Progress;
use super::Error;
use crate::format::links::{Link, LinkKind};
use crate::format::path::RelPath;
use crate::innodb::page::{self, PageFormat, PageVerdict};
use crate::innodb::PageNo;
use crate::sink::{FileMeta, GraphInput};

/// Attempts per batch before a bad page fails the backup.
pub const MAX_ATTEMPTS: u32 = 10;
/// Bytes per read batch.
pub const BATCH_BYTES: usize = 1 << 20;
/// Bytes per read while the pacing cap is in force: the server's own I/O
/// (log writes above all) then waits behind a quarter of the data in the
/// device queue. Whole pages for every page size.
pub const BUSY_BATCH_BYTES: usize = 256 << 10;
/// Reads queued per file beyond the one being handled, while the server is
/// not busy.
pub const READ_AHEAD: usize = 1;

/// What kind of InnoDB file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnoKind {
    /// First file of the system tablespace (has the FSP header).
    SystemFirst,
    /// A later system tablespace file (no FSP header; page numbers continue).
    SystemNext,
    /// Undo tablespace or `.ibd`.
    Tablespace,
}

/// One file to copy.
#[derive(Clone, Debug)]
pub struct Source {
    /// Absolute path on the server.
    pub abs: PathBuf,
    /// Path inside the backup.
    pub rel: RelPath,
    /// Size when listed.
    pub size: u64,
    /// InnoDB kind, or `None` for a plain copy.
    pub innodb: Option<InnoKind>,
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: p.display().to_string(),
        source,
    }
}

fn rel(s: &str) -> Result<RelPath, Error> {
    RelPath::new(s).map_err(|e| Error::Layout(format!("{s}: {e}")))
}

/// Extensions of non-InnoDB table files mariabackup copies.
const NONTX_EXT: &[&str] = &[
    "frm", "MYD", "MYI", "MRG", "MAI", "MAD", "CSV", "CSM", "ARZ", "ARM", "par", "TRG", "TRN",
    "opt", "isl",
];
/// Files copied under `BLOCK_COMMIT` rather than `BLOCK_DDL`: Aria (transactional engine with its own log)
/// and the CSV log tables.
///
/// User Aria tables are copied under BLOCK_DDL with the other
/// non-transactional files: writes to non-transactional ones are blocked
/// since FLUSH, and transactional (crash-safe) ones are brought to the
/// BLOCK_COMMIT point by Aria's recovery from the Aria log, which is copied
/// last (BACKUP STAGE START keeps the server from purging it). The Aria
/// system tables (the statistics tables are written until BLOCK_COMMIT)
/// and the log tables wait for BLOCK_COMMIT, which keeps that stage short.
fn needs_commit_lock(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    (rel.starts_with("mysql/") && (rel.ends_with(".MAI") || rel.ends_with(".MAD")))
        || name.starts_with("aria_log")
        || rel == "mysql/general_log.CSV"
        || rel == "mysql/general_log.CSM"
        || rel == "mysql/slow_log.CSV"
        || rel == "mysql/slow_log.CSM"
}

/// The server's files, sorted into copy phases.
#[derive(Debug, Default)]
pub struct Inventory {
    /// InnoDB files, largest first.
    pub innodb: Vec<Source>,
    /// Non-InnoDB files copied under BLOCK_DDL.
    pub nontx_ddl: Vec<Source>,
    /// Non-InnoDB files copied under BLOCK_COMMIT.
    pub nontx_commit: Vec<Source>,
    /// Files and directories reached through a symlink or a `.isl` link
    /// file: stored by content, their place recorded for restore.
    pub links: Vec<Link>,
    /// Entries that exist in the datadir (or are named by a link) but
    /// could not be read: the completeness check decides whether a table
    /// needs them (and then fails the backup, naming table and path).
    pub unreadable: Vec<Unreadable>,
}

impl Inventory {
    /// Every path the backup will hold (datadir-relative).
    #[must_use]
    pub fn rels(&self) -> std::collections::BTreeSet<&str> {
        self.innodb
            .iter()
            .chain(&self.nontx_ddl)
            .chain(&self.nontx_commit)
            .map(|s| s.rel.as_str())
            .collect()
    }

    /// Add an InnoDB tablespace the server reports outside the datadir
    /// without a `.isl` file in it (or with one naming another path):
    /// the server's own word wins.
    pub fn add_remote_tablespace(&mut self, rel: RelPath, abs: &Path) {
        self.innodb.retain(|s| s.rel != rel);
        self.links.retain(|l| l.rel != rel.as_str());
        self.unreadable.retain(|u| u.rel != rel.as_str());
        match std::fs::metadata(abs) {
            Ok(md) if md.is_file() => {
                self.links.push(Link {
                    rel: rel.as_str().to_owned(),
                    target: abs.display().to_string(),
                    kind: LinkKind::Isl,
                });
                self.innodb.push(Source {
                    abs: abs.to_path_buf(),
                    rel,
                    size: md.len(),
                    innodb: Some(InnoKind::Tablespace),
                });
                self.innodb.sort_by_key(|s| std::cmp::Reverse(s.size));
            }
            Ok(_) => self.unreadable.push(Unreadable {
                rel: rel.as_str().to_owned(),
                abs: abs.to_path_buf(),
                reason: "not a regular file".into(),
            }),
            Err(e) => self.unreadable.push(Unreadable {
                rel: rel.as_str().to_owned(),
                abs: abs.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }
}

/// A file the datadir names that could not be read.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// Path inside the backup it would have had.
    pub rel: String,
    /// Where it is (the symlink's target, the `.isl`'s path).
    pub abs: PathBuf,
    /// The error.
    pub reason: String,
}

/// Where the InnoDB system and undo files are.
pub struct Layout<'a> {
    /// The datadir.
    pub datadir: &'a Path,
    /// `innodb_data_home_dir` (default: datadir).
    pub data_home: Option<&'a Path>,
    /// `innodb_data_file_path`.
    pub data_file_path: &'a str,
    /// `innodb_undo_directory` (default: datadir).
    pub undo_dir: Option<&'a Path>,
    /// `aria_log_dir_path` (default: datadir).
    pub aria_log_dir: Option<&'a Path>,
}

fn is_aria_log(name: &str) -> bool {
    name == "aria_log_control"
        || (name.starts_with("aria_log.")
            && name.len() > 9
            && name[9..].bytes().all(|b| b.is_ascii_digit()))
}

/// `p` made absolute against `base` (the recorded target must be a plain
/// absolute path; symlinks on the way are kept).
fn absolute(base: &Path, p: &Path) -> PathBuf {
    crate::format::path::lexical_absolute(base, p)
}

/// The tablespace path inside a `.isl` link file.
///
/// # Errors
/// [`Error::Layout`] for a file that is not one path.
pub fn parse_isl(text: &str, isl: &Path) -> Result<PathBuf, Error> {
    crate::format::links::parse_isl(text)
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::Layout(format!(
                "{}: not a link file (expected one path)",
                isl.display()
            ))
        })
}

/// List the files.
///
/// Database directories and table files may be symlinks (followed, and
/// recorded in [`Inventory::links`]); a `.isl` file names an InnoDB
/// tablespace elsewhere, which is listed under the datadir-relative name
/// mariabackup gives it (`db/t.ibd`). What cannot be read is recorded in
/// [`Inventory::unreadable`] for the completeness check.
///
/// # Errors
/// I/O errors on the datadir itself, names that cannot be stored.
#[allow(clippy::too_many_lines)]
pub fn inventory(l: &Layout<'_>) -> Result<Inventory, Error> {
    let mut inv = Inventory::default();
    let home = l
        .data_home
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| l.datadir.to_path_buf(), |h| absolute(l.datadir, h));
    for (i, spec) in l
        .data_file_path
        .split(';')
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let name = spec.split(':').next().unwrap_or(spec);
        let abs = home.join(name);
        let base = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(name)
            .to_owned();
        let size = std::fs::metadata(&abs).map_err(io(&abs))?.len();
        inv.innodb.push(Source {
            abs,
            rel: rel(&base)?,
            size,
            innodb: Some(if i == 0 {
                InnoKind::SystemFirst
            } else {
                InnoKind::SystemNext
            }),
        });
    }
    let undo = l
        .undo_dir
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(l.datadir);
    let undo = absolute(l.datadir, undo);
    for e in std::fs::read_dir(&undo).map_err(io(&undo))? {
        let e = e.map_err(io(&undo))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("undo") && n.len() == 7 && n[4..].bytes().all(|b| b.is_ascii_digit()) {
            let size = std::fs::metadata(e.path()).map_err(io(&e.path()))?.len();
            inv.innodb.push(Source {
                abs: e.path(),
                rel: rel(&n)?,
                size,
                innodb: Some(InnoKind::Tablespace),
            });
        }
    }
    // The Aria log, wherever aria_log_dir_path puts it (stored in the
    // backup's root, as mariabackup stores it).
    let aria_dir = l
        .aria_log_dir
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| absolute(l.datadir, p))
        .filter(|d| d.as_path() != l.datadir);
    if let Some(dir) = aria_dir.as_deref() {
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if is_aria_log(&name) {
                let size = std::fs::metadata(e.path()).map_err(io(&e.path()))?.len();
                inv.nontx_commit.push(Source {
                    abs: e.path(),
                    rel: rel(&name)?,
                    size,
                    innodb: None,
                });
            }
        }
    }
    let mut isl_targets: Vec<(RelPath, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(l.datadir).map_err(io(l.datadir))? {
        let e = e.map_err(io(l.datadir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type().map_err(io(&e.path()))?;
        if ft.is_file() && aria_dir.is_none() && is_aria_log(&name) {
            let size = e.metadata().map_err(io(&e.path()))?.len();
            inv.nontx_commit.push(Source {
                abs: e.path(),
                rel: rel(&name)?,
                size,
                innodb: None,
            });
            continue;
        }
        if name.starts_with('#') || name == "lost+found" {
            continue;
        }
        let is_dir = if ft.is_symlink() {
            // A database directory elsewhere (`ln -s /data2/db datadir/db`).
            match std::fs::metadata(e.path()) {
                Ok(md) if md.is_dir() => {
                    let target = std::fs::read_link(e.path()).map_err(io(&e.path()))?;
                    inv.links.push(Link {
                        rel: rel(&name)?.as_str().to_owned(),
                        target: absolute(l.datadir, &target).display().to_string(),
                        kind: LinkKind::Dir,
                    });
                    true
                }
                Ok(_) => false,
                Err(err) => {
                    inv.unreadable.push(Unreadable {
                        rel: name.clone(),
                        abs: e.path(),
                        reason: err.to_string(),
                    });
                    false
                }
            }
        } else {
            ft.is_dir()
        };
        if !is_dir {
            continue;
        }
        let dir = e.path();
        let entries = match std::fs::read_dir(&dir) {
            Ok(it) => it,
            Err(err) => {
                inv.unreadable.push(Unreadable {
                    rel: name.clone(),
                    abs: dir.clone(),
                    reason: err.to_string(),
                });
                continue;
            }
        };
        for f in entries {
            let f = f.map_err(io(&dir))?;
            let fname = f.file_name().to_string_lossy().into_owned();
            let Some((_, ext)) = fname.rsplit_once('.') else {
                continue;
            };
            if fname.starts_with("#sql") && ext != "ibd" {
                // The definition and files of a running ALTER's intermediate
                // table: the server drops them when it starts on the backup.
                // Its InnoDB tablespace is copied: the copied redo log may
                // write it, and recovery needs every tablespace it writes.
                continue;
            }
            if ext != "ibd" && !NONTX_EXT.contains(&ext) {
                continue;
            }
            let r = format!("{name}/{fname}");
            let fpath = f.path();
            let fty = f.file_type().map_err(io(&fpath))?;
            let size = if fty.is_symlink() {
                // A table file elsewhere (MyISAM/Aria DATA/INDEX DIRECTORY):
                // copied by content, its target recorded.
                match std::fs::metadata(&fpath) {
                    Ok(md) if md.is_file() => {
                        let target = std::fs::read_link(&fpath).map_err(io(&fpath))?;
                        inv.links.push(Link {
                            rel: rel(&r)?.as_str().to_owned(),
                            target: absolute(&dir, &target).display().to_string(),
                            kind: LinkKind::File,
                        });
                        md.len()
                    }
                    Ok(_) => continue,
                    Err(err) => {
                        let target = std::fs::read_link(&fpath)
                            .map(|t| absolute(&dir, &t))
                            .unwrap_or_else(|_| fpath.clone());
                        inv.unreadable.push(Unreadable {
                            rel: r,
                            abs: target,
                            reason: err.to_string(),
                        });
                        continue;
                    }
                }
            } else if fty.is_file() {
                match f.metadata() {
                    Ok(md) => md.len(),
                    // Dropped or renamed since the directory was read: a
                    // listing taken while DDL runs (the short DDL lock's
                    // first one) skips it; the one under BLOCK_DDL, where
                    // nothing vanishes, is checked against the catalog.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&fpath)(e)),
                }
            } else {
                continue;
            };
            if ext == "isl" {
                let text = match std::fs::read_to_string(&fpath) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&fpath)(e)),
                };
                let target = absolute(l.datadir, &parse_isl(&text, &fpath)?);
                let ibd = format!("{name}/{}.ibd", &fname[..fname.len() - 4]);
                isl_targets.push((rel(&ibd)?, target));
            }
            if ext == "ibd" {
                inv.innodb.push(Source {
                    abs: fpath,
                    rel: rel(&r)?,
                    size,
                    innodb: Some(InnoKind::Tablespace),
                });
            } else {
                let s = Source {
                    abs: fpath,
                    rel: rel(&r)?,
                    size,
                    innodb: None,
                };
                if needs_commit_lock(&r) {
                    inv.nontx_commit.push(s);
                } else {
                    inv.nontx_ddl.push(s);
                }
            }
        }
    }
    // InnoDB DATA DIRECTORY tablespaces: the `.isl` names the file, which is
    // stored as `db/t.ibd` (the `.isl` itself is kept too, as mariabackup
    // keeps it, so restore knows where the file belongs).
    for (r, target) in isl_targets {
        inv.add_remote_tablespace(r, &target);
    }
    inv.innodb.sort_by_key(|s| std::cmp::Reverse(s.size));
    inv.links.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(inv)
}

/// Paces data-file reads: a hard cap (`--max-rate`), and the cap the
/// pacing controller sets while our reads wait behind the server's I/O
/// (see [`super::pacing`]). 0 means no cap. A short burst (100 ms worth) is
/// allowed after a pause. Each data-file read's size and latency is kept
/// for the controller.
pub struct RateLimit {
    hard: u64,
    paced: std::sync::atomic::AtomicU64,
    samples: std::sync::Mutex<Vec<super::pacing::Sample>>,
    next: std::sync::Mutex<Option<std::time::Instant>>,
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RateLimit {
    /// New limiter; the hard cap in MB/s (0 = none).
    #[must_use]
    pub fn new(max_mb: u64) -> Self {
        RateLimit {
            hard: max_mb * 1_000_000,
            paced: std::sync::atomic::AtomicU64::new(0),
            samples: std::sync::Mutex::new(Vec::new()),
            next: std::sync::Mutex::new(None),
            paused_until: std::sync::Mutex::new(None),
        }
    }

    /// Read nothing for `d` from now (a probe of the server's throughput
    /// without us): reads already under way finish, new ones wait.
    pub fn pause(&self, d: Duration) {
        let mut p = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *p = Some(std::time::Instant::now() + d);
    }

    /// How long the pause in force still lasts.
    fn paused_for(&self, now: std::time::Instant) -> Option<Duration> {
        let p = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Set the pacing cap, bytes/s (`None`: none).
    pub fn set_paced(&self, cap: Option<u64>) {
        // 0 means no cap, so a cap of 0 is stored as 1 byte/s.
        self.paced.store(
            cap.map_or(0, |c| c.max(1)),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The rate in force now, bytes per second (0: none).
    #[must_use]
    pub fn rate(&self) -> u64 {
        match (
            self.hard,
            self.paced.load(std::sync::atomic::Ordering::Relaxed),
        ) {
            (0, b) => b,
            (h, 0) => h,
            (h, b) => h.min(b),
        }
    }

    /// Whether the pacing cap is in force now.
    #[must_use]
    pub fn paced(&self) -> bool {
        self.paced.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Bytes per read now: smaller while paced, so the server's own
    /// requests wait behind less of ours in the device queue.
    #[must_use]
    pub fn batch(&self) -> usize {
        if self.paced() {
            BUSY_BATCH_BYTES
        } else {
            BATCH_BYTES
        }
    }

    /// Note one data-file read (for the pacing controller).
    pub fn record(&self, bytes: u64, latency: Duration) {
        if let Ok(mut v) = self.samples.lock() {
            if v.len() < 100_000 {
                v.push(super::pacing::Sample { bytes, latency });
            }
        }
    }

    /// The reads noted since the last call.
    #[must_use]
    pub fn drain(&self) -> Vec<super::pacing::Sample> {
        self.samples
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// How long to wait before `n` more bytes may be read.
    fn reserve(&self, n: u64) -> Option<Duration> {
        let rate = self.rate();
        let now = std::time::Instant::now();
        let paused = self.paused_for(now);
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if rate == 0 {
            *next = None;
            return paused;
        }
        // After a pause the budget starts afresh at its end (no burst to
        // make up for it).
        let burst = Duration::from_millis(100);
        let floor = match paused {
            Some(p) => now + p,
            None => now.checked_sub(burst).unwrap_or(now),
        };
        let at =
            next.map_or(floor, |t| t.max(floor)) + Duration::from_secs_f64(n as f64 / rate as f64);
        *next = Some(at);
        at.checked_duration_since(now)
    }

    async fn take(&self, n: u64) {
        if let Some(w) = self.reserve(n) {
            tokio::time::sleep(w).await;
        }
    }
}

/// What a copy learnt about the file it copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// The inode of the file read.
    pub ino: u64,
    /// The tablespace id of an InnoDB file's page 0 (`None` for other
    /// files, and for a page 0 that never reached the disk).
    pub space: Option<u32>,
    /// An incremental copy whose tablespace id is in no page: its `.meta`
    /// (page size, compressed size) waits for the redo log's file records
    /// to name the id ([`write_delta_meta`]).
    pub meta_pending: Option<(u32, u32)>,
}

/// The tablespace id in the first bytes of a data file (`None` when page
/// 0 is all zero: created after the last checkpoint, never flushed).
#[must_use]
pub fn space_id_of(first: &[u8]) -> Option<u32> {
    let head = first.get(..page::PAGE0_MIN_LEN)?;
    if head.iter().all(|&b| b == 0) {
        return None;
    }
    let f = page::FIL_PAGE_SPACE_ID;
    let b = head.get(f..f + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Read the tablespace id of the data file at `abs` (see [`space_id_of`]).
///
/// # Errors
/// The file cannot be opened or read.
pub fn read_space_id(abs: &Path) -> Result<(Option<u32>, u64), Error> {
    use std::os::unix::fs::MetadataExt;
    let mut f = File::open(abs).map_err(io(abs))?;
    let ino = f.metadata().map_err(io(abs))?.ino();
    let mut b = [0u8; page::PAGE0_MIN_LEN];
    let mut got = 0;
    while got < b.len() {
        let n = f.read(&mut b[got..]).map_err(io(abs))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok((space_id_of(&b[..got]), ino))
}

/// An incremental copy: only pages newer than the base go into the backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaSpec {
    /// The base's `to_lsn`: pages whose `FIL_PAGE_LSN` is greater are kept.
    pub from_lsn: u64,
    /// The server's `innodb_page_size` (for a file whose page 0 never
    /// reached the disk).
    pub page_size: usize,
}

/// Where a copy's bytes go: the whole file, or its `.delta` and `.meta`.
enum Out {
    Whole(crate::sink::FileWriter),
    Delta(DeltaOut),
}

/// The pages of a data file newer than the base, as mariabackup's
/// `<file>.delta` + `<file>.meta` (see [`crate::format::delta`]). The
/// `.delta` is opened at its first full cluster or at the end. Every
/// tablespace gets both files, even with no page newer than the base
/// (mariabackup's incremental prepare removes the base's tablespaces the
/// incremental does not name); a file whose id is in no page (created
/// after the last checkpoint, never flushed) has its `.meta` written later,
/// from the redo's file records.
struct DeltaOut {
    rel: RelPath,
    spec: DeltaSpec,
    w: Option<crate::sink::FileWriter>,
    dw: Option<crate::format::delta::DeltaWriter>,
    space: Option<u32>,
}

impl DeltaOut {
    fn named(&self, ext: &str) -> Result<RelPath, Error> {
        rel(&format!("{}.{ext}", self.rel.as_str()))
    }

    async fn write_cluster(&mut self, input: &GraphInput, cluster: Vec<u8>) -> Result<(), Error> {
        if self.w.is_none() {
            self.w = Some(input.open(FileMeta::new(self.named("delta")?)).await?);
        }
        if let Some(w) = self.w.as_mut() {
            w.write(Bytes::from(cluster)).await?;
        }
        Ok(())
    }

    /// Keep the pages of `buf` (at byte offset `off`) newer than the base.
    async fn add(
        &mut self,
        input: &GraphInput,
        off: u64,
        buf: &[u8],
        fmt: Option<PageFormat>,
    ) -> Result<(), Error> {
        let ps = fmt.map_or(self.spec.page_size, |f| f.physical_size() as usize);
        let name = self.rel.as_str().to_owned();
        let delta_err = |e: crate::format::delta::Error| Error::Corrupt(format!("{name}: {e}"));
        for (i, page) in buf.chunks_exact(ps).enumerate() {
            let lsn = u64::from_be_bytes([
                page[16], page[17], page[18], page[19], page[20], page[21], page[22], page[23],
            ]);
            if lsn <= self.spec.from_lsn {
                continue;
            }
            if self.space.is_none() {
                self.space = Some(u32::from_be_bytes([page[34], page[35], page[36], page[37]]));
            }
            if self.dw.is_none() {
                self.dw = Some(crate::format::delta::DeltaWriter::new(ps).map_err(delta_err)?);
            }
            let page_no = u32::try_from(off / ps as u64 + i as u64).map_err(|_| {
                Error::Corrupt(format!("{}: page number overflow", self.rel.as_str()))
            })?;
            let full = match self.dw.as_mut() {
                Some(dw) => dw.push(page_no, page).map_err(delta_err)?,
                None => None,
            };
            if let Some(cluster) = full {
                self.write_cluster(input, cluster).await?;
            }
        }
        Ok(())
    }

    /// The last cluster and the `.meta` (or what it needs, when the id is
    /// not known yet).
    async fn finish(
        mut self,
        input: &GraphInput,
        fmt: Option<PageFormat>,
        page0_space: Option<u32>,
    ) -> Result<Option<(u32, u32)>, Error> {
        let ps = fmt.map_or(self.spec.page_size, |f| f.physical_size() as usize);
        let dw = match self.dw.take() {
            Some(dw) => dw,
            None => crate::format::delta::DeltaWriter::new(ps)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", self.rel.as_str())))?,
        };
        self.write_cluster(input, dw.finish()).await?;
        if let Some(w) = self.w.take() {
            w.close().await?;
        }
        let zip = if fmt.is_some_and(|f| f.is_zip()) {
            ps as u32
        } else {
            0
        };
        let Some(space) = page0_space.or(self.space) else {
            return Ok(Some((ps as u32, zip)));
        };
        write_delta_meta(input, &self.rel, ps as u32, zip, space).await?;
        Ok(None)
    }
}

/// Write `<rel>.meta` of an incremental copy.
///
/// # Errors
/// A closed graph; a name too long.
pub async fn write_delta_meta(
    input: &GraphInput,
    rel_ibd: &RelPath,
    page_size: u32,
    zip_size: u32,
    space_id: u32,
) -> Result<(), Error> {
    let meta = crate::format::delta::Meta {
        page_size,
        zip_size,
        space_id,
    };
    let mut m = input
        .open(FileMeta::new(rel(&format!("{}.meta", rel_ibd.as_str()))?))
        .await?;
    m.write(Bytes::from(meta.render())).await?;
    m.close().await?;
    Ok(())
}

/// Copy one file into the graph, validating pages for InnoDB files; with
/// `delta`, an InnoDB tablespace's pages newer than the base only.
///
/// # Errors
/// I/O errors, a page that stays corrupt after [`MAX_ATTEMPTS`] reads, a closed graph.
pub async fn copy(
    src: Source,
    input: &GraphInput,
    progress: &Progress,
    sys_format: Option<PageFormat>,
    limit: &RateLimit,
    exec: &crate::sched::Bulk,
    delta: Option<DeltaSpec>,
) -> Result<Copied, Error> {
    use std::os::unix::fs::MetadataExt;
    let (file, direct) = open_source(&src)?;
    let mut facts = Copied {
        ino: file.metadata().map_err(io(&src.abs))?.ino(),
        space: None,
        meta_pending: None,
    };
    let file = Arc::new(file);
    let mut w = match (delta, src.innodb) {
        (Some(spec), Some(InnoKind::Tablespace | InnoKind::SystemFirst)) => Out::Delta(DeltaOut {
            rel: src.rel.clone(),
            spec,
            w: None,
            dw: None,
            space: None,
        }),
        _ => Out::Whole(input.open(FileMeta::new(src.rel.clone())).await?),
    };
    let mut consumed = 0u64;
    let mut fmt: Option<PageFormat> = match src.innodb {
        Some(InnoKind::SystemNext) => sys_format,
        _ => None,
    };
    // Reads already submitted, oldest first: (size asked, pending result).
    // While the server is not busy, up to READ_AHEAD reads beyond the one
    // being handled are queued, so the device never waits for our page
    // checks or the graph (an idle backup is bound by the device). While it
    // is busy, one read at a time, each asked for only after the previous
    // one is handed on, as the busy cap intends.
    let mut queue = std::collections::VecDeque::new();
    let mut next_off = 0u64;
    let kind = src.innodb;
    let submit = |off: u64, want: usize, known: Option<PageFormat>| {
        let f = file.clone();
        let abs = src.abs.clone();
        let job = exec.start_io(move || {
            let mut lat = Duration::ZERO;
            read_batch(&f, direct, &abs, off, want, kind, known, &mut lat)
                .map(|(b, fmt)| (b, fmt, lat))
        });
        (want, job)
    };
    let mut eof = false;
    let mut first = true;
    loop {
        // The page format must be known (from page 0) before reads are
        // queued ahead, or they would not check their pages; non-InnoDB files
        // have none to wait for.
        let ahead = if !limit.paced() && (kind.is_none() || fmt.is_some()) {
            READ_AHEAD
        } else {
            0
        };
        // Ahead only within the size listed (a file that grew since is read
        // on, one batch at a time, until a short read).
        while !eof && (queue.is_empty() || (queue.len() <= ahead && next_off < src.size)) {
            let want = limit.batch();
            queue.push_back(submit(next_off, want, fmt));
            next_off += want as u64;
        }
        let Some((want, job)) = queue.pop_front() else {
            break;
        };
        let (buf, newfmt, lat) = job.await.map_err(|e| Error::Task(e.to_string()))??;
        if direct && buf.len() == want {
            limit.record(want as u64, lat);
        }
        if first && kind.is_some() && kind != Some(InnoKind::SystemNext) {
            facts.space = space_id_of(&buf);
        }
        first = false;
        if newfmt.is_some() {
            fmt = newfmt;
        }
        let n = buf.len() as u64;
        if (n as usize) < want {
            // End of the file as it is now: reads queued beyond it are dropped.
            eof = true;
            queue.clear();
        }
        if n == 0 {
            break;
        }
        limit.take(n).await;
        progress.add_bytes(n);
        match &mut w {
            Out::Whole(w) => w.write(buf).await?,
            Out::Delta(d) => d.add(input, consumed, &buf, fmt).await?,
        }
        consumed += n;
    }
    match w {
        Out::Whole(w) => {
            w.close().await?;
        }
        Out::Delta(d) => facts.meta_pending = d.finish(input, fmt, facts.space).await?,
    }
    progress.file_done();
    Ok(facts)
}

/// Read one batch at `off`; for InnoDB files, validate every page and re-read on failure.
/// InnoDB files, and other files of at least one batch, are read with
/// `O_DIRECT`: no copy through the page cache (which costs more CPU than
/// everything else hotbak does per byte) and no cache pollution. A direct
/// read still sees what the server wrote: the kernel writes dirty cached
/// pages of the range back before it reads. File systems without `O_DIRECT`
/// fall back to buffered reads, and so do small files, where a batch is one
/// read either way.
fn open_source(src: &Source) -> Result<(File, bool), Error> {
    if src.innodb.is_some() || src.size >= BATCH_BYTES as u64 {
        return super::direct::open(&src.abs).map_err(io(&src.abs));
    }
    Ok((File::open(&src.abs).map_err(io(&src.abs))?, false))
}

/// Read up to `want` bytes (a multiple of [`super::direct::ALIGN`]) at
/// `off`: directly into an aligned buffer (sliced without a copy), else
/// through `read_to_end`.
fn read_raw(f: &File, abs: &Path, off: u64, want: usize, direct: bool) -> Result<Bytes, Error> {
    if direct {
        return super::direct::read_aligned(f, off, want).map_err(io(abs));
    }
    // read_to_end fills spare capacity without zeroing it first.
    let mut buf = Vec::with_capacity(want);
    let mut r: &File = f;
    r.seek(SeekFrom::Start(off)).map_err(io(abs))?;
    r.take(want as u64).read_to_end(&mut buf).map_err(io(abs))?;
    Ok(Bytes::from(buf))
}

/// Read and check one batch; `lat` is set to the time of the last read
/// itself (the pacing signal: the device queue, not our page checks).
#[allow(clippy::too_many_arguments)]
fn read_batch(
    f: &File,
    direct: bool,
    abs: &Path,
    off: u64,
    want: usize,
    kind: Option<InnoKind>,
    fmt: Option<PageFormat>,
    lat: &mut Duration,
) -> Result<(Bytes, Option<PageFormat>), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let t = std::time::Instant::now();
        let buf = read_raw(f, abs, off, want, direct)?;
        *lat = t.elapsed();
        let got = buf.len();
        let Some(kind) = kind else {
            return Ok((buf, None));
        };
        if got == 0 {
            return Ok((Bytes::new(), None));
        }
        let mut fmt = fmt;
        if fmt.is_none()
            && off == 0
            && buf.len() >= page::PAGE0_MIN_LEN
            && buf[..page::PAGE0_MIN_LEN].iter().all(|&b| b == 0)
        {
            // Page 0 never reached the disk: the tablespace was created after
            // the server's last checkpoint, so the copied redo holds its
            // creation and every page init; recovery rebuilds it. Nothing here
            // can be validated (not even the page size), so copy as is.
            return Ok((buf, None));
        }
        if fmt.is_none() && off == 0 {
            match page::parse_page0(&buf) {
                Ok(info) => fmt = Some(info.format),
                Err(e) => {
                    if attempt < MAX_ATTEMPTS {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    return Err(Error::Corrupt(format!(
                        "{}: page 0 unreadable after {MAX_ATTEMPTS} reads: {e}",
                        abs.display()
                    )));
                }
            }
        }
        let Some(pf) = fmt else {
            // Only for files whose page 0 was all zero (see above).
            return Ok((buf, None));
        };
        match check_batch(&pf, kind, off, &buf) {
            None => return Ok((buf, Some(pf))),
            Some((page_no, why)) => {
                if attempt < MAX_ATTEMPTS {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                return Err(Error::Corrupt(format!(
                    "{}: page {page_no} failed its checksum after {MAX_ATTEMPTS} reads: {why}",
                    abs.display()
                )));
            }
        }
    }
}

/// The first bad page of a batch, if any.
fn check_batch(pf: &PageFormat, kind: InnoKind, off: u64, buf: &[u8]) -> Option<(u64, String)> {
    let ps = pf.physical_size() as usize;
    let first = off / ps as u64;
    let dblwr = page::doublewrite_range(pf.logical_size());
    for (i, p) in buf.chunks(ps).enumerate() {
        let no = first + i as u64;
        if p.len() < ps {
            // A file being extended: a partial last page is completed by recovery.
            return None;
        }
        let expected = match kind {
            InnoKind::SystemFirst => {
                if u32::try_from(no).is_ok_and(|n| dblwr.contains(&n)) {
                    continue;
                }
                u32::try_from(no).ok().map(PageNo)
            }
            // The page numbers of the system files after the first are not checked.
            InnoKind::SystemNext => None,
            InnoKind::Tablespace => u32::try_from(no).ok().map(PageNo),
        };
        if let PageVerdict::Corrupt(c) = page::check_page(pf, expected, p) {
            return Some((no, c.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    #[test]
    fn a_pause_holds_every_read_with_or_without_a_cap() {
        let l = RateLimit::new(0);
        l.pause(Duration::from_millis(400));
        let w = l.reserve(1).expect("paused: waits");
        assert!(
            w > Duration::from_millis(300) && w <= Duration::from_millis(400),
            "{w:?}"
        );
        l.set_paced(Some(10_000_000));
        let w = l.reserve(1_000_000).expect("paused and capped");
        // The pause, then 1 MB at 10 MB/s, with no burst credit.
        assert!(w >= Duration::from_millis(450), "{w:?}");
        let l = RateLimit::new(0);
        l.pause(Duration::ZERO);
        assert!(l.reserve(1).is_none(), "a pause that ended holds nothing");
    }

    #[test]
    fn the_pacing_cap_applies_only_while_set_and_the_hard_cap_always() {
        let l = RateLimit::new(0);
        assert_eq!(l.rate(), 0);
        assert!(l.reserve(50_000_000).is_none(), "no cap: no wait");
        l.set_paced(Some(100_000_000));
        assert_eq!(l.rate(), 100_000_000);
        assert_eq!(l.batch(), BUSY_BATCH_BYTES);
        // 100 ms of burst credit, then 10 MB at 100 MB/s is 100 ms each.
        let w1 = l.reserve(10_000_000).unwrap_or_default();
        let w2 = l.reserve(10_000_000).expect("second reservation waits");
        assert!(w1 < Duration::from_millis(20), "{w1:?}");
        assert!(
            w2 > Duration::from_millis(80) && w2 < Duration::from_millis(120),
            "{w2:?}"
        );
        let w3 = l.reserve(20_000_000).expect("third waits");
        assert!(
            w3 > Duration::from_millis(280) && w3 < Duration::from_millis(320),
            "{w3:?}"
        );
        l.set_paced(None);
        assert!(l.reserve(1_000_000_000).is_none(), "cap lifted: no wait");
        assert_eq!(l.batch(), BATCH_BYTES);

        let h = RateLimit::new(50);
        assert_eq!(h.rate(), 50_000_000);
        h.set_paced(Some(100_000_000));
        assert_eq!(h.rate(), 50_000_000, "the lower cap wins");
        let h2 = RateLimit::new(300);
        h2.set_paced(Some(100_000_000));
        assert_eq!(h2.rate(), 100_000_000);

        h2.record(1 << 20, Duration::from_millis(2));
        h2.record(1 << 20, Duration::from_millis(3));
        assert_eq!(h2.drain().len(), 2);
        assert!(h2.drain().is_empty());
    }
}

#[cfg(test)]
mod inventory_tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }

    #[test]
    fn follows_links_records_targets_and_unreadables() {
        let t = tempfile::tempdir().expect("tempdir");
        let dd = t.path().join("data");
        let far = t.path().join("far");
        write(&dd.join("ibdata1"), &[0; 64]);
        write(&dd.join("db/t.frm"), b"frm");
        // InnoDB DATA DIRECTORY: the .isl names the tablespace elsewhere.
        write(&far.join("inno/db/t.ibd"), &[1; 32]);
        write(
            &dd.join("db/t.isl"),
            far.join("inno/db/t.ibd").display().to_string().as_bytes(),
        );
        // MyISAM DATA DIRECTORY: a symlink (relative here) to the file.
        write(&far.join("myd/m.MYD"), &[2; 16]);
        write(&dd.join("db/m.MYI"), &[3; 8]);
        symlink("../../far/myd/m.MYD", dd.join("db/m.MYD")).expect("symlink");
        // A dangling one, and a database directory that is a symlink.
        symlink(far.join("gone/x.MYD"), dd.join("db/x.MYD")).expect("symlink");
        write(&far.join("db2/s.ibd"), &[4; 48]);
        symlink(far.join("db2"), dd.join("db2")).expect("symlink");
        // The Aria log in its own directory.
        write(&far.join("aria/aria_log_control"), &[5; 52]);
        write(&far.join("aria/aria_log.00000001"), &[6; 8]);
        let aria = far.join("aria");
        let inv = inventory(&Layout {
            datadir: &dd,
            data_home: None,
            data_file_path: "ibdata1:12M:autoextend",
            undo_dir: None,
            aria_log_dir: Some(&aria),
        })
        .expect("inventory");
        let rels = inv.rels();
        for r in [
            "ibdata1",
            "db/t.frm",
            "db/t.isl",
            "db/t.ibd",
            "db/m.MYD",
            "db/m.MYI",
            "db2/s.ibd",
            "aria_log_control",
            "aria_log.00000001",
        ] {
            assert!(rels.contains(r), "{r} missing from {rels:?}");
        }
        assert!(!rels.contains("db/x.MYD"));
        let t_ibd = inv
            .innodb
            .iter()
            .find(|s| s.rel.as_str() == "db/t.ibd")
            .expect("remote tablespace");
        assert_eq!(t_ibd.abs, far.join("inno/db/t.ibd"));
        assert_eq!(t_ibd.size, 32);
        let kinds: Vec<(&str, LinkKind, String)> = inv
            .links
            .iter()
            .map(|l| (l.rel.as_str(), l.kind, l.target.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "db/m.MYD",
                    LinkKind::File,
                    far.join("myd/m.MYD").display().to_string()
                ),
                (
                    "db/t.ibd",
                    LinkKind::Isl,
                    far.join("inno/db/t.ibd").display().to_string()
                ),
                ("db2", LinkKind::Dir, far.join("db2").display().to_string()),
            ]
        );
        assert_eq!(inv.unreadable.len(), 1);
        assert_eq!(inv.unreadable[0].rel, "db/x.MYD");
        assert_eq!(inv.unreadable[0].abs, far.join("gone/x.MYD"));
    }
}

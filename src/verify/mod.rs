//! `hotbak verify --target-dir DIR`: prove an extracted backup whole without
//! restoring it or starting a server. Every finding is reported, not only
//! the first, with the file, the page or LSN, and what was expected.
//!
//! Checks, in order (see README "hotbak verify"):
//! 1. **Completeness** (when a hotbak manifest is present): every listed file
//!    is present once with its size and BLAKE3; no file the manifest does
//!    not list, except the ones written after it by design or by prepare.
//!    A hotbak backup without its manifest is a finding; a mariabackup
//!    backup has none, which is said, not counted.
//! 2. **InnoDB pages**: each data file (system, undo, `.ibd`) is a whole
//!    number of pages and at least as long as page 0's `FSP_SIZE`; every
//!    page's checksum by the tablespace's own format, its page number equal
//!    to its position and its space id equal to the file's; no space id
//!    used by two files.
//! 3. **Redo** (unprepared backups): `ib_logfile0` parses from its first LSN
//!    to the `last_lsn` of `xtrabackup_checkpoints`, every mini-transaction's
//!    sequence byte and CRC-32C valid.
//! 4. **Metadata**: `xtrabackup_checkpoints`, `backup-my.cnf`,
//!    `xtrabackup_info` parse and agree (LSNs in order, the same `to_lsn`),
//!    `xtrabackup_binlog_info` present when the info names a position.
//!
//! A prepared backup's InnoDB files and log were rewritten by recovery: for
//! those only the page checks apply.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::manifest::{Manifest, MANIFEST_NAME, STREAM_INFO_NAME};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints, XtrabackupInfo};
use crate::innodb::page::{self, PageFormat, PageVerdict, FIL_PAGE_SPACE_ID};
use crate::innodb::{redo, Lsn, PageNo};

/// Errors that stop verification (the backup's own damage is a finding, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a backup directory.
    #[error("{0}")]
    NotABackup(String),
    /// The backup is damaged or incomplete.
    #[error("the backup is damaged or incomplete: {0} finding(s)")]
    Damaged(usize),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Io { .. } => ErrorClass::Io,
            Error::NotABackup(_) => ErrorClass::Usage,
            Error::Damaged(_) => ErrorClass::Corrupt,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What kind of damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// A file the backup must have is absent.
    Missing,
    /// A file the manifest does not list.
    Extra,
    /// Size or content differ from the manifest.
    Content,
    /// An InnoDB page or tablespace file is damaged.
    Page,
    /// The redo log is damaged or short.
    Redo,
    /// Metadata files are missing, malformed or inconsistent.
    Metadata,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Missing => "missing",
            Class::Extra => "extra",
            Class::Content => "content",
            Class::Page => "page",
            Class::Redo => "redo",
            Class::Metadata => "metadata",
        })
    }
}

/// One thing wrong with the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Kind.
    pub class: Class,
    /// The file (backup-relative).
    pub file: String,
    /// What is wrong, with the page or LSN and what was expected.
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.class, self.file, self.detail)
    }
}

/// The result.
#[derive(Debug, Default)]
pub struct Report {
    /// Files looked at.
    pub files: u64,
    /// InnoDB pages checked.
    pub pages: u64,
    /// Redo bytes checked.
    pub redo_bytes: u64,
    /// Whether a manifest was checked.
    pub manifest: bool,
    /// Whether the backup is prepared.
    pub prepared: bool,
    /// Everything wrong.
    pub findings: Vec<Finding>,
    /// Remarks that are not damage.
    pub notes: Vec<String>,
}

/// Files a hotbak backup holds beside the manifest's list: the stream
/// info and the manifest themselves, and what prepare or a server start
/// on the backup creates.
const NOT_IN_MANIFEST: &[&str] = &[MANIFEST_NAME, STREAM_INFO_NAME];
const CREATED_BY_PREPARE: &[&str] = &[
    "ib_buffer_pool",
    "ibtmp1",
    "xtrabackup_binlog_pos_innodb",
    "mysql_upgrade_info",
    "multi-master.info",
];

/// Findings per file beyond which only a count is reported.
const MAX_PAGE_FINDINGS_PER_FILE: usize = 20;

fn is_innodb_file(rel: &str, sys_files: &BTreeSet<String>) -> bool {
    rel.ends_with(".ibd")
        || sys_files.contains(rel)
        || (rel.len() == 7
            && rel.starts_with("undo")
            && rel[4..].bytes().all(|b| b.is_ascii_digit()))
}

/// Every regular file under `dir`, backup-relative, `/`-separated.
fn list(dir: &Path) -> Result<BTreeSet<String>, Error> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let ft = e.file_type().map_err(io(&e.path()))?;
            if ft.is_dir() {
                stack.push((e.path(), rel));
            } else if ft.is_file() {
                out.insert(rel);
            }
        }
    }
    Ok(out)
}

fn blake3_file(p: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().to_hex().to_string()))
}

/// What the page check of one data file found.
#[derive(Debug, Default)]
struct FileCheck {
    pages: u64,
    space: Option<u32>,
    /// Page 0 is all zero: a tablespace created after the checkpoint, whose
    /// first page only the redo log holds yet.
    page0_zero: bool,
    findings: Vec<Finding>,
}

/// Check every page of one InnoDB data file. `fmt` is given for system
/// tablespace files after the first (no page 0 of their own; page
/// numbers continue from the previous file, so they are not checked).
fn check_data_file(
    path: &Path,
    rel: &str,
    follow_on: Option<PageFormat>,
    system: bool,
) -> FileCheck {
    let mut out = FileCheck::default();
    let finding = |detail: String| Finding {
        class: Class::Page,
        file: rel.to_owned(),
        detail,
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            out.findings.push(Finding {
                class: Class::Missing,
                file: rel.to_owned(),
                detail: format!("cannot open: {e}"),
            });
            return out;
        }
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut head = vec![0u8; page::MAX_PAGE_SIZE as usize];
    let (fmt, declared, space) = match follow_on {
        Some(fmt) => (fmt, None, None),
        None => {
            let n = read_full(&mut f, &mut head).unwrap_or(0);
            if n >= page::PAGE0_MIN_LEN && head[..n.min(4096)].iter().all(|&b| b == 0) {
                out.page0_zero = true;
                return out;
            }
            match page::parse_page0(&head[..n]) {
                Ok(info) => (info.format, Some(info.size_pages), Some(info.space_id.0)),
                Err(e) => {
                    out.findings.push(finding(format!(
                        "page 0 unreadable ({e}); the rest of the file cannot be checked"
                    )));
                    return out;
                }
            }
        }
    };
    out.space = space;
    let psize = u64::from(fmt.physical_size());
    if len % psize != 0 {
        out.findings.push(finding(format!(
            "length {len} is not a multiple of the page size {psize} ({} bytes of a last page)",
            len % psize
        )));
    }
    if let Some(d) = declared {
        if len / psize < u64::from(d) {
            out.findings.push(finding(format!(
                "{} pages, page 0 declares FSP_SIZE {d}: the file is truncated",
                len / psize
            )));
        }
    }
    if std::io::Seek::rewind(&mut f).is_err() {
        return out;
    }
    let per = (1usize << 20) / psize as usize;
    let mut buf = vec![0u8; per * psize as usize];
    let mut page_no: u64 = 0;
    let mut reported = 0usize;
    loop {
        let n = match read_full(&mut f, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                out.findings.push(finding(format!(
                    "read error at byte {}: {e}",
                    page_no * psize
                )));
                break;
            }
        };
        let whole = n / psize as usize;
        for i in 0..whole {
            let p = &buf[i * psize as usize..(i + 1) * psize as usize];
            let pn = page_no + i as u64;
            // The doublewrite buffer of the system tablespace is scratch space:
            // copies of other pages in flight, partly stale or never written
            // (recovery uses only those whose checksum holds). Not checked.
            let dblwr = system
                && u32::try_from(pn)
                    .is_ok_and(|p| page::doublewrite_range(fmt.logical_size()).contains(&p));
            let expected = (follow_on.is_none() && !dblwr)
                .then(|| PageNo(u32::try_from(pn).unwrap_or(u32::MAX)));
            if dblwr {
                continue;
            }
            let mut bad = match page::check_page(&fmt, expected, p) {
                PageVerdict::Corrupt(c) => Some(c.to_string()),
                PageVerdict::AllZero => None,
                PageVerdict::Valid(_) => None,
            };
            if bad.is_none() && follow_on.is_none() && !dblwr {
                if let (Some(sp), Some(id)) = (space, crate::innodb::be32(p, FIL_PAGE_SPACE_ID)) {
                    if id != sp && !p.iter().all(|&b| b == 0) {
                        bad = Some(format!("space id field is {id}, the file's is {sp}"));
                    }
                }
            }
            if let Some(b) = bad {
                reported += 1;
                if reported <= MAX_PAGE_FINDINGS_PER_FILE {
                    out.findings
                        .push(finding(format!("page {pn} (byte {}): {b}", pn * psize)));
                }
            }
        }
        out.pages += whole as u64;
        page_no += whole as u64;
        if n < buf.len() {
            break;
        }
    }
    if reported > MAX_PAGE_FINDINGS_PER_FILE {
        out.findings.push(finding(format!(
            "and {} more damaged pages",
            reported - MAX_PAGE_FINDINGS_PER_FILE
        )));
    }
    out
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// What the redo walk found.
struct RedoWalk {
    bytes: u64,
    checkpoint: u64,
    end: Lsn,
    why: String,
    /// Tablespaces the log creates or modifies (backup-relative).
    named: BTreeSet<String>,
}

/// Walk the backup's linear redo log.
fn walk_redo(path: &Path) -> Result<RedoWalk, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut prefix = vec![0u8; usize::try_from(redo::START_OFFSET).unwrap_or(12288)];
    let n = read_full(&mut f, &mut prefix).map_err(|e| e.to_string())?;
    let info = redo::parse_log_prefix(&prefix[..n]).map_err(|e| format!("header: {e}"))?;
    let first = info.header.first_lsn;
    let geo = redo::LogGeometry::new(first, len.max(redo::START_OFFSET + 1))
        .map_err(|e| e.to_string())?;
    let mut lsn = first;
    let mut named = BTreeSet::new();
    let mut buf: Vec<u8> = Vec::with_capacity(8 << 20);
    let mut chunk = vec![0u8; 4 << 20];
    let mut eof = false;
    loop {
        if !eof {
            let k = read_full(&mut f, &mut chunk).map_err(|e| e.to_string())?;
            buf.extend_from_slice(&chunk[..k]);
            eof = k < chunk.len();
        }
        let scan = redo::scan_mtrs(&geo, lsn, &buf).map_err(|e| e.to_string())?;
        let mut at = 0;
        for &l in &scan.mtr_lens {
            for op in redo::file_records(&buf[at..at + l]).flatten() {
                match op {
                    redo::FileOp::Create { path, .. } | redo::FileOp::Modify { path, .. } => {
                        named.extend(crate::innodb::relocate::backup_name(
                            &String::from_utf8_lossy(path),
                        ));
                    }
                    redo::FileOp::Rename { to, .. } => {
                        named.extend(crate::innodb::relocate::backup_name(
                            &String::from_utf8_lossy(to),
                        ));
                    }
                    _ => {}
                }
            }
            at += l;
        }
        lsn = scan.end_lsn;
        buf.drain(..scan.consumed);
        match scan.stop {
            redo::ScanStop::NeedMore if !eof => continue,
            redo::ScanStop::NeedMore => {
                let why = if buf.is_empty() {
                    "end of file".to_owned()
                } else {
                    format!(
                        "the file ends inside a mini-transaction ({} bytes)",
                        buf.len()
                    )
                };
                return Ok(RedoWalk {
                    bytes: lsn.0 - first.0,
                    checkpoint: info.newest.checkpoint_lsn.0,
                    end: lsn,
                    why,
                    named,
                });
            }
            redo::ScanStop::EndOfLog(e) => {
                return Ok(RedoWalk {
                    bytes: lsn.0 - first.0,
                    checkpoint: info.newest.checkpoint_lsn.0,
                    end: lsn,
                    why: e.to_string(),
                    named,
                })
            }
        }
    }
}

/// Verify the extracted backup in `dir`, with up to `parallel` files
/// checked at once.
///
/// # Errors
/// [`Error::NotABackup`] when `dir` has no `xtrabackup_checkpoints`,
/// [`Error::Io`] when the directory cannot be listed. Damage is reported
/// in [`Report::findings`].
#[allow(clippy::too_many_lines)]
pub fn verify_dir(dir: &Path, parallel: usize) -> Result<Report, Error> {
    let mut r = Report::default();
    let files = list(dir)?;
    let ck_text = match std::fs::read_to_string(dir.join(Checkpoints::FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotABackup(format!(
                "{}: no {} here: not an extracted backup (a stream? use `hotbak verify --stream`)",
                dir.display(),
                Checkpoints::FILE
            )))
        }
        Err(e) => return Err(io(&dir.join(Checkpoints::FILE))(e)),
    };
    let meta = |file: &str, detail: String| Finding {
        class: Class::Metadata,
        file: file.to_owned(),
        detail,
    };
    let ck = match Checkpoints::parse(&ck_text) {
        Ok(c) => Some(c),
        Err(e) => {
            r.findings.push(meta(Checkpoints::FILE, e.to_string()));
            None
        }
    };
    r.prepared = ck.as_ref().is_some_and(|c| {
        c.backup_type != BackupType::FullBackuped && c.backup_type != BackupType::Incremental
    });
    let cnf = match std::fs::read_to_string(dir.join(BackupMyCnf::FILE)) {
        Ok(t) => match BackupMyCnf::parse(&t) {
            Ok(c) => Some(c),
            Err(e) => {
                r.findings.push(meta(BackupMyCnf::FILE, e.to_string()));
                None
            }
        },
        Err(e) => {
            r.findings
                .push(meta(BackupMyCnf::FILE, format!("cannot read: {e}")));
            None
        }
    };
    let info = match std::fs::read_to_string(dir.join(XtrabackupInfo::FILE)) {
        Ok(t) => match XtrabackupInfo::parse(&t) {
            Ok(i) => Some(i),
            Err(e) => {
                r.findings.push(meta(XtrabackupInfo::FILE, e.to_string()));
                None
            }
        },
        Err(_) => {
            r.findings
                .push(meta(XtrabackupInfo::FILE, "missing".into()));
            None
        }
    };
    if let (Some(ck), Some(info)) = (&ck, &info) {
        if info.innodb_to_lsn != ck.to_lsn {
            r.findings.push(meta(
                Checkpoints::FILE,
                format!(
                    "to_lsn {} differs from innodb_to_lsn {} in {}",
                    ck.to_lsn,
                    info.innodb_to_lsn,
                    XtrabackupInfo::FILE
                ),
            ));
        }
        if !info.binlog_pos.is_empty() && !files.contains("xtrabackup_binlog_info") {
            r.findings.push(Finding {
                class: Class::Missing,
                file: "xtrabackup_binlog_info".into(),
                detail: format!(
                    "{} records binlog position {:?}",
                    XtrabackupInfo::FILE,
                    info.binlog_pos
                ),
            });
        }
    }
    if let Some(ck) = &ck {
        if ck.to_lsn > ck.last_lsn {
            r.findings.push(meta(
                Checkpoints::FILE,
                format!("to_lsn {} is past last_lsn {}", ck.to_lsn, ck.last_lsn),
            ));
        }
    }
    let sys_files: BTreeSet<String> = cnf
        .as_ref()
        .map(|c| {
            c.innodb_data_file_path
                .split(';')
                .filter_map(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| ["ibdata1".to_owned()].into());

    // 1. Completeness against the manifest.
    let hotbak_made =
        info.as_ref().is_some_and(|i| i.tool_name == "hotbak") || files.contains(STREAM_INFO_NAME);
    let manifest = match std::fs::read(dir.join(MANIFEST_NAME)) {
        Ok(b) => match Manifest::from_bytes(&b) {
            Ok(m) => Some(m),
            Err(e) => {
                r.findings.push(Finding {
                    class: Class::Metadata,
                    file: MANIFEST_NAME.into(),
                    detail: e.to_string(),
                });
                None
            }
        },
        Err(_) => {
            if hotbak_made {
                r.findings.push(Finding {
                    class: Class::Missing,
                    file: MANIFEST_NAME.into(),
                    detail: "a hotbak backup without its manifest: completeness cannot be proven"
                        .into(),
                });
            } else {
                r.notes.push(
                    "no hotbak manifest (a mariabackup backup): file completeness and non-InnoDB content cannot be proven; pages, redo and metadata were checked".into(),
                );
            }
            None
        }
    };
    let changed_by_prepare = |rel: &str| {
        r.prepared
            && (is_innodb_file(rel, &sys_files)
                || rel == "ib_logfile0"
                || rel == Checkpoints::FILE
                || rel.starts_with("aria_log"))
    };
    let mut jobs: Vec<(String, u64, String)> = Vec::new();
    if let Some(m) = &manifest {
        r.manifest = true;
        let mut listed = BTreeSet::new();
        for e in &m.files {
            if !listed.insert(e.path.clone()) {
                r.findings.push(Finding {
                    class: Class::Metadata,
                    file: e.path.clone(),
                    detail: "listed twice in the manifest".into(),
                });
            }
            if !files.contains(&e.path) {
                r.findings.push(Finding {
                    class: Class::Missing,
                    file: e.path.clone(),
                    detail: format!(
                        "listed in the manifest ({} bytes), not in the backup",
                        e.size
                    ),
                });
            } else if !changed_by_prepare(&e.path) {
                jobs.push((e.path.clone(), e.size, e.blake3.clone()));
            }
        }
        for f in &files {
            if listed.contains(f) || NOT_IN_MANIFEST.contains(&f.as_str()) {
                continue;
            }
            if r.prepared && CREATED_BY_PREPARE.contains(&f.as_str()) {
                continue;
            }
            r.findings.push(Finding {
                class: Class::Extra,
                file: f.clone(),
                detail: "not listed in the manifest".into(),
            });
        }
    }

    // 2. Redo (first: it names the tablespaces whose page 0 only the log holds).
    let mut logged: BTreeSet<String> = BTreeSet::new();
    if !r.prepared {
        let log = dir.join("ib_logfile0");
        match walk_redo(&log) {
            Err(e) => r.findings.push(Finding {
                class: Class::Redo,
                file: "ib_logfile0".into(),
                detail: e,
            }),
            Ok(RedoWalk {
                bytes,
                checkpoint,
                end,
                why,
                named,
            }) => {
                r.redo_bytes = bytes;
                logged = named;
                if let Some(ck) = &ck {
                    if end.0 < ck.last_lsn {
                        r.findings.push(Finding {
                            class: Class::Redo,
                            file: "ib_logfile0".into(),
                            detail: format!(
                                "the log ends at LSN {end} ({why}), {} needs it up to last_lsn {}",
                                Checkpoints::FILE,
                                ck.last_lsn
                            ),
                        });
                    }
                    if checkpoint > ck.to_lsn {
                        r.findings.push(Finding {
                            class: Class::Redo,
                            file: "ib_logfile0".into(),
                            detail: format!(
                                "checkpoint LSN {checkpoint} is past the backup's to_lsn {}",
                                ck.to_lsn
                            ),
                        });
                    }
                }
            }
        }
    }
    // 3. Hashes and pages, in parallel.
    let data_files: Vec<String> = files
        .iter()
        .filter(|f| is_innodb_file(f, &sys_files))
        .cloned()
        .collect();
    let sys_first = cnf
        .as_ref()
        .and_then(|c| c.innodb_data_file_path.split(':').next().map(str::to_owned))
        .unwrap_or_else(|| "ibdata1".into());
    let sys_format = std::fs::File::open(dir.join(&sys_first))
        .ok()
        .and_then(|mut f| {
            let mut b = vec![0u8; page::MAX_PAGE_SIZE as usize];
            let n = read_full(&mut f, &mut b).ok()?;
            page::parse_page0(&b[..n]).ok().map(|i| i.format)
        });
    enum Job {
        Hash(String, u64, String),
        Pages(String),
    }
    let mut queue: Vec<Job> = jobs
        .into_iter()
        .map(|(p, s, h)| Job::Hash(p, s, h))
        .chain(data_files.into_iter().map(Job::Pages))
        .collect();
    queue.reverse();
    let queue = std::sync::Mutex::new(queue);
    let results = std::sync::Mutex::new((
        Vec::<Finding>::new(),
        BTreeMap::<u32, Vec<String>>::new(),
        0u64,
        0u64,
    ));
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| loop {
                let job = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                let Some(job) = job else { return };
                let mut found = Vec::new();
                let mut space = None;
                let mut pages = 0;
                let mut nfiles = 0;
                match job {
                    Job::Hash(rel, size, hash) => {
                        nfiles = 1;
                        match blake3_file(&dir.join(&rel)) {
                            Ok((n, h)) => {
                                if n != size {
                                    found.push(Finding {
                                        class: Class::Content,
                                        file: rel,
                                        detail: format!("{n} bytes, the manifest says {size}"),
                                    });
                                } else if h != hash {
                                    found.push(Finding {
                                        class: Class::Content,
                                        file: rel,
                                        detail: format!("BLAKE3 {h}, the manifest says {hash}"),
                                    });
                                }
                            }
                            Err(e) => found.push(Finding {
                                class: Class::Missing,
                                file: rel,
                                detail: format!("cannot read: {e}"),
                            }),
                        }
                    }
                    Job::Pages(rel) => {
                        let follow = (sys_files.contains(&rel) && rel != sys_first)
                            .then_some(sys_format)
                            .flatten();
                        if sys_files.contains(&rel) && rel != sys_first && follow.is_none() {
                            found.push(Finding {
                                class: Class::Page,
                                file: rel,
                                detail: format!("cannot be checked: {sys_first}'s page 0 is unreadable"),
                            });
                        } else {
                            let c = check_data_file(
                                &dir.join(&rel),
                                &rel,
                                follow,
                                sys_files.contains(&rel),
                            );
                            if c.page0_zero && (r.prepared || !logged.contains(&rel)) {
                                found.push(Finding {
                                    class: Class::Page,
                                    file: rel.clone(),
                                    detail: if r.prepared {
                                        "page 0 is all zero in a prepared backup".into()
                                    } else {
                                        "page 0 is all zero and the redo log does not create or modify this tablespace".into()
                                    },
                                });
                            }
                            pages = c.pages;
                            space = c.space.map(|sp| (sp, rel.clone()));
                            found.extend(c.findings);
                        }
                    }
                }
                let mut g = results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                g.0.extend(found);
                if let Some((sp, rel)) = space {
                    g.1.entry(sp).or_default().push(rel);
                }
                g.2 += pages;
                g.3 += nfiles;
            });
        }
    });
    let (found, spaces, pages, hashed) = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.findings.extend(found);
    r.pages = pages;
    r.files = hashed.max(files.len() as u64);
    for (sp, rels) in spaces.iter().filter(|(_, v)| v.len() > 1) {
        r.findings.push(Finding {
            class: Class::Page,
            file: rels.join(", "),
            detail: format!("space id {sp} is used by {} files", rels.len()),
        });
    }

    r.findings
        .sort_by(|a, b| (a.class, &a.file).cmp(&(b.class, &b.file)));
    Ok(r)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for n in &self.notes {
            writeln!(f, "hotbak: note: {n}")?;
        }
        for x in &self.findings {
            writeln!(f, "hotbak: {x}")?;
        }
        let mut by: BTreeMap<Class, usize> = BTreeMap::new();
        for x in &self.findings {
            *by.entry(x.class).or_default() += 1;
        }
        let classes: Vec<String> = by.iter().map(|(c, n)| format!("{n} {c}")).collect();
        write!(
            f,
            "hotbak: verify: {} files, {} InnoDB pages, {} redo bytes checked{}{}; {}",
            self.files,
            self.pages,
            self.redo_bytes,
            if self.manifest {
                ", manifest checked"
            } else {
                ""
            },
            if self.prepared {
                " (prepared backup)"
            } else {
                ""
            },
            if self.findings.is_empty() {
                "no findings".to_owned()
            } else {
                format!("{} findings ({})", self.findings.len(), classes.join(", "))
            }
        )
    }
}

/// The CLI's arguments, as library types.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    /// The extracted backup.
    pub target_dir: PathBuf,
    /// Files checked at once.
    pub parallel: usize,
}

/// Run verification and print the report; an error when anything was found.
///
/// # Errors
/// [`Error::Damaged`] (exit 3) when there are findings; others as [`verify_dir`].
pub fn run(plan: &VerifyPlan) -> Result<Report, Error> {
    let r = verify_dir(&plan.target_dir, plan.parallel)?;
    eprintln!("{r}");
    if r.findings.is_empty() {
        eprintln!("hotbak: verify completed OK!");
        Ok(r)
    } else {
        Err(Error::Damaged(r.findings.len()))
    }
}

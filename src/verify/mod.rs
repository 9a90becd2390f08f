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
//!
//! Two modes over the same checks: [`verify_dir`] (an extracted backup) and
//! [`verify_stream`] (an xbstream read once, nothing written; see
//! `verify::stream`). Both feed the incremental cores of `verify::pages` (a page
//! checker per data file, a redo walker) and share the metadata,
//! completeness and redo comparisons below.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::manifest::{Manifest, MANIFEST_NAME, STREAM_INFO_NAME};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints, XtrabackupInfo};
use crate::innodb::page::{self, PageFormat};

mod pages;
mod stream;

use pages::{FileCheck, PageChecker, RedoWalk, RedoWalker};
pub use stream::{run_stream, verify_stream, StreamPlan};

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
    /// The stream could not be read at all (I/O, a missing or wrong key);
    /// container damage is a finding instead.
    #[error(transparent)]
    Stream(#[from] crate::extract::Error),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Io { .. } => ErrorClass::Io,
            Error::NotABackup(_) => ErrorClass::Usage,
            Error::Damaged(_) => ErrorClass::Corrupt,
            Error::Stream(e) => e.class(),
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
    /// The container: a bad chunk, a cut, failed authentication.
    Stream,
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
            Class::Stream => "stream",
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

/// Check every page of one InnoDB data file on disk: the file fed to a
/// [`PageChecker`]. `follow_on` is given for system tablespace files after
/// the first.
fn check_data_file(
    path: &Path,
    rel: &str,
    follow_on: Option<PageFormat>,
    system: bool,
) -> FileCheck {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return FileCheck {
                findings: vec![Finding {
                    class: Class::Missing,
                    file: rel.to_owned(),
                    detail: format!("cannot open: {e}"),
                }],
                ..FileCheck::default()
            }
        }
    };
    let mut c = PageChecker::new(rel, follow_on, system);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match read_full(&mut f, &mut buf) {
            Ok(n) => {
                c.feed(&buf[..n]);
                if n < buf.len() {
                    break;
                }
            }
            Err(e) => {
                c.read_error(&e);
                break;
            }
        }
    }
    c.finish()
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

/// Walk the backup's linear redo log on disk: the file fed to a [`RedoWalker`].
fn walk_redo(path: &Path) -> Result<RedoWalk, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut w = RedoWalker::new(Some(len));
    let mut chunk = vec![0u8; 4 << 20];
    while !w.stopped() {
        let k = read_full(&mut f, &mut chunk).map_err(|e| e.to_string())?;
        w.feed(&chunk[..k]);
        if k < chunk.len() {
            break;
        }
    }
    w.finish()
}

/// What the metadata files say, once parsed.
struct Meta {
    ck: Option<Checkpoints>,
    /// The system tablespace's files (`innodb_data_file_path`), and its first.
    sys_files: BTreeSet<String>,
    sys_first: String,
    /// Made by hotbak (so a manifest is due).
    hotbak_made: bool,
}

/// Step 4, metadata: `xtrabackup_checkpoints` (`None`: absent, a stream's
/// finding), `backup-my.cnf` (`Err`: why it is unreadable) and
/// `xtrabackup_info` (`None`: absent) parse and agree. Sets `r.prepared`.
fn check_metadata(
    files: &BTreeSet<String>,
    ck_text: Option<&str>,
    cnf_text: Result<String, String>,
    info_text: Option<String>,
    r: &mut Report,
) -> Meta {
    let meta = |file: &str, detail: String| Finding {
        class: Class::Metadata,
        file: file.to_owned(),
        detail,
    };
    let ck = match ck_text.map(Checkpoints::parse) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            r.findings.push(meta(Checkpoints::FILE, e.to_string()));
            None
        }
        None => {
            r.findings.push(Finding {
                class: Class::Missing,
                file: Checkpoints::FILE.into(),
                detail: "not in the stream: not a backup, or one cut short".into(),
            });
            None
        }
    };
    r.prepared = ck.as_ref().is_some_and(|c| {
        c.backup_type != BackupType::FullBackuped && c.backup_type != BackupType::Incremental
    });
    let cnf = match cnf_text {
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
    let info = match info_text {
        Some(t) => match XtrabackupInfo::parse(&t) {
            Ok(i) => Some(i),
            Err(e) => {
                r.findings.push(meta(XtrabackupInfo::FILE, e.to_string()));
                None
            }
        },
        None => {
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
    let sys_first = cnf
        .as_ref()
        .and_then(|c| c.innodb_data_file_path.split(':').next().map(str::to_owned))
        .unwrap_or_else(|| "ibdata1".into());
    let hotbak_made =
        info.as_ref().is_some_and(|i| i.tool_name == "hotbak") || files.contains(STREAM_INFO_NAME);
    Meta {
        ck,
        sys_files,
        sys_first,
        hotbak_made,
    }
}

/// Step 1, completeness against the manifest (`None`: there is none): every
/// listed file present, none unlisted. Returns the listed files whose
/// content is to be compared (path, size, BLAKE3): those prepare did not
/// rewrite.
fn check_manifest(
    m: &Meta,
    manifest: Option<&[u8]>,
    files: &BTreeSet<String>,
    r: &mut Report,
) -> Vec<(String, u64, String)> {
    let manifest = match manifest {
        Some(b) => match Manifest::from_bytes(b) {
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
        None => {
            if m.hotbak_made {
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
            && (is_innodb_file(rel, &m.sys_files)
                || rel == "ib_logfile0"
                || rel == Checkpoints::FILE
                || rel.starts_with("aria_log"))
    };
    let mut jobs: Vec<(String, u64, String)> = Vec::new();
    let Some(manifest) = manifest else {
        return jobs;
    };
    let mut found = Vec::new();
    let mut listed = BTreeSet::new();
    for e in &manifest.files {
        if !listed.insert(e.path.clone()) {
            found.push(Finding {
                class: Class::Metadata,
                file: e.path.clone(),
                detail: "listed twice in the manifest".into(),
            });
        }
        if !files.contains(&e.path) {
            found.push(Finding {
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
    for f in files {
        if listed.contains(f) || NOT_IN_MANIFEST.contains(&f.as_str()) {
            continue;
        }
        if r.prepared && CREATED_BY_PREPARE.contains(&f.as_str()) {
            continue;
        }
        found.push(Finding {
            class: Class::Extra,
            file: f.clone(),
            detail: "not listed in the manifest".into(),
        });
    }
    r.manifest = true;
    r.findings.extend(found);
    jobs
}

/// A file's size and BLAKE3 against the manifest's.
fn content_finding(rel: &str, got: (u64, &str), want: (u64, &str)) -> Option<Finding> {
    let detail = if got.0 != want.0 {
        format!("{} bytes, the manifest says {}", got.0, want.0)
    } else if got.1 != want.1 {
        format!("BLAKE3 {}, the manifest says {}", got.1, want.1)
    } else {
        return None;
    };
    Some(Finding {
        class: Class::Content,
        file: rel.to_owned(),
        detail,
    })
}

/// Step 2, the redo walk against `xtrabackup_checkpoints`. Returns the
/// tablespaces the log creates or modifies.
fn check_redo(walk: Result<RedoWalk, String>, ck: Option<&Checkpoints>, r: &mut Report) -> Logged {
    let redo = |detail| Finding {
        class: Class::Redo,
        file: "ib_logfile0".into(),
        detail,
    };
    match walk {
        Err(e) => {
            r.findings.push(redo(e));
            Logged::default()
        }
        Ok(RedoWalk {
            bytes,
            checkpoint,
            end,
            why,
            named,
        }) => {
            r.redo_bytes = bytes;
            let mut whole = true;
            if let Some(ck) = ck {
                if end.0 < ck.last_lsn {
                    whole = false;
                    r.findings.push(redo(format!(
                        "the log ends at LSN {end} ({why}), {} needs it up to last_lsn {}",
                        Checkpoints::FILE,
                        ck.last_lsn
                    )));
                }
                if checkpoint > ck.to_lsn {
                    r.findings.push(redo(format!(
                        "checkpoint LSN {checkpoint} is past the backup's to_lsn {}",
                        ck.to_lsn
                    )));
                }
            }
            Logged {
                names: named,
                whole,
            }
        }
    }
}

/// A data file whose page 0 is all zero: damage, unless the backup is
/// unprepared and its redo creates or modifies the tablespace.
fn page0_finding(rel: &str, c: &FileCheck, prepared: bool, logged: &Logged) -> Option<Finding> {
    (c.page0_zero && (prepared || !logged.names.contains(rel))).then(|| Finding {
        class: Class::Page,
        file: rel.to_owned(),
        detail: if prepared {
            "page 0 is all zero in a prepared backup".into()
        } else if logged.whole {
            "page 0 is all zero and the redo log does not create or modify this tablespace".into()
        } else {
            "page 0 is all zero and the redo log, as far as it could be read, does not create or modify this tablespace".into()
        },
    })
}

/// The tablespaces the redo log creates or modifies, and whether the log
/// was read to `last_lsn` (otherwise the list may be short).
#[derive(Default)]
struct Logged {
    names: BTreeSet<String>,
    whole: bool,
}

/// No space id in two files.
fn space_findings(spaces: &BTreeMap<u32, Vec<String>>, r: &mut Report) {
    for (sp, rels) in spaces.iter().filter(|(_, v)| v.len() > 1) {
        r.findings.push(Finding {
            class: Class::Page,
            file: rels.join(", "),
            detail: format!("space id {sp} is used by {} files", rels.len()),
        });
    }
}

/// Verify the extracted backup in `dir`, with up to `parallel` files
/// checked at once.
///
/// # Errors
/// [`Error::NotABackup`] when `dir` has no `xtrabackup_checkpoints`,
/// [`Error::Io`] when the directory cannot be listed. Damage is reported
/// in [`Report::findings`].
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
    let m = check_metadata(
        &files,
        Some(&ck_text),
        std::fs::read_to_string(dir.join(BackupMyCnf::FILE)).map_err(|e| e.to_string()),
        std::fs::read_to_string(dir.join(XtrabackupInfo::FILE)).ok(),
        &mut r,
    );
    // 1. Completeness against the manifest.
    let jobs = check_manifest(
        &m,
        std::fs::read(dir.join(MANIFEST_NAME)).ok().as_deref(),
        &files,
        &mut r,
    );
    // 2. Redo (first: it names the tablespaces whose page 0 only the log holds).
    let logged = if r.prepared {
        Logged::default()
    } else {
        check_redo(walk_redo(&dir.join("ib_logfile0")), m.ck.as_ref(), &mut r)
    };
    // 3. Hashes and pages, in parallel.
    let (sys_files, sys_first) = (&m.sys_files, &m.sys_first);
    let data_files: Vec<String> = files
        .iter()
        .filter(|f| is_innodb_file(f, sys_files))
        .cloned()
        .collect();
    let sys_format = std::fs::File::open(dir.join(sys_first))
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
    let prepared = r.prepared;
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
                                found.extend(content_finding(&rel, (n, &h), (size, &hash)));
                            }
                            Err(e) => found.push(Finding {
                                class: Class::Missing,
                                file: rel,
                                detail: format!("cannot read: {e}"),
                            }),
                        }
                    }
                    Job::Pages(rel) => {
                        let follow_on = sys_files.contains(&rel) && rel != *sys_first;
                        if follow_on && sys_format.is_none() {
                            found.push(Finding {
                                class: Class::Page,
                                file: rel,
                                detail: format!(
                                    "cannot be checked: {sys_first}'s page 0 is unreadable"
                                ),
                            });
                        } else {
                            let c = check_data_file(
                                &dir.join(&rel),
                                &rel,
                                sys_format.filter(|_| follow_on),
                                sys_files.contains(&rel),
                            );
                            found.extend(page0_finding(&rel, &c, prepared, &logged));
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
    space_findings(&spaces, &mut r);
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
    conclude(verify_dir(&plan.target_dir, plan.parallel)?)
}

/// Print the report; [`Error::Damaged`] when anything was found.
fn conclude(r: Report) -> Result<Report, Error> {
    eprintln!("{r}");
    if r.findings.is_empty() {
        eprintln!("hotbak: verify completed OK!");
        Ok(r)
    } else {
        Err(Error::Damaged(r.findings.len()))
    }
}

//! `hotbak prepare`: make an extracted backup consistent.
//!
//! 1. Check the directory is an unprepared full backup (`xtrabackup_checkpoints`).
//! 2. Apply mariabackup's DDL markers, in its order: `*.del` (remove the
//!    tablespace), `*.ren` (rename it to the name inside the marker), `*.new`
//!    (becomes `.ibd`). hotbak itself holds `BLOCK_DDL` across the InnoDB copy
//!    and writes no markers, but mariabackup backups have them.
//! 3. Keep recovery inside the backup: tablespaces that lived outside the
//!    server's datadir (`DATA DIRECTORY`) are in the backup as `db/t.ibd`,
//!    but the redo names them by their absolute server path and a `.isl`
//!    link file points there too. The `.isl` files are set aside (renamed
//!    `*.isl.hotbak-prepare`, put back afterwards, also after a failure or
//!    by the next run after a kill), and the redo's `FILE_*` names outside
//!    the backup are rewritten to same-length relative names
//!    ([`crate::innodb::relocate`]), so the server opens only files inside
//!    the backup directory.
//! 4. Start `mariadbd` on the directory in a sandbox (no networking, a
//!    private socket, the geometry from `backup-my.cnf`). Its crash recovery
//!    applies the copied redo up to the backup's end LSN and rolls back what
//!    was uncommitted at `BLOCK_COMMIT`. Wait until it is ready, then shut it
//!    down cleanly.
//! 5. Mark the backup prepared (`backup_type = full-prepared`).

use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints};
use crate::sandbox::{Sandbox, SandboxOptions};

/// Errors of prepare.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory is not a backup, or is in the wrong state.
    #[error("{dir}: {reason}")]
    NotABackup {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// A metadata file is malformed.
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
    /// Recovery failed (the server did not start or stop cleanly).
    #[error("InnoDB recovery with mariadbd failed: {0}")]
    Recovery(String),
    /// The native prepare failed.
    #[error("native prepare: {0}")]
    Native(#[from] crate::native_prepare::Error),
    /// Applying an incremental failed.
    #[error("incremental prepare: {0}")]
    Incremental(#[from] crate::incremental::Error),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::NotABackup { .. } => ErrorClass::Usage,
            Error::Metadata { .. } => ErrorClass::Corrupt,
            Error::Io { .. } => ErrorClass::Io,
            Error::Recovery(_) => ErrorClass::Server,
            Error::Native(e) => e.class(),
            Error::Incremental(e) => e.class(),
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

/// What prepare did.
#[derive(Debug, Default)]
pub struct PrepareReport {
    /// Markers applied (`.del`, `.ren`, `.new`).
    pub markers: usize,
    /// Seconds the recovery run took.
    pub recovery_secs: f64,
    /// `.isl` link files set aside during recovery.
    pub link_files: usize,
    /// Redo `FILE_*` names outside the backup rewritten to names inside it.
    pub relocated_names: usize,
    /// The backup was prepared already (`backup_type` full-prepared or
    /// log-applied): nothing was done. DBAs prepare twice out of habit.
    pub already_prepared: Option<String>,
    /// The native applier's report, when it prepared the backup.
    pub native: Option<crate::native_prepare::Report>,
    /// Why the native applier refused, when `Method::Auto` fell back to
    /// the mariadbd-based recovery.
    pub fell_back: Option<String>,
    /// The incremental applied, with `--incremental-dir`.
    pub incremental: Option<crate::incremental::Report>,
}

impl PrepareReport {
    fn already(backup_type: String) -> Self {
        PrepareReport {
            already_prepared: Some(backup_type),
            ..PrepareReport::default()
        }
    }
}

fn read_text(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(io(p))
}

/// Prepare `dir` in place (blocking).
///
/// # Errors
/// [`Error`] naming the file or the server's last log lines.
pub fn prepare(dir: &Path, mariadbd: Option<&Path>, use_memory: &str) -> Result<PrepareReport> {
    let ck = match start(dir)? {
        Start::Go(ck) => ck,
        Start::Done(t) => return Ok(PrepareReport::already(t)),
    };
    let ck_path = dir.join(Checkpoints::FILE);
    let cnf_path = dir.join(BackupMyCnf::FILE);
    let cnf = BackupMyCnf::parse(&read_text(&cnf_path)?).map_err(|e| Error::Metadata {
        path: cnf_path.display().to_string(),
        reason: e.to_string(),
    })?;

    let markers = apply_markers(dir)?;
    // A run killed during recovery left link files aside: put them back first.
    restore_link_files(dir)?;
    let aside = set_link_files_aside(dir)?;
    let relocated = match relocate_redo_paths(dir) {
        Ok(r) => r,
        Err(e) => {
            restore_link_files(dir)?;
            return Err(e);
        }
    };

    let args = vec![
        format!("--innodb-page-size={}", cnf.innodb_page_size),
        format!("--innodb-data-file-path={}", cnf.innodb_data_file_path),
        format!("--innodb-undo-tablespaces={}", cnf.innodb_undo_tablespaces),
        format!("--innodb-undo-directory={}", dir.display()),
        format!("--innodb-buffer-pool-size={use_memory}"),
        "--innodb-log-file-size=48M".to_owned(),
        "--skip-log-bin".to_owned(),
        "--skip-slave-start".to_owned(),
        "--innodb-fast-shutdown=1".to_owned(),
        // One server on the backup's own files: native asynchronous I/O
        // (mariadbd falls back to synchronous I/O where the kernel refuses it).
        // Recovery reads the pages it applies redo to ahead of the apply.
        "--innodb-use-native-aio=1".to_owned(),
    ];
    if let Some(m) = mariadbd {
        if !m.is_file() {
            return Err(Error::NotABackup {
                dir: m.display().to_string(),
                reason: "--mariadbd: no such file".into(),
            });
        }
    }
    let run_dir = run_dir()?;
    let started = std::time::Instant::now();
    let mut opts = SandboxOptions::for_prepare(args);
    opts.buffer_pool_size = None;
    opts.mariadbd = mariadbd.map(Path::to_path_buf);
    let result = (|| {
        let mut sb =
            Sandbox::start_on(dir, &run_dir, opts).map_err(|e| Error::Recovery(e.to_string()))?;
        sb.stop().map_err(|e| Error::Recovery(e.to_string()))
    })();
    let recovery_secs = started.elapsed().as_secs_f64();
    restore_link_files(dir)?;
    if let Err(e) = result {
        // Keep the run dir (error log) for the user.
        return Err(Error::Recovery(format!(
            "{e} (server log kept in {})",
            run_dir.display()
        )));
    }
    let _ = std::fs::remove_dir_all(&run_dir);

    let prepared = Checkpoints {
        backup_type: BackupType::FullPrepared,
        ..ck
    };
    write_atomic(&ck_path, prepared.render().as_bytes())?;
    Ok(PrepareReport {
        markers,
        recovery_secs,
        link_files: aside,
        relocated_names: relocated,
        ..PrepareReport::default()
    })
}

/// The recovery server's directory (socket, pid file, error log): a short
/// path in the temp dir, because the socket lives there (`sun_path` is 108 bytes).
fn run_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("hotbak-prepare-{}", std::process::id()));
    std::fs::create_dir_all(&base).map_err(io(&base))?;
    Ok(base)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Apply `.del`, then `.ren`, then `.new`, like mariabackup's prepare.
/// Renames go through a temporary name first, so that tablespaces that
/// swapped names (`RENAME TABLE a TO t, b TO a, t TO b` during the
/// backup) do not overwrite each other.
fn apply_markers(dir: &Path) -> Result<usize> {
    let mut files: Vec<PathBuf> = Vec::new();
    collect(dir, &mut files, 0)?;
    let mut n = 0;
    let mut parked: Vec<(PathBuf, PathBuf, PathBuf)> = Vec::new();
    for ext in ["del", "ren", "new"] {
        if ext == "new" {
            for (tmp, dest, marker) in parked.drain(..) {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::rename(&tmp, &dest).map_err(io(&tmp))?;
                std::fs::remove_file(&marker).map_err(io(&marker))?;
            }
        }
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == ext))
        {
            let ibd = f.with_extension("ibd");
            match ext {
                "del" => {
                    match std::fs::remove_file(&ibd) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&ibd)(e)),
                    }
                    std::fs::remove_file(f).map_err(io(f))?;
                }
                "ren" => {
                    let target = read_text(f)?;
                    let target = target.trim();
                    let rel = crate::format::path::RelPath::new(&format!("{target}.ibd")).map_err(
                        |e| Error::Metadata {
                            path: f.display().to_string(),
                            reason: e.to_string(),
                        },
                    )?;
                    let dest = rel.under(dir);
                    let mut tmp = ibd.clone().into_os_string();
                    tmp.push(format!(".{ASIDE}-ren"));
                    let tmp = PathBuf::from(tmp);
                    if ibd.exists() {
                        std::fs::rename(&ibd, &tmp).map_err(io(&ibd))?;
                    }
                    // (Parked already by an interrupted prepare: go on from there.)
                    if tmp.exists() {
                        parked.push((tmp, dest, f.clone()));
                    } else {
                        std::fs::remove_file(f).map_err(io(f))?;
                    }
                }
                _ => {
                    std::fs::rename(f, &ibd).map_err(io(f))?;
                }
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Suffix of a `.isl` file set aside during recovery.
const ASIDE: &str = "hotbak-prepare";

/// Rename every `db/*.isl` to `db/*.isl.hotbak-prepare`, so that the
/// server started for recovery finds the tablespace copies in the backup
/// instead of following the links to the live server's files.
fn set_link_files_aside(dir: &Path) -> Result<usize> {
    let mut files = Vec::new();
    collect(dir, &mut files, 0)?;
    let mut n = 0;
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "isl"))
    {
        let mut aside = f.clone().into_os_string();
        aside.push(".");
        aside.push(ASIDE);
        std::fs::rename(f, &aside).map_err(io(f))?;
        n += 1;
    }
    Ok(n)
}

/// Put back the link files [`set_link_files_aside`] renamed.
fn restore_link_files(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    collect(dir, &mut files, 0)?;
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == ASIDE))
    {
        let back = f.with_extension("");
        if back.exists() {
            std::fs::remove_file(f).map_err(io(f))?;
        } else {
            std::fs::rename(f, &back).map_err(io(f))?;
        }
    }
    Ok(())
}

/// Rewrite the redo log's `FILE_*` names that lie outside the backup (the
/// absolute paths of `DATA DIRECTORY` tablespaces) to same-length relative
/// names of their copies in the backup, in place, reading the log in
/// pieces (memory stays bounded whatever its size). Returns the number of
/// names rewritten.
fn relocate_redo_paths(dir: &Path) -> Result<usize> {
    use crate::innodb::{redo, relocate, Lsn};
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    const PIECE: usize = 8 << 20;
    let log = dir.join("ib_logfile0");
    let bad = |reason: String| Error::Metadata {
        path: log.display().to_string(),
        reason,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)
        .map_err(io(&log))?;
    let len = f.metadata().map_err(io(&log))?.len();
    let mut prefix = vec![0u8; usize::try_from(redo::START_OFFSET).unwrap_or(12288)];
    f.read_exact(&mut prefix).map_err(io(&log))?;
    let info = redo::parse_log_prefix(&prefix).map_err(|e| bad(e.to_string()))?;
    let geo = redo::LogGeometry::new(info.header.first_lsn, len).map_err(|e| bad(e.to_string()))?;
    let mut problem: Option<String> = None;
    let mut map = |name: &[u8]| {
        let s = std::str::from_utf8(name).ok()?;
        if !s.starts_with('/') {
            return None; // `./db/t.ibd`: already inside
        }
        let new = relocate::same_length_relative(&relocate::backup_name(s)?, s.len());
        if new.is_none() && problem.is_none() {
            problem = Some(s.to_owned());
        }
        new.map(String::into_bytes)
    };
    let mut pos = redo::START_OFFSET;
    let mut lsn = info.header.first_lsn;
    let mut names = 0;
    let mut buf = vec![0u8; PIECE];
    while pos < len {
        let want = usize::try_from((len - pos).min(PIECE as u64)).unwrap_or(PIECE);
        f.read_exact_at(&mut buf[..want], pos).map_err(io(&log))?;
        let w = relocate::relocate_mtrs(&geo, lsn, &mut buf[..want], &mut map)
            .map_err(|e| bad(format!("at LSN {lsn}: {e}")))?;
        for &(off, n) in &w.changed {
            f.write_all_at(&buf[off..off + n], pos + off as u64)
                .map_err(io(&log))?;
        }
        names += w.names;
        if w.end_of_log || w.consumed == 0 {
            break;
        }
        pos += w.consumed as u64;
        lsn = Lsn(lsn.0 + w.consumed as u64);
    }
    if let Some(p) = problem {
        return Err(bad(format!(
            "the redo log names the tablespace {p}, too short a path to be renamed into the backup for recovery"
        )));
    }
    if names > 0 {
        f.sync_all().map_err(io(&log))?;
    }
    Ok(names)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let ft = e.file_type().map_err(io(&e.path()))?;
        if ft.is_dir() && depth == 0 {
            collect(&e.path(), out, depth + 1)?;
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// How `prepare` applies the backup's redo log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// Native; when the native applier refuses the log (before changing
    /// anything), the mariadbd-based recovery instead.
    #[default]
    Auto,
    /// Native only (mariabackup's prepare: redo applied, nothing rolled
    /// back, `log-applied`): the backup can take incrementals.
    Native,
    /// Start `mariadbd` on the backup: redo applied, then rolled back
    /// (`full-prepared`): no incrementals after it.
    Server,
}

/// Options of [`prepare_with`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// How to apply the redo.
    pub method: Method,
    /// The mariadbd binary for [`Method::Server`] (and the fallback).
    pub mariadbd: Option<PathBuf>,
    /// Memory: the buffer pool of the mariadbd run, the record budget of
    /// the native applier (`256M`, `1G`, bytes).
    pub use_memory: String,
    /// Apply this incremental onto the (prepared) target.
    pub incremental_dir: Option<PathBuf>,
}

/// `hotbak prepare`: prepare `dir` with the chosen method, or apply an
/// incremental onto it (preparing it natively first when it is not yet
/// prepared).
///
/// # Errors
/// [`Error`] naming the file, LSN or server log.
pub fn prepare_with(dir: &Path, opts: &Options) -> Result<PrepareReport> {
    let use_memory = parse_memory(&opts.use_memory)?;
    let native_opts = crate::native_prepare::NativeOptions { use_memory };
    if let Some(inc) = &opts.incremental_dir {
        if opts.method == Method::Server {
            return Err(Error::NotABackup {
                dir: inc.display().to_string(),
                reason: "incrementals are applied natively (mariadbd recovery rolls back, after which deltas do not apply)".into(),
            });
        }
        // The chain first, so that a wrong pair changes nothing.
        let base_link = crate::incremental::read_link(dir)?;
        let inc_link = crate::incremental::read_link(inc)?;
        crate::incremental::check_chain(
            &base_link,
            &inc_link,
            &dir.display().to_string(),
            &inc.display().to_string(),
        )?;
        // Everything else that can refuse, before the base is prepared.
        crate::incremental::precheck(dir, inc)?;
        let mut report = PrepareReport::default();
        if base_link.ck.backup_type == BackupType::FullBackuped {
            let r = prepare_native(dir, &native_opts)?;
            report.markers = r.markers;
            report.native = r.native;
        }
        report.incremental = Some(crate::incremental::apply(dir, inc, &native_opts)?);
        return Ok(report);
    }
    match opts.method {
        Method::Server => prepare(dir, opts.mariadbd.as_deref(), &opts.use_memory),
        Method::Native => prepare_native(dir, &native_opts),
        Method::Auto => match prepare_native(dir, &native_opts) {
            Err(Error::Native(e @ crate::native_prepare::Error::Unsupported { .. })) => {
                let mut r = prepare(dir, opts.mariadbd.as_deref(), &opts.use_memory)?;
                r.fell_back = Some(e.to_string());
                Ok(r)
            }
            other => other,
        },
    }
}

/// `--use-memory` in bytes.
fn parse_memory(s: &str) -> Result<u64> {
    crate::native_prepare::parse_size(s)
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::NotABackup {
            dir: "--use-memory".into(),
            reason: format!("{s:?} is not a size (like 256M or 1G)"),
        })
}

/// The native prepare of a full backup: the same checks as [`prepare`],
/// DDL markers, then the redo applied by [`crate::native_prepare`].
fn prepare_native(
    dir: &Path,
    opts: &crate::native_prepare::NativeOptions,
) -> Result<PrepareReport> {
    if let Start::Done(t) = start(dir)? {
        return Ok(PrepareReport::already(t));
    }
    // The markers first (as for the mariadbd run); a refusal of the native
    // applier after them leaves a valid unprepared backup.
    let markers = apply_markers(dir)?;
    let started = std::time::Instant::now();
    let report = crate::native_prepare::native_prepare(dir, opts)?;
    Ok(PrepareReport {
        markers,
        recovery_secs: started.elapsed().as_secs_f64(),
        native: Some(report),
        ..PrepareReport::default()
    })
}

/// Where a prepare of a full backup starts.
enum Start {
    /// An unprepared full backup: go on.
    Go(Checkpoints),
    /// Already prepared (its `backup_type`): nothing to do.
    Done(String),
}

/// The checks every prepare of a full backup makes first.
fn start(dir: &Path) -> Result<Start> {
    let ck_path = dir.join(Checkpoints::FILE);
    if !ck_path.is_file() {
        return Err(Error::NotABackup {
            dir: dir.display().to_string(),
            reason: format!("no {} here: not an extracted backup (is it still compressed or encrypted? run xbextract)", Checkpoints::FILE),
        });
    }
    let ck = Checkpoints::parse(&read_text(&ck_path)?).map_err(|e| Error::Metadata {
        path: ck_path.display().to_string(),
        reason: e.to_string(),
    })?;
    match ck.backup_type {
        BackupType::FullBackuped => {}
        BackupType::FullPrepared | BackupType::LogApplied => {
            return Ok(Start::Done(ck.backup_type.as_str().to_owned()));
        }
        BackupType::Incremental => {
            return Err(Error::NotABackup {
                dir: dir.display().to_string(),
                reason: format!(
                    "this is an incremental backup (from_lsn {}, to_lsn {}): apply it onto its prepared base \
                     with `hotbak prepare --target-dir BASE --incremental-dir {}`",
                    ck.from_lsn,
                    ck.to_lsn,
                    dir.display()
                ),
            })
        }
        ref other => {
            return Err(Error::NotABackup {
                dir: dir.display().to_string(),
                reason: format!(
                    "backup_type is {}, expected full-backuped",
                    other.as_str()
                ),
            })
        }
    }
    if !dir.join("ib_logfile0").is_file() {
        return Err(Error::NotABackup {
            dir: dir.display().to_string(),
            reason: "ib_logfile0 is missing".into(),
        });
    }
    Ok(Start::Go(ck))
}

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
use crate::native_prepare::Keys as NativeKeys;
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
    /// `--export`: the recovery server could not export a table.
    #[error("--export: {table}: {reason}")]
    Export {
        /// The table (`db`.`t`) or step.
        table: String,
        /// Why.
        reason: String,
    },
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
            Error::Recovery(_) | Error::Export { .. } => ErrorClass::Server,
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
    /// A partial backup: recovery ran with `innodb_force_recovery=1` and
    /// ignored the redo of this many tablespaces the backup leaves out.
    pub partial: Option<usize>,
    /// `--export`: the tables whose definitions were recorded and the
    /// `.cfg` files written (`None`: not asked, or done before).
    pub exported: Option<(usize, usize)>,
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

/// Prepare `dir` in place with the mariadbd-based recovery (blocking).
///
/// # Errors
/// [`Error`] naming the file or the server's last log lines.
pub fn prepare(dir: &Path, mariadbd: Option<&Path>, use_memory: &str) -> Result<PrepareReport> {
    prepare_server(
        dir,
        &Options {
            method: Method::Server,
            mariadbd: mariadbd.map(Path::to_path_buf),
            use_memory: use_memory.to_owned(),
            ..Options::default()
        },
    )
}

/// `backup-my.cnf` with the command line's `--server-option`s in place of
/// its keys of the same name. For a server with data-at-rest encryption it
/// holds the key-management plugin and its settings as the backup recorded
/// them.
fn recovery_cnf(dir: &Path, opts: &Options) -> Result<BackupMyCnf> {
    let cnf_path = dir.join(BackupMyCnf::FILE);
    let mut cnf = BackupMyCnf::parse(&read_text(&cnf_path)?).map_err(|e| Error::Metadata {
        path: cnf_path.display().to_string(),
        reason: e.to_string(),
    })?;
    for (k, v) in &opts.server_options {
        let k = k.replace('-', "_");
        cnf.extra.retain(|(ek, _)| *ek != k);
        cnf.extra.push((k, v.clone()));
    }
    Ok(cnf)
}

/// Why a backup is prepared by the mariadbd recovery and not natively,
/// when it must be: its server loaded a key-management plugin other than
/// `file_key_management` (a KMS: its keys are the plugin's to fetch), it
/// is partial (the
/// recovery ignores the redo of the tablespaces left out under
/// `innodb_force_recovery=1`, and `--export` needs the server anyway), or
/// `--export` was asked.
fn server_needed(dir: &Path, cnf: &BackupMyCnf, opts: &Options) -> Result<Option<&'static str>> {
    let plugin = cnf.extra.iter().any(|(k, _)| k.starts_with("plugin_load"));
    if plugin && file_key_settings(cnf).is_none() {
        return Ok(Some(
            "the server had a key-management plugin other than file_key_management (data-at-rest encryption with a KMS)",
        ));
    }
    if opts.export {
        return Ok(Some(
            "--export runs FLUSH TABLES … FOR EXPORT on the recovered server",
        ));
    }
    if is_partial(dir)? {
        return Ok(Some("a partial backup"));
    }
    Ok(None)
}

/// The mariadbd-based recovery ([`Method::Server`]), with `--export`.
fn prepare_server(dir: &Path, opts: &Options) -> Result<PrepareReport> {
    // The recovery server runs in a directory of its own: a relative
    // `--target-dir` would name nothing there.
    let abs = std::path::absolute(dir).map_err(io(dir))?;
    let dir = abs.as_path();
    let (mariadbd, use_memory) = (opts.mariadbd.as_deref(), opts.use_memory.as_str());
    let ck = match start(dir)? {
        Start::Go(ck) => ck,
        Start::Done(t) => {
            let exported = if opts.export {
                export_prepared(dir, opts)?
            } else {
                None
            };
            return Ok(PrepareReport {
                exported,
                ..PrepareReport::already(t)
            });
        }
    };
    let ck_path = dir.join(Checkpoints::FILE);
    let cnf = recovery_cnf(dir, opts)?;
    // A key file the recovery server cannot read fails here, before
    // anything changes: InnoDB extends tablespaces before it finds it
    // cannot decrypt them, and a failed prepare must leave the backup as
    // it was.
    if let Some((_, f)) = cnf
        .extra
        .iter()
        .find(|(k, _)| k == "file_key_management_filename")
    {
        let f = f.trim_matches('"');
        if let Err(e) = std::fs::File::open(f) {
            return Err(Error::NotABackup {
                dir: f.to_owned(),
                reason: format!(
                    "the backup's tables are encrypted (file_key_management) and their key file cannot be read: {e}; \
                     give its place on this host with --server-option file_key_management_filename=PATH. Nothing was changed"
                ),
            });
        }
    }
    let partial = is_partial(dir)?;
    // An encrypted backup log: its file names are read with the key file
    // (before anything changes), since they cannot be rewritten in place.
    let log_key = encrypted_log_check(dir, &cnf)?;

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

    let mut args = recovery_args(dir, &cnf, use_memory);
    if partial {
        // As mariabackup's prepare: the redo of the tablespaces a partial
        // backup leaves out is ignored (mariadbd refuses to start on
        // missing tablespaces with redo otherwise).
        args.push("--innodb-force-recovery=1".to_owned());
    }
    if opts.export || partial {
        // A partial backup of mariabackup's has no `mysql` schema; the
        // export connects as root. No networking either way.
        args.push("--skip-grant-tables".to_owned());
    }
    let placeholders = if partial {
        created_placeholders(dir, log_key.as_ref())?
    } else {
        (Vec::new(), Vec::new())
    };
    let ran = run_server(dir, mariadbd, args, |sb| {
        opts.export
            .then(|| export_tables(dir, sb.socket()))
            .transpose()
    });
    remove_placeholders(&placeholders.0, &placeholders.1)?;
    let (exported, missing, recovery_secs) = match ran {
        Ok(r) => r,
        Err(e) => {
            restore_link_files(dir)?;
            return Err(e);
        }
    };
    restore_link_files(dir)?;
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
        partial: partial.then_some(missing),
        exported,
        ..PrepareReport::default()
    })
}

/// The recovery server's arguments (the geometry from `backup-my.cnf`).
fn recovery_args(dir: &Path, cnf: &BackupMyCnf, use_memory: &str) -> Vec<String> {
    let mut args = cnf.server_args();
    args.extend([
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
    ]);
    args
}

/// Start `mariadbd` on the backup, run `during` while it is up, stop it
/// cleanly. Returns what `during` returned, the number of tablespaces
/// the server reported missing (a partial backup's), and the seconds
/// the run took. The run dir (error log) is kept after a failure.
fn run_server<T>(
    dir: &Path,
    mariadbd: Option<&Path>,
    args: Vec<String>,
    during: impl FnOnce(&Sandbox) -> Result<T>,
) -> Result<(T, usize, f64)> {
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
    let mut log = None;
    let result = (|| {
        let mut sb =
            Sandbox::start_on(dir, &run_dir, opts).map_err(|e| Error::Recovery(e.to_string()))?;
        log = Some(sb.error_log().to_path_buf());
        let out = during(&sb);
        let stopped = sb.stop().map_err(|e| Error::Recovery(e.to_string()));
        let out = out?;
        stopped.map(|()| out)
    })();
    let secs = started.elapsed().as_secs_f64();
    let out = match result {
        Ok(out) => out,
        Err(e @ Error::Export { .. }) => return Err(e),
        Err(e) => {
            // Keep the run dir (error log) for the user.
            return Err(Error::Recovery(format!(
                "{e} (server log kept in {})",
                run_dir.display()
            )));
        }
    };
    let missing = log
        .and_then(|l| std::fs::read_to_string(l).ok())
        .map_or(0, |t| {
            t.lines()
                .filter(|l| l.contains("InnoDB: Tablespace") && l.contains("was not found at"))
                .count()
        });
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok((out, missing, secs))
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
    if log_crypt(dir)?.is_some() {
        // Checked by `encrypted_log_check`: no name outside the backup.
        return Ok(0);
    }
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

// ------------------------------------------------ partial backups, --export

/// Whether `xtrabackup_info` says `partial = Y` (ours and mariabackup's).
fn is_partial(dir: &Path) -> Result<bool> {
    use crate::format::metadata::XtrabackupInfo;
    let p = dir.join(XtrabackupInfo::FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(&p)(e)),
    };
    XtrabackupInfo::parse(&text)
        .map(|i| i.partial)
        .map_err(|e| Error::Metadata {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
}

/// `--export` on a backup prepared already: start the server on it (link
/// files set aside, so nothing outside the backup is opened), export,
/// stop. Nothing when the export is there already. A log-applied backup
/// (the native prepare's) is rolled back by that server: it is marked
/// full-prepared, so that no incremental is applied onto it afterwards.
fn export_prepared(dir: &Path, opts: &Options) -> Result<Option<(usize, usize)>> {
    use crate::format::export::EXPORT_NAME;
    if dir.join(EXPORT_NAME).is_file() {
        return Ok(None);
    }
    let cnf = recovery_cnf(dir, opts)?;
    let mut args = recovery_args(dir, &cnf, &opts.use_memory);
    args.push("--skip-grant-tables".to_owned());
    restore_link_files(dir)?;
    set_link_files_aside(dir)?;
    let r = run_server(dir, opts.mariadbd.as_deref(), args, |sb| {
        export_tables(dir, sb.socket())
    });
    restore_link_files(dir)?;
    let (e, _, _) = r?;
    let ck_path = dir.join(Checkpoints::FILE);
    let ck = Checkpoints::parse(&read_text(&ck_path)?).map_err(|e| Error::Metadata {
        path: ck_path.display().to_string(),
        reason: e.to_string(),
    })?;
    if ck.backup_type == BackupType::LogApplied {
        let prepared = Checkpoints {
            backup_type: BackupType::FullPrepared,
            ..ck
        };
        write_atomic(&ck_path, prepared.render().as_bytes())?;
    }
    Ok(Some(e))
}

/// The schemas `--export` leaves alone (the server's own).
const SYSTEM_SCHEMAS: &str = "('mysql','information_schema','performance_schema','sys')";

/// Suffix of a `.cfg` kept while the table is locked for export (the
/// server deletes its own at `UNLOCK TABLES`).
const CFG_KEPT: &str = "hotbak-export";

/// `--export` on the running recovery server at `socket`: every table's
/// definition, and for each InnoDB table `FLUSH TABLES … FOR EXPORT` with
/// its `.cfg` files kept; then [`crate::format::export::EXPORT_NAME`].
/// Returns (tables, `.cfg` files).
fn export_tables(dir: &Path, socket: &Path) -> Result<(usize, usize)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Export {
            table: "runtime".into(),
            reason: e.to_string(),
        })?;
    rt.block_on(export_async(dir, socket))
}

async fn export_async(dir: &Path, socket: &Path) -> Result<(usize, usize)> {
    use crate::format::export::{Export, Table, EXPORT_NAME, VERSION};
    use crate::mysql::{ConnectOptions, Session};
    let sql_err = |table: &str| {
        let table = table.to_owned();
        move |e: crate::mysql::Error| Error::Export {
            table,
            reason: e.to_string(),
        }
    };
    let conn = ConnectOptions {
        socket: Some(socket.to_path_buf()),
        user: Some("root".into()),
        ..ConnectOptions::default()
    };
    let mut s = Session::connect(&conn)
        .await
        .map_err(sql_err("connecting to the recovery server"))?;
    let rows = s
        .query(&format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, \
             CAST(CONVERT(TABLE_SCHEMA USING filename) AS BINARY), \
             CAST(CONVERT(TABLE_NAME USING filename) AS BINARY) \
             FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} ORDER BY 1, 2"
        ))
        .await
        .map_err(sql_err("listing the tables"))?;
    let mut tables = Vec::new();
    let mut cfgs = 0;
    for r in rows {
        let (Some(db), Some(t), Some(fdb), Some(ft)) = (r.at(0), r.at(1), r.at(3), r.at(4)) else {
            continue;
        };
        let who = format!("`{}`.`{}`", db.replace('`', "``"), t.replace('`', "``"));
        let engine = r.at(2).unwrap_or("").to_owned();
        let create = s
            .query(&format!("SHOW CREATE TABLE {who}"))
            .await
            .map_err(sql_err(&who))?
            .first()
            .and_then(|r| r.at(1).map(str::to_owned))
            .ok_or_else(|| Error::Export {
                table: who.clone(),
                reason: "SHOW CREATE TABLE returned nothing".into(),
            })?;
        let mut cfg = Vec::new();
        if engine.eq_ignore_ascii_case("InnoDB") {
            s.execute(&format!("FLUSH TABLES {who} FOR EXPORT"))
                .await
                .map_err(sql_err(&who))?;
            let kept = keep_cfgs(dir, fdb, ft);
            let unlocked = s.execute("UNLOCK TABLES").await.map_err(sql_err(&who));
            let kept = kept?;
            unlocked?;
            if kept.is_empty() {
                return Err(Error::Export {
                    table: who,
                    reason: format!("FLUSH TABLES … FOR EXPORT wrote no {fdb}/{ft}.cfg"),
                });
            }
            for k in &kept {
                let from = dir.join(format!("{k}.{CFG_KEPT}"));
                let to = dir.join(k);
                std::fs::rename(&from, &to).map_err(io(&from))?;
            }
            cfgs += kept.len();
            cfg = kept;
        }
        tables.push(Table {
            schema: db.to_owned(),
            name: t.to_owned(),
            fs_base: format!("{fdb}/{ft}"),
            engine,
            create,
            cfg,
        });
    }
    let server_version = s.version().text.clone();
    let _ = s.close().await;
    let n = tables.len();
    let e = Export {
        version: VERSION,
        server_version,
        tables,
    };
    write_atomic(&dir.join(EXPORT_NAME), e.render().as_bytes())?;
    Ok((n, cfgs))
}

/// Copy the `.cfg` files of table `fdb/ft` (one, or one per partition)
/// to `*.cfg.hotbak-export` while the table is locked for export; each
/// copy is checked to be a `.cfg` of that table. Returns their names.
fn keep_cfgs(dir: &Path, fdb: &str, ft: &str) -> Result<Vec<String>> {
    let db_dir = dir.join(fdb);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&db_dir).map_err(io(&db_dir))? {
        let e = e.map_err(io(&db_dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".cfg") else {
            continue;
        };
        if stem != ft && !stem.starts_with(&format!("{ft}#P#")) {
            continue;
        }
        let data = std::fs::read(e.path()).map_err(io(&e.path()))?;
        let cfg = crate::innodb::cfg::parse(&data).map_err(|err| Error::Metadata {
            path: e.path().display().to_string(),
            reason: err.to_string(),
        })?;
        let want = format!("{fdb}/{stem}");
        if cfg.table_name != want {
            return Err(Error::Metadata {
                path: e.path().display().to_string(),
                reason: format!("names table {}, expected {want}", cfg.table_name),
            });
        }
        let rel = format!("{fdb}/{name}");
        let kept = dir.join(format!("{rel}.{CFG_KEPT}"));
        write_atomic(&kept, &data)?;
        out.push(rel);
    }
    out.sort();
    Ok(out)
}

/// The encryption parameters of the backup's `ib_logfile0`, `None` when
/// the log is plain.
fn log_crypt(dir: &Path) -> Result<Option<crate::innodb::redo::LogCrypt>> {
    use crate::innodb::redo;
    use std::io::Read;
    let log = dir.join("ib_logfile0");
    let mut f = std::fs::File::open(&log).map_err(io(&log))?;
    let mut prefix = vec![0u8; redo::HEADER_SIZE];
    f.read_exact(&mut prefix).map_err(io(&log))?;
    let h = redo::parse_header(&prefix).map_err(|e| Error::Metadata {
        path: log.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(h.crypt)
}

/// For an encrypted backup log: the log key from the key file the recovery
/// will load (`None` for a plain log, or when the plugin is not
/// `file_key_management`), after checking that no file record names a
/// tablespace outside the backup (a `DATA DIRECTORY` table's absolute
/// path: recovery would open the live file there; a plain log has such
/// names rewritten, an encrypted one cannot be without re-encrypting it).
/// Without the keys, a backup with link files (`.isl`) is refused. Reads
/// only; nothing changes.
fn encrypted_log_check(
    dir: &Path,
    cnf: &BackupMyCnf,
) -> Result<Option<crate::encrypt::mariadb::LogKey>> {
    use crate::encrypt::mariadb::LogKey;
    use crate::innodb::redo::{self, FileOp};
    use crate::mysql::keys::FileKeySettings;
    let Some(crypt) = log_crypt(dir)? else {
        return Ok(None);
    };
    let setting = |k: &str| {
        cnf.extra
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim_matches('"'))
    };
    let log = dir.join("ib_logfile0");
    let bad = |reason: String| Error::Metadata {
        path: log.display().to_string(),
        reason,
    };
    let Some(settings) = FileKeySettings::from_lookup(setting) else {
        let mut files = Vec::new();
        collect(dir, &mut files, 0)?;
        let has_links = files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "isl"));
        if has_links {
            return Err(bad(
                "the redo log is encrypted and the backup has DATA DIRECTORY tables (.isl files): \
                 hotbak can only check where the log's file records point with file_key_management keys. Nothing was changed"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let keys = settings.load(dir).map_err(|e| {
        bad(format!(
            "the redo log is encrypted with key id {} version {}: {e}. Nothing was changed",
            crypt.key_id, crypt.key_version
        ))
    })?;
    let key = LogKey::from_key_file(&crypt, &keys.keys, keys.algorithm).map_err(|e| {
        bad(format!(
            "the redo log is encrypted with key id {} version {}: {}: {e}. Nothing was changed",
            crypt.key_id,
            crypt.key_version,
            keys.path.display()
        ))
    })?;
    let data = std::fs::read(&log).map_err(io(&log))?;
    let info = redo::parse_log_prefix(&data).map_err(|e| bad(e.to_string()))?;
    let geo = redo::LogGeometry::for_header(&info.header, data.len() as u64)
        .map_err(|e| bad(e.to_string()))?;
    let start = usize::try_from(redo::START_OFFSET).unwrap_or(usize::MAX);
    let body = data.get(start..).unwrap_or(&[]);
    let scan =
        redo::scan_mtrs(&geo, info.header.first_lsn, body).map_err(|e| bad(e.to_string()))?;
    let mut off = 0usize;
    // The checkpoint mtr's FILE_CHECKPOINT holds the checkpoint LSN: a
    // known plaintext, so a wrong key is caught even without DDL records.
    let ck = info.newest;
    let mut key_proved = false;
    for l in scan.mtr_lens {
        let mtr = &body[off..off + l];
        let lsn = info.header.first_lsn.0 + off as u64;
        off += l;
        let records = &mtr[..l - geo.trailer()];
        let at_checkpoint = lsn == ck.end_lsn.0;
        if !at_checkpoint && !redo::file_record_kinds(records).is_some_and(|k| k.any()) {
            continue;
        }
        let plain = key
            .decrypt_mtr(mtr)
            .map_err(|e| bad(format!("at LSN {lsn}: {e}")))?;
        if at_checkpoint {
            key_proved = redo::file_records(&plain[..records.len()])
                .any(|op| matches!(op, Ok(FileOp::Checkpoint { lsn }) if lsn == ck.checkpoint_lsn));
            if !key_proved {
                return Err(bad(format!(
                    "the redo log does not decrypt with key id {} version {} of {}: the checkpoint \
                     record at LSN {lsn} does not read as checkpoint {} (a wrong key file, or \
                     another file_key_management_encryption_algorithm). Nothing was changed",
                    crypt.key_id,
                    crypt.key_version,
                    keys.path.display(),
                    ck.checkpoint_lsn
                )));
            }
        }
        for op in redo::file_records(&plain[..records.len()]) {
            let op = op.map_err(|e| {
                bad(format!(
                    "at LSN {lsn} the log does not decrypt to valid file records ({e}): \
                     {} is not the key file the backup's server used (key id {} version {}). Nothing was changed",
                    keys.path.display(),
                    crypt.key_id,
                    crypt.key_version
                ))
            })?;
            let names: Vec<&[u8]> = match op {
                FileOp::Create { path, .. }
                | FileOp::Delete { path, .. }
                | FileOp::Modify { path, .. } => vec![path],
                FileOp::Rename { from, to, .. } => vec![from, to],
                FileOp::Checkpoint { .. } => vec![],
            };
            if let Some(n) = names.iter().find(|n| n.starts_with(b"/")) {
                return Err(bad(format!(
                    "the encrypted redo log names the tablespace {} outside the backup (DATA DIRECTORY); \
                     hotbak cannot rewrite names in an encrypted log yet: prepare with mariabackup. Nothing was changed",
                    String::from_utf8_lossy(n)
                )));
            }
        }
    }
    if !key_proved {
        return Err(bad(format!(
            "the checkpoint mini-transaction at LSN {} is not in the log: cannot check the key. Nothing was changed",
            ck.end_lsn
        )));
    }
    Ok(Some(key))
}

/// A partial backup: empty files in place of the tablespaces the copied
/// redo log creates (`FILE_CREATE`) but the backup leaves out. mariadbd's
/// recovery defers a tablespace created within the log and rebuilds it
/// from the log; one whose file is missing fails that and stops the
/// rebuild of the other deferred ones (mariabackup's own prepare creates
/// such files itself). The placeholders are removed after recovery.
/// Returns the files and the directories created.
fn created_placeholders(
    dir: &Path,
    log_key: Option<&crate::encrypt::mariadb::LogKey>,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    use crate::innodb::redo::{self, FileOp, ScanStop};
    use crate::innodb::Lsn;
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    const PIECE: usize = 8 << 20;
    let log = dir.join("ib_logfile0");
    let bad = |reason: String| Error::Metadata {
        path: log.display().to_string(),
        reason,
    };
    let mut f = std::fs::File::open(&log).map_err(io(&log))?;
    let len = f.metadata().map_err(io(&log))?.len();
    let mut prefix = vec![0u8; usize::try_from(redo::START_OFFSET).unwrap_or(12288)];
    f.read_exact(&mut prefix).map_err(io(&log))?;
    let info = redo::parse_log_prefix(&prefix).map_err(|e| bad(e.to_string()))?;
    let geo = redo::LogGeometry::for_header(&info.header, len).map_err(|e| bad(e.to_string()))?;
    if geo.encrypted() && log_key.is_none() {
        return Err(bad(
            "a partial backup with an encrypted redo log needs the file_key_management key file to prepare".into(),
        ));
    }
    // space -> (created in the log, current name); None once deleted.
    let mut spaces: BTreeMap<u32, Option<(bool, String)>> = BTreeMap::new();
    let name = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let (mut pos, mut lsn) = (redo::START_OFFSET, info.header.first_lsn);
    let mut buf = vec![0u8; PIECE];
    while pos < len {
        let want = usize::try_from((len - pos).min(PIECE as u64)).unwrap_or(PIECE);
        f.read_exact_at(&mut buf[..want], pos).map_err(io(&log))?;
        let scan = redo::scan_mtrs(&geo, lsn, &buf[..want])
            .map_err(|e| bad(format!("at LSN {lsn}: {e}")))?;
        let mut off = 0;
        for l in &scan.mtr_lens {
            let plain;
            let mtr = match log_key {
                Some(k) if geo.encrypted() => {
                    plain = k
                        .decrypt_mtr(&buf[off..off + l])
                        .map_err(|e| bad(format!("at LSN {lsn}: {e}")))?;
                    &plain[..l - geo.trailer()]
                }
                _ => &buf[off..off + l],
            };
            for op in redo::file_records(mtr).flatten() {
                match op {
                    FileOp::Create { space, path } => {
                        spaces.insert(space.0, Some((true, name(path))));
                    }
                    FileOp::Rename { space, to, .. } => {
                        if let Some(Some((_, n))) = spaces.get_mut(&space.0) {
                            *n = name(to);
                        }
                    }
                    FileOp::Delete { space, .. } => {
                        spaces.insert(space.0, None);
                    }
                    FileOp::Modify { .. } | FileOp::Checkpoint { .. } => {}
                }
            }
            off += l;
        }
        if scan.consumed == 0 || matches!(scan.stop, ScanStop::EndOfLog(_)) {
            break;
        }
        pos += scan.consumed as u64;
        lsn = Lsn(lsn.0 + scan.consumed as u64);
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for (_, n) in spaces.into_values().flatten().filter(|(c, _)| *c) {
        // Only names inside the backup (`./db/t.ibd`) get a placeholder.
        let Some(rel) = n.strip_prefix("./") else {
            continue;
        };
        let Ok(rel) = crate::format::path::RelPath::new(rel) else {
            continue;
        };
        let p = rel.under(dir);
        if p.exists() {
            continue;
        }
        if let Some(parent) = p.parent() {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
                dirs.push(parent.to_path_buf());
            }
        }
        std::fs::File::create(&p).map_err(io(&p))?;
        files.push(p);
    }
    Ok((files, dirs))
}

/// Remove what [`created_placeholders`] made (recovery filled the files
/// in; they belong to tables the backup leaves out).
fn remove_placeholders(files: &[PathBuf], dirs: &[PathBuf]) -> Result<()> {
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(f)(e)),
        }
    }
    for d in dirs {
        // Only if recovery left nothing else there.
        let _ = std::fs::remove_dir(d);
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
    /// `--export`: while the recovery server is up, `FLUSH TABLES … FOR
    /// EXPORT` each InnoDB table and keep its `.cfg`, and record every
    /// table's definition in [`crate::format::export::EXPORT_NAME`]. On a
    /// backup prepared already, only this is done (and nothing when the
    /// export is there already). Implies the mariadbd recovery.
    pub export: bool,
    /// Server options for the recovery run, NAME=VALUE, replacing the
    /// `backup-my.cnf` key of that name (`file_key_management_filename`
    /// when the key file lives elsewhere on this host, `plugin_dir`, …).
    pub server_options: Vec<(String, String)>,
}

/// Incrementals are applied natively, and the native applier decrypts
/// with `file_key_management` keys only: a chain of a server whose
/// key-management plugin is another (a KMS) is refused before anything
/// changes, saying how to prepare it; so is an encrypted log without a
/// key file named in `backup-my.cnf`.
fn refuse_encrypted_chain(dir: &Path, inc: &Path, opts: &Options) -> Result<()> {
    for d in [dir, inc] {
        let cnf = if d.join(BackupMyCnf::FILE).is_file() {
            Some(recovery_cnf(d, opts)?)
        } else {
            None
        };
        let kms = match &cnf {
            Some(c) => server_needed(d, c, &Options::default())?
                .is_some_and(|w| w.contains("key-management")),
            None => false,
        };
        let log = d.join("ib_logfile0").is_file() && log_crypt(d)?.is_some();
        let file_keys = cnf.as_ref().is_some_and(|c| file_key_settings(c).is_some());
        if kms || (log && !file_keys) {
            return Err(Error::NotABackup {
                dir: d.display().to_string(),
                reason: "a backup of a server with data-at-rest encryption whose keys come from a key-management plugin \
                         other than file_key_management: hotbak applies incrementals natively, and its native prepare \
                         decrypts with file_key_management keys only; prepare the chain with \
                         `mariabackup --defaults-file=BASE/backup-my.cnf --prepare --target-dir=BASE`, then the same \
                         with --incremental-dir=INC. Nothing was changed"
                    .into(),
            });
        }
    }
    Ok(())
}

/// The `file_key_management` settings of a (recovery) `backup-my.cnf`,
/// `None` when it names no key file.
fn file_key_settings(cnf: &BackupMyCnf) -> Option<crate::mysql::keys::FileKeySettings> {
    crate::mysql::keys::FileKeySettings::from_lookup(|k| cnf_value(cnf, k))
}

/// The last value of `key` in `backup-my.cnf`'s extra settings, unquoted.
fn cnf_value<'a>(cnf: &'a BackupMyCnf, key: &str) -> Option<&'a str> {
    cnf.extra
        .iter()
        .rev()
        .find(|(n, _)| n == key)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The keys the native prepare of `dir` decrypts with: the key file that
/// `backup-my.cnf` (with the `--server-option` overrides) names, read as
/// the plugin reads it, and `innodb_encrypt_tables` as mariabackup reads
/// it from there. `None` when no key file is named. A key file that
/// cannot be read or opened fails here, naming it, before anything
/// changes.
fn native_keys(dir: &Path, opts: &Options) -> Result<Option<std::sync::Arc<NativeKeys>>> {
    if !dir.join(BackupMyCnf::FILE).is_file() {
        return Ok(None);
    }
    let cnf = recovery_cnf(dir, opts)?;
    let Some(settings) = file_key_settings(&cnf) else {
        return Ok(None);
    };
    let loaded = settings.load(dir).map_err(|e| Error::NotABackup {
        dir: dir.display().to_string(),
        reason: format!(
            "the backup's server encrypted its data (file_key_management) and its keys cannot be loaded: {e}; \
             give the key file's place on this host with --server-option file_key_management_filename=PATH \
             (and file_key_management_filekey=… for an encrypted key file). Nothing was changed"
        ),
    })?;
    // mariabackup: "ON"/"1" and "FORCE"/"2" (by prefix) turn it on.
    let encrypt_tables = cnf_value(&cnf, "innodb_encrypt_tables")
        .is_some_and(|v| ["ON", "1", "FORCE", "2"].iter().any(|p| v.starts_with(p)));
    Ok(Some(std::sync::Arc::new(NativeKeys {
        keys: loaded.keys,
        algorithm: loaded.algorithm,
        path: loaded.path,
        encrypt_tables,
    })))
}

/// `hotbak prepare`: prepare `dir` with the chosen method, or apply an
/// incremental onto it (preparing it natively first when it is not yet
/// prepared).
///
/// # Errors
/// [`Error`] naming the file, LSN or server log.
pub fn prepare_with(dir: &Path, opts: &Options) -> Result<PrepareReport> {
    let use_memory = parse_memory(&opts.use_memory)?;
    let mut native_opts = crate::native_prepare::NativeOptions {
        use_memory,
        ..Default::default()
    };
    if let Some(inc) = &opts.incremental_dir {
        if opts.export {
            return Err(Error::NotABackup {
                dir: inc.display().to_string(),
                reason: "--export with --incremental-dir: apply the incrementals first, then prepare --export the result".into(),
            });
        }
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
        refuse_encrypted_chain(dir, inc, opts)?;
        crate::incremental::precheck(dir, inc)?;
        native_opts.keys = native_keys(dir, opts)?;
        if let Some(keys) = native_opts.keys.as_deref() {
            // Every key the chain needs opens what it must, before the
            // base or its markers change: the base's log (unless prepared
            // already), the incremental's, the base's tablespaces.
            let base_log = dir.join("ib_logfile0");
            let inc_log = inc.join("ib_logfile0");
            let mut logs = vec![(inc_log.as_path(), crate::innodb::Lsn(inc_link.ck.last_lsn))];
            if base_link.ck.backup_type == BackupType::FullBackuped {
                logs.push((
                    base_log.as_path(),
                    crate::innodb::Lsn(base_link.ck.last_lsn),
                ));
            }
            let cnf = crate::native_prepare::read_backup_my_cnf(dir)?;
            crate::native_prepare::check_keys(dir, &cnf, &logs, Some(keys))?;
        }
        let mut report = PrepareReport::default();
        if base_link.ck.backup_type == BackupType::FullBackuped {
            let r = prepare_native(dir, &native_opts)?;
            report.markers = r.markers;
            report.native = r.native;
        }
        report.incremental = Some(crate::incremental::apply(dir, inc, &native_opts)?);
        return Ok(report);
    }
    // Prepared already: nothing to do, whatever the method (DBAs prepare
    // twice out of habit); `--export` may still have work.
    if !opts.export {
        if let Start::Done(t) = start(dir)? {
            return Ok(PrepareReport::already(t));
        }
    }
    let server = if dir.join(BackupMyCnf::FILE).is_file() {
        server_needed(dir, &recovery_cnf(dir, opts)?, opts)?
    } else {
        None
    };
    match (opts.method, server) {
        (Method::Server, _) => prepare_server(dir, opts),
        (Method::Native, Some(why)) => Err(Error::NotABackup {
            dir: dir.display().to_string(),
            reason: format!(
                "--native: {why} is prepared by the mariadbd recovery (drop --native/--apply-log-only, or use --server-recovery)"
            ),
        }),
        (Method::Native, None) => {
            native_opts.keys = native_keys(dir, opts)?;
            prepare_native(dir, &native_opts)
        }
        (Method::Auto, Some(_)) => prepare_server(dir, opts),
        (Method::Auto, None) => match native_keys(dir, opts).and_then(|keys| {
            native_opts.keys = keys;
            prepare_native(dir, &native_opts)
        }) {
            // Refused before anything was written, or failed part-way: the
            // log and `xtrabackup_checkpoints` are rewritten only after a
            // whole native run, so the mariadbd recovery starts from the
            // backup's own checkpoint; pages the native run wrote carry
            // their newer LSN and their records are skipped, as on any
            // crash recovery.
            Err(Error::Native(
                e @ (crate::native_prepare::Error::Unsupported { .. }
                | crate::native_prepare::Error::Apply { .. }),
            )) => {
                let mut r = prepare_server(dir, opts)?;
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
    // The keys of an encrypted backup, checked before anything changes.
    if let Some(keys) = opts.keys.as_deref() {
        let ck = crate::native_prepare::read_checkpoints(&dir.join(Checkpoints::FILE))?;
        let cnf = crate::native_prepare::read_backup_my_cnf(dir)?;
        let log = dir.join("ib_logfile0");
        crate::native_prepare::check_keys(
            dir,
            &cnf,
            &[(log.as_path(), crate::innodb::Lsn(ck.last_lsn))],
            Some(keys),
        )?;
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

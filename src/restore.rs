//! `hotbak restore`: copy (or move) a prepared backup into an empty datadir,
//! with ownership (default mysql:mysql when run as root) and modes.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::cli::RestoreArgs;
use crate::error::{Classify, ErrorClass};
use crate::format::manifest::{MANIFEST_NAME, STREAM_INFO_NAME};
use crate::format::metadata::{BackupType, Checkpoints};

/// Errors of restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Refused (not prepared, datadir not empty, unknown owner).
    #[error("{0}")]
    Refused(String),
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Refused(_) => ErrorClass::Usage,
            Error::Io { .. } => ErrorClass::Io,
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

/// Files of the backup that do not belong in a datadir.
const SKIP: &[&str] = &[
    "backup-my.cnf",
    "xtrabackup_checkpoints",
    "xtrabackup_info",
    "xtrabackup_binlog_info",
    "xtrabackup_slave_info",
    "xtrabackup_galera_info",
    "xtrabackup_binlog_pos_innodb",
    MANIFEST_NAME,
    STREAM_INFO_NAME,
];

/// CLI entry.
///
/// # Errors
/// See [`restore`].
pub async fn run_cli(args: RestoreArgs) -> anyhow::Result<()> {
    let n = tokio::task::spawn_blocking(move || {
        restore(
            &args.target_dir,
            &args.datadir,
            args.move_back,
            args.owner.as_deref(),
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("restore task failed: {e}"))??;
    eprintln!("hotbak: restore done: {n} files in place");
    Ok(())
}

/// Resolve USER[:GROUP] to ids.
fn owner_ids(spec: &str) -> Result<(u32, u32)> {
    let (user, group) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let cu = CString::new(user)
        .map_err(|_| Error::Refused(format!("--owner {spec:?}: bad user name")))?;
    let (uid, gid) = lookup_user(&cu)
        .ok_or_else(|| Error::Refused(format!("--owner: no such user {user:?}")))?;
    let gid = match group {
        Some(g) => {
            let cg = CString::new(g)
                .map_err(|_| Error::Refused(format!("--owner {spec:?}: bad group name")))?;
            lookup_group(&cg)
                .ok_or_else(|| Error::Refused(format!("--owner: no such group {g:?}")))?
        }
        None => gid,
    };
    Ok((uid, gid))
}

fn lookup_user(name: &CString) -> Option<(u32, u32)> {
    // Parse /etc/passwd instead of calling getpwnam (no unsafe code in this crate).
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    let name = name.to_str().ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn lookup_group(name: &CString) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    let name = name.to_str().ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// Restore `backup` into `datadir` (blocking). Returns the number of files.
///
/// # Errors
/// [`Error::Refused`] for an unprepared backup or a non-empty datadir; I/O errors name the file.
pub fn restore(
    backup: &Path,
    datadir: &Path,
    move_back: bool,
    owner: Option<&str>,
) -> Result<usize> {
    let ck_path = backup.join(Checkpoints::FILE);
    let ck_text = std::fs::read_to_string(&ck_path).map_err(io(&ck_path))?;
    let ck = Checkpoints::parse(&ck_text)
        .map_err(|e| Error::Refused(format!("{}: {e}", ck_path.display())))?;
    // hotbak prepare writes full-prepared; mariabackup --prepare writes log-applied.
    let prepared = ck.backup_type == BackupType::FullPrepared
        || (ck.backup_type == BackupType::LogApplied && ck.from_lsn == 0);
    if !prepared {
        return Err(Error::Refused(format!(
            "{}: backup_type is {}; run `hotbak prepare --target-dir {}` first",
            backup.display(),
            ck.backup_type.as_str(),
            backup.display()
        )));
    }
    match std::fs::read_dir(datadir) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::Refused(format!(
                    "--datadir {} is not empty; refusing to overwrite",
                    datadir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(datadir).map_err(io(datadir))?
        }
        Err(e) => return Err(io(datadir)(e)),
    }
    let ids = match owner {
        Some(spec) => Some(owner_ids(spec)?),
        None if is_root() => Some(owner_ids("mysql:mysql")?),
        None => None,
    };
    let mut n = 0;
    copy_tree(backup, datadir, move_back, ids, true, &mut n)?;
    set_owner_mode(datadir, ids, true)?;
    Ok(n)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn set_owner_mode(p: &Path, ids: Option<(u32, u32)>, dir: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if dir { 0o750 } else { 0o640 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))?;
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(p, Some(u), Some(g)).map_err(io(p))?;
    }
    Ok(())
}

fn copy_tree(
    from: &Path,
    to: &Path,
    move_back: bool,
    ids: Option<(u32, u32)>,
    top: bool,
    n: &mut usize,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(from).map_err(io(from))? {
        entries.push(e.map_err(io(from))?.path());
    }
    entries.sort();
    for src in entries {
        let Some(name) = src.file_name() else {
            continue;
        };
        let name_s = name.to_string_lossy();
        if top && SKIP.contains(&name_s.as_ref()) {
            continue;
        }
        let dst = to.join(name);
        let md = std::fs::symlink_metadata(&src).map_err(io(&src))?;
        if md.is_dir() {
            std::fs::create_dir(&dst).map_err(io(&dst))?;
            copy_tree(&src, &dst, move_back, ids, false, n)?;
            set_owner_mode(&dst, ids, true)?;
            if move_back {
                std::fs::remove_dir(&src).map_err(io(&src))?;
            }
        } else if md.is_file() {
            let moved = move_back && std::fs::rename(&src, &dst).is_ok();
            if !moved {
                std::fs::copy(&src, &dst).map_err(io(&dst))?;
                std::fs::File::open(&dst)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&dst))?;
                if move_back {
                    std::fs::remove_file(&src).map_err(io(&src))?;
                }
            }
            set_owner_mode(&dst, ids, false)?;
            *n += 1;
        }
        // Symlinks in a backup are not expected; they are skipped.
    }
    Ok(())
}

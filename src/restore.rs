//! `hotbak restore`: copy (or move) a prepared backup into an empty datadir,
//! with ownership (default mysql:mysql when run as root) and modes.
//!
//! Files that lived outside the server's datadir go back where they were:
//! an InnoDB `DATA DIRECTORY` tablespace (`db/t.ibd` in the backup) to the
//! path its `.isl` link file names, as mariabackup's `--copy-back` does; a
//! symlinked MyISAM/Aria file or database directory (recorded in
//! `hotbak_links`) to its recorded target, with the symlink made again in
//! the datadir. Every such destination is checked before the first byte is
//! written: an existing file there is never overwritten (restore on another
//! host, move it away, or use `--into-datadir`). With `--into-datadir`
//! they all land in the new datadir and the `.isl` files are rewritten to
//! name the copies there.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::links::{LinkKind, Links, LINKS_NAME};
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
    LINKS_NAME,
];

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

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Move files instead of copying them.
    pub move_back: bool,
    /// Owner as USER[:GROUP] (default mysql:mysql when run as root).
    pub owner: Option<String>,
    /// Files that lived outside the datadir go into it instead.
    pub into_datadir: bool,
}

/// What restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Files in place.
    pub files: usize,
    /// Of which outside the datadir.
    pub outside: usize,
}

/// Where the files that lived outside the datadir go.
#[derive(Debug, Default)]
struct Placement {
    /// Backup-relative file → absolute destination (remote tablespaces,
    /// symlinked files).
    files: std::collections::BTreeMap<String, PathBuf>,
    /// Backup-relative file → symlink to make at that place in the datadir.
    symlinks: std::collections::BTreeSet<String>,
    /// Backup-relative database directory → its target directory.
    dirs: std::collections::BTreeMap<String, PathBuf>,
    /// `.isl` files to write with new content (`--into-datadir`).
    isl: std::collections::BTreeMap<String, String>,
}

/// Work out where the remote files go, and refuse (before anything is
/// written) when a destination already exists.
fn plan_placement(backup: &Path, datadir: &Path, into_datadir: bool) -> Result<Placement> {
    let mut p = Placement::default();
    let links_path = backup.join(LINKS_NAME);
    let links = match std::fs::read_to_string(&links_path) {
        Ok(t) => Links::parse(&t)
            .map_err(|e| Error::Refused(format!("{}: {e}", links_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Links::default(),
        Err(e) => return Err(io(&links_path)(e)),
    };
    // `.isl` link files in the backup name where each remote tablespace lives.
    for db in std::fs::read_dir(backup).map_err(io(backup))? {
        let db = db.map_err(io(backup))?;
        if !db.file_type().map_err(io(&db.path()))?.is_dir() {
            continue;
        }
        let dbname = db.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(db.path()).map_err(io(&db.path()))? {
            let f = f.map_err(io(&db.path()))?;
            let name = f.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".isl") else {
                continue;
            };
            let text = std::fs::read_to_string(f.path()).map_err(io(&f.path()))?;
            let target = crate::format::links::parse_isl(&text)
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::Refused(format!(
                        "{}: not a link file (expected one path)",
                        f.path().display()
                    ))
                })?;
            if !target.is_absolute() || target.components().any(|c| c.as_os_str() == "..") {
                return Err(Error::Refused(format!(
                    "{}: names {}, not an absolute path without `..`",
                    f.path().display(),
                    target.display()
                )));
            }
            let ibd = format!("{dbname}/{stem}.ibd");
            if into_datadir {
                let local = datadir.join(&dbname).join(format!("{stem}.ibd"));
                p.isl
                    .insert(format!("{dbname}/{name}"), local.display().to_string());
            } else {
                p.files.insert(ibd, target);
            }
        }
    }
    if !into_datadir {
        for l in &links.links {
            match l.kind {
                LinkKind::File => {
                    p.files.insert(l.rel.clone(), PathBuf::from(&l.target));
                    p.symlinks.insert(l.rel.clone());
                }
                LinkKind::Dir => {
                    p.dirs.insert(l.rel.clone(), PathBuf::from(&l.target));
                }
                // The `.isl` file in the backup is what the server reads.
                LinkKind::Isl => {}
            }
        }
    }
    let inside = |dest: &Path| dest.starts_with(datadir);
    for (rel, dest) in &p.files {
        if inside(dest) {
            return Err(Error::Refused(format!(
                "{rel} belongs at {}, inside the new datadir {}; use --into-datadir",
                dest.display(),
                datadir.display()
            )));
        }
        if std::fs::symlink_metadata(dest).is_ok() {
            return Err(Error::Refused(format!(
                "{} exists (the backup's {rel} lived there); refusing to overwrite it: restore on another host, move it away, or use --into-datadir",
                dest.display()
            )));
        }
    }
    for (rel, dest) in &p.dirs {
        if inside(dest) {
            return Err(Error::Refused(format!(
                "database directory {rel} belongs at {}, inside the new datadir; use --into-datadir",
                dest.display()
            )));
        }
        if let Ok(mut it) = std::fs::read_dir(dest) {
            if it.next().is_some() {
                return Err(Error::Refused(format!(
                    "{} (the database directory {rel}) exists and is not empty; refusing to overwrite it: restore on another host, move it away, or use --into-datadir",
                    dest.display()
                )));
            }
        }
    }
    Ok(p)
}

/// Restore `backup` into `datadir` (blocking).
///
/// # Errors
/// [`Error::Refused`] for an unprepared backup, a non-empty datadir or an
/// existing file where a remote file belongs; I/O errors name the file.
pub fn restore(backup: &Path, datadir: &Path, o: &Options) -> Result<Restored> {
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
            if let Some(first) = it.next() {
                let name = first
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(Error::Refused(format!(
                    "--datadir {} is not empty ({name} is there); refusing to overwrite",
                    datadir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(datadir)(e)),
    }
    let ids = match o.owner.as_deref() {
        Some(spec) => Some(owner_ids(spec)?),
        None if is_root() => Some(owner_ids("mysql:mysql")?),
        None => None,
    };
    let datadir_abs = if datadir.is_absolute() {
        datadir.to_path_buf()
    } else {
        std::env::current_dir().map_err(io(datadir))?.join(datadir)
    };
    let place = plan_placement(backup, &datadir_abs, o.into_datadir)?;
    std::fs::create_dir_all(datadir).map_err(io(datadir))?;
    let mut ctx = CopyCtx {
        move_back: o.move_back,
        ids,
        place: &place,
        done: Restored::default(),
    };
    ctx.copy_tree(backup, datadir, "")?;
    set_owner_mode(datadir, ids, true)?;
    Ok(ctx.done)
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

struct CopyCtx<'a> {
    move_back: bool,
    ids: Option<(u32, u32)>,
    place: &'a Placement,
    done: Restored,
}

/// Create `dir` and its missing parents, each with the owner and mode.
fn create_dirs(dir: &Path, ids: Option<(u32, u32)>) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, ids)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => set_owner_mode(dir, ids, true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

impl CopyCtx<'_> {
    fn copy_file(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let moved = self.move_back && std::fs::rename(src, dst).is_ok();
        if !moved {
            std::fs::copy(src, dst).map_err(io(dst))?;
            std::fs::File::open(dst)
                .and_then(|f| f.sync_all())
                .map_err(io(dst))?;
            if self.move_back {
                std::fs::remove_file(src).map_err(io(src))?;
            }
        }
        set_owner_mode(dst, self.ids, false)?;
        self.done.files += 1;
        Ok(())
    }

    fn symlink(&self, link: &Path, target: &Path) -> Result<()> {
        std::os::unix::fs::symlink(target, link).map_err(io(link))?;
        if let Some((u, g)) = self.ids {
            std::os::unix::fs::lchown(link, Some(u), Some(g)).map_err(io(link))?;
        }
        Ok(())
    }

    /// Copy the tree under `from` (at backup-relative `rel`) to `to`.
    fn copy_tree(&mut self, from: &Path, to: &Path, rel: &str) -> Result<()> {
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
            if rel.is_empty() && SKIP.contains(&name_s.as_ref()) {
                continue;
            }
            let r = if rel.is_empty() {
                name_s.clone().into_owned()
            } else {
                format!("{rel}/{name_s}")
            };
            let dst = to.join(name);
            let md = std::fs::symlink_metadata(&src).map_err(io(&src))?;
            if md.is_dir() {
                if let Some(target) = self.place.dirs.get(&r) {
                    // A database directory that was a symlink: its files go
                    // to the recorded directory, the datadir gets the link.
                    create_dirs(target, self.ids)?;
                    self.symlink(&dst, target)?;
                    self.copy_tree(&src, target, &r)?;
                } else {
                    std::fs::create_dir(&dst).map_err(io(&dst))?;
                    self.copy_tree(&src, &dst, &r)?;
                    set_owner_mode(&dst, self.ids, true)?;
                }
                if self.move_back {
                    std::fs::remove_dir(&src).map_err(io(&src))?;
                }
            } else if md.is_file() {
                if let Some(text) = self.place.isl.get(&r) {
                    // --into-datadir: the link file names the copy in the datadir.
                    std::fs::write(&dst, text).map_err(io(&dst))?;
                    std::fs::File::open(&dst)
                        .and_then(|f| f.sync_all())
                        .map_err(io(&dst))?;
                    set_owner_mode(&dst, self.ids, false)?;
                    if self.move_back {
                        std::fs::remove_file(&src).map_err(io(&src))?;
                    }
                    self.done.files += 1;
                } else if let Some(dest) = self.place.files.get(&r) {
                    if let Some(parent) = dest.parent() {
                        create_dirs(parent, self.ids)?;
                    }
                    self.copy_file(&src, dest)?;
                    self.done.outside += 1;
                    if self.place.symlinks.contains(&r) {
                        self.symlink(&dst, dest)?;
                    }
                } else {
                    self.copy_file(&src, &dst)?;
                }
            }
            // Symlinks in a backup are not expected; they are skipped.
        }
        Ok(())
    }
}

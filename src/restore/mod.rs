//! `hotbak restore`: a prepared backup becomes a datadir a server starts on.
//!
//! Two ways:
//! - **copy** (or `--move-back`) into empty directories: the datadir, and
//!   the target server's `innodb_data_home_dir`, `innodb_undo_directory`
//!   and `innodb_log_group_home_dir` when its option file puts them
//!   elsewhere ([`Layout`]), as mariabackup's `--copy-back` does;
//! - **in place** ([`restore_in_place`]): the backup directory itself
//!   becomes the datadir; its metadata files are removed.
//!
//! Files are copied by `--parallel` workers, largest first, through
//! `copy_file_range` (moved by `rename` on one filesystem), with the owner
//! (default mysql:mysql when run as root) and modes (files 0640,
//! directories 0750) set as each is written. Nothing is synced file by file:
//! at the end one `syncfs` per target filesystem and an `fsync` of every
//! directory an entry was made in make the whole restore durable
//! ([`Syncer`]). A copy restore marks the datadir with [`MARKER`] until that
//! sync is done, so an interrupted restore is recognised and refused.
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

mod exec;
mod plan;
pub mod table;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Classify, ErrorClass};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints};

pub use exec::{Syncer, SystemSyncer, DIR_MODE, FILE_MODE};
pub use plan::Layout;

use exec::{set_owner_mode, Exec};

/// The file a copy restore keeps in the datadir until everything is
/// written and synced: its presence means the restore did not finish.
pub const MARKER: &str = ".hotbak-restore-incomplete";

/// Errors of restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Refused (not prepared, target not empty, unknown owner, a file
    /// where a remote file belongs).
    #[error("{0}")]
    Refused(String),
    /// The backup's metadata cannot be read as such (`xtrabackup_checkpoints`,
    /// `hotbak_links`, a `.isl` file).
    #[error("{0}")]
    Corrupt(String),
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The final sync failed: the restored files may not be durable.
    #[error("syncing {path}: {source}; the restore is not durable")]
    Sync {
        /// The directory.
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
            Error::Corrupt(_) => ErrorClass::Corrupt,
            Error::Io { .. } | Error::Sync { .. } => ErrorClass::Io,
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
#[derive(Debug, Clone)]
pub struct Options {
    /// Move files instead of copying them (`rename` on one filesystem).
    pub move_back: bool,
    /// Owner as USER[:GROUP] (default mysql:mysql when run as root).
    pub owner: Option<String>,
    /// Files that lived outside the datadir go into it instead.
    pub into_datadir: bool,
    /// Files copied at the same time.
    pub parallel: usize,
    /// Cap on the copy rate, bytes per second (all workers together).
    pub max_rate: Option<u64>,
    /// The copy's progress display.
    pub progress: crate::progress::ProgressMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            move_back: false,
            owner: None,
            into_datadir: false,
            parallel: 4,
            max_rate: None,
            progress: crate::progress::ProgressMode::Quiet,
        }
    }
}

/// What restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Files in place.
    pub files: usize,
    /// Of which outside the datadir.
    pub outside: usize,
    /// Bytes copied or moved.
    pub bytes: u64,
    /// Files moved by `rename` (`--move-back` on one filesystem, in place).
    pub renamed: usize,
    /// Backup metadata files removed (in place).
    pub removed: usize,
    /// Filesystems made durable by one `syncfs` each.
    pub filesystems_synced: usize,
    /// Directories `fsync`ed.
    pub dirs_synced: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Refuse an unprepared backup.
fn check_prepared(backup: &Path) -> Result<()> {
    let ck_path = backup.join(Checkpoints::FILE);
    let ck_text = match std::fs::read_to_string(&ck_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Refused(format!(
                "{}: no {} (not a backup, or an in-place restore already finished)",
                backup.display(),
                Checkpoints::FILE
            )))
        }
        Err(e) => return Err(io(&ck_path)(e)),
    };
    let ck = Checkpoints::parse(&ck_text)
        .map_err(|e| Error::Corrupt(format!("{}: {e}", ck_path.display())))?;
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
    Ok(())
}

/// The system tablespace names of the backup (`backup-my.cnf`).
fn system_files(backup: &Path) -> Result<Vec<String>> {
    let p = backup.join(BackupMyCnf::FILE);
    match std::fs::read_to_string(&p) {
        Ok(t) => {
            let cnf = BackupMyCnf::parse(&t)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", p.display())))?;
            Ok(plan::system_files(Some(&cnf.innodb_data_file_path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(plan::system_files(None)),
        Err(e) => Err(io(&p)(e)),
    }
}

/// Refuse a target directory that is not empty, naming what is there.
/// Entries that are (or contain) another target directory are allowed.
fn check_empty(dir: &Path, what: &str, others: &[&Path]) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    if std::fs::symlink_metadata(dir.join(MARKER)).is_ok() {
        return Err(Error::Refused(format!(
            "{} holds an interrupted restore ({MARKER} is there: its files are incomplete and were never synced); empty it and the other target directories and run the restore again",
            dir.display()
        )));
    }
    for e in rd {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        if others.iter().any(|o| o.starts_with(&p)) {
            continue;
        }
        return Err(Error::Refused(format!(
            "{what} {} is not empty ({} is there); refusing to overwrite",
            dir.display(),
            p.display()
        )));
    }
    Ok(())
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().map_err(io(Path::new(".")))
}

fn owner(o: &Options) -> Result<Option<(u32, u32)>> {
    match o.owner.as_deref() {
        Some(spec) => Ok(Some(owner_ids(spec)?)),
        None if is_root() => Ok(Some(owner_ids("mysql:mysql")?)),
        None => Ok(None),
    }
}

/// Restore `backup` by copy (or move) into the directories of `layout`
/// (blocking), made durable by `syncer`.
///
/// # Errors
/// [`Error::Refused`] for an unprepared backup, a non-empty target
/// directory (naming the file there) or an existing file where a remote
/// file belongs; [`Error::Corrupt`] for unreadable backup metadata; I/O
/// errors name the file.
pub fn restore(
    backup: &Path,
    layout: &Layout,
    o: &Options,
    syncer: &dyn Syncer,
) -> Result<Restored> {
    let started = Instant::now();
    check_prepared(backup)?;
    let dirs = layout.resolve(&cwd()?);
    let distinct = dirs.distinct();
    let names = [
        "--datadir",
        "innodb_data_home_dir",
        "innodb_undo_directory",
        "innodb_log_group_home_dir",
    ];
    for d in &distinct {
        let what = [&dirs.datadir, &dirs.data_home, &dirs.undo, &dirs.log]
            .iter()
            .position(|x| x.as_path() == *d)
            .map_or("directory", |i| names[i]);
        let others: Vec<&Path> = distinct.iter().filter(|o| *o != d).copied().collect();
        check_empty(d, what, &others)?;
    }
    let ids = owner(o)?;
    let backup_abs = plan::absolute(&cwd()?, backup);
    for d in &distinct {
        if d.starts_with(&backup_abs) || backup_abs.starts_with(d) {
            return Err(Error::Refused(format!(
                "{} and the backup {} overlap; use --in-place to make the backup the datadir",
                d.display(),
                backup.display()
            )));
        }
    }
    let place = plan::plan_placement(backup, &dirs.datadir, o.into_datadir, false)?;
    let system = system_files(backup)?;
    let ops = plan::copy_ops(backup, &dirs, &system, &place)?;
    let ex = Exec {
        ids,
        move_files: o.move_back,
        parallel: o.parallel,
        max_rate: o.max_rate,
        progress: o.progress,
        syncer,
    };
    // The datadir first, with the marker in it, then everything else.
    let mut touched = std::collections::BTreeSet::new();
    exec::create_dirs(&dirs.datadir, ids, &mut touched)?;
    let marker = dirs.datadir.join(MARKER);
    std::fs::File::create(&marker).map_err(io(&marker))?;
    let mut done = ex.run(&ops, false)?;
    done.touched.extend(touched);
    done.touched.insert(dirs.datadir.clone());
    for d in &distinct {
        set_owner_mode(d, ids, true)?;
    }
    let mut roots: Vec<PathBuf> = distinct.iter().map(|d| d.to_path_buf()).collect();
    roots.extend(
        ops.jobs
            .iter()
            .filter(|j| j.outside)
            .filter_map(|j| j.dst.parent().map(Path::to_path_buf)),
    );
    let (fs, dirs_synced) = ex.sync(&roots, &done.touched)?;
    // Durable: the marker goes, and its removal is made durable too.
    std::fs::remove_file(&marker).map_err(io(&marker))?;
    syncer
        .sync_dir(&dirs.datadir)
        .map_err(|source| Error::Sync {
            path: dirs.datadir.display().to_string(),
            source,
        })?;
    if o.move_back {
        remove_moved(backup, &done.remove_after_sync)?;
    }
    Ok(Restored {
        files: done.files,
        outside: done.outside,
        bytes: done.bytes,
        renamed: done.renamed,
        removed: 0,
        filesystems_synced: fs,
        dirs_synced: dirs_synced + 1,
        elapsed: started.elapsed(),
    })
}

/// After a durable `--move-back`: remove the sources that were copied
/// across filesystems, then the backup's emptied directories.
fn remove_moved(backup: &Path, sources: &[PathBuf]) -> Result<()> {
    for s in sources {
        std::fs::remove_file(s).map_err(io(s))?;
    }
    remove_empty_dirs(backup)
}

fn remove_empty_dirs(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        if e.file_type().map_err(io(&e.path()))?.is_dir() {
            remove_empty_dirs(&e.path())?;
            // Left when not empty: the backup's metadata stays with the backup.
            let _ = std::fs::remove_dir(e.path());
        }
    }
    Ok(())
}

/// Make the prepared backup `dir` the datadir itself (blocking): the
/// files that lived outside the datadir are moved to their places (or,
/// with `into_datadir`, their `.isl` files rewritten), owner and modes
/// set on everything, the backup's metadata removed, all synced, and
/// `xtrabackup_checkpoints` removed last (until then a rerun does the
/// rest).
///
/// # Errors
/// As [`restore`].
pub fn restore_in_place(dir: &Path, o: &Options, syncer: &dyn Syncer) -> Result<Restored> {
    let started = Instant::now();
    check_prepared(dir)?;
    let ids = owner(o)?;
    let dir = plan::absolute(&cwd()?, dir);
    let place = plan::plan_placement(&dir, &dir, o.into_datadir, true)?;
    let (ops, dir_links) = plan::in_place_ops(&dir, &place)?;
    let ex = Exec {
        ids,
        move_files: true,
        parallel: o.parallel,
        max_rate: o.max_rate,
        progress: o.progress,
        syncer,
    };
    let mut done = ex.run(&ops, true)?;
    // The backup's metadata, all but the links and the checkpoints file.
    let mut removed = 0;
    let (last, others) = plan::METADATA.split_at(plan::METADATA.len().saturating_sub(2));
    for name in others {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    let mut files = 0usize;
    owner_mode_tree(&dir, ids, &mut files)?;
    // Not counting the two metadata files still there.
    files -= last
        .iter()
        .filter(|n| dir.join(n).is_file())
        .count()
        .min(files);
    done.touched.insert(dir.clone());
    let mut roots = vec![dir.clone()];
    roots.extend(
        ops.jobs
            .iter()
            .filter_map(|j| j.dst.parent().map(Path::to_path_buf)),
    );
    let (fs, mut dirs_synced) = ex.sync(&roots, &done.touched)?;
    // Durable: the sources copied across filesystems go, the emptied
    // database directories become symlinks, the symlinks are made.
    let mut after = std::collections::BTreeSet::new();
    for s in &done.remove_after_sync {
        std::fs::remove_file(s).map_err(io(s))?;
        if let Some(p) = s.parent() {
            after.insert(p.to_path_buf());
        }
    }
    for (src, _) in &dir_links {
        remove_dir_tree_empty(src)?;
    }
    let mut links = ops.symlinks.clone();
    links.extend(dir_links);
    let mut d2 = exec::Done::default();
    ex.symlinks(&links, &mut d2)?;
    after.extend(d2.touched);
    for name in last {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
        after.insert(dir.clone());
    }
    for d in &after {
        syncer.sync_dir(d).map_err(|source| Error::Sync {
            path: d.display().to_string(),
            source,
        })?;
        dirs_synced += 1;
    }
    Ok(Restored {
        files: files + done.outside,
        outside: done.outside,
        bytes: done.bytes,
        renamed: done.renamed,
        removed,
        filesystems_synced: fs,
        dirs_synced,
        elapsed: started.elapsed(),
    })
}

/// Remove a directory tree that holds only directories (its files were moved).
fn remove_dir_tree_empty(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        if e.file_type().map_err(io(&e.path()))?.is_dir() {
            remove_dir_tree_empty(&e.path())?;
        }
    }
    std::fs::remove_dir(dir).map_err(io(dir))
}

/// Owner and modes on a whole tree (in place), counting its files.
fn owner_mode_tree(dir: &Path, ids: Option<(u32, u32)>, files: &mut usize) -> Result<()> {
    set_owner_mode(dir, ids, true)?;
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        let ft = e.file_type().map_err(io(&p))?;
        if ft.is_dir() {
            owner_mode_tree(&p, ids, files)?;
        } else if ft.is_file() {
            set_owner_mode(&p, ids, false)?;
            *files += 1;
        }
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting {
        fs: AtomicUsize,
        dirs: AtomicUsize,
    }

    impl Syncer for Counting {
        fn sync_filesystem(&self, dir: &Path) -> std::io::Result<()> {
            self.fs.fetch_add(1, Ordering::Relaxed);
            SystemSyncer.sync_filesystem(dir)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.dirs.fetch_add(1, Ordering::Relaxed);
            SystemSyncer.sync_dir(dir)
        }
    }

    /// A prepared backup `b` with a remote tablespace `db/t.ibd` whose
    /// `.isl` names `remote/db/t.ibd`.
    fn backup(root: &Path, backup_type: &str) -> (PathBuf, PathBuf) {
        let b = root.join("b");
        let remote = root.join("remote/db/t.ibd");
        std::fs::create_dir_all(b.join("db")).unwrap();
        std::fs::write(
            b.join(Checkpoints::FILE),
            format!("backup_type = {backup_type}\nfrom_lsn = 0\nto_lsn = 9\nlast_lsn = 9\n"),
        )
        .unwrap();
        std::fs::write(b.join("ibdata1"), vec![1u8; 4096]).unwrap();
        std::fs::write(b.join("undo001"), vec![2u8; 4096]).unwrap();
        std::fs::write(b.join("ibtmp1"), b"tmp").unwrap();
        std::fs::write(
            b.join("backup-my.cnf"),
            "[mysqld]\ninnodb_data_file_path=ibdata1:12M:autoextend\ninnodb_page_size=16384\n",
        )
        .unwrap();
        std::fs::write(b.join("db/t.ibd"), vec![3u8; 8192]).unwrap();
        std::fs::write(b.join("db/t.isl"), remote.display().to_string()).unwrap();
        (b, remote)
    }

    fn opts() -> Options {
        Options {
            owner: Some("root".into()),
            parallel: 2,
            ..Options::default()
        }
    }

    #[test]
    fn copy_restore_syncs_each_filesystem_once_and_the_directories() {
        let t = tempfile::tempdir().unwrap();
        let (b, remote) = backup(t.path(), "full-prepared");
        let layout = Layout {
            datadir: t.path().join("data"),
            undo_dir: Some(PathBuf::from("../undo")),
            ..Layout::default()
        };
        let c = Counting::default();
        let r = restore(&b, &layout, &opts(), &c).unwrap();
        // ibdata1, undo001, db/t.ibd (outside), db/t.isl; ibtmp1 and the metadata stay.
        let isl = remote.display().to_string().len() as u64;
        assert_eq!(
            (r.files, r.outside, r.bytes),
            (4, 1, 4096 + 4096 + 8192 + isl)
        );
        assert_eq!(r.filesystems_synced, 1);
        assert_eq!(c.fs.load(Ordering::Relaxed), 1);
        assert_eq!(c.dirs.load(Ordering::Relaxed), r.dirs_synced);
        assert!(r.dirs_synced >= 4, "{r:?}");
        assert!(t.path().join("undo/undo001").is_file());
        assert!(t.path().join("data/ibdata1").is_file());
        assert!(!t.path().join("data/ibtmp1").exists());
        assert!(!t.path().join("data").join(MARKER).exists());
        assert_eq!(std::fs::read(&remote).unwrap(), vec![3u8; 8192]);
        // Again: refused, naming the file in the way.
        std::fs::remove_file(&remote).unwrap();
        let e = restore(&b, &layout, &opts(), &c).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        assert!(e.to_string().contains("is not empty ("), "{e}");
    }

    #[test]
    fn unprepared_and_unreadable_backups_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let (b, _) = backup(t.path(), "full-backuped");
        let e = restore_in_place(&b, &opts(), &SystemSyncer).unwrap_err();
        assert!(
            matches!(e, Error::Refused(_)) && e.to_string().contains("hotbak prepare"),
            "{e}"
        );
        std::fs::write(b.join(Checkpoints::FILE), "garbage").unwrap();
        let e = restore_in_place(&b, &opts(), &SystemSyncer).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Corrupt, "{e}");
    }

    #[test]
    fn in_place_rerun_after_an_interruption_finishes_the_job() {
        let t = tempfile::tempdir().unwrap();
        let (b, remote) = backup(t.path(), "full-prepared");
        // As if an earlier run was killed after moving the remote tablespace.
        std::fs::create_dir_all(remote.parent().unwrap()).unwrap();
        std::fs::rename(b.join("db/t.ibd"), &remote).unwrap();
        std::fs::remove_file(b.join("backup-my.cnf")).unwrap();
        let c = Counting::default();
        let r = restore_in_place(&b, &opts(), &c).unwrap();
        assert_eq!(r.filesystems_synced, 1);
        assert_eq!(c.fs.load(Ordering::Relaxed), 1);
        assert!(c.dirs.load(Ordering::Relaxed) >= 1);
        assert!(!b.join(Checkpoints::FILE).exists());
        assert!(b.join("db/t.isl").is_file() && b.join("ibdata1").is_file());
        assert_eq!(std::fs::read(&remote).unwrap(), vec![3u8; 8192]);
        // Done: a third run says so.
        let e = restore_in_place(&b, &opts(), &c).unwrap_err();
        assert!(e.to_string().contains("already finished"), "{e}");
    }
}

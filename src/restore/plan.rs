//! Where each file of a prepared backup goes: the target server's
//! directories ([`Layout`]), the area of a file in the backup's root, and
//! the places of the files that lived outside the datadir. The decisions
//! are pure functions; [`plan_placement`] and the walks read the backup.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{io, Error, Result};
use crate::format::links::{LinkKind, Links, LINKS_NAME};
use crate::format::manifest::{MANIFEST_NAME, STREAM_INFO_NAME};

/// The target server's directories, as its option file sets them
/// (`datadir`, `innodb_data_home_dir`, `innodb_undo_directory`,
/// `innodb_log_group_home_dir`). `None` means the datadir; a relative path
/// is taken relative to the datadir, as the server does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// `datadir`.
    pub datadir: PathBuf,
    /// `innodb_data_home_dir`: the system tablespace files.
    pub data_home: Option<PathBuf>,
    /// `innodb_undo_directory`: `undo001`, `undo002`, ….
    pub undo_dir: Option<PathBuf>,
    /// `innodb_log_group_home_dir`: `ib_logfile0`.
    pub log_dir: Option<PathBuf>,
}

/// The four directories, absolute and without `.`/`..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dirs {
    pub datadir: PathBuf,
    pub data_home: PathBuf,
    pub undo: PathBuf,
    pub log: PathBuf,
}

impl Dirs {
    /// The directory of one area.
    pub fn of(&self, a: Area) -> &Path {
        match a {
            Area::Datadir => &self.datadir,
            Area::DataHome => &self.data_home,
            Area::Undo => &self.undo,
            Area::Log => &self.log,
        }
    }

    /// The distinct directories, the datadir first.
    pub fn distinct(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = vec![&self.datadir];
        for d in [&self.data_home, &self.undo, &self.log] {
            if !out.contains(&d.as_path()) {
                out.push(d);
            }
        }
        out
    }
}

pub(super) use crate::format::path::lexical_absolute as absolute;

impl Layout {
    /// Everything in one datadir.
    #[must_use]
    pub fn in_datadir(datadir: &Path) -> Layout {
        Layout {
            datadir: datadir.to_path_buf(),
            ..Layout::default()
        }
    }

    /// Resolve against the working directory `cwd` (the datadir) and the
    /// datadir (the others).
    pub(super) fn resolve(&self, cwd: &Path) -> Dirs {
        let datadir = absolute(cwd, &self.datadir);
        let rel = |o: &Option<PathBuf>| {
            o.as_deref()
                .map_or_else(|| datadir.clone(), |p| absolute(&datadir, p))
        };
        Dirs {
            data_home: rel(&self.data_home),
            undo: rel(&self.undo_dir),
            log: rel(&self.log_dir),
            datadir,
        }
    }
}

/// Where a file of the backup's root belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Area {
    /// The datadir (everything but the three below).
    Datadir,
    /// `innodb_data_home_dir`: the system tablespace files.
    DataHome,
    /// `innodb_undo_directory`: `undoNNN`.
    Undo,
    /// `innodb_log_group_home_dir`: `ib_logfileN`.
    Log,
}

/// The system tablespace files an `innodb_data_file_path` names
/// (`ibdata1:12M;ibdata2:1G:autoextend` → `ibdata1`, `ibdata2`); `ibdata1`
/// when it names none.
#[must_use]
pub(super) fn system_files(data_file_path: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = data_file_path
        .unwrap_or_default()
        .split(';')
        .filter_map(|t| t.split(':').next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_owned)
        .collect();
    if out.is_empty() {
        out.push("ibdata1".to_owned());
    }
    out
}

fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The area of a file named `name` in the backup's root.
#[must_use]
pub(super) fn area_of(name: &str, system: &[String]) -> Area {
    if numbered(name, "undo") {
        Area::Undo
    } else if numbered(name, "ib_logfile") {
        Area::Log
    } else if system.iter().any(|s| s == name) {
        Area::DataHome
    } else {
        Area::Datadir
    }
}

/// Files of the backup's root that do not belong in a datadir: the
/// backup's own metadata (removed by an in-place restore).
pub(super) const METADATA: &[&str] = &[
    "backup-my.cnf",
    "xtrabackup_info",
    "xtrabackup_binlog_info",
    "xtrabackup_slave_info",
    "xtrabackup_galera_info",
    "xtrabackup_binlog_pos_innodb",
    MANIFEST_NAME,
    STREAM_INFO_NAME,
    crate::format::export::EXPORT_NAME,
    // The last two go last in place: a rerun needs the links, and while
    // the checkpoints file is there the directory is still a backup.
    LINKS_NAME,
    crate::format::metadata::Checkpoints::FILE,
];

/// Whether a copy restore leaves the backup's root file `name` behind:
/// metadata, and the temporary tablespace the server makes anew at start.
#[must_use]
pub(super) fn skipped(name: &str) -> bool {
    METADATA.contains(&name) || numbered(name, "ibtmp")
}

/// Where the files that lived outside the datadir go.
#[derive(Debug, Default)]
pub(super) struct Placement {
    /// Backup-relative file → absolute destination (remote tablespaces,
    /// symlinked files).
    pub files: BTreeMap<String, PathBuf>,
    /// Backup-relative file → symlink to make at that place in the datadir.
    pub symlinks: BTreeSet<String>,
    /// Backup-relative database directory → its target directory.
    pub dirs: BTreeMap<String, PathBuf>,
    /// `.isl` files to write with new content (`--into-datadir`).
    pub isl: BTreeMap<String, String>,
    /// In place: files an interrupted earlier run already moved to their
    /// destination (it exists, the backup's file is gone).
    pub moved: BTreeSet<String>,
}

/// Work out where the remote files go, and refuse (before anything is
/// written) when a destination already exists (in place: unless the
/// backup's file is gone, moved there by an interrupted earlier run).
pub(super) fn plan_placement(
    backup: &Path,
    datadir: &Path,
    into_datadir: bool,
    in_place: bool,
) -> Result<Placement> {
    let mut p = Placement::default();
    let links_path = backup.join(LINKS_NAME);
    let links = match std::fs::read_to_string(&links_path) {
        Ok(t) => Links::parse(&t)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", links_path.display())))?,
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
                    Error::Corrupt(format!(
                        "{}: not a link file (expected one path)",
                        f.path().display()
                    ))
                })?;
            if !target.is_absolute() || target.components().any(|c| c.as_os_str() == "..") {
                return Err(Error::Corrupt(format!(
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
            let src = std::fs::symlink_metadata(backup.join(rel));
            if in_place && !src.is_ok_and(|m| m.is_file()) {
                p.moved.insert(rel.clone());
                continue;
            }
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

/// One file to put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Job {
    /// In the backup.
    pub src: PathBuf,
    /// Where it goes.
    pub dst: PathBuf,
    /// Its size (for ordering and progress).
    pub len: u64,
    /// Outside the datadir (a remote file).
    pub outside: bool,
}

/// Everything a restore writes, in order.
#[derive(Debug, Default)]
pub(super) struct Ops {
    /// Directories to create (parents first), with owner and mode.
    pub mkdirs: Vec<PathBuf>,
    /// Files to copy or move, largest first.
    pub jobs: Vec<Job>,
    /// Files written with this content (`.isl` rewrites), and their source.
    pub texts: Vec<(PathBuf, PathBuf, String)>,
    /// Symlinks (link, target) to make.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
}

impl Ops {
    /// Sort the jobs largest first, so the longest copies start first and
    /// `--parallel` workers finish together.
    pub fn order(&mut self) {
        self.jobs
            .sort_by(|a, b| b.len.cmp(&a.len).then_with(|| a.src.cmp(&b.src)));
    }

    /// Total bytes of the jobs.
    pub fn bytes(&self) -> u64 {
        self.jobs.iter().map(|j| j.len).sum()
    }
}

/// Entries of a directory, sorted.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        out.push(e.map_err(io(dir))?.path());
    }
    out.sort();
    Ok(out)
}

/// The copy restore's operations: the tree of `backup` into `dirs`.
pub(super) fn copy_ops(
    backup: &Path,
    dirs: &Dirs,
    system: &[String],
    place: &Placement,
) -> Result<Ops> {
    let mut ops = Ops::default();
    for d in dirs.distinct() {
        ops.mkdirs.push(d.to_path_buf());
    }
    walk(backup, &dirs.datadir, "", dirs, system, place, &mut ops)?;
    ops.order();
    Ok(ops)
}

fn walk(
    from: &Path,
    to: &Path,
    rel: &str,
    dirs: &Dirs,
    system: &[String],
    place: &Placement,
    ops: &mut Ops,
) -> Result<()> {
    for src in entries(from)? {
        let Some(name) = src.file_name() else {
            continue;
        };
        let name_s = name.to_string_lossy();
        if rel.is_empty() && skipped(&name_s) {
            continue;
        }
        let r = if rel.is_empty() {
            name_s.clone().into_owned()
        } else {
            format!("{rel}/{name_s}")
        };
        let md = std::fs::symlink_metadata(&src).map_err(io(&src))?;
        if md.is_dir() {
            let dst = to.join(name);
            if let Some(target) = place.dirs.get(&r) {
                // A database directory that was a symlink: its files go
                // to the recorded directory, the datadir gets the link.
                ops.mkdirs.push(target.clone());
                ops.symlinks.push((dst, target.clone()));
                walk(&src, target, &r, dirs, system, place, ops)?;
            } else {
                ops.mkdirs.push(dst.clone());
                walk(&src, &dst, &r, dirs, system, place, ops)?;
            }
        } else if md.is_file() {
            let dst = if rel.is_empty() {
                dirs.of(area_of(&name_s, system)).join(name)
            } else {
                to.join(name)
            };
            if let Some(text) = place.isl.get(&r) {
                ops.texts.push((dst, src.clone(), text.clone()));
            } else if let Some(dest) = place.files.get(&r) {
                if let Some(parent) = dest.parent() {
                    ops.mkdirs.push(parent.to_path_buf());
                }
                ops.jobs.push(Job {
                    src: src.clone(),
                    dst: dest.clone(),
                    len: md.len(),
                    outside: true,
                });
                if place.symlinks.contains(&r) {
                    ops.symlinks.push((dst, dest.clone()));
                }
            } else {
                ops.jobs.push(Job {
                    src: src.clone(),
                    dst,
                    len: md.len(),
                    outside: false,
                });
            }
        }
        // Symlinks in a backup are not expected; they are skipped.
    }
    Ok(())
}

/// The in-place restore's moves: only the files that lived outside the
/// datadir leave the backup directory `dir`. Returns the operations and
/// the database directories to replace by symlinks once emptied.
pub(super) fn in_place_ops(
    dir: &Path,
    place: &Placement,
) -> Result<(Ops, Vec<(PathBuf, PathBuf)>)> {
    let mut ops = Ops::default();
    let mut dir_links = Vec::new();
    for (rel, text) in &place.isl {
        let p = dir.join(rel);
        ops.texts.push((p.clone(), p, text.clone()));
    }
    for (rel, dest) in &place.files {
        let src = dir.join(rel);
        if place.moved.contains(rel) {
            // Moved by an interrupted run: only its symlink may be missing.
            if place.symlinks.contains(rel) && std::fs::symlink_metadata(&src).is_err() {
                ops.symlinks.push((src, dest.clone()));
            }
            continue;
        }
        let len = match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => continue,
            Err(e) => return Err(io(&src)(e)),
        };
        if let Some(parent) = dest.parent() {
            ops.mkdirs.push(parent.to_path_buf());
        }
        ops.jobs.push(Job {
            src: src.clone(),
            dst: dest.clone(),
            len,
            outside: true,
        });
        if place.symlinks.contains(rel) {
            ops.symlinks.push((src, dest.clone()));
        }
    }
    for (rel, target) in &place.dirs {
        let src = dir.join(rel);
        ops.mkdirs.push(target.clone());
        move_tree(&src, target, &mut ops)?;
        dir_links.push((src, target.clone()));
    }
    ops.order();
    Ok((ops, dir_links))
}

fn move_tree(from: &Path, to: &Path, ops: &mut Ops) -> Result<()> {
    for src in entries(from)? {
        let Some(name) = src.file_name() else {
            continue;
        };
        let dst = to.join(name);
        let md = std::fs::symlink_metadata(&src).map_err(io(&src))?;
        if md.is_dir() {
            ops.mkdirs.push(dst.clone());
            move_tree(&src, &dst, ops)?;
        } else if md.is_file() {
            ops.jobs.push(Job {
                src,
                dst,
                len: md.len(),
                outside: true,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn areas_follow_the_server_options() {
        let sys = system_files(Some("ibdata1:12M;ibdata2:10M:autoextend"));
        assert_eq!(sys, ["ibdata1", "ibdata2"]);
        assert_eq!(area_of("ibdata2", &sys), Area::DataHome);
        assert_eq!(area_of("undo001", &sys), Area::Undo);
        assert_eq!(area_of("undo", &sys), Area::Datadir);
        assert_eq!(area_of("undo01x", &sys), Area::Datadir);
        assert_eq!(area_of("ib_logfile0", &sys), Area::Log);
        assert_eq!(area_of("ib_buffer_pool", &sys), Area::Datadir);
        assert_eq!(area_of("aria_log_control", &sys), Area::Datadir);
        assert_eq!(system_files(None), ["ibdata1"]);
        assert_eq!(system_files(Some("")), ["ibdata1"]);
        assert!(skipped("ibtmp1"));
        assert!(skipped("xtrabackup_checkpoints"));
        assert!(skipped("hotbak_links"));
        assert!(!skipped("ibdata1"));
    }

    #[test]
    fn relative_directories_are_relative_to_the_datadir() {
        let l = Layout {
            datadir: PathBuf::from("data"),
            data_home: None,
            undo_dir: Some(PathBuf::from("../undo")),
            log_dir: Some(PathBuf::from("/logs/./redo")),
        };
        let d = l.resolve(Path::new("/srv"));
        assert_eq!(d.datadir, Path::new("/srv/data"));
        assert_eq!(d.data_home, Path::new("/srv/data"));
        assert_eq!(d.undo, Path::new("/srv/undo"));
        assert_eq!(d.log, Path::new("/logs/redo"));
        assert_eq!(
            d.distinct(),
            [
                Path::new("/srv/data"),
                Path::new("/srv/undo"),
                Path::new("/logs/redo")
            ]
        );
    }

    #[test]
    fn copy_ops_place_root_files_by_area_largest_first() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path().join("b");
        std::fs::create_dir_all(b.join("db")).unwrap();
        for (f, n) in [
            ("ibdata1", 30),
            ("undo001", 20),
            ("ib_logfile0", 10),
            ("db/t.ibd", 40),
            ("xtrabackup_checkpoints", 1),
            ("ibtmp1", 5),
        ] {
            std::fs::write(b.join(f), vec![0u8; n]).unwrap();
        }
        let dirs = Layout {
            datadir: PathBuf::from("/d"),
            data_home: Some(PathBuf::from("/h")),
            undo_dir: Some(PathBuf::from("/u")),
            log_dir: Some(PathBuf::from("/l")),
        }
        .resolve(Path::new("/"));
        let ops = copy_ops(&b, &dirs, &system_files(None), &Placement::default()).unwrap();
        let got: Vec<(&Path, u64)> = ops.jobs.iter().map(|j| (j.dst.as_path(), j.len)).collect();
        assert_eq!(
            got,
            [
                (Path::new("/d/db/t.ibd"), 40),
                (Path::new("/h/ibdata1"), 30),
                (Path::new("/u/undo001"), 20),
                (Path::new("/l/ib_logfile0"), 10),
            ]
        );
        assert_eq!(ops.bytes(), 100);
        assert_eq!(
            ops.mkdirs,
            ["/d", "/h", "/u", "/l", "/d/db"].map(PathBuf::from)
        );
    }
}

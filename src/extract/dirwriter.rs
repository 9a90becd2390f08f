//! Safe file creation under the target directory: parents created one
//! component at a time without following symlinks, files created with
//! `O_EXCL|O_NOFOLLOW` under a partial name, renamed when complete.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Error, Finished, Plan, Result};
use crate::format::path::RelPath;

/// Files being written live in `<target>/.xbextract-partial-<pid>/<n>`
/// (same file system, so the final rename is atomic; no name can collide
/// with a stream path or exceed NAME_MAX). The directory is removed at the
/// end, with everything in it on failure.
pub const STAGING_PREFIX: &str = ".xbextract-partial-";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Create the parent directories of `rel` under `root`, refusing symlinks.
pub(crate) fn safe_parent(root: &Path, rel: &RelPath) -> Result<PathBuf> {
    walk_parent(root, rel, true).map(|p| p.unwrap_or_else(|| root.to_path_buf()))
}

/// The parent directory of `rel` under `root` if it exists as real
/// directories (no symlink on the way), without creating anything.
fn existing_parent(root: &Path, rel: &RelPath) -> Result<Option<PathBuf>> {
    walk_parent(root, rel, false)
}

/// Walk `rel`'s parents under `root`, refusing symlinks; a missing one is
/// created (`create`) or ends the walk with `None`.
fn walk_parent(root: &Path, rel: &RelPath, create: bool) -> Result<Option<PathBuf>> {
    let mut p = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(Some(p));
    };
    for comp in parent.components() {
        p.push(comp);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::Symlink {
                    path: rel.to_string(),
                    at: p.display().to_string(),
                });
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Io {
                    path: p.display().to_string(),
                    source: std::io::Error::other(format!("not a directory (needed for {rel})")),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound && !create => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => match std::fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    // Raced with another worker: re-check it is a real directory.
                    let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
                    if !m.is_dir() {
                        return Err(Error::Symlink {
                            path: rel.to_string(),
                            at: p.display().to_string(),
                        });
                    }
                }
                Err(e) => return Err(io(&p)(e)),
            },
            Err(e) => return Err(io(&p)(e)),
        }
    }
    Ok(Some(p))
}

/// Name of the per-run staging directory inside the target, for the process `pid`.
#[must_use]
pub fn staging_name(pid: u32) -> String {
    format!("{STAGING_PREFIX}{pid}")
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Create the staging directory (a fresh one: it must not exist).
pub(crate) fn create_staging(plan: &Plan) -> Result<PathBuf> {
    let d = plan.dir.join(staging_name(std::process::id()));
    std::fs::create_dir(&d).map_err(io(&d))?;
    Ok(d)
}

/// Create the partial file for `rel` at `partial` (inside the staging
/// directory), after making `rel`'s parents and checking it does not exist.
pub(crate) fn create_partial(plan: &Plan, rel: &RelPath, partial: &Path) -> Result<File> {
    safe_parent(&plan.dir, rel)?;
    let fin = rel.under(&plan.dir);
    if exists(&fin) && !plan.force {
        return Err(Error::Exists {
            path: fin.display().to_string(),
        });
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(partial)
        .map_err(io(partial))
}

/// Give a complete file its final name.
pub(crate) fn commit(plan: &Plan, rel: &RelPath, partial: &Path) -> Result<()> {
    safe_parent(&plan.dir, rel)?;
    let fin = rel.under(&plan.dir);
    match std::fs::symlink_metadata(&fin) {
        Ok(m) if m.is_dir() => {
            return Err(Error::Exists {
                path: fin.display().to_string(),
            })
        }
        Ok(_) if !plan.force => {
            return Err(Error::Exists {
                path: fin.display().to_string(),
            })
        }
        _ => {}
    }
    // rename() replaces a symlink itself, never its target.
    std::fs::rename(partial, &fin).map_err(io(&fin))
}

/// Apply a MariaDB `D` or `R` chunk inside the target, without following symlinks.
pub(crate) fn apply_remove_rename(
    plan: &Plan,
    path: &RelPath,
    new_path: Option<&RelPath>,
) -> Result<()> {
    // Never create directories for the source: removing a file that is
    // not there is a no-op, renaming one is an error that names it.
    if existing_parent(&plan.dir, path)?.is_none() {
        return match new_path {
            None => Ok(()),
            Some(_) => Err(io(&path.under(&plan.dir))(std::io::Error::from(
                ErrorKind::NotFound,
            ))),
        };
    }
    let fin = path.under(&plan.dir);
    match new_path {
        None => match std::fs::symlink_metadata(&fin) {
            Ok(m) if m.is_dir() => Err(Error::Refused {
                path: path.to_string(),
                what: "remove (D)",
                offset: 0,
                why: "target is a directory",
            }),
            Ok(_) => std::fs::remove_file(&fin).map_err(io(&fin)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&fin)(e)),
        },
        Some(np) => {
            safe_parent(&plan.dir, np)?;
            let nfin = np.under(&plan.dir);
            if exists(&nfin) && !plan.force {
                return Err(Error::Exists {
                    path: nfin.display().to_string(),
                });
            }
            std::fs::rename(&fin, &nfin).map_err(io(&fin))
        }
    }
}

/// fsync every directory that received a file, and the root.
pub(crate) fn sync_dirs(plan: &Plan, done: &[Finished]) -> Result<()> {
    let mut dirs: Vec<PathBuf> = done
        .iter()
        .filter_map(|f| f.path.under(&plan.dir).parent().map(Path::to_path_buf))
        .collect();
    dirs.push(plan.dir.clone());
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        File::open(&d).and_then(|f| f.sync_all()).map_err(io(&d))?;
    }
    Ok(())
}

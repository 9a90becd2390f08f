//! xbextract's use of the safe directory writer ([`crate::sink::safe_dir`]):
//! files written under a partial name in a staging directory and renamed
//! when complete, MariaDB's remove/rename chunks, `--force`.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{Error, Finished, Plan, Result};
use crate::format::path::RelPath;
use crate::sink::safe_dir::{self, exists};

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
    Ok(safe_dir::safe_parent(root, rel)?)
}

/// Name of the per-run staging directory inside the target, for the process `pid`.
#[must_use]
pub fn staging_name(pid: u32) -> String {
    format!("{STAGING_PREFIX}{pid}")
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
        return Err(safe_dir::Error::Exists {
            path: fin.display().to_string(),
        }
        .into());
    }
    Ok(safe_dir::create_new(partial, 0o640)?)
}

/// Give a complete file its final name.
pub(crate) fn commit(plan: &Plan, rel: &RelPath, partial: &Path) -> Result<()> {
    safe_parent(&plan.dir, rel)?;
    let fin = rel.under(&plan.dir);
    match std::fs::symlink_metadata(&fin) {
        Ok(m) if m.is_dir() => {
            return Err(safe_dir::Error::Exists {
                path: fin.display().to_string(),
            }
            .into())
        }
        Ok(_) if !plan.force => {
            return Err(safe_dir::Error::Exists {
                path: fin.display().to_string(),
            }
            .into())
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
    if safe_dir::existing_parent(&plan.dir, path)?.is_none() {
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
                return Err(safe_dir::Error::Exists {
                    path: nfin.display().to_string(),
                }
                .into());
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
    Ok(safe_dir::sync_dirs(dirs)?)
}

//! The one safe directory writer, shared by `hotbak backup --target-dir`
//! ([`super::Output::Dir`]) and xbextract: parents created one component at
//! a time without following symlinks, files created with
//! `O_EXCL|O_NOFOLLOW`, directories fsynced at the end.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::path::RelPath;

/// Why a file or directory could not be made under the root.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write would go through a symlink.
    #[error("{path}: refusing to follow the symlink at {at}")]
    Symlink {
        /// The file.
        path: String,
        /// The symlink.
        at: String,
    },
    /// The file exists.
    #[error("{path}: already exists; refusing to overwrite (use --force)")]
    Exists {
        /// The file.
        path: String,
    },
    /// Creating, opening or syncing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Symlink { .. } | Error::Exists { .. } | Error::Io { .. } => ErrorClass::Io,
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

/// Create the parent directories of `rel` under `root`, refusing symlinks;
/// returns the parent directory.
///
/// # Errors
/// [`Error::Symlink`] for a symlink on the way, [`Error::Io`] for a
/// component that is not a directory or cannot be created.
pub fn safe_parent(root: &Path, rel: &RelPath) -> Result<PathBuf> {
    walk_parent(root, rel, true).map(|p| p.unwrap_or_else(|| root.to_path_buf()))
}

/// The parent directory of `rel` under `root` if it exists as real
/// directories (no symlink on the way), without creating anything.
///
/// # Errors
/// As [`safe_parent`].
pub fn existing_parent(root: &Path, rel: &RelPath) -> Result<Option<PathBuf>> {
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

/// Whether anything (a symlink included) exists at `p`.
#[must_use]
pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Create a new file at `path` for writing: `O_EXCL|O_NOFOLLOW`, so neither
/// an existing file nor a symlink planted at the name is ever written
/// through. `mode` is filtered by the umask.
///
/// # Errors
/// [`Error::Io`] (`AlreadyExists` for a name that is taken).
pub fn create_new(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io(path))
}

/// Create the file `rel` under `root`: its parents safely, then the file
/// itself with [`create_new`].
///
/// # Errors
/// As [`safe_parent`] and [`create_new`].
pub fn create_under(root: &Path, rel: &RelPath, mode: u32) -> Result<File> {
    safe_parent(root, rel)?;
    create_new(&rel.under(root), mode)
}

/// fsync each of `dirs` (sorted, deduplicated first).
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub fn sync_dirs(mut dirs: Vec<PathBuf>) -> Result<()> {
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        File::open(&d).and_then(|f| f.sync_all()).map_err(io(&d))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn never_writes_through_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("db")).unwrap();
        let e = create_under(root.path(), &RelPath::new("db/t.ibd").unwrap(), 0o640).unwrap_err();
        assert!(matches!(e, Error::Symlink { .. }), "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        std::os::unix::fs::symlink(outside.path().join("x"), root.path().join("f")).unwrap();
        let e = create_under(root.path(), &RelPath::new("f").unwrap(), 0o640).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(!outside.path().join("x").exists());
        assert_eq!(e.class(), ErrorClass::Io);
    }

    #[test]
    fn creates_parents_and_refuses_existing_files() {
        let root = tempfile::tempdir().unwrap();
        let rel = RelPath::new("a/b/c.ibd").unwrap();
        create_under(root.path(), &rel, 0o640).unwrap();
        assert!(root.path().join("a/b/c.ibd").is_file());
        assert!(create_under(root.path(), &rel, 0o640).is_err());
        assert_eq!(
            existing_parent(root.path(), &RelPath::new("a/x/y").unwrap()).unwrap(),
            None
        );
        assert!(!root.path().join("a/x").exists());
        sync_dirs(vec![root.path().join("a/b"), root.path().to_path_buf()]).unwrap();
    }
}

//! `RelPath`: a validated relative path for everything inside a backup.
//!
//! Rules (format-spec/xbstream.md, "Paths"): UTF-8 is not required, but
//! the path must be non-empty, at most [`MAX_PATH_LEN`] bytes, `/`-separated,
//! relative (no leading `/`), without NUL or backslash, and every component
//! must be non-empty and neither `.` nor `..`. A `RelPath` can therefore be
//! joined under a root without escaping it lexically; the directory writer
//! additionally refuses to follow symlinks (see `extract::dir`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};

/// Longest path accepted or written. The stock readers reject `>= 512`.
pub const MAX_PATH_LEN: usize = 511;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty path.
    #[error("empty path")]
    Empty,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("path is {len} bytes, longer than the limit of {MAX_PATH_LEN}")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// Starts with `/`.
    #[error("absolute path {0:?} refused")]
    Absolute(String),
    /// Has a `..` component.
    #[error("path {0:?} has a '..' component")]
    ParentDir(String),
    /// Has an empty or `.` component (`a//b`, `./a`, `a/`).
    #[error("path {0:?} has an empty or '.' component")]
    BadComponent(String),
    /// Contains NUL, a backslash or is not UTF-8.
    #[error("path {0:?} contains a NUL, a backslash or invalid UTF-8")]
    BadByte(String),
}

impl Classify for PathError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Corrupt
    }
}

/// A validated relative path inside a backup (see the module docs).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// Validate `s`.
    ///
    /// # Errors
    /// [`PathError`] naming the rule that failed.
    pub fn new(s: &str) -> Result<Self, PathError> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong { len: s.len() });
        }
        if s.starts_with('/') {
            return Err(PathError::Absolute(s.to_owned()));
        }
        if s.bytes().any(|b| b == 0 || b == b'\\') {
            return Err(PathError::BadByte(s.to_owned()));
        }
        for c in s.split('/') {
            match c {
                ".." => return Err(PathError::ParentDir(s.to_owned())),
                "" | "." => return Err(PathError::BadComponent(s.to_owned())),
                _ => {}
            }
        }
        Ok(RelPath(s.to_owned()))
    }

    /// Validate raw bytes as read from a stream.
    ///
    /// # Errors
    /// [`PathError`]; non-UTF-8 is [`PathError::BadByte`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, PathError> {
        if b.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong { len: b.len() });
        }
        match std::str::from_utf8(b) {
            Ok(s) => Self::new(s),
            Err(_) => Err(PathError::BadByte(String::from_utf8_lossy(b).into_owned())),
        }
    }

    /// Build from a path relative to some root (e.g. a datadir walk).
    ///
    /// # Errors
    /// [`PathError`] if the path is not valid UTF-8 or breaks a rule.
    pub fn from_path(p: &Path) -> Result<Self, PathError> {
        match p.to_str() {
            Some(s) => Self::new(s),
            None => Err(PathError::BadByte(p.to_string_lossy().into_owned())),
        }
    }

    /// The path as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// This path with `suffix` appended (`t.ibd` + `.zst`).
    ///
    /// # Errors
    /// [`PathError`] if the result breaks a rule (too long, bad byte).
    pub fn with_suffix(&self, suffix: &str) -> Result<Self, PathError> {
        Self::new(&format!("{}{}", self.0, suffix))
    }

    /// This path without `suffix`, if it ends with it and something is left.
    #[must_use]
    pub fn strip_suffix(&self, suffix: &str) -> Option<Self> {
        let s = self.0.strip_suffix(suffix)?;
        Self::new(s).ok()
    }

    /// The last component.
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The parent, if the path has more than one component.
    #[must_use]
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rsplit_once('/').map(|(p, _)| RelPath(p.to_owned()))
    }

    /// Components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// `root/self`. Lexically inside `root` by construction.
    #[must_use]
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `p` made absolute against `base` (relative symlink targets, relative
/// server paths), with `.` and `..` resolved lexically: symlinks on the way
/// are kept, nothing is read from disk.
#[must_use]
pub fn lexical_absolute(base: &std::path::Path, p: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = std::path::PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "ibdata1",
            "db/t1.ibd",
            "a b/c d.txt",
            "a/.hidden",
            "a/..b",
            "x/y/z/w",
        ] {
            assert_eq!(RelPath::new(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn refuses_escapes_and_junk() {
        for p in [
            "", "/etc/x", "../x", "a/../b", "..", "a/..", "./a", "a/./b", "a//b", "a/", "a\\b",
            "a\0b",
        ] {
            assert!(RelPath::new(p).is_err(), "{p:?} accepted");
        }
        assert!(RelPath::new(&"x".repeat(512)).is_err());
        assert!(RelPath::new(&"x".repeat(511)).is_ok());
        assert!(RelPath::from_bytes(&[0xff, 0xfe]).is_err());
    }

    proptest! {
        #[test]
        fn valid_paths_never_escape(s in "[a-z./]{1,20}") {
            if let Ok(p) = RelPath::new(&s) {
                let root = Path::new("/root/dir");
                let joined = p.under(root);
                prop_assert!(joined.starts_with(root));
                prop_assert!(joined.components().all(|c| !matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)));
            }
        }
    }
}

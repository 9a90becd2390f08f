//! `hotbak_links`: where the files of a backup lived on the server when they
//! were reached through a symlink (a MyISAM/Aria `DATA DIRECTORY`/`INDEX
//! DIRECTORY` file, a database directory that is a symlink) or through an
//! InnoDB link file (`.isl`, for `DATA DIRECTORY` tablespaces).
//!
//! The backup stores every such file by content under its datadir-relative
//! name (`db/t.ibd`, `db/m.MYD`), as mariabackup does; this file lets
//! `hotbak restore` put them back where they were. mariabackup writes no such
//! file (its copy-back follows the `.isl` files only); a backup without it
//! restores the way mariabackup's does. See `format-spec/metadata.md`.
//!
//! Pure: JSON text in and out, no I/O.

use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};

/// The file's name in a backup.
pub const LINKS_NAME: &str = "hotbak_links";
/// Version written in the file.
pub const LINKS_VERSION: u32 = 1;
/// Largest file accepted by [`Links::parse`] (bytes).
pub const MAX_LINKS_LEN: usize = 16 << 20;

/// How the server reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A symlink to a file (MyISAM/Aria/... `DATA DIRECTORY`).
    File,
    /// A database directory that is a symlink.
    Dir,
    /// An InnoDB tablespace named by a `.isl` link file (or reported by the
    /// server outside the datadir).
    Isl,
}

/// One file or directory that lived outside the datadir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Path inside the backup (and the datadir), `/`-separated.
    pub rel: String,
    /// Absolute path of the file or directory on the server.
    pub target: String,
    /// How it was reached.
    pub kind: LinkKind,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// [`LINKS_VERSION`].
    pub version: u32,
    /// The datadir of the server the backup was taken from.
    pub datadir: String,
    /// Every link, sorted by `rel`.
    pub links: Vec<Link>,
}

/// Why a `hotbak_links` file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Larger than [`MAX_LINKS_LEN`].
    #[error("{LINKS_NAME}: {0} bytes, larger than the limit of {MAX_LINKS_LEN}")]
    TooLong(usize),
    /// Not the JSON this module writes.
    #[error("{LINKS_NAME}: {0}")]
    Malformed(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Corrupt
    }
}

impl Links {
    /// Render as JSON (one object, a trailing newline).
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// Parse and check: known version, absolute targets, relative names
    /// without `..` (a hostile file must not make restore write elsewhere
    /// than the targets it names, nor name the same `rel` twice).
    ///
    /// # Errors
    /// [`Error`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Links, Error> {
        if text.len() > MAX_LINKS_LEN {
            return Err(Error::TooLong(text.len()));
        }
        let l: Links = serde_json::from_str(text).map_err(|e| Error::Malformed(e.to_string()))?;
        if l.version != LINKS_VERSION {
            return Err(Error::Malformed(format!(
                "version {} (this hotbak reads {LINKS_VERSION})",
                l.version
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for k in &l.links {
            crate::format::path::RelPath::new(&k.rel)
                .map_err(|e| Error::Malformed(format!("rel {:?}: {e}", k.rel)))?;
            if !k.target.starts_with('/')
                || k.target.contains('\0')
                || k.target.split('/').any(|c| c == "..")
            {
                return Err(Error::Malformed(format!(
                    "target {:?} of {:?} is not an absolute path without `..`",
                    k.target, k.rel
                )));
            }
            if !seen.insert(k.rel.as_str()) {
                return Err(Error::Malformed(format!("{:?} listed twice", k.rel)));
            }
        }
        Ok(l)
    }

    /// The link of `rel`, if any.
    #[must_use]
    pub fn get(&self, rel: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.rel == rel)
    }
}

/// The tablespace path inside an InnoDB `.isl` link file: one line (InnoDB
/// writes no newline; a hand-made file may end with one). `None` when the
/// text is not one non-empty line.
#[must_use]
pub fn parse_isl(text: &str) -> Option<&str> {
    let t = text.trim_end_matches(['\n', '\r', ' ', '\0']);
    (!t.is_empty() && !t.contains(['\n', '\0'])).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Links {
        Links {
            version: LINKS_VERSION,
            datadir: "/var/lib/mysql".into(),
            links: vec![
                Link {
                    rel: "db/m.MYD".into(),
                    target: "/data2/myd/m.MYD".into(),
                    kind: LinkKind::File,
                },
                Link {
                    rel: "db/t.ibd".into(),
                    target: "/data2/inno/db/t.ibd".into(),
                    kind: LinkKind::Isl,
                },
                Link {
                    rel: "db2".into(),
                    target: "/data3/db2".into(),
                    kind: LinkKind::Dir,
                },
            ],
        }
    }

    #[test]
    fn isl_text() {
        assert_eq!(parse_isl("/d/db/t.ibd"), Some("/d/db/t.ibd"));
        assert_eq!(parse_isl("/d/db/t.ibd\n"), Some("/d/db/t.ibd"));
        assert_eq!(parse_isl(""), None);
        assert_eq!(parse_isl("/a\n/b"), None);
    }

    #[test]
    fn round_trip() {
        let l = sample();
        let back = Links::parse(&l.render()).expect("parses");
        assert_eq!(back, l);
        assert_eq!(
            back.get("db/t.ibd").map(|k| k.kind),
            Some(LinkKind::Isl),
            "lookup by rel"
        );
        assert!(back.get("db/x.ibd").is_none());
    }

    #[test]
    fn refuses_hostile_or_foreign_content() {
        let mut l = sample();
        l.links[0].rel = "../etc/passwd".into();
        assert!(Links::parse(&l.render()).is_err(), "rel with ..");
        let mut l = sample();
        l.links[0].target = "relative/m.MYD".into();
        assert!(Links::parse(&l.render()).is_err(), "relative target");
        let mut l = sample();
        l.links[0].target = "/a/../etc/m.MYD".into();
        assert!(Links::parse(&l.render()).is_err(), "target with ..");
        let mut l = sample();
        l.links[1].rel = "db/m.MYD".into();
        assert!(Links::parse(&l.render()).is_err(), "duplicate rel");
        let mut l = sample();
        l.version = 2;
        assert!(Links::parse(&l.render()).is_err(), "unknown version");
        assert!(Links::parse("not json").is_err());
        assert!(Links::parse(&" ".repeat(MAX_LINKS_LEN + 1)).is_err());
    }
}

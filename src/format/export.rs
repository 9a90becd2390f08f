//! `hotbak_export`: what `hotbak prepare --export` wrote, in the backup's
//! root (JSON, `format-spec/partial.md`): each table's definition as the
//! recovery server printed it (`SHOW CREATE TABLE`), its engine, its
//! file-name form, and the `.cfg` files written for it. `hotbak restore
//! --table` reads it to create a missing table and to compare definitions
//! before it discards anything. Pure: text in, text out.

use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};

/// The file name, in the backup's root.
pub const EXPORT_NAME: &str = "hotbak_export";

/// The format version written.
pub const VERSION: u32 = 1;

/// The largest file read (a definition is at most a few KB; a million tables).
pub const MAX_LEN: usize = 1 << 30;

/// A bad `hotbak_export`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not the JSON this module writes.
    #[error("{EXPORT_NAME}: {0}")]
    Malformed(String),
    /// A version this build does not read.
    #[error("{EXPORT_NAME}: version {0} is not supported (this hotbak reads version {VERSION})")]
    Version(u32),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Corrupt
    }
}

/// One table of the prepared backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Schema, as SQL names it.
    pub schema: String,
    /// Table, as SQL names it.
    pub name: String,
    /// `db/t`: the schema and table as file names, without extension.
    pub fs_base: String,
    /// `ENGINE`.
    pub engine: String,
    /// `SHOW CREATE TABLE`'s statement.
    pub create: String,
    /// The `.cfg` files written for it (backup-relative), one per partition.
    #[serde(default)]
    pub cfg: Vec<String>,
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// [`VERSION`].
    pub version: u32,
    /// The server version that wrote the definitions.
    pub server_version: String,
    /// The tables, sorted by schema and name.
    pub tables: Vec<Table>,
}

impl Export {
    /// Render (pretty JSON, one trailing newline).
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse.
    ///
    /// # Errors
    /// [`Error`] for malformed JSON or another version.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let e: Export = serde_json::from_str(text).map_err(|e| Error::Malformed(e.to_string()))?;
        if e.version != VERSION {
            return Err(Error::Version(e.version));
        }
        Ok(e)
    }

    /// The table `schema`.`name` (as SQL names it).
    #[must_use]
    pub fn find(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }
}

/// A `SHOW CREATE TABLE` statement made comparable: the
/// `AUTO_INCREMENT=N` table option (the counter, not the definition) is
/// taken out, and line ends are normalised.
#[must_use]
pub fn comparable_definition(create: &str) -> String {
    let mut out = String::with_capacity(create.len());
    for line in create.lines() {
        let mut l = line.trim_end().to_owned();
        if l.starts_with(") ") {
            l = l
                .split(' ')
                .filter(|w| !w.starts_with("AUTO_INCREMENT="))
                .collect::<Vec<_>>()
                .join(" ");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The lines in which two definitions differ (for the refusal message).
#[must_use]
pub fn definition_diff(backup: &str, server: &str) -> Vec<String> {
    let (a, b) = (comparable_definition(backup), comparable_definition(server));
    let al: Vec<&str> = a.lines().collect();
    let bl: Vec<&str> = b.lines().collect();
    let mut out = Vec::new();
    for l in &al {
        if !bl.contains(l) {
            out.push(format!("backup: {}", l.trim()));
        }
    }
    for l in &bl {
        if !al.contains(l) {
            out.push(format!("server: {}", l.trim()));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Export {
        Export {
            version: VERSION,
            server_version: "10.11.18-MariaDB".into(),
            tables: vec![Table {
                schema: "a b".into(),
                name: "t".into(),
                fs_base: "a@0020b/t".into(),
                engine: "InnoDB".into(),
                create: "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=latin1".into(),
                cfg: vec!["a@0020b/t.cfg".into()],
            }],
        }
    }

    #[test]
    fn round_trip_and_lookup() {
        let e = sample();
        let back = Export::parse(&e.render()).unwrap();
        assert_eq!(back, e);
        assert!(back.find("a b", "t").is_some());
        assert!(back.find("a", "t").is_none());
    }

    #[test]
    fn bad_files_are_corrupt() {
        for bad in ["", "{", "[]", "{\"version\":1}"] {
            let err = Export::parse(bad).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Corrupt, "{bad}");
        }
        let mut e = sample();
        e.version = 9;
        let err = Export::parse(&e.render()).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[test]
    fn the_counter_is_not_the_definition() {
        let a = &sample().tables[0].create;
        let b = a.replace("AUTO_INCREMENT=42 ", "AUTO_INCREMENT=7 ");
        assert_eq!(comparable_definition(a), comparable_definition(&b));
        assert!(definition_diff(a, &b).is_empty());
        // The column attribute AUTO_INCREMENT is part of it.
        let c = a.replace(" NOT NULL AUTO_INCREMENT,", " NOT NULL,");
        let d = definition_diff(a, &c);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].starts_with("backup: `id` int(11) NOT NULL AUTO_INCREMENT"),
            "{d:?}"
        );
        assert!(d[1].starts_with("server: `id` int(11) NOT NULL,"), "{d:?}");
    }
}

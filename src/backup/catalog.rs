//! Completeness against the server's own catalog, not a directory listing.
//!
//! Before the final lock is released, the backup asks the server what it
//! serves: every InnoDB tablespace it has (`INNODB_SYS_TABLESPACES`, with the
//! file's path) and every table of `information_schema.TABLES` (with its
//! engine and partitions). [`expected_files`] turns that into the files a
//! complete backup must hold; [`check`] compares them with the inventory. A
//! table whose data is not in the backup fails the backup, naming the table
//! and the path: the next way of placing a file somewhere unexpected then
//! fails loudly instead of silently.
//!
//! The server's file names come from the server too: `CONVERT(name USING
//! filename)` is the server's own encoding of a table name into a file name
//! (`a b` → `a@0020b`), so no re-implementation of it can drift.
//!
//! [`expected_files`] and [`check`] are pure; [`read`] runs the queries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::mysql::Session;

/// One InnoDB tablespace the server has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tablespace {
    /// Space id.
    pub space: u64,
    /// InnoDB's name (`db/t`, `db/t#P#p0`, `innodb_undo001`, ...).
    pub name: String,
    /// The file's path as the server has it (`./db/t.ibd` or absolute).
    pub filename: String,
}

/// One table (or view, or sequence) of `information_schema.TABLES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Schema, as SQL names it.
    pub schema: String,
    /// Table, as SQL names it.
    pub name: String,
    /// Schema, as a file name.
    pub fs_schema: String,
    /// Table, as a file name.
    pub fs_name: String,
    /// `ENGINE` (`None` for views, or a table the server could not open).
    pub engine: Option<String>,
    /// Partition file-name suffixes (`p0`, `p0#SP#s0`), empty when not partitioned.
    pub partitions: Vec<String>,
}

/// What the server serves.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// InnoDB tablespaces.
    pub tablespaces: Vec<Tablespace>,
    /// Tables, views and sequences outside `information_schema` and
    /// `performance_schema`.
    pub tables: Vec<Table>,
}

/// A file the backup must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Path inside the backup.
    pub rel: String,
    /// The server's path for it, when the catalog names one.
    pub server_path: Option<String>,
    /// Whose it is, for the message (``table `db`.`t` (MyISAM) data``).
    pub owner: String,
}

/// The file extensions each engine keeps per table (or partition), besides
/// the `.frm` every table has. InnoDB's files are checked through its
/// tablespaces; engines not listed keep no local data files (MEMORY,
/// BLACKHOLE, SEQUENCE, FEDERATED, CONNECT, S3, SPIDER, ...).
fn engine_exts(engine: &str) -> &'static [&'static str] {
    match engine.to_ascii_uppercase().as_str() {
        "MYISAM" => &["MYD", "MYI"],
        "ARIA" => &["MAD", "MAI"],
        "CSV" => &["CSV", "CSM"],
        "ARCHIVE" => &["ARZ"],
        "MRG_MYISAM" => &["MRG"],
        _ => &[],
    }
}

/// The datadir-relative name of a tablespace file the server names: `./x`
/// is relative to the datadir; an absolute path under the datadir is made
/// relative; one elsewhere (a `DATA DIRECTORY` table) keeps its last two
/// components (`db/t.ibd`), and an undo tablespace its file name, as the
/// backup stores them.
#[must_use]
pub fn tablespace_rel(filename: &str, datadir: &Path) -> String {
    let base = filename.rsplit('/').next().unwrap_or(filename);
    if base.len() == 7 && base.starts_with("undo") && base[4..].bytes().all(|b| b.is_ascii_digit())
    {
        return base.to_owned();
    }
    let dd = datadir.to_string_lossy();
    let dd = dd.trim_end_matches('/');
    if let Some(r) = filename.strip_prefix(dd).and_then(|r| r.strip_prefix('/')) {
        return r.to_owned();
    }
    crate::innodb::relocate::backup_name(filename).unwrap_or_else(|| base.to_owned())
}

/// Whether a tablespace lives outside the datadir (absolute, not under it).
#[must_use]
pub fn is_remote(filename: &str, datadir: &Path) -> bool {
    let dd = datadir.to_string_lossy();
    let dd = dd.trim_end_matches('/');
    filename.starts_with('/')
        && !filename
            .strip_prefix(dd)
            .is_some_and(|r| r.starts_with('/'))
}

/// Whether `rel` names a DDL statement's intermediate file (`#sql-alter-…`,
/// `#sql-backup-…`, `#sql-ib…`): the server's, never a table it serves.
#[must_use]
pub fn is_intermediate(rel: &str) -> bool {
    rel.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("#sql"))
}

fn quoted(schema: &str, name: &str) -> String {
    format!("`{schema}`.`{name}`")
}

/// The files a complete backup of this catalog holds.
#[must_use]
pub fn expected_files(cat: &Catalog, datadir: &Path) -> Vec<Expected> {
    let mut out = Vec::new();
    for ts in &cat.tablespaces {
        // The system tablespace and the temporary one are not named by a
        // file of their own here (the system files are listed from
        // innodb_data_file_path; the temporary tablespace is not backed up).
        if ts.space == 0 || ts.name == "innodb_temporary" || ts.filename.is_empty() {
            continue;
        }
        let rel = tablespace_rel(&ts.filename, datadir);
        // A DDL statement's intermediate tablespace is the server's, never
        // a table it serves, and it may vanish at any moment: an ALTER in
        // its copy phase runs on under BLOCK_DDL and drops it when it gives
        // up waiting for that lock (mariabackup leaves these out too).
        if is_intermediate(&rel) {
            continue;
        }
        let owner = match ts.name.split_once('/') {
            Some((db, t)) => format!("InnoDB table {} (space {})", quoted(db, t), ts.space),
            None => format!("InnoDB tablespace {} (space {})", ts.name, ts.space),
        };
        out.push(Expected {
            rel,
            server_path: Some(ts.filename.clone()),
            owner,
        });
    }
    for t in &cat.tables {
        let who = quoted(&t.schema, &t.name);
        let base = format!("{}/{}", t.fs_schema, t.fs_name);
        out.push(Expected {
            rel: format!("{base}.frm"),
            server_path: None,
            owner: format!("table {who} definition"),
        });
        let Some(engine) = t.engine.as_deref() else {
            continue;
        };
        let exts = engine_exts(engine);
        if t.partitions.is_empty() {
            for ext in exts {
                out.push(Expected {
                    rel: format!("{base}.{ext}"),
                    server_path: None,
                    owner: format!("table {who} ({engine})"),
                });
            }
        } else {
            out.push(Expected {
                rel: format!("{base}.par"),
                server_path: None,
                owner: format!("partitioned table {who}"),
            });
            for p in &t.partitions {
                for ext in exts {
                    out.push(Expected {
                        rel: format!("{base}#P#{p}.{ext}"),
                        server_path: None,
                        owner: format!("table {who} partition {p} ({engine})"),
                    });
                }
            }
        }
    }
    out
}

/// One file a table needs that the backup does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The expectation.
    pub expected: Expected,
    /// Why (the read error, or "not found").
    pub reason: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is not in the backup",
            self.expected.owner, self.expected.rel
        )?;
        if let Some(p) = &self.expected.server_path {
            write!(f, " (the server's file is {p})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Compare: every expected file is among `present`; an expected file that
/// could not be read carries the read error from `unreadable`
/// (rel → (path, error)).
#[must_use]
pub fn check(
    expected: &[Expected],
    present: &BTreeSet<&str>,
    unreadable: &BTreeMap<String, (String, String)>,
) -> Vec<Missing> {
    let mut seen = BTreeSet::new();
    expected
        .iter()
        .filter(|e| !present.contains(e.rel.as_str()) && seen.insert(e.rel.clone()))
        .map(|e| Missing {
            expected: e.clone(),
            reason: match unreadable.get(&e.rel) {
                Some((path, err)) => format!("cannot read {path}: {err}"),
                None => "no such file in the datadir".into(),
            },
        })
        .collect()
}

const SKIP_SCHEMAS: &str = "('information_schema','performance_schema')";

/// Read the catalog from the server.
///
/// # Errors
/// Query errors (the backup user needs `PROCESS` for the InnoDB view; the
/// tables it can see are those it has any privilege on, which the usual
/// backup grants on `*.*` cover).
pub async fn read(s: &mut Session) -> Result<Catalog, crate::mysql::Error> {
    let mut cat = Catalog::default();
    for r in s
        .query("SELECT SPACE, NAME, FILENAME FROM information_schema.INNODB_SYS_TABLESPACES")
        .await?
    {
        let (Some(space), Some(name)) = (r.at(0).and_then(|v| v.parse().ok()), r.at(1)) else {
            continue;
        };
        cat.tablespaces.push(Tablespace {
            space,
            name: name.to_owned(),
            filename: r.at(2).unwrap_or("").to_owned(),
        });
    }
    let mut parts: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in s
        .query(&format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, \
             CAST(CONVERT(PARTITION_NAME USING filename) AS BINARY), \
             CAST(CONVERT(SUBPARTITION_NAME USING filename) AS BINARY) \
             FROM information_schema.PARTITIONS \
             WHERE PARTITION_NAME IS NOT NULL AND TABLE_SCHEMA NOT IN {SKIP_SCHEMAS}"
        ))
        .await?
    {
        let (Some(db), Some(t), Some(p)) = (r.at(0), r.at(1), r.at(2)) else {
            continue;
        };
        let suffix = match r.at(3) {
            Some(sp) => format!("{p}#SP#{sp}"),
            None => p.to_owned(),
        };
        parts
            .entry((db.to_owned(), t.to_owned()))
            .or_default()
            .push(suffix);
    }
    for r in s
        .query(&format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, \
             CAST(CONVERT(TABLE_SCHEMA USING filename) AS BINARY), \
             CAST(CONVERT(TABLE_NAME USING filename) AS BINARY), TABLE_TYPE \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN {SKIP_SCHEMAS} \
             AND TABLE_TYPE <> 'TEMPORARY'"
        ))
        .await?
    {
        let (Some(db), Some(t), Some(fdb), Some(ft)) = (r.at(0), r.at(1), r.at(3), r.at(4)) else {
            continue;
        };
        cat.tables.push(Table {
            schema: db.to_owned(),
            name: t.to_owned(),
            fs_schema: fdb.to_owned(),
            fs_name: ft.to_owned(),
            engine: r.at(2).map(str::to_owned),
            partitions: parts
                .remove(&(db.to_owned(), t.to_owned()))
                .unwrap_or_default(),
        });
    }
    Ok(cat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dd() -> &'static Path {
        Path::new("/var/lib/mysql")
    }

    fn table(db: &str, t: &str, engine: Option<&str>, parts: &[&str]) -> Table {
        Table {
            schema: db.into(),
            name: t.into(),
            fs_schema: db.into(),
            fs_name: t.into(),
            engine: engine.map(str::to_owned),
            partitions: parts.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn tablespace_names_map_to_backup_paths() {
        assert_eq!(tablespace_rel("./db/t.ibd", dd()), "db/t.ibd");
        assert_eq!(tablespace_rel("/var/lib/mysql/db/t.ibd", dd()), "db/t.ibd");
        assert_eq!(tablespace_rel("/data2/inno/db/t.ibd", dd()), "db/t.ibd");
        assert_eq!(
            tablespace_rel("/data2/inno/db/p#P#p0.ibd", dd()),
            "db/p#P#p0.ibd"
        );
        assert_eq!(tablespace_rel("./undo002", dd()), "undo002");
        assert_eq!(tablespace_rel("/undo/dir/undo001", dd()), "undo001");
        assert!(is_remote("/data2/inno/db/t.ibd", dd()));
        assert!(!is_remote("/var/lib/mysql/db/t.ibd", dd()));
        assert!(!is_remote("./db/t.ibd", dd()));
        // A sibling directory whose name starts like the datadir is remote.
        assert!(is_remote("/var/lib/mysql2/db/t.ibd", dd()));
        assert_eq!(tablespace_rel("/var/lib/mysql2/db/t.ibd", dd()), "db/t.ibd");
    }

    #[test]
    fn expectations_per_engine_and_partition() {
        let cat = Catalog {
            tablespaces: vec![
                Tablespace {
                    space: 0,
                    name: "innodb_system".into(),
                    filename: "./ibdata1".into(),
                },
                Tablespace {
                    space: 5,
                    name: "db/t".into(),
                    filename: "/data2/inno/db/t.ibd".into(),
                },
                Tablespace {
                    space: 4_294_967_294,
                    name: "innodb_temporary".into(),
                    filename: "./ibtmp1".into(),
                },
            ],
            tables: vec![
                table("db", "m", Some("MyISAM"), &[]),
                table("db", "a", Some("Aria"), &[]),
                table("db", "p", Some("MyISAM"), &["p0", "p1#SP#s0"]),
                table("db", "v", None, &[]),
                table("db", "mem", Some("MEMORY"), &[]),
            ],
        };
        let rels: Vec<String> = expected_files(&cat, dd())
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(
            rels,
            [
                "db/t.ibd",
                "db/m.frm",
                "db/m.MYD",
                "db/m.MYI",
                "db/a.frm",
                "db/a.MAD",
                "db/a.MAI",
                "db/p.frm",
                "db/p.par",
                "db/p#P#p0.MYD",
                "db/p#P#p0.MYI",
                "db/p#P#p1#SP#s0.MYD",
                "db/p#P#p1#SP#s0.MYI",
                "db/v.frm",
                "db/mem.frm",
            ]
        );
    }

    #[test]
    fn intermediate_files_are_the_servers_sql_names() {
        assert!(is_intermediate("db/#sql-alter-1710-4.ibd"));
        assert!(is_intermediate("db/#sql-backup-1f-2.ibd"));
        assert!(is_intermediate("#sql-ib123.ibd"));
        assert!(!is_intermediate("db/t.ibd"));
        assert!(!is_intermediate("#sqldb/t.ibd"));
        assert!(!is_intermediate("db/t#sql.ibd"));
    }

    #[test]
    fn intermediate_tablespaces_are_not_expected() {
        // An ALTER in its copy phase runs on under BLOCK_DDL and may drop
        // its `#sql-alter` tablespace between the listing and the catalog
        // query (CI, stop 25): not a table the server serves.
        let cat = Catalog {
            tablespaces: vec![
                Tablespace {
                    space: 76,
                    name: "db/#sql-alter-45b4-9".into(),
                    filename: "./db/#sql-alter-45b4-9.ibd".into(),
                },
                Tablespace {
                    space: 5,
                    name: "db/t".into(),
                    filename: "./db/t.ibd".into(),
                },
            ],
            tables: vec![],
        };
        let exp = expected_files(&cat, dd());
        let rels: Vec<&str> = exp.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["db/t.ibd"]);
        assert!(check(&exp, &["db/t.ibd"].into(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn check_names_table_path_and_reason() {
        let cat = Catalog {
            tablespaces: vec![Tablespace {
                space: 5,
                name: "db/t".into(),
                filename: "/data2/inno/db/t.ibd".into(),
            }],
            tables: vec![table("db", "m", Some("MyISAM"), &[])],
        };
        let exp = expected_files(&cat, dd());
        let all: BTreeSet<&str> = ["db/t.ibd", "db/m.frm", "db/m.MYD", "db/m.MYI"].into();
        assert!(check(&exp, &all, &BTreeMap::new()).is_empty());

        let some: BTreeSet<&str> = ["db/m.frm", "db/m.MYI"].into();
        let unreadable = BTreeMap::from([(
            "db/m.MYD".to_owned(),
            (
                "/data2/myd/m.MYD".to_owned(),
                "Permission denied".to_owned(),
            ),
        )]);
        let miss = check(&exp, &some, &unreadable);
        assert_eq!(miss.len(), 2);
        let t = miss[0].to_string();
        assert!(
            t.contains("`db`.`t`") && t.contains("db/t.ibd") && t.contains("/data2/inno/db/t.ibd"),
            "{t}"
        );
        assert!(t.contains("no such file"), "{t}");
        let m = miss[1].to_string();
        assert!(
            m.contains("`db`.`m` (MyISAM)")
                && m.contains("db/m.MYD")
                && m.contains("cannot read /data2/myd/m.MYD: Permission denied"),
            "{m}"
        );
    }
}

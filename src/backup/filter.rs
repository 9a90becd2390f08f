//! Partial backups: which tables a backup keeps, with mariabackup 10.11's
//! options and matching rules (`format-spec/partial.md` has them in full).
//! Pure: the option texts (and the contents of the `-file` options) in, a
//! decision per file out.
//!
//! - `--databases='db1 db2.t1'` (space or tab separated) and
//!   `--databases-file` (one per line): whole databases, or `db.table`.
//! - `--databases-exclude` (space or tab separated): the same, left out.
//! - `--tables=RE1,RE2` and `--tables-exclude=RE1,RE2`: POSIX extended
//!   regular expressions, searched (not anchored) in `db.table`.
//! - `--tables-file`: one fully qualified `db.table` per line.
//!
//! Names are the server's file names (`my@002ddb.t`), as in the datadir.
//! Whatever the filter says, hotbak keeps the files outside any database
//! directory (system and undo tablespaces, the redo log, the Aria log) and
//! the `mysql` schema, so that every partial backup prepares and starts.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Classify, ErrorClass};

/// A bad filter option.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name mariabackup refuses (too long, or with `/`, `\` or `~`).
    #[error("{option}: name `{name}` is not valid: {reason}")]
    BadName {
        /// The option (`--databases`, `--tables-file FILE line N`, ...).
        option: String,
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// `--tables-file` names a table without its database.
    #[error("{option}: `{name}` is not a fully qualified name (expected db.table)")]
    NotQualified {
        /// Where.
        option: String,
        /// The name.
        name: String,
    },
    /// A regular expression that does not compile.
    #[error("{option}: regular expression `{regex}`: {reason}")]
    BadRegex {
        /// The option.
        option: &'static str,
        /// The expression.
        regex: String,
        /// The compiler's message.
        reason: String,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

/// The longest database or table name (`NAME_LEN`).
pub const NAME_LEN: usize = 64 * 3;

/// The six options as given (the `-file` options already read: the file's
/// name and its text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// `--databases`.
    pub databases: Option<String>,
    /// `--databases-file`: (path, contents).
    pub databases_file: Option<(String, String)>,
    /// `--databases-exclude`.
    pub databases_exclude: Option<String>,
    /// `--tables`.
    pub tables: Option<String>,
    /// `--tables-file`: (path, contents).
    pub tables_file: Option<(String, String)>,
    /// `--tables-exclude`.
    pub tables_exclude: Option<String>,
}

impl FilterSpec {
    /// Whether any filter option is given (mariabackup's `partial = Y`).
    #[must_use]
    pub fn is_partial(&self) -> bool {
        self.databases.is_some()
            || self.databases_file.is_some()
            || self.databases_exclude.is_some()
            || self.tables.is_some()
            || self.tables_file.is_some()
            || self.tables_exclude.is_some()
    }

    /// One line recording the filter (`xtrabackup_info`, the manifest).
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut opt = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                parts.push(format!("--{k}='{v}'"));
            }
        };
        opt("databases", &self.databases);
        opt("databases-exclude", &self.databases_exclude);
        opt("tables", &self.tables);
        opt("tables-exclude", &self.tables_exclude);
        for (k, f) in [
            ("databases-file", &self.databases_file),
            ("tables-file", &self.tables_file),
        ] {
            if let Some((path, text)) = f {
                let names: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
                parts.push(format!("--{k}={path} ({})", names.join(" ")));
            }
        }
        parts.join(" ")
    }
}

/// A database entry of an include or exclude list: `has_tables` when it
/// was first named as `db.table` (then only the listed tables count).
type DbList = BTreeMap<String, bool>;

/// mariabackup's verdict on a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DbVerdict {
    Skip,
    SkipSomeTables,
    DontSkip,
    DontSkipUnlessExcluded,
}

/// The compiled filter.
#[derive(Clone, Debug)]
pub struct Filter {
    spec: FilterSpec,
    db_include: Option<DbList>,
    db_exclude: Option<DbList>,
    tables_include: Option<BTreeSet<String>>,
    tables_exclude: Option<BTreeSet<String>>,
    regex_include: Vec<regex::Regex>,
    regex_exclude: Vec<regex::Regex>,
}

/// The prefix of the server's temporary tables, never backed up by a
/// partial backup.
const TMP_PREFIX: &str = "#sql";

/// The schema every backup keeps.
pub const ALWAYS_KEPT_DB: &str = "mysql";

fn validate(option: &str, name: &str) -> Result<(), Error> {
    let bad = |reason| Error::BadName {
        option: option.to_owned(),
        name: name.to_owned(),
        reason,
    };
    if name.len() > NAME_LEN {
        return Err(bad("too long"));
    }
    if name.contains(['/', '\\', '~']) {
        return Err(bad("contains /, \\ or ~"));
    }
    Ok(())
}

/// mariabackup's `xb_register_filter_entry`: `db.table` registers the
/// table and (if it is not there yet) its database with `has_tables`;
/// `db` registers the database. The first registration of a database wins.
fn register(
    option: &str,
    name: &str,
    dbs: &mut Option<DbList>,
    tables: &mut Option<BTreeSet<String>>,
) -> Result<(), Error> {
    if let Some((db, t)) = name.split_once('.') {
        validate(option, db)?;
        validate(option, t)?;
        dbs.get_or_insert_with(BTreeMap::new)
            .entry(db.to_owned())
            .or_insert(true);
        tables
            .get_or_insert_with(BTreeSet::new)
            .insert(name.to_owned());
    } else {
        validate(option, name)?;
        dbs.get_or_insert_with(BTreeMap::new)
            .entry(name.to_owned())
            .or_insert(false);
    }
    Ok(())
}

fn compile(option: &'static str, list: &str) -> Result<Vec<regex::Regex>, Error> {
    list.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            regex::Regex::new(r).map_err(|e| Error::BadRegex {
                option,
                regex: r.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The lines of a list file (the last one may lack its newline; empty
/// lines are skipped).
fn file_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.is_empty())
}

impl Filter {
    /// Compile the options.
    ///
    /// # Errors
    /// [`Error`] naming the option (and line) of a bad name or expression.
    pub fn new(spec: FilterSpec) -> Result<Self, Error> {
        let mut f = Filter {
            spec: FilterSpec::default(),
            db_include: None,
            db_exclude: None,
            tables_include: None,
            tables_exclude: None,
            regex_include: Vec::new(),
            regex_exclude: Vec::new(),
        };
        let ws = |c: char| c == ' ' || c == '\t';
        if let Some(list) = &spec.databases {
            for n in list.split(ws).filter(|n| !n.is_empty()) {
                register("--databases", n, &mut f.db_include, &mut f.tables_include)?;
            }
        }
        if let Some((path, text)) = &spec.databases_file {
            for (line, n) in file_lines(text) {
                let opt = format!("--databases-file {path} line {line}");
                register(&opt, n, &mut f.db_include, &mut f.tables_include)?;
            }
        }
        if let Some(list) = &spec.databases_exclude {
            for n in list.split(ws).filter(|n| !n.is_empty()) {
                register(
                    "--databases-exclude",
                    n,
                    &mut f.db_exclude,
                    &mut f.tables_exclude,
                )?;
            }
        }
        if let Some(list) = &spec.tables {
            f.regex_include = compile("--tables", list)?;
        }
        if let Some((path, text)) = &spec.tables_file {
            for (line, n) in file_lines(text) {
                let opt = format!("--tables-file {path} line {line}");
                if !n.contains('.') {
                    return Err(Error::NotQualified {
                        option: opt,
                        name: n.to_owned(),
                    });
                }
                register(&opt, n, &mut f.db_include, &mut f.tables_include)?;
            }
        }
        if let Some(list) = &spec.tables_exclude {
            f.regex_exclude = compile("--tables-exclude", list)?;
        }
        f.spec = spec;
        Ok(f)
    }

    /// The options it was built from.
    #[must_use]
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// Whether any filter is set (else nothing is skipped).
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.db_include.is_some()
            || self.db_exclude.is_some()
            || self.tables_include.is_some()
            || self.tables_exclude.is_some()
            || !self.regex_include.is_empty()
            || !self.regex_exclude.is_empty()
    }

    /// Warnings about options that do what mariabackup does but maybe not
    /// what was meant.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.db_include.is_none() {
            for (db, has_tables) in self.db_exclude.iter().flatten() {
                if *has_tables {
                    out.push(format!(
                        "--databases-exclude names a table of `{db}` without --databases: as in mariabackup 10.11 the whole database `{db}` is left out (use --tables-exclude='^{db}[.]TABLE$' to leave out one table)"
                    ));
                }
            }
        }
        out
    }

    fn check_db(&self, db: &str) -> DbVerdict {
        if let Some(has_tables) = self.db_exclude.as_ref().and_then(|m| m.get(db)) {
            if !has_tables || self.db_include.is_none() {
                return DbVerdict::Skip;
            }
        }
        match self.db_include.as_ref().map(|m| m.get(db)) {
            Some(None) => DbVerdict::Skip,
            Some(Some(true)) => DbVerdict::SkipSomeTables,
            Some(Some(false)) => DbVerdict::DontSkipUnlessExcluded,
            None => DbVerdict::DontSkip,
        }
    }

    fn matches(name: &str, regexes: &[regex::Regex], names: Option<&BTreeSet<String>>) -> bool {
        regexes.iter().any(|r| r.is_match(name)) || names.is_some_and(|n| n.contains(name))
    }

    /// Whether a database directory is left out entirely.
    #[must_use]
    pub fn skips_database(&self, db: &str) -> bool {
        db != ALWAYS_KEPT_DB && self.is_active() && self.check_db(db) == DbVerdict::Skip
    }

    /// Whether the file `rel` (backup-relative: `db/t.ibd`,
    /// `db/t#P#p0.ibd`, `db/t.frm`, `db/db.opt`, `ibdata1`, or a
    /// tablespace name `db/t`) is left out: mariabackup's
    /// `check_if_skip_table` on its last two components, except that the
    /// `mysql` schema and files outside a database directory are kept.
    #[must_use]
    pub fn skips(&self, rel: &str) -> bool {
        if !self.is_active() {
            return false;
        }
        let mut parts = rel.rsplitn(3, '/');
        let Some(table) = parts.next() else {
            return false;
        };
        let Some(db) = parts.next() else {
            return false;
        };
        if db == ALWAYS_KEPT_DB {
            return false;
        }
        if table.starts_with(TMP_PREFIX) {
            return true;
        }
        let verdict = self.check_db(db);
        if verdict == DbVerdict::Skip {
            return true;
        }
        // A dot cannot be part of a file-name-encoded table name: what
        // follows it is the extension.
        let table = table.split('.').next().unwrap_or(table);
        let full = format!("{db}.{table}");
        let (inc_names, exc_names) = (self.tables_include.as_ref(), self.tables_exclude.as_ref());
        let try_name = |n: &str| -> Option<bool> {
            if Self::matches(n, &self.regex_exclude, exc_names) {
                return Some(true);
            }
            if Self::matches(n, &self.regex_include, inc_names) {
                return Some(false);
            }
            None
        };
        // A partition first as itself (`db.t#P#p5`), then as its table.
        if let Some(v) = try_name(&full) {
            return v;
        }
        if let Some(i) = full.find("#P#") {
            if let Some(v) = try_name(&full[..i]) {
                return v;
            }
        }
        if verdict == DbVerdict::DontSkipUnlessExcluded {
            return false;
        }
        verdict == DbVerdict::SkipSomeTables
            || !self.regex_include.is_empty()
            || self.tables_include.is_some()
    }
}

/// What [`Filter::retain`] left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Excluded {
    /// Files left out.
    pub files: u64,
    /// Their size when listed.
    pub bytes: u64,
}

impl Filter {
    /// Take the excluded files out of an inventory before anything is read.
    pub fn retain(&self, inv: &mut super::datafiles::Inventory) -> Excluded {
        let mut ex = Excluded::default();
        for list in [&mut inv.innodb, &mut inv.nontx_ddl, &mut inv.nontx_commit] {
            list.retain(|s| {
                let skip = self.skips(s.rel.as_str());
                if skip {
                    ex.files += 1;
                    ex.bytes += s.size;
                }
                !skip
            });
        }
        inv.links.retain(|l| !self.skips(&l.rel));
        inv.unreadable.retain(|u| !self.skips(&u.rel));
        ex
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn f(spec: FilterSpec) -> Filter {
        Filter::new(spec).unwrap()
    }

    fn dbs(s: &str) -> Filter {
        f(FilterSpec {
            databases: Some(s.into()),
            ..FilterSpec::default()
        })
    }

    #[test]
    fn no_filter_keeps_everything() {
        let x = f(FilterSpec::default());
        assert!(!x.is_active());
        for rel in ["db/t.ibd", "ibdata1", "db/#sql-1.ibd", "db/db.opt"] {
            assert!(!x.skips(rel), "{rel}");
        }
    }

    #[test]
    fn databases_keeps_listed_databases_and_tables() {
        let x = dbs("keep1 keep2.t1");
        assert!(!x.skips("keep1/a.ibd"));
        assert!(!x.skips("keep1/a.frm"));
        assert!(!x.skips("keep1/db.opt"));
        assert!(!x.skips("keep2/t1.ibd"));
        assert!(!x.skips("keep2/t1.frm"));
        assert!(!x.skips("keep2/t1#P#p0.ibd"));
        assert!(x.skips("keep2/t2.ibd"));
        assert!(x.skips("keep2/t10.ibd"), "names match exactly");
        assert!(x.skips("keep2/db.opt"));
        assert!(x.skips("other/t1.ibd"));
        assert!(x.skips_database("other"));
        assert!(!x.skips_database("keep2"));
        // Always kept.
        assert!(!x.skips("mysql/user.MAD"));
        assert!(!x.skips("mysql/innodb_table_stats.ibd"));
        assert!(!x.skips_database("mysql"));
        assert!(!x.skips("ibdata1"));
        assert!(!x.skips("undo001"));
        assert!(!x.skips("aria_log.00000001"));
        // Temporary tables of the server.
        assert!(x.skips("keep1/#sql-alter-1.ibd"));
    }

    #[test]
    fn tables_regex_is_searched_not_anchored() {
        let x = f(FilterSpec {
            tables: Some("^sales[.]orders$,t2".into()),
            ..FilterSpec::default()
        });
        assert!(!x.skips("sales/orders.ibd"));
        assert!(x.skips("sales/orders2.ibd"));
        assert!(!x.skips("any/xt2y.ibd"), "unanchored");
        assert!(x.skips("sales/customers.frm"));
        // Partitions: first as themselves, then as the table.
        assert!(!x.skips("sales/orders#P#p1.ibd"));
        let p = f(FilterSpec {
            tables: Some("^d[.]t#P#p5$".into()),
            ..FilterSpec::default()
        });
        assert!(!p.skips("d/t#P#p5.ibd"));
        assert!(p.skips("d/t#P#p4.ibd"));
    }

    #[test]
    fn tables_exclude_leaves_out_only_matches() {
        let x = f(FilterSpec {
            tables_exclude: Some("^db[.]big$".into()),
            ..FilterSpec::default()
        });
        assert!(x.skips("db/big.ibd"));
        assert!(x.skips("db/big.frm"));
        assert!(x.skips("db/big#P#p0.ibd"));
        assert!(!x.skips("db/big2.ibd"));
        assert!(!x.skips("db/small.ibd"));
        assert!(!x.skips("db/db.opt"));
        assert!(!x.skips_database("db"));
    }

    #[test]
    fn exclude_wins_over_include() {
        let x = f(FilterSpec {
            databases: Some("db".into()),
            tables_exclude: Some("^db[.]t$".into()),
            ..FilterSpec::default()
        });
        assert!(x.skips("db/t.ibd"));
        assert!(!x.skips("db/u.ibd"));
        let y = f(FilterSpec {
            databases: Some("db.t db.u".into()),
            databases_exclude: Some("db.u".into()),
            ..FilterSpec::default()
        });
        assert!(!y.skips("db/t.ibd"));
        assert!(y.skips("db/u.ibd"));
        assert!(y.skips("db/v.ibd"));
    }

    #[test]
    fn databases_exclude_of_a_table_alone_skips_its_database_as_mariabackup() {
        let x = f(FilterSpec {
            databases_exclude: Some("db.t".into()),
            ..FilterSpec::default()
        });
        assert!(x.skips("db/u.ibd"));
        assert!(!x.skips("other/u.ibd"));
        assert_eq!(x.warnings().len(), 1);
        let y = f(FilterSpec {
            databases_exclude: Some("db".into()),
            ..FilterSpec::default()
        });
        assert!(y.skips("db/u.ibd") && y.skips_database("db"));
        assert!(!y.skips("db2/u.ibd"));
        assert!(y.warnings().is_empty());
    }

    #[test]
    fn files_and_their_errors() {
        let x = f(FilterSpec {
            tables_file: Some(("list".into(), "a.t1\nb.t2\r\n\nc.t3".into())),
            ..FilterSpec::default()
        });
        assert!(!x.skips("a/t1.ibd") && !x.skips("b/t2.ibd") && !x.skips("c/t3.ibd"));
        assert!(x.skips("a/t2.ibd") && x.skips("d/t1.ibd"));
        let e = Filter::new(FilterSpec {
            tables_file: Some(("list".into(), "a.t1\nnodot\n".into())),
            ..FilterSpec::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("list line 2"), "{e}");
        let d = f(FilterSpec {
            databases_file: Some(("dbl".into(), "a\nb.t\n".into())),
            ..FilterSpec::default()
        });
        assert!(!d.skips("a/x.ibd") && !d.skips("b/t.ibd") && d.skips("b/u.ibd"));
        for bad in ["a/b", "x~", &"n".repeat(NAME_LEN + 1)] {
            let e = Filter::new(FilterSpec {
                databases: Some(bad.to_owned()),
                ..FilterSpec::default()
            })
            .unwrap_err();
            assert_eq!(e.class(), ErrorClass::Usage);
            assert!(e.to_string().contains("--databases"), "{e}");
        }
        let e = Filter::new(FilterSpec {
            tables: Some("a(".into()),
            ..FilterSpec::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("--tables: regular expression `a(`"),
            "{e}"
        );
    }

    #[test]
    fn the_first_registration_of_a_database_wins() {
        // `db` first: the whole database; `db.t` first: only listed tables.
        assert!(!dbs("db db.t").skips("db/u.ibd"));
        assert!(dbs("db.t db").skips("db/u.ibd"));
    }

    #[test]
    fn describe_records_every_option() {
        let s = FilterSpec {
            databases: Some("a b.c".into()),
            tables_exclude: Some("^x".into()),
            tables_file: Some(("/l".into(), "d.e\n".into())),
            ..FilterSpec::default()
        };
        assert!(s.is_partial());
        assert_eq!(
            s.describe(),
            "--databases='a b.c' --tables-exclude='^x' --tables-file=/l (d.e)"
        );
        assert!(!FilterSpec::default().is_partial());
    }

    fn path(parts: &[&str]) -> String {
        parts.concat()
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,6}"
    }

    proptest! {
        /// `--databases=db` keeps exactly the files of `db` (and `mysql`).
        #[test]
        fn database_include_is_exact(db in name(), other in name(), t in name()) {
            let x = dbs(&db);
            prop_assert!(!x.skips(&path(&[&db, "/", &t, ".ibd"])));
            if other != db && other != ALWAYS_KEPT_DB {
                prop_assert!(x.skips(&path(&[&other, "/", &t, ".ibd"])));
            }
        }

        /// A table never both kept by an exact include and skipped by an
        /// exclude that does not name it; excluding it always wins.
        #[test]
        fn exclude_always_wins(db in name(), t in name(), u in name()) {
            prop_assume!(db != ALWAYS_KEPT_DB);
            let x = f(FilterSpec {
                databases: Some(format!("{db}.{t} {db}.{u}")),
                tables_exclude: Some(format!("^{db}[.]{t}$")),
                ..FilterSpec::default()
            });
            prop_assert!(x.skips(&path(&[&db, "/", &t, ".ibd"])));
            prop_assert_eq!(x.skips(&path(&[&db, "/", &u, ".frm"])), u == t);
        }

        /// Files outside a database directory and the `mysql` schema are
        /// never skipped, whatever the filter.
        #[test]
        fn system_files_always_kept(re in "[a-z.^$]{1,8}", f1 in name(), t in name()) {
            let x = f(FilterSpec {
                databases: Some(f1.clone()),
                tables: Some(re.clone()),
                tables_exclude: Some(re),
                ..FilterSpec::default()
            });
            prop_assert!(!x.skips(&f1.clone()));
            prop_assert!(!x.skips(&path(&["mysql/", &t, ".frm"])));
            prop_assert!(!x.skips("ibdata1"));
        }

        /// The extension never changes the verdict (all files of a table
        /// go together).
        #[test]
        fn extension_does_not_matter(db in name(), t in name(), inc in "[a-z]{1,3}") {
            let x = f(FilterSpec { tables: Some(inc), ..FilterSpec::default() });
            let v = x.skips(&path(&[&db, "/", &t, ".ibd"]));
            for ext in ["frm", "MYD", "MYI", "cfg", "par", "TRG"] {
                prop_assert_eq!(x.skips(&path(&[&db, "/", &t, ".", ext])), v);
            }
        }
    }
}

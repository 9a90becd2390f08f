//! `hotbak restore --table db.t --to-server SOCKET`: one table of a backup
//! prepared with `--export` put back into a running server.
//!
//! - The definition comes from the backup's `hotbak_export` (what the
//!   recovery server printed for `SHOW CREATE TABLE` at `prepare
//!   --export`): nothing extra is started, no `.frm` is parsed. A table
//!   the server lacks is created from it (and its database, if absent);
//!   a table the server has must have the same definition (but for the
//!   `AUTO_INCREMENT` counter), or nothing is touched and the differing
//!   lines are shown.
//! - InnoDB (partitioned too): `DISCARD TABLESPACE`, the `.ibd` and `.cfg`
//!   files copied next to the table's `.frm` with the owner of its
//!   database directory, `IMPORT TABLESPACE`, the `.cfg` removed.
//! - MyISAM and Aria: `LOCK TABLES … WRITE`, `FLUSH TABLES` (the server
//!   closes the files), the data and index files copied over under the
//!   lock, `FLUSH TABLES` again (the server opens the copies), `UNLOCK`.
//!
//! The server must run on this host (the files are written into its
//! datadir, `@@datadir`).

use std::path::{Path, PathBuf};

use crate::error::{Classify, ErrorClass};
use crate::format::export::{definition_diff, Export, Table, EXPORT_NAME, MAX_LEN};
use crate::format::metadata::{BackupType, Checkpoints};
use crate::mysql::{ConnectOptions, Session};

/// Errors of the single-table restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backup cannot serve the request (not prepared, no export, no
    /// such table, an engine without files).
    #[error("{0}")]
    Refused(String),
    /// The server's table is not the backup's.
    #[error("{table}: the server's definition differs from the backup's; nothing was changed:\n  {}", diff.join("\n  "))]
    DefinitionDiffers {
        /// `db`.`t`.
        table: String,
        /// The differing lines.
        diff: Vec<String>,
    },
    /// The backup's metadata cannot be read.
    #[error(transparent)]
    Export(#[from] crate::format::export::Error),
    /// A statement failed.
    #[error("{step}: {source}")]
    Server {
        /// What was being done.
        step: String,
        /// The error.
        #[source]
        source: crate::mysql::Error,
    },
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
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
            Error::DefinitionDiffers { .. } => ErrorClass::Failed,
            Error::Export(e) => e.class(),
            Error::Server { source, .. } => source.class(),
            Error::Io { .. } => ErrorClass::Io,
        }
    }
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: p.display().to_string(),
        source,
    }
}

/// What to restore, where.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// The prepared backup (with `hotbak_export`).
    pub backup: PathBuf,
    /// Schema, as SQL names it.
    pub schema: String,
    /// Table, as SQL names it.
    pub name: String,
    /// The running server.
    pub conn: ConnectOptions,
}

/// What was done.
#[derive(Debug, Default)]
pub struct TableReport {
    /// `db`.`t`.
    pub table: String,
    /// The engine.
    pub engine: String,
    /// The table was created from the backup's definition.
    pub created: bool,
    /// Files copied.
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
}

/// Split `db.t` (an SQL name pair; backquotes allowed).
///
/// # Errors
/// [`Error::Refused`] for a name without a dot.
pub fn split_name(s: &str) -> Result<(String, String), Error> {
    let unq = |p: &str| {
        p.strip_prefix('`')
            .and_then(|p| p.strip_suffix('`'))
            .map_or_else(|| p.to_owned(), |p| p.replace("``", "`"))
    };
    if let Some(rest) = s.strip_prefix('`') {
        if let Some(i) = rest.find("`.") {
            return Ok((unq(&s[..i + 2]), unq(&rest[i + 2..])));
        }
    }
    s.split_once('.')
        .filter(|(d, t)| !d.is_empty() && !t.is_empty())
        .map(|(d, t)| (unq(d), unq(t)))
        .ok_or_else(|| Error::Refused(format!("--table {s}: expected DB.TABLE")))
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The files of `t` to copy, backup-relative (data files per engine).
fn files_of(backup: &Path, t: &Table) -> Result<Vec<String>, Error> {
    let engine = t.engine.to_ascii_uppercase();
    let exts: &[&str] = match engine.as_str() {
        "INNODB" => {
            if t.cfg.iter().any(|c| c.contains("#P#")) {
                return Err(Error::Refused(format!(
                    "{}.{}: a partitioned InnoDB table is not restored by --table yet (MariaDB 10.11 has no DISCARD for partitions): \
                     import each partition's .ibd/.cfg from the backup into a table of the same definition without partitioning, \
                     then ALTER TABLE … EXCHANGE PARTITION",
                    t.schema, t.name
                )));
            }
            let mut out = Vec::new();
            for cfg in &t.cfg {
                let stem = cfg.strip_suffix(".cfg").unwrap_or(cfg);
                out.push(format!("{stem}.ibd"));
                out.push(cfg.clone());
            }
            if out.is_empty() {
                return Err(Error::Refused(format!(
                    "{}.{}: the backup's export has no .cfg for this InnoDB table",
                    t.schema, t.name
                )));
            }
            return Ok(out);
        }
        "MYISAM" => &["MYD", "MYI"],
        "ARIA" => &["MAD", "MAI"],
        other => {
            return Err(Error::Refused(format!(
            "{}.{}: engine {other} is not restored table by table (InnoDB, MyISAM and Aria are)",
            t.schema, t.name
        )))
        }
    };
    // Partitioned MyISAM/Aria: one pair per partition.
    let (db, base) = t.fs_base.split_once('/').unwrap_or(("", &t.fs_base));
    let dir = backup.join(db);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let e = e.map_err(io(&dir))?;
        let n = e.file_name().to_string_lossy().into_owned();
        let Some((stem, ext)) = n.rsplit_once('.') else {
            continue;
        };
        if exts.contains(&ext) && (stem == base || stem.starts_with(&format!("{base}#P#"))) {
            out.push(format!("{db}/{n}"));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::Refused(format!(
            "{}.{}: no {} files in the backup",
            t.schema,
            t.name,
            exts.join("/")
        )));
    }
    Ok(out)
}

/// Read the backup's export and find the table.
fn backup_table(backup: &Path, schema: &str, name: &str) -> Result<Table, Error> {
    let ck = backup.join(Checkpoints::FILE);
    let text = std::fs::read_to_string(&ck).map_err(io(&ck))?;
    let c =
        Checkpoints::parse(&text).map_err(|e| Error::Refused(format!("{}: {e}", ck.display())))?;
    if !matches!(c.backup_type, BackupType::FullPrepared) {
        return Err(Error::Refused(format!(
            "{}: the backup is not prepared (backup_type = {}); run `hotbak prepare --export --target-dir {}` first",
            backup.display(),
            c.backup_type.as_str(),
            backup.display()
        )));
    }
    let p = backup.join(EXPORT_NAME);
    let md = std::fs::metadata(&p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Refused(format!(
                "{}: no {EXPORT_NAME}; run `hotbak prepare --export --target-dir {}` first",
                backup.display(),
                backup.display()
            ))
        } else {
            io(&p)(e)
        }
    })?;
    if md.len() > MAX_LEN as u64 {
        return Err(Error::Refused(format!(
            "{}: {} bytes is over the limit of {MAX_LEN}",
            p.display(),
            md.len()
        )));
    }
    let e = Export::parse(&std::fs::read_to_string(&p).map_err(io(&p))?)?;
    e.find(schema, name).cloned().ok_or_else(|| {
        Error::Refused(format!(
            "{schema}.{name}: not in the backup (a partial backup may have left it out; {EXPORT_NAME} lists {} tables)",
            e.tables.len()
        ))
    })
}

/// Copy `from` to `dir/name` through a temporary name, with `owner`,
/// synced; returns the bytes.
fn put(from: &Path, to: &Path, owner: (u32, u32)) -> Result<u64, Error> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".hotbak-restore");
    let tmp = PathBuf::from(tmp);
    let n = std::fs::copy(from, &tmp).map_err(io(from))?;
    std::os::unix::fs::chown(&tmp, Some(owner.0), Some(owner.1)).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, to).map_err(io(to))?;
    Ok(n)
}

/// Restore one table (see the module doc).
///
/// # Errors
/// [`Error`]; a refusal changes nothing on the server.
pub async fn restore_table(plan: &TablePlan, say: impl Fn(&str)) -> Result<TableReport, Error> {
    use std::os::unix::fs::MetadataExt;
    let backup = plan.backup.clone();
    let (schema, name) = (plan.schema.clone(), plan.name.clone());
    let t = tokio::task::spawn_blocking(move || backup_table(&backup, &schema, &name))
        .await
        .map_err(|e| Error::Refused(format!("task failed: {e}")))??;
    let files = files_of(&plan.backup, &t)?;
    let who = format!("{}.{}", ident(&t.schema), ident(&t.name));
    let sql = |step: &str| {
        let step = step.to_owned();
        move |source| Error::Server { step, source }
    };
    let mut s = Session::connect(&plan.conn)
        .await
        .map_err(sql("connecting"))?;
    let datadir = s
        .query_value("SELECT @@datadir")
        .await
        .map_err(sql("SELECT @@datadir"))?
        .map(PathBuf::from)
        .ok_or_else(|| Error::Refused("the server reports no datadir".into()))?;
    let exists = s
        .query_value(&format!(
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
            lit(&t.schema),
            lit(&t.name)
        ))
        .await
        .map_err(sql("looking the table up"))?;
    let mut report = TableReport {
        table: who.clone(),
        engine: t.engine.clone(),
        ..TableReport::default()
    };
    if exists.is_some() {
        let now = s
            .query(&format!("SHOW CREATE TABLE {who}"))
            .await
            .map_err(sql(&format!("SHOW CREATE TABLE {who}")))?
            .first()
            .and_then(|r| r.at(1).map(str::to_owned))
            .unwrap_or_default();
        let diff = definition_diff(&t.create, &now);
        if !diff.is_empty() {
            return Err(Error::DefinitionDiffers { table: who, diff });
        }
        say(&format!("{who}: the server's definition is the backup's"));
    } else {
        s.execute(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            ident(&t.schema)
        ))
        .await
        .map_err(sql("CREATE DATABASE"))?;
        s.execute(&format!("USE {}", ident(&t.schema)))
            .await
            .map_err(sql("USE"))?;
        s.execute(&t.create)
            .await
            .map_err(sql(&format!("creating {who} from the backup's definition")))?;
        report.created = true;
        say(&format!("{who}: created from the backup's definition"));
    }
    let (db, _) = t.fs_base.split_once('/').unwrap_or(("", &t.fs_base));
    let db_dir = datadir.join(db);
    let md = std::fs::metadata(&db_dir).map_err(io(&db_dir))?;
    let owner = (md.uid(), md.gid());
    let copy = |report: &mut TableReport| {
        let (backup, datadir, files) = (plan.backup.clone(), datadir.clone(), files.clone());
        let before = (report.files, report.bytes);
        async move {
            let (n, bytes) = tokio::task::spawn_blocking(move || -> Result<(usize, u64), Error> {
                let mut bytes = 0;
                for f in &files {
                    bytes += put(&backup.join(f), &datadir.join(f), owner)?;
                }
                Ok((files.len(), bytes))
            })
            .await
            .map_err(|e| Error::Refused(format!("copy task failed: {e}")))??;
            Ok::<_, Error>((before.0 + n, before.1 + bytes))
        }
    };
    if t.engine.eq_ignore_ascii_case("InnoDB") {
        s.execute(&format!("ALTER TABLE {who} DISCARD TABLESPACE"))
            .await
            .map_err(sql(&format!("ALTER TABLE {who} DISCARD TABLESPACE")))?;
        (report.files, report.bytes) = copy(&mut report).await?;
        s.execute(&format!("ALTER TABLE {who} IMPORT TABLESPACE"))
            .await
            .map_err(sql(&format!(
                "ALTER TABLE {who} IMPORT TABLESPACE (the table is discarded; the backup's files are in place)"
            )))?;
        for f in files.iter().filter(|f| f.ends_with(".cfg")) {
            let p = datadir.join(f);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
    } else {
        s.execute(&format!("LOCK TABLES {who} WRITE"))
            .await
            .map_err(sql(&format!("LOCK TABLES {who} WRITE")))?;
        let r = async {
            s.execute(&format!("FLUSH TABLES {who}"))
                .await
                .map_err(sql(&format!("FLUSH TABLES {who}")))?;
            (report.files, report.bytes) = copy(&mut report).await?;
            s.execute(&format!("FLUSH TABLES {who}"))
                .await
                .map_err(sql(&format!("FLUSH TABLES {who}")))
        }
        .await;
        let unlocked = s
            .execute("UNLOCK TABLES")
            .await
            .map_err(sql("UNLOCK TABLES"));
        r?;
        unlocked?;
    }
    let _ = s.close().await;
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_dot() {
        assert_eq!(split_name("db.t").unwrap(), ("db".into(), "t".into()));
        assert_eq!(
            split_name("`my.db`.`t``x`").unwrap(),
            ("my.db".into(), "t`x".into())
        );
        for bad in ["t", ".t", "db."] {
            let e = split_name(bad).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Usage, "{bad}");
        }
    }

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(lit("a'b\\"), "'a\\'b\\\\'");
        assert_eq!(ident("a`b"), "`a``b`");
    }

    #[test]
    fn files_per_engine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        for f in [
            "m.MYD",
            "m.MYI",
            "m.frm",
            "mx.MYD",
            "p#P#a.MYD",
            "p#P#a.MYI",
        ] {
            std::fs::write(dir.path().join("d").join(f), b"").unwrap();
        }
        let t = |name: &str, engine: &str, cfg: &[&str]| Table {
            schema: "d".into(),
            name: name.into(),
            fs_base: format!("d/{name}"),
            engine: engine.into(),
            create: String::new(),
            cfg: cfg.iter().map(|c| (*c).to_owned()).collect(),
        };
        assert_eq!(
            files_of(dir.path(), &t("m", "MyISAM", &[])).unwrap(),
            ["d/m.MYD", "d/m.MYI"]
        );
        assert_eq!(
            files_of(dir.path(), &t("p", "MyISAM", &[])).unwrap(),
            ["d/p#P#a.MYD", "d/p#P#a.MYI"]
        );
        assert_eq!(
            files_of(dir.path(), &t("i", "InnoDB", &["d/i.cfg"])).unwrap(),
            ["d/i.ibd", "d/i.cfg"]
        );
        for (name, engine, cfg) in [
            ("i", "InnoDB", &[][..]),
            ("i", "InnoDB", &["d/i#P#p0.cfg"]),
            ("x", "MEMORY", &[]),
            ("none", "Aria", &[]),
        ] {
            let e = files_of(dir.path(), &t(name, engine, cfg)).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Usage, "{engine}: {e}");
        }
    }
}

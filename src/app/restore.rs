//! `hotbak restore`: arguments to the restore engine's inputs (the target
//! server's directories from its option file), and the summary line.

use std::path::PathBuf;

use super::args::{ProgressArg, RestoreArgs};
use crate::error::UsageError;
use crate::mysql::OptionSet;
use crate::restore::{Layout, Options};

/// Option-file groups the server reads its directories from.
const SERVER_GROUPS: &[&str] = &[
    "mysqld",
    "server",
    "mariadb",
    "mariadbd",
    "mysqld-10.11",
    "mariadb-10.11",
];

/// Where the backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Copied (or moved) into these directories.
    Layout(Layout),
    /// The backup directory becomes the datadir.
    InPlace,
}

/// A checked `hotbak restore`.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The prepared backup.
    pub backup: PathBuf,
    /// Where it goes.
    pub target: Target,
    /// How.
    pub options: Options,
}

/// The target server's directories: `--datadir` wins over the option
/// file's `datadir`; the InnoDB directories come from the option file.
///
/// # Errors
/// The option file cannot be read or parsed; no datadir at all.
pub fn layout(
    datadir: Option<PathBuf>,
    defaults_file: Option<&std::path::Path>,
) -> anyhow::Result<Layout> {
    let mut set = OptionSet::default();
    if let Some(f) = defaults_file {
        set.read_file(f, SERVER_GROUPS)?;
    }
    let path = |k: &str| set.value(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let datadir = datadir.or_else(|| path("datadir")).ok_or_else(|| {
        UsageError(match defaults_file {
            Some(f) => format!("--datadir not given and {} sets no datadir", f.display()),
            None => "--datadir (or --defaults-file, or --in-place) is required".to_owned(),
        })
    })?;
    Ok(Layout {
        datadir,
        data_home: path("innodb-data-home-dir"),
        undo_dir: path("innodb-undo-directory"),
        log_dir: path("innodb-log-group-home-dir"),
    })
}

/// [`layout`] with the command line's InnoDB directories winning over the
/// option file's.
fn layout_of(a: &RestoreArgs) -> anyhow::Result<Layout> {
    let mut l = layout(a.datadir.clone(), a.defaults_file.as_deref())?;
    for (slot, given) in [
        (&mut l.data_home, &a.innodb_data_home_dir),
        (&mut l.undo_dir, &a.innodb_undo_directory),
        (&mut l.log_dir, &a.innodb_log_group_home_dir),
    ] {
        if given.is_some() {
            slot.clone_from(given);
        }
    }
    Ok(l)
}

/// Combinations clap cannot express (a flag's default counts as present).
fn check(a: &RestoreArgs) -> Result<(), UsageError> {
    if a.from_stream && !a.in_place {
        return Err(UsageError("--from-stream needs --in-place".into()));
    }
    if !a.from_stream
        && (a.decrypt_key_file.is_some() || a.decrypt_key_env.is_some() || a.mariadbd.is_some())
    {
        return Err(UsageError(
            "--decrypt-key-file, --decrypt-key-env and --mariadbd go with --from-stream".into(),
        ));
    }
    Ok(())
}

/// Check the arguments and build the plan.
///
/// # Errors
/// [`UsageError`] naming the option; option-file errors.
pub fn plan(a: RestoreArgs) -> anyhow::Result<RestorePlan> {
    check(&a)?;
    if a.parallel == 0 {
        return Err(UsageError("--parallel must be at least 1".into()).into());
    }
    if a.max_rate == Some(0) {
        return Err(UsageError("--max-rate must be at least 1 MB/s".into()).into());
    }
    let target = if a.in_place {
        Target::InPlace
    } else {
        Target::Layout(layout_of(&a)?)
    };
    Ok(RestorePlan {
        backup: a.target_dir,
        target,
        options: Options {
            move_back: a.move_back,
            owner: a.owner,
            into_datadir: a.into_datadir,
            parallel: a.parallel,
            max_rate: a.max_rate.map(|m| m.saturating_mul(1_000_000)),
            progress: super::plan::progress(a.progress),
        },
    })
}

/// `--from-stream`: extract stdin into `dir` (absent or empty) without
/// syncing (the in-place restore syncs everything at the end), then prepare.
async fn from_stream(a: &RestoreArgs, parallel: usize) -> anyhow::Result<()> {
    let dir = a.target_dir.clone();
    if let Ok(mut rd) = std::fs::read_dir(&dir) {
        if let Some(e) = rd.next() {
            let name = e
                .map(|e| e.path().display().to_string())
                .unwrap_or_default();
            return Err(UsageError(format!(
                "--from-stream: --target-dir {} is not empty ({name} is there)",
                dir.display()
            ))
            .into());
        }
    }
    let decode =
        crate::extract::decoders(a.decrypt_key_file.as_deref(), a.decrypt_key_env.as_deref())?;
    let xplan = crate::extract::Plan {
        dir: dir.clone(),
        parallel,
        force: false,
        sync: false,
        verbose: false,
        list: false,
        decode,
    };
    let s = crate::extract::extract(&xplan, crate::extract::DropBehind::stdin(), "stdin").await?;
    for w in &s.warnings {
        crate::events::warn(format_args!("{w}"));
    }
    crate::events::info(format_args!(
        "extracted {} files, {} bytes{}",
        s.files,
        s.bytes_out,
        if s.verified {
            ", every file checked against the manifest"
        } else {
            ""
        }
    ));
    // As `hotbak prepare` does by default: the redo applied natively, the
    // mariadbd recovery where the backup needs it or the applier refuses.
    let opts = crate::prepare::Options {
        mariadbd: a.mariadbd.clone(),
        use_memory: a.use_memory.clone(),
        ..crate::prepare::Options::default()
    };
    let r = tokio::task::spawn_blocking(move || crate::prepare::prepare_with(&dir, &opts))
        .await
        .map_err(|e| anyhow::anyhow!("prepare task failed: {e}"))??;
    let how = match (&r.native, &r.fell_back) {
        (Some(_), _) => "native redo apply".to_owned(),
        (None, Some(why)) => format!("mariadbd recovery; the native applier refused: {why}"),
        (None, None) => "mariadbd recovery".to_owned(),
    };
    crate::events::info(format_args!("prepared ({how}, {:.1}s)", r.recovery_secs));
    Ok(())
}

/// Run the blocking engine on a blocking thread, then print the summary.
///
/// # Errors
/// Usage errors, the engine's failure.
pub async fn run(a: RestoreArgs) -> anyhow::Result<()> {
    if a.table.table.is_some() {
        return table(a).await;
    }
    check(&a)?;
    if a.from_stream {
        from_stream(&a, a.parallel.max(1)).await?;
    }
    let p = plan(a)?;
    let in_place = p.target == Target::InPlace;
    let shown = p.backup.display().to_string();
    let r = tokio::task::spawn_blocking(move || match &p.target {
        Target::InPlace => {
            crate::restore::restore_in_place(&p.backup, &p.options, &crate::restore::SystemSyncer)
        }
        Target::Layout(l) => {
            crate::restore::restore(&p.backup, l, &p.options, &crate::restore::SystemSyncer)
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("restore task failed: {e}"))??;
    let secs = r.elapsed.as_secs_f64().max(0.001);
    let outside = if r.outside > 0 {
        format!(
            ", {} of them outside the datadir (their recorded places)",
            r.outside
        )
    } else {
        String::new()
    };
    let how = if in_place {
        format!(
            "{shown} is now a datadir ({} backup metadata files removed); ",
            r.removed
        )
    } else {
        String::new()
    };
    crate::events::info(format_args!(
        "restore done: {how}{} files in place{outside}, {} bytes ({:.1} MB/s, {} renamed), synced {} filesystem(s) and {} directories, {secs:.1}s",
        r.files,
        r.bytes,
        r.bytes as f64 / 1e6 / secs,
        r.renamed,
        r.filesystems_synced,
        r.dirs_synced,
    ));
    crate::events::info(format_args!("restore completed OK!"));
    Ok(())
}

/// `--table DB.T --to-server SOCKET`: the connection from the option files
/// (`--defaults-file`'s `[client]` groups, or the standard ones), then the
/// command line.
///
/// # Errors
/// Usage errors; option-file errors.
pub fn table_plan(a: &RestoreArgs) -> anyhow::Result<crate::restore::table::TablePlan> {
    use crate::mysql::{ConnectOptions, Defaults, Password};
    let t = &a.table;
    let spec = t.table.as_deref().unwrap_or_default();
    let (schema, name) = crate::restore::table::split_name(spec)?;
    let defaults = if t.no_defaults {
        Defaults::None
    } else if let Some(f) = &a.defaults_file {
        Defaults::File(f.clone())
    } else {
        Defaults::Standard
    };
    let mut conn = ConnectOptions::default().with_defaults(&defaults)?;
    conn.socket.clone_from(&t.to_server);
    conn.host = None;
    if let Some(u) = &t.user {
        conn.user = Some(u.clone());
    }
    if let Some(p) = &t.password {
        conn.password = Some(Password::new(p.clone()));
    }
    Ok(crate::restore::table::TablePlan {
        backup: a.target_dir.clone(),
        schema,
        name,
        conn,
    })
}

async fn table(a: RestoreArgs) -> anyhow::Result<()> {
    let p = table_plan(&a)?;
    let quiet = matches!(a.progress, ProgressArg::None);
    let r = crate::restore::table::restore_table(&p, |m| {
        if !quiet {
            crate::events::info(format_args!("{m}"));
        }
    })
    .await?;
    crate::events::info(format_args!(
        "{} ({}) restored from {}: {} files, {} bytes{}",
        r.table,
        r.engine,
        p.backup.display(),
        r.files,
        r.bytes,
        if r.created {
            "; the table was created from the backup's definition"
        } else {
            ""
        }
    ));
    crate::events::info(format_args!("restore completed OK!"));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::app::args::{Cli, Command};

    fn parse(args: &[&str]) -> anyhow::Result<RestorePlan> {
        let cli = Cli::try_parse_from(["hotbak", "restore"].iter().chain(args))?;
        let Command::Restore(a) = cli.command else {
            panic!("not a restore command");
        };
        plan(*a)
    }

    #[test]
    fn the_option_file_places_the_innodb_directories() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("my.cnf");
        std::fs::write(
            &f,
            "[client]\nsocket=/x\n[mysqld]\ndatadir=/srv/data\ninnodb_undo_directory = /srv/undo\n\
             [mariadb]\ninnodb-log-group-home-dir=\"/srv/redo\"\n[mysqldump]\ninnodb_data_home_dir=/no\n",
        )
        .unwrap();
        let p = parse(&["--target-dir", "/b", "--defaults-file", f.to_str().unwrap()]).unwrap();
        assert_eq!(
            p.target,
            Target::Layout(Layout {
                datadir: PathBuf::from("/srv/data"),
                data_home: None,
                undo_dir: Some(PathBuf::from("/srv/undo")),
                log_dir: Some(PathBuf::from("/srv/redo")),
            })
        );
        assert_eq!(p.options.parallel, 4);
        // --datadir wins.
        let p = parse(&[
            "--target-dir",
            "/b",
            "--defaults-file",
            f.to_str().unwrap(),
            "--datadir",
            "/d",
            "--parallel",
            "2",
            "--max-rate",
            "5",
        ])
        .unwrap();
        let Target::Layout(l) = p.target else {
            panic!("layout")
        };
        assert_eq!(l.datadir, PathBuf::from("/d"));
        assert_eq!(p.options.parallel, 2);
        assert_eq!(p.options.max_rate, Some(5_000_000));
    }

    #[test]
    fn restore_usage() {
        assert_eq!(
            parse(&["--target-dir", "/b", "--in-place"]).unwrap().target,
            Target::InPlace
        );
        for bad in [
            &["--target-dir", "/b"][..],
            &["--target-dir", "/b", "--in-place", "--datadir", "/d"],
            &["--target-dir", "/b", "--in-place", "--move-back"],
            &["--target-dir", "/b", "--datadir", "/d", "--from-stream"],
            &["--target-dir", "/b", "--in-place", "--mariadbd", "/x"],
            &["--target-dir", "/b", "--datadir", "/d", "--parallel", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("my.cnf");
        std::fs::write(&f, "[mysqld]\nport=1\n").unwrap();
        let e = parse(&["--target-dir", "/b", "--defaults-file", f.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("sets no datadir"), "{e}");
    }
}

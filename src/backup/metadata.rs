//! Step 5 of the sequence: the metadata files in mariabackup's format
//! (`xtrabackup_binlog_info`, `xtrabackup_slave_info`,
//! `xtrabackup_checkpoints`, `backup-my.cnf`, `xtrabackup_info`) and
//! hotbak's record of the places outside the datadir (`hotbak_links`).
//! They come last, before the graph's manifest.

use bytes::Bytes;

use super::phases::{CommitPoint, CopyCtx};
use super::{BackupReport, Destination, Error};
use crate::format::links::{Link, Links, LINKS_NAME, LINKS_VERSION};
use crate::format::metadata::{BackupMyCnf, BackupType, Checkpoints, GaleraInfo, XtrabackupInfo};
use crate::format::path::RelPath;
use crate::sink::{FileMeta, GraphInput};

async fn write_meta(
    input: &GraphInput,
    name: &str,
    text: String,
    compress: bool,
) -> Result<(), Error> {
    let p = RelPath::new(name).map_err(|e| Error::Layout(e.to_string()))?;
    let meta = if compress {
        FileMeta::new(p)
    } else {
        FileMeta::uncompressed(p)
    };
    input.write_file(meta, Bytes::from(text)).await?;
    Ok(())
}

/// Write every metadata file of the consistent point `c` and fill the
/// report's LSNs and binlog position.
pub(super) async fn write_all(
    ctx: &CopyCtx<'_>,
    c: &CommitPoint,
    links: Vec<Link>,
    report: &mut BackupReport,
) -> Result<(), Error> {
    let &CopyCtx {
        plan,
        input,
        info,
        start_time,
        ..
    } = ctx;
    if let Some(b) = &c.binlog {
        write_meta(
            input,
            "xtrabackup_binlog_info",
            b.binlog_info().render(),
            true,
        )
        .await?;
        report.binlog = Some(b.binlog_info().render().trim_end().to_owned());
    }
    if let Some(si) = &c.slave {
        write_meta(input, "xtrabackup_slave_info", si.sql.clone(), true).await?;
    }
    if let Some(g) = &c.galera {
        // mariabackup 10.11 writes both; a joiner's prepare rewrites the first.
        for name in [GaleraInfo::FILE, GaleraInfo::DONOR_FILE] {
            write_meta(input, name, g.render(), true).await?;
        }
    }
    if !links.is_empty() {
        let l = Links {
            version: LINKS_VERSION,
            datadir: info.datadir.display().to_string(),
            links,
        };
        write_meta(input, LINKS_NAME, l.render(), false).await?;
    }
    let from_lsn = plan.incremental_lsn.unwrap_or(0);
    let ck = Checkpoints {
        backup_type: if plan.incremental_lsn.is_some() {
            BackupType::Incremental
        } else {
            BackupType::FullBackuped
        },
        from_lsn,
        to_lsn: c.to_lsn.0,
        last_lsn: c.redo.last_lsn.0,
        recover_binlog_info: false,
    };
    write_meta(input, Checkpoints::FILE, ck.render(), false).await?;
    write_meta(
        input,
        BackupMyCnf::FILE,
        info.backup_my_cnf().render(),
        true,
    )
    .await?;
    let end_time = chrono::Local::now();
    let xi = XtrabackupInfo {
        uuid: uuid::Uuid::new_v4().to_string(),
        name: plan.history.clone().unwrap_or_default(),
        tool_name: "hotbak".into(),
        tool_command: plan.command_line.clone(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        ibbackup_version: env!("CARGO_PKG_VERSION").into(),
        server_version: info.version.clone(),
        start_time: crate::format::metadata::format_time(&start_time),
        end_time: crate::format::metadata::format_time(&end_time),
        lock_time: i64::try_from(report.ddl_lock.as_secs()).unwrap_or(0),
        binlog_pos: c
            .binlog
            .as_ref()
            .map(|b| b.binlog_info().binlog_pos_text())
            .unwrap_or_default(),
        innodb_from_lsn: from_lsn,
        innodb_to_lsn: c.to_lsn.0,
        partial: plan.filter.is_some(),
        incremental: plan.incremental_lsn.is_some(),
        format: if matches!(plan.dest, Destination::Dir(_)) {
            "file".into()
        } else {
            "xbstream".into()
        },
        compressed: if plan.compress.is_some() {
            "compressed".into()
        } else {
            "N".into()
        },
        extra: plan
            .filter
            .iter()
            .map(|f| {
                (
                    XtrabackupInfo::PARTIAL_FILTER.to_owned(),
                    f.spec().describe(),
                )
            })
            .chain(
                plan.parent_uuid
                    .iter()
                    .map(|u| (crate::incremental::PARENT_UUID_KEY.to_owned(), u.clone())),
            )
            .collect(),
    };
    write_meta(input, XtrabackupInfo::FILE, xi.render(), true).await?;
    if let Some(dir) = &plan.extra_lsndir {
        // `--extra-lsndir`: the same two files beside the stream, so that a
        // streamed chain has a local base to point the next incremental at.
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for (name, text) in [
            (Checkpoints::FILE, ck.render()),
            (XtrabackupInfo::FILE, xi.render()),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?;
        }
    }
    report.start_unix = start_time.timestamp();
    report.end_unix = end_time.timestamp();
    report.info = Some(xi);
    report.first_lsn = c.redo.first_lsn.0;
    report.last_lsn = c.redo.last_lsn.0;
    report.to_lsn = c.to_lsn.0;
    report.min_headroom = c.redo.min_headroom;
    report.redo_spool = c.redo.spool;
    Ok(())
}

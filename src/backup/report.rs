//! The one-screen summary of a backup.

use std::time::Duration;

use super::progress::human;

/// What the backup did (the one-screen summary).
#[derive(Debug, Default)]
pub struct BackupReport {
    /// Wall time.
    pub elapsed: Duration,
    /// Files in the backup.
    pub files: u64,
    /// Bytes read from the server's files.
    pub bytes_in: u64,
    /// Bytes written (after compression and encryption).
    pub bytes_out: u64,
    /// Redo range.
    pub first_lsn: u64,
    /// End of the copied redo.
    pub last_lsn: u64,
    /// Checkpoint at BLOCK_COMMIT.
    pub to_lsn: u64,
    /// Binlog position.
    pub binlog: Option<String>,
    /// Time BLOCK_DDL (or FTWRL) was held.
    pub ddl_lock: Duration,
    /// Time BLOCK_COMMIT was held.
    pub commit_lock: Duration,
    /// Smallest redo headroom seen.
    pub min_headroom: u64,
    /// The redo spool's largest backlog and what it spilled to disk.
    pub redo_spool: super::spool::Stats,
    /// What the pacing controller did (None: pacing off).
    pub pacing: Option<String>,
    /// Destination.
    pub dest: String,
    /// The backup's `xtrabackup_info` (its `uuid` is the `--history` row's).
    pub info: Option<crate::format::metadata::XtrabackupInfo>,
    /// Every lock taken, with its wait and hold times.
    pub locks: Vec<super::progress::LockTiming>,
    /// Unix time the backup started.
    pub start_unix: i64,
    /// Unix time the metadata was written (`xtrabackup_info`'s `end_time`).
    pub end_unix: i64,
}

impl BackupReport {
    /// The report as the `backup_summary` event (`--log-format json`,
    /// `format-spec/events.md`).
    pub fn emit_event(&self) {
        tracing::info!(
            target: crate::events::TARGET,
            event = "backup_summary",
            files = self.files,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            first_lsn = self.first_lsn,
            last_lsn = self.last_lsn,
            to_lsn = self.to_lsn,
            ddl_lock_s = self.ddl_lock.as_secs_f64(),
            commit_lock_s = self.commit_lock.as_secs_f64(),
            binlog = self.binlog.as_deref(),
            destination = self.dest.as_str(),
        );
    }
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        writeln!(f, "hotbak: backup summary")?;
        writeln!(f, "  destination      {}", self.dest)?;
        writeln!(f, "  files            {}", self.files)?;
        writeln!(
            f,
            "  data read        {} in {:.1}s ({}/s)",
            human(self.bytes_in),
            secs,
            human((self.bytes_in as f64 / secs) as u64)
        )?;
        writeln!(f, "  bytes written    {}", human(self.bytes_out))?;
        writeln!(
            f,
            "  redo             LSN {} .. {} ({}), checkpoint {}",
            self.first_lsn,
            self.last_lsn,
            human(self.last_lsn - self.first_lsn),
            self.to_lsn
        )?;
        writeln!(f, "  min redo headroom {}", human(self.min_headroom))?;
        if self.redo_spool.peak_backlog > 0 {
            writeln!(
                f,
                "  redo waiting     at most {} for the destination ({} spilled to --tmpdir)",
                human(self.redo_spool.peak_backlog),
                human(self.redo_spool.spilled)
            )?;
        }
        if let Some(p) = &self.pacing {
            writeln!(f, "  pacing           {p}")?;
        }
        writeln!(
            f,
            "  DDL lock held    {:.2}s; commits blocked {:.3}s",
            self.ddl_lock.as_secs_f64(),
            self.commit_lock.as_secs_f64()
        )?;
        writeln!(
            f,
            "  binlog position  {}",
            self.binlog.as_deref().unwrap_or("(binlog off)")
        )?;
        // The words scripts grep for, last, as mariabackup prints them.
        write!(f, "hotbak: backup completed OK!")
    }
}

//! What a backup is asked to do, in library types (the application layer
//! builds it from the command line; nothing here knows clap).

use std::path::PathBuf;
use std::time::Duration;

use super::progress::ProgressMode;
use crate::compress::Algorithm;
use crate::mysql::{ConnectOptions, LockPolicy};
use crate::sched::Priority;

/// Where the stream goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Plain files.
    Dir(PathBuf),
    /// xbstream on stdout.
    Stdout,
    /// xbstream over TCP.
    Tcp(String),
    /// xbstream uploaded to an S3-compatible store, committed at the end.
    S3 {
        /// `s3://bucket/prefix`.
        location: crate::objstore::Location,
        /// Endpoint, credentials, retries.
        config: Box<crate::objstore::Config>,
        /// Part size, parallelism.
        upload: crate::objstore::upload::UploadOptions,
    },
}

/// Where `--incremental-history-*` finds the base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryBase {
    /// The newest backup with this `name`.
    Name(String),
    /// The backup with this `uuid`.
    Uuid(String),
}

/// How the backup blocks the server's writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LockMode {
    /// MariaDB `BACKUP STAGE` (default): BLOCK_DDL over the copy,
    /// BLOCK_COMMIT for the final step.
    #[default]
    BackupStage,
    /// `FLUSH TABLES WITH READ LOCK` for the final step and the
    /// non-InnoDB files.
    Ftwrl,
}

/// How long `BACKUP STAGE BLOCK_DDL` is held (with [`LockMode::BackupStage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DdlLock {
    /// Only for the final phase: the InnoDB files are copied under
    /// `BACKUP STAGE START` while DDL runs; the redo log's file records
    /// and a second look under the lock decide what is copied again or
    /// marked (`.new`, `.ren`, `.del`).
    #[default]
    Short,
    /// Across the whole copy: DDL waits for the backup.
    Full,
}

/// The compression stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Level (checked against the algorithm's range when the plan is built).
    pub level: i32,
    /// Compression threads.
    pub threads: usize,
    /// Bytes of input per compressed frame.
    pub chunk: usize,
}

/// A validated backup plan.
pub struct BackupPlan {
    /// Destination.
    pub dest: Destination,
    /// Connection.
    pub conn: ConnectOptions,
    /// Copy workers.
    pub parallel: usize,
    /// Lock mode (`None` = `--no-lock`).
    pub lock: Option<LockMode>,
    /// How long BLOCK_DDL is held.
    pub ddl_lock: DdlLock,
    /// An incremental backup: the base's `to_lsn` (pages with a newer
    /// `FIL_PAGE_LSN` are copied, as `.delta` + `.meta`).
    pub incremental_lsn: Option<u64>,
    /// An incremental's parent: the `uuid` of the base's `xtrabackup_info`
    /// (`--incremental-basedir`), recorded as `hotbak_parent_uuid` so that
    /// prepare can refuse the wrong base.
    pub parent_uuid: Option<String>,
    /// `--incremental-history-name`/`-uuid`: the base is the newest
    /// backup of this series (or this backup) in `mysql.mariadb_backup_history`;
    /// looked up when the backup starts, it sets `incremental_lsn` and `parent_uuid`.
    pub history_base: Option<HistoryBase>,
    /// `--extra-lsndir`: also write `xtrabackup_checkpoints` and
    /// `xtrabackup_info` here.
    pub extra_lsndir: Option<std::path::PathBuf>,
    /// Long-query policy.
    pub policy: LockPolicy,
    /// Session `lock_wait_timeout`.
    pub lock_wait_timeout: u64,
    /// `--slave-info`.
    pub slave_info: bool,
    /// `--history[=NAME]`: after the backup completed, a row in
    /// `mysql.mariadb_backup_history` with this series name (empty: none).
    pub history: Option<String>,
    /// `--galera-info`: write `xtrabackup_galera_info` (a Galera node).
    pub galera_info: bool,
    /// `--safe-slave-backup` with its timeout.
    pub safe_slave: Option<Duration>,
    /// Redo poll interval.
    pub log_copy_interval: Duration,
    /// Redo headroom warning threshold (percent of capacity).
    pub redo_warn_percent: u64,
    /// `--tmpdir`: where the redo spool spills.
    pub tmpdir: std::path::PathBuf,
    /// The redo spool's memory budget in bytes.
    pub redo_spool_memory: usize,
    /// Compression, if any.
    pub compress: Option<Compression>,
    /// Encryption key.
    pub key: Option<crate::encrypt::Key>,
    /// Data-file read rate limit, MB/s (0 = none).
    pub max_rate: u64,
    /// The pacing controller's constants (`None`: no pacing, reads at
    /// full speed but for `max_rate`).
    pub pacing: Option<super::pacing::Config>,
    /// Scheduling of the bulk work (data-file reads and transforms).
    pub priority: Priority,
    /// Progress display.
    pub progress: ProgressMode,
    /// The command line, with secrets masked (for `xtrabackup_info`).
    pub command_line: String,
    /// A partial backup's filter (`None`: every table).
    pub filter: Option<super::filter::Filter>,
}

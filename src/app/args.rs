//! Command-line arguments of `hotbak` (clap derive, plain data). The
//! conversion into the engines' plans is in [`super::plan`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Hot physical backup for MariaDB.
#[derive(Parser, Debug)]
#[command(name = "hotbak", version, about, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// The log on stderr: `text` (the default) or `json`, one event object
    /// per line (`format-spec/events.md`); also `HOTBAK_LOG_FORMAT`.
    /// Taken out of the arguments before they are parsed, in either style.
    #[arg(long = "log-format", global = true, value_name = "text|json")]
    pub log_format: Option<String>,
}

/// `hotbak backup --help`'s examples.
const BACKUP_EXAMPLES: &str = "\
Examples:
  # A full backup into an empty directory (root over the unix socket):
  hotbak backup --target-dir /backups/full
  # Streamed, compressed and encrypted, extracted on another host:
  hotbak backup --stream --compress --encrypt --encrypt-key-file /etc/hotbak/key \\
    | ssh backup-host 'xbextract -x -C /backups/full --decrypt-key-file /etc/hotbak/key'
  # An incremental on top of the last backup, recorded in the history table:
  hotbak backup --target-dir /backups/inc1 --incremental-basedir /backups/full --history=nightly
  # Straight to S3, with metrics for node_exporter's textfile collector:
  hotbak backup --stream-to s3://bucket/db1/2026-12-05 \\
    --metrics-file /var/lib/node_exporter/textfile/hotbak.prom
  # mariabackup's spelling works too:
  hotbak --backup --stream=xbstream --target-dir=/tmp/work --galera-info | mbstream -x -C /backups/full";

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy a running server without downtime.
    #[command(args_override_self = true, after_help = BACKUP_EXAMPLES)]
    Backup(Box<BackupArgs>),
    /// Make a backup consistent (InnoDB crash recovery up to the backup's end LSN).
    #[command(args_override_self = true)]
    Prepare(PrepareArgs),
    /// Copy (or move) a prepared backup into an empty datadir.
    #[command(args_override_self = true)]
    Restore(Box<RestoreArgs>),
    /// Prove an extracted backup whole without restoring it (exit 0 whole, 3 damaged).
    #[command(args_override_self = true)]
    Verify(VerifyArgs),
    // -- object storage (issue 16) --
    /// Upload a stream on disk to s3://BUCKET/PREFIX, resumable after a crash or kill.
    Upload(Box<super::s3::UploadArgs>),
    /// List the backups under s3://BUCKET/PREFIX (or a local directory): complete or not,
    /// time, size, type, LSNs.
    Info(Box<super::s3::InfoArgs>),
    /// Make a new random encryption key file (mode 0600; never overwrites).
    Keygen(KeygenArgs),
    /// Print the man page (roff) on stdout, or write one page per command into a directory.
    Man(ManArgs),
    /// Print a shell completion script on stdout (bash, zsh or fish).
    Completions(CompletionsArgs),
}

/// `hotbak man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write `hotbak.1` and one `hotbak-COMMAND.1` per command into DIR
    /// instead of printing `hotbak.1`.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// `hotbak completions`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  hotbak completions bash > /etc/bash_completion.d/hotbak\n  hotbak completions zsh > \"${fpath[1]}/_hotbak\"\n  hotbak completions fish > ~/.config/fish/completions/hotbak.fish"
)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, ignore_case = true)]
    pub shell: ShellArg,
}

/// Shells with completion scripts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShellArg {
    /// bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// `hotbak keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The key file to create (64 hex digits; it must not exist).
    #[arg(long, value_name = "FILE")]
    pub encrypt_key_file: std::path::PathBuf,
}

/// `hotbak verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The extracted backup (ours or mariabackup's, prepared or not).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["stream", "from"],
        conflicts_with_all = ["stream", "from"]
    )]
    pub target_dir: Option<PathBuf>,
    /// Verify an xbstream read on stdin (plain, compressed or encrypted), writing nothing.
    #[arg(long)]
    pub stream: bool,
    /// With --stream: key file for an encrypted stream (32 raw bytes or 64 hex characters).
    #[arg(long, value_name = "FILE")]
    pub decrypt_key_file: Option<PathBuf>,
    /// With --stream: environment variable holding the key as 64 hex characters.
    #[arg(long, value_name = "VAR")]
    pub decrypt_key_env: Option<String>,
    /// Files checked at once (default: the number of cores; with
    /// --target-dir at least 4, so reads overlap the checks).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Progress display on stderr: a bar on a terminal (auto), timestamped
    /// lines, or none.
    #[arg(long, value_enum, ignore_case = true, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    // -- object storage (issue 16) --
    /// Verify the committed backup at s3://BUCKET/PREFIX as it downloads (like --stream).
    #[arg(long, value_name = "s3://BUCKET/PREFIX", conflicts_with = "stream")]
    pub from: Option<String>,
    /// Store options (with --from).
    #[command(flatten)]
    pub s3: super::s3::S3Args,
}

/// Connection options, as mariabackup has them.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Connection")]
pub struct ConnArgs {
    /// Server host (TCP).
    #[arg(short = 'H', long)]
    pub host: Option<String>,
    /// Server port (TCP).
    #[arg(short = 'P', long)]
    pub port: Option<u16>,
    /// Server socket.
    #[arg(short = 'S', long)]
    pub socket: Option<PathBuf>,
    /// User.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Password (prefer an option file: it would show in the process list;
    /// `MYSQL_PWD` is used when neither gives one).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read options from this file only ([client], [mariabackup],
    /// [mariadb-backup], [xtrabackup], [hotbak] groups).
    #[arg(long)]
    pub defaults_file: Option<PathBuf>,
    /// Read this option file after the global ones (before ~/.my.cnf).
    #[arg(long, value_name = "FILE")]
    pub defaults_extra_file: Option<PathBuf>,
    /// Also read the groups with this suffix ([client_SFX], [mariabackup_SFX], …).
    #[arg(long, value_name = "SFX")]
    pub defaults_group_suffix: Option<String>,
    /// Connect over TLS (also implied by the other --ssl-* options).
    #[arg(long)]
    pub ssl: bool,
    /// CA certificates (PEM) to check the server's certificate against.
    #[arg(long, value_name = "FILE")]
    pub ssl_ca: Option<PathBuf>,
    /// Client certificate (PEM), with --ssl-key.
    #[arg(long, value_name = "FILE", requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// Client private key (PEM), with --ssl-cert.
    #[arg(long, value_name = "FILE", requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// Check the server's certificate chain and host name (not checked otherwise, as the MariaDB 10.11 client).
    #[arg(long)]
    pub ssl_verify_server_cert: bool,
    /// Read no option files.
    #[arg(long)]
    pub no_defaults: bool,
    /// Print the options the option files give, and exit.
    #[arg(long)]
    pub print_defaults: bool,
}

/// Lock modes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LockMode {
    /// MariaDB `BACKUP STAGE` (default).
    #[default]
    BackupStage,
    /// `FLUSH TABLES WITH READ LOCK`.
    Ftwrl,
}

/// On or off.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnOff {
    /// On.
    #[default]
    On,
    /// Off.
    Off,
}

/// How long `BACKUP STAGE BLOCK_DDL` is held.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DdlLockArg {
    /// Only for the final phase: DDL runs during the InnoDB copy and is
    /// tracked through the redo log (default; as mariabackup 10.11).
    #[default]
    Short,
    /// Across the whole copy: DDL waits for the backup (hotbak before 0.3).
    Full,
}

/// Query types for the long-query options.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryTypeArg {
    /// Every query.
    All,
    /// Only SELECTs.
    Select,
    /// Only updates (INSERT, UPDATE, DELETE, REPLACE, ALTER, LOAD, ...).
    Update,
}

/// Compression choice.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressArg {
    /// zstd frames (`.zst`).
    Zstd,
    /// LZ4 frames (`.lz4`).
    Lz4,
}

/// Progress display.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressArg {
    /// A bar on a terminal, timestamped lines otherwise.
    #[default]
    Auto,
    /// Timestamped lines.
    Lines,
    /// Nothing but the summary.
    None,
}

/// Scheduling of the backup's bulk work.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PriorityArg {
    /// Data-file reads, page checks, hashing and compression run in the
    /// `SCHED_IDLE` CPU class and the idle I/O class until the locks that
    /// block the server's writes: full speed on an idle machine, out of the
    /// server's way on a busy one.
    #[default]
    Idle,
    /// Everything at normal priority.
    Normal,
}

/// `hotbak backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Write the backup as plain files into DIR (must be empty or absent).
    #[arg(help_heading = "Output", long, value_name = "DIR", conflicts_with_all = ["stream", "stream_to"])]
    pub target_dir: Option<PathBuf>,
    /// Write an xbstream to stdout (`--stream` or `--stream=xbstream`).
    #[arg(help_heading = "Output", long, num_args = 0..=1, default_missing_value = "xbstream", value_name = "FORMAT")]
    pub stream: Option<String>,
    /// Send the xbstream to tcp://HOST:PORT (pairs with `xbextract --listen`), or upload it
    /// to s3://BUCKET/PREFIX (committed only when the backup completed).
    #[arg(
        help_heading = "Output",
        long,
        value_name = "tcp://HOST:PORT|s3://BUCKET/PREFIX"
    )]
    pub stream_to: Option<String>,
    // -- object storage (issue 16) --
    /// Store options (with --stream-to s3://).
    #[command(flatten)]
    pub s3: super::s3::S3Args,
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Data-file copy workers.
    #[arg(help_heading = "Performance", long, default_value_t = 2)]
    pub parallel: usize,
    /// Session lock_wait_timeout (seconds) for the backup locks.
    #[arg(help_heading = "Locking", long, default_value_t = 31_536_000)]
    pub lock_wait_timeout: u64,
    /// Lock mode.
    #[arg(help_heading = "Locking", long, value_enum, ignore_case = true, default_value_t = LockMode::BackupStage)]
    pub lock: LockMode,
    /// An incremental backup on top of the backup in DIR (its
    /// `xtrabackup_checkpoints` gives the base LSN): only InnoDB pages newer
    /// than it are copied, as `.delta` + `.meta` (mariabackup's format).
    #[arg(
        help_heading = "Incremental",
        long,
        value_name = "DIR",
        conflicts_with = "incremental_lsn"
    )]
    pub incremental_basedir: Option<PathBuf>,
    /// An incremental backup on top of the newest backup recorded with
    /// `--history=NAME` in `mysql.mariadb_backup_history`.
    #[arg(help_heading = "Incremental", long, value_name = "NAME", conflicts_with_all = ["incremental_basedir", "incremental_lsn", "incremental_history_uuid"])]
    pub incremental_history_name: Option<String>,
    /// An incremental backup on top of the backup with this uuid in
    /// `mysql.mariadb_backup_history`.
    #[arg(help_heading = "Incremental", long, value_name = "UUID", conflicts_with_all = ["incremental_basedir", "incremental_lsn"])]
    pub incremental_history_uuid: Option<String>,
    /// An incremental backup from this LSN (the base's `to_lsn`).
    #[arg(help_heading = "Incremental", long, value_name = "LSN")]
    pub incremental_lsn: Option<u64>,
    /// Also write `xtrabackup_checkpoints` and `xtrabackup_info` into DIR
    /// (the local base of the next incremental when streaming).
    #[arg(help_heading = "Output", long, value_name = "DIR")]
    pub extra_lsndir: Option<PathBuf>,
    /// With `--lock=backup-stage`: hold BLOCK_DDL only for the final phase
    /// (`short`, DDL tracked through the redo log) or across the whole copy (`full`).
    #[arg(help_heading = "Locking", long, value_enum, ignore_case = true, default_value_t = DdlLockArg::Short)]
    pub lock_ddl: DdlLockArg,
    /// Take no lock at all (only safe when every table is InnoDB and no DDL runs; no binlog position).
    #[arg(help_heading = "Locking", long)]
    pub no_lock: bool,
    /// Seconds to wait for long queries to finish before locking (0 = do not wait).
    #[arg(help_heading = "Locking", long, default_value_t = 0)]
    pub ftwrl_wait_timeout: u64,
    /// A query running longer than this many seconds counts as long.
    #[arg(help_heading = "Locking", long, default_value_t = 60)]
    pub ftwrl_wait_threshold: u64,
    /// Which long queries to wait for.
    #[arg(help_heading = "Locking", long, value_enum, ignore_case = true, default_value_t = QueryTypeArg::All)]
    pub ftwrl_wait_query_type: QueryTypeArg,
    /// Kill the queries that block the lock after it has waited this many seconds (0 = never).
    #[arg(help_heading = "Locking", long, default_value_t = 0)]
    pub kill_long_queries_timeout: u64,
    /// Which blocking queries to kill.
    #[arg(help_heading = "Locking", long, value_enum, ignore_case = true, default_value_t = QueryTypeArg::Select)]
    pub kill_long_query_type: QueryTypeArg,
    /// Record the replication source position (xtrabackup_slave_info).
    #[arg(help_heading = "Output", long)]
    pub slave_info: bool,
    /// After the backup completed, record it in `mysql.mariadb_backup_history`
    /// (created if missing), with the series name NAME if given (as mariabackup).
    #[arg(help_heading = "Output", long, num_args = 0..=1, default_missing_value = "", value_name = "NAME")]
    pub history: Option<String>,
    /// On a Galera node: record its state (`wsrep_local_state_uuid`,
    /// `wsrep_last_committed`, `wsrep_gtid_domain_id`) at the consistent
    /// point in `xtrabackup_galera_info` and `donor_galera_info`; with a
    /// GTID binlog state, rotate the binlog and include the new file (as
    /// mariabackup). On another server: a warning.
    #[arg(help_heading = "Output", long)]
    pub galera_info: bool,
    /// Stop the replica SQL thread until no temporary tables are open.
    #[arg(help_heading = "Locking", long)]
    pub safe_slave_backup: bool,
    /// Seconds to wait for open temporary tables to close.
    #[arg(help_heading = "Locking", long, default_value_t = 300)]
    pub safe_slave_backup_timeout: u64,
    /// Redo-log poll interval in milliseconds.
    #[arg(help_heading = "Performance", long, default_value_t = 200)]
    pub log_copy_interval: u64,
    /// Warn when redo headroom falls under this percentage of the log capacity.
    #[arg(help_heading = "Performance", long, default_value_t = 50)]
    pub redo_warn_percent: u64,
    /// Directory for temporary files: redo the destination cannot take
    /// yet waits here (after --redo-spool-memory in memory), so a slow
    /// consumer never makes the server overwrite uncopied log. Default:
    /// $TMPDIR, else /tmp.
    #[arg(help_heading = "Output", long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,
    /// Memory for redo waiting for the destination, in MiB, before it
    /// spills to --tmpdir.
    #[arg(
        help_heading = "Output",
        long,
        default_value_t = 64,
        value_name = "MIB"
    )]
    pub redo_spool_memory: usize,
    /// Compress every file (zstd by default).
    #[arg(help_heading = "Compression", long, value_enum, ignore_case = true, num_args = 0..=1, default_missing_value = "zstd", value_name = "ALGO")]
    pub compress: Option<CompressArg>,
    /// Compression level (zstd 1..19, lz4 1..12).
    #[arg(help_heading = "Compression", long, default_value_t = 1)]
    pub compress_level: i32,
    /// Compression threads (default: twice the cores).
    #[arg(help_heading = "Compression", long)]
    pub compress_threads: Option<usize>,
    /// Bytes of input per compressed frame.
    #[arg(help_heading = "Compression", long, default_value_t = 1 << 20)]
    pub compress_chunk_size: usize,
    /// Encrypt every file with AES-256-GCM (hotbak's own authenticated format, `.hbenc`).
    #[arg(help_heading = "Encryption", long, value_name = "ALGO", num_args = 0..=1, default_missing_value = "AES256-GCM")]
    pub encrypt: Option<String>,
    /// Key file: 32 raw bytes or 64 hex characters.
    #[arg(help_heading = "Encryption", long, value_name = "FILE")]
    pub encrypt_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the key (64 hex characters).
    #[arg(help_heading = "Encryption", long, value_name = "VAR")]
    pub encrypt_key_env: Option<String>,
    /// Limit the data-file read rate (MB/s) to spare the server; 0 = unlimited.
    #[arg(help_heading = "Performance", long, default_value_t = 0)]
    pub max_rate: u64,
    /// Pace the data-file reads by measured contention: slow down only
    /// while our reads wait behind the server's own I/O (see README "Pacing").
    #[arg(help_heading = "Performance", long, value_enum, ignore_case = true, default_value_t = OnOff::On)]
    pub pace: OnOff,
    /// The pacing controller's floor (MB/s): it never caps reads lower.
    #[arg(help_heading = "Performance", long, default_value_t = 20)]
    pub pace_floor: u64,
    /// Replaced by --pace: `--max-rate-busy 0` means `--pace off`; other
    /// values are refused (use --max-rate for a fixed cap).
    #[arg(help_heading = "Performance", long, hide = true)]
    pub max_rate_busy: Option<u64>,
    /// CPU and I/O priority of the bulk copy work.
    #[arg(help_heading = "Performance", long, value_enum, ignore_case = true, default_value_t = PriorityArg::Idle)]
    pub priority: PriorityArg,
    /// Progress display on stderr: a bar on a terminal (auto), timestamped
    /// lines, or none.
    #[arg(help_heading = "Output", long, value_enum, ignore_case = true, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// After the run (success or failure), write its metrics to FILE in
    /// Prometheus' text format (node_exporter's textfile collector; the
    /// file is replaced atomically). Names start with `hotbak_backup_`.
    #[arg(help_heading = "Output", long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Partial backup: which tables (mariabackup's options and rules).
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Partial-backup filters, spelled and matched as mariabackup 10.11 does
/// (`format-spec/partial.md`). The system and undo tablespaces, the redo
/// log and the `mysql` schema are always kept.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Partial backup")]
pub struct FilterArgs {
    /// Databases or `db.table` names to keep, separated by spaces.
    #[arg(long, value_name = "LIST")]
    pub databases: Option<String>,
    /// A file with one database or `db.table` to keep per line.
    #[arg(long, value_name = "FILE")]
    pub databases_file: Option<PathBuf>,
    /// Databases or `db.table` names to leave out, separated by spaces.
    #[arg(long, value_name = "LIST")]
    pub databases_exclude: Option<String>,
    /// Regular expressions (POSIX extended, comma-separated) matched
    /// against `db.table`: keep the tables that match.
    #[arg(long, value_name = "REGEX")]
    pub tables: Option<String>,
    /// A file with one fully qualified `db.table` to keep per line.
    #[arg(long, value_name = "FILE")]
    pub tables_file: Option<PathBuf>,
    /// Regular expressions (comma-separated) matched against `db.table`:
    /// leave out the tables that match.
    #[arg(long, value_name = "REGEX")]
    pub tables_exclude: Option<String>,
}

/// `hotbak prepare`.
#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The extracted backup.
    #[arg(long, value_name = "DIR")]
    pub target_dir: PathBuf,
    /// Apply this incremental backup onto --target-dir (a full backup,
    /// prepared by `hotbak prepare`/`mariabackup --prepare` or not yet
    /// prepared, or one with earlier incrementals applied), as
    /// `mariabackup --prepare --incremental-dir` does.
    #[arg(long, value_name = "DIR")]
    pub incremental_dir: Option<PathBuf>,
    /// Apply the redo natively only (no mariadbd): nothing is rolled back,
    /// the backup is left `log-applied` as mariabackup's prepare leaves it
    /// and can take incrementals. Fails (instead of falling back to
    /// mariadbd) when the log holds records the native applier refuses.
    #[arg(
        long,
        visible_alias = "apply-log-only",
        conflicts_with = "server_recovery"
    )]
    pub native: bool,
    /// Recover by starting mariadbd on the backup (the redo applied, then
    /// open transactions rolled back): no incrementals can follow.
    #[arg(long, conflicts_with = "incremental_dir")]
    pub server_recovery: bool,
    /// The mariadbd binary for --server-recovery, and for the fallback
    /// when the native applier refuses (default: found on PATH or /usr/sbin).
    #[arg(long)]
    pub mariadbd: Option<PathBuf>,
    /// Memory: the record budget of the native applier, the buffer pool of
    /// a mariadbd run.
    #[arg(long, default_value = "256M")]
    pub use_memory: String,
    /// A server option for the recovery run, NAME=VALUE, replacing the
    /// `backup-my.cnf` key of that name (repeatable). For a server with
    /// data-at-rest encryption whose key file lives elsewhere on this host:
    /// `--server-option file_key_management_filename=/etc/mysql/keys.txt`
    /// (the native prepare reads the `file_key_management_*` settings from
    /// here too: it decrypts with that key file).
    #[arg(long, value_name = "NAME=VALUE", value_parser = name_value)]
    pub server_option: Vec<(String, String)>,
    /// Also write each InnoDB table's `.cfg` (for `ALTER TABLE … IMPORT
    /// TABLESPACE`) and every table's definition (`hotbak_export`, for
    /// `hotbak restore --table`); on a prepared backup, only this.
    #[arg(long)]
    pub export: bool,
}

/// `NAME=VALUE`.
fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected NAME=VALUE")),
    }
}

/// `hotbak restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The prepared backup.
    #[arg(long, value_name = "DIR")]
    pub target_dir: PathBuf,
    /// The datadir to fill (must be empty or absent; default: the
    /// `datadir` of `--defaults-file`).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["in_place", "defaults_file", "table"])]
    pub datadir: Option<PathBuf>,
    /// The option file of the server to restore: its `[mysqld]`/`[server]`/
    /// `[mariadb]`/`[mariadbd]` `datadir`, `innodb_data_home_dir`,
    /// `innodb_undo_directory` and `innodb_log_group_home_dir` say where the
    /// files go (each must be empty or absent).
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,
    /// Make the prepared backup directory itself the datadir: no second
    /// copy; the backup's metadata files are removed.
    #[arg(long, conflicts_with_all = ["datadir", "defaults_file", "move_back", "copy_back"])]
    pub in_place: bool,
    /// With --in-place: read an xbstream on stdin into --target-dir
    /// (absent or empty), prepare it and restore it in place, in one
    /// command with one sync at the end.
    #[arg(long)]
    pub from_stream: bool,
    /// Key file for an encrypted stream (--from-stream).
    #[arg(long, value_name = "FILE")]
    pub decrypt_key_file: Option<PathBuf>,
    /// Environment variable holding the key as 64 hex characters (--from-stream).
    #[arg(long, value_name = "VAR")]
    pub decrypt_key_env: Option<String>,
    /// Buffer pool of the recovery run (--from-stream).
    #[arg(long, default_value = "256M")]
    pub use_memory: String,
    /// The mariadbd binary for the recovery run (--from-stream).
    #[arg(long)]
    pub mariadbd: Option<PathBuf>,
    /// Where the system tablespace files go (default: the option file's
    /// `innodb_data_home_dir`, else the datadir).
    #[arg(long, value_name = "DIR")]
    pub innodb_data_home_dir: Option<PathBuf>,
    /// Where the undo tablespaces go (default: the option file's, else the datadir).
    #[arg(long, value_name = "DIR")]
    pub innodb_undo_directory: Option<PathBuf>,
    /// Where `ib_logfile0` goes (default: the option file's, else the datadir).
    #[arg(long, value_name = "DIR")]
    pub innodb_log_group_home_dir: Option<PathBuf>,
    /// Move files instead of copying them (rename on one filesystem).
    #[arg(long)]
    pub move_back: bool,
    /// Copy files (the default).
    #[arg(long, conflicts_with = "move_back")]
    pub copy_back: bool,
    /// Files copied at the same time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Cap on the copy rate in MB/s (all files together).
    #[arg(long, value_name = "MB/s")]
    pub max_rate: Option<u64>,
    /// Owner as USER[:GROUP] (default mysql:mysql when run as root).
    #[arg(long)]
    pub owner: Option<String>,
    /// Put the files that lived outside the server's datadir (`DATA
    /// DIRECTORY` tables, symlinked MyISAM/Aria files and database
    /// directories) into the new datadir instead of back at their recorded
    /// places; `.isl` link files are rewritten to name the copies.
    #[arg(long)]
    pub into_datadir: bool,
    /// Progress display on stderr: a bar on a terminal (auto), timestamped
    /// lines, or none.
    #[arg(long, value_enum, ignore_case = true, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Single-table restore.
    #[command(flatten)]
    pub table: TableArgs,
}

/// `hotbak restore --table DB.TABLE --to-server SOCKET`: one table of a
/// backup prepared with `--export` into a running server on this host.
#[derive(Args, Debug, Clone, Default)]
pub struct TableArgs {
    /// The table to put back (`db.table`; created from the backup's
    /// definition if the server lacks it, refused if its definition differs).
    #[arg(long, value_name = "DB.TABLE", requires = "to_server", conflicts_with_all = ["datadir", "in_place", "move_back"])]
    pub table: Option<String>,
    /// With --table: the running server's socket.
    #[arg(long, value_name = "SOCKET", requires = "table")]
    pub to_server: Option<PathBuf>,
    /// With --table: user (the [client] groups of the option files otherwise).
    #[arg(long, requires = "table")]
    pub user: Option<String>,
    /// With --table: password (prefer an option file).
    #[arg(long, env = "MYSQL_PWD", hide_env_values = true, requires = "table")]
    pub password: Option<String>,
    /// With --table: read no option files.
    #[arg(long, requires = "table")]
    pub no_defaults: bool,
}

//! mariabackup 10.11 metadata files, written and parsed byte for byte in
//! mariabackup's layout (see `format-spec/metadata.md`):
//!
//! | file | type |
//! |---|---|
//! | `xtrabackup_checkpoints` | [`Checkpoints`] |
//! | `xtrabackup_info` | [`XtrabackupInfo`] |
//! | `xtrabackup_binlog_info` | [`BinlogInfo`] |
//! | `xtrabackup_slave_info` | [`SlaveInfo`] (rendered from [`ReplicaChannel`]s) |
//! | `xtrabackup_galera_info`, `donor_galera_info` | [`GaleraInfo`] |
//! | `backup-my.cnf` | [`BackupMyCnf`] |
//!
//! Pure: no I/O. Parsers accept the newer `mariadb_backup_*` names' content
//! too (same layout) and tolerate extra keys, which they keep.

use std::fmt::Write as _;

use crate::error::{Classify, ErrorClass};

/// File names in a backup (mariabackup 10.11).
pub mod names {
    /// LSNs and backup type.
    pub const CHECKPOINTS: &str = "xtrabackup_checkpoints";
    /// Summary of the run.
    pub const INFO: &str = "xtrabackup_info";
    /// Binlog file, position, GTID.
    pub const BINLOG_INFO: &str = "xtrabackup_binlog_info";
    /// Replica coordinates (`--slave-info`).
    pub const SLAVE_INFO: &str = "xtrabackup_slave_info";
    /// Galera node state at the consistent point (`--galera-info`).
    pub const GALERA_INFO: &str = "xtrabackup_galera_info";
    /// The same, kept unchanged for a joiner (`--galera-info`).
    pub const DONOR_GALERA_INFO: &str = "donor_galera_info";
    /// Binlog position recovered by prepare from InnoDB.
    pub const BINLOG_POS_INNODB: &str = "xtrabackup_binlog_pos_innodb";
    /// Options for prepare.
    pub const BACKUP_MY_CNF: &str = "backup-my.cnf";
    /// Newer MariaDB (11.x) names of the same files, accepted when reading.
    pub const NEWER: &[(&str, &str)] = &[
        ("mariadb_backup_checkpoints", CHECKPOINTS),
        ("mariadb_backup_info", INFO),
        ("mariadb_backup_binlog_info", BINLOG_INFO),
        ("mariadb_backup_slave_info", SLAVE_INFO),
        ("mariadb_backup_binlog_pos_innodb", BINLOG_POS_INNODB),
    ];
}

/// Largest metadata file accepted by the parsers (bytes).
pub const MAX_METADATA_LEN: usize = 1 << 20;

/// Why a metadata file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Larger than [`MAX_METADATA_LEN`].
    #[error("{file}: {len} bytes, larger than the limit of {MAX_METADATA_LEN}")]
    TooLong {
        /// File name.
        file: &'static str,
        /// Length.
        len: usize,
    },
    /// A required key is missing.
    #[error("{file}: missing key {key}")]
    MissingKey {
        /// File name.
        file: &'static str,
        /// Key.
        key: &'static str,
    },
    /// A value does not parse.
    #[error("{file}: bad value {value:?} for {key}")]
    BadValue {
        /// File name.
        file: &'static str,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// A line is not `key = value` (or not the expected shape).
    #[error("{file}: line {line} is malformed: {text:?}")]
    BadLine {
        /// File name.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Corrupt
    }
}

type Result<T> = std::result::Result<T, Error>;

fn check_len(file: &'static str, text: &str) -> Result<()> {
    if text.len() > MAX_METADATA_LEN {
        return Err(Error::TooLong {
            file,
            len: text.len(),
        });
    }
    Ok(())
}

/// Split `key = value` lines (mariabackup's `%s = %s\n`), in order. A line
/// `key =` (nothing after) has an empty value.
fn kv_lines(file: &'static str, text: &str) -> Result<Vec<(String, String)>> {
    check_len(file, text)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(Error::BadLine {
                file,
                line: i + 1,
                text: line.to_owned(),
            });
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(Error::BadLine {
                file,
                line: i + 1,
                text: line.to_owned(),
            });
        }
        let v = v.strip_prefix(' ').unwrap_or(v);
        out.push((k.to_owned(), v.trim_end_matches('\r').to_owned()));
    }
    Ok(out)
}

fn take<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn need<'a>(file: &'static str, kv: &'a [(String, String)], key: &'static str) -> Result<&'a str> {
    take(kv, key).ok_or(Error::MissingKey { file, key })
}

fn num<T: std::str::FromStr>(file: &'static str, key: &str, v: &str) -> Result<T> {
    v.trim().parse().map_err(|_| Error::BadValue {
        file,
        key: key.to_owned(),
        value: v.to_owned(),
    })
}

/// The last non-empty line of a one-record file, with its 0-based index,
/// after the length check.
fn last_line<'a>(file: &'static str, text: &'a str, key: &'static str) -> Result<(usize, &'a str)> {
    check_len(file, text)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .last()
        .ok_or(Error::MissingKey { file, key })
}

/// `backup_type` in `xtrabackup_checkpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupType {
    /// A full backup not yet prepared.
    FullBackuped,
    /// An incremental backup.
    Incremental,
    /// Prepared (redo applied).
    LogApplied,
    /// Prepared by older tools.
    FullPrepared,
    /// Anything else, kept verbatim.
    Other(String),
}

impl BackupType {
    /// The text form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            BackupType::FullBackuped => "full-backuped",
            BackupType::Incremental => "incremental",
            BackupType::LogApplied => "log-applied",
            BackupType::FullPrepared => "full-prepared",
            BackupType::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "full-backuped" => BackupType::FullBackuped,
            "incremental" => BackupType::Incremental,
            "log-applied" => BackupType::LogApplied,
            "full-prepared" => BackupType::FullPrepared,
            o => BackupType::Other(o.to_owned()),
        }
    }
}

/// `xtrabackup_checkpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    /// Backup type.
    pub backup_type: BackupType,
    /// 0 for a full backup; the base's `to_lsn` for an incremental.
    pub from_lsn: u64,
    /// The server checkpoint LSN at BLOCK_COMMIT (base of the next incremental).
    pub to_lsn: u64,
    /// End of the copied redo log.
    pub last_lsn: u64,
    /// `--binlog-info=LOCKLESS`: prepare recovers the binlog position from InnoDB.
    pub recover_binlog_info: bool,
}

impl Checkpoints {
    /// File name.
    pub const FILE: &'static str = names::CHECKPOINTS;

    /// Render exactly as mariabackup 10.11.
    #[must_use]
    pub fn render(&self) -> String {
        format!(
            "backup_type = {}\nfrom_lsn = {}\nto_lsn = {}\nlast_lsn = {}\nrecover_binlog_info = {}\n",
            self.backup_type.as_str(),
            self.from_lsn,
            self.to_lsn,
            self.last_lsn,
            u8::from(self.recover_binlog_info)
        )
    }

    /// Parse (any key order; `recover_binlog_info` optional, as in Percona 8.0).
    ///
    /// # Errors
    /// A missing `backup_type`/`from_lsn`/`to_lsn`/`last_lsn`, or a bad number.
    pub fn parse(text: &str) -> Result<Self> {
        let f = Self::FILE;
        let kv = kv_lines(f, text)?;
        let rbi = match take(&kv, "recover_binlog_info") {
            Some(v) => num::<u8>(f, "recover_binlog_info", v)? != 0,
            None => false,
        };
        Ok(Checkpoints {
            backup_type: BackupType::parse(need(f, &kv, "backup_type")?),
            from_lsn: num(f, "from_lsn", need(f, &kv, "from_lsn")?)?,
            to_lsn: num(f, "to_lsn", need(f, &kv, "to_lsn")?)?,
            last_lsn: num(f, "last_lsn", need(f, &kv, "last_lsn")?)?,
            recover_binlog_info: rbi,
        })
    }
}

/// `xtrabackup_binlog_info`: `FILE\tPOS\tGTID\n`, or `FILE\tPOS\n` without GTID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinlogInfo {
    /// Binlog file name.
    pub file: String,
    /// Position in it.
    pub position: u64,
    /// `@@gtid_current_pos` (MariaDB always has the column, possibly empty).
    pub gtid: Option<String>,
}

impl BinlogInfo {
    /// File name.
    pub const FILE: &'static str = names::BINLOG_INFO;

    /// Render as mariabackup.
    #[must_use]
    pub fn render(&self) -> String {
        match &self.gtid {
            Some(g) => format!("{}\t{}\t{}\n", self.file, self.position, g),
            None => format!("{}\t{}\n", self.file, self.position),
        }
    }

    /// The `binlog_pos` value of `xtrabackup_info`.
    #[must_use]
    pub fn binlog_pos_text(&self) -> String {
        match &self.gtid {
            Some(g) => {
                format!(
                    "filename '{}', position '{}', GTID of the last change '{}'",
                    self.file, self.position, g
                )
            }
            None => format!("filename '{}', position '{}'", self.file, self.position),
        }
    }

    /// Parse the last non-empty line (older tools wrote one line per binlog).
    /// Also reads `xtrabackup_binlog_pos_innodb` (`./FILE\tPOS`).
    ///
    /// # Errors
    /// No line, fewer than 2 columns, or a bad position.
    pub fn parse(text: &str) -> Result<Self> {
        let f = Self::FILE;
        let (n, line) = last_line(f, text, "file")?;
        let cols: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
        if cols.len() < 2 || cols.len() > 3 || cols[0].is_empty() {
            return Err(Error::BadLine {
                file: f,
                line: n + 1,
                text: line.to_owned(),
            });
        }
        Ok(BinlogInfo {
            file: cols[0].to_owned(),
            position: num(f, "position", cols[1])?,
            gtid: cols.get(2).map(|s| (*s).to_owned()),
        })
    }
}

/// `xtrabackup_galera_info` (and `donor_galera_info`, the same text):
/// `UUID:SEQNO DOMAIN\n`, the node's `wsrep_local_state_uuid`,
/// `wsrep_last_committed` and `wsrep_gtid_domain_id` at the consistent
/// point. Older tools wrote `UUID:SEQNO` alone; the parser takes both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaleraInfo {
    /// `wsrep_local_state_uuid` (the cluster's state UUID).
    pub uuid: String,
    /// `wsrep_last_committed` (-1 for an undefined position).
    pub seqno: i64,
    /// `wsrep_gtid_domain_id` (absent in the older one-field form).
    pub domain_id: Option<u32>,
}

impl GaleraInfo {
    /// File name.
    pub const FILE: &'static str = names::GALERA_INFO;
    /// The donor's copy (mariabackup 10.11 writes both).
    pub const DONOR_FILE: &'static str = names::DONOR_GALERA_INFO;

    /// Render as mariabackup 10.11.
    #[must_use]
    pub fn render(&self) -> String {
        match self.domain_id {
            Some(d) => format!("{}:{} {}\n", self.uuid, self.seqno, d),
            None => format!("{}:{}\n", self.uuid, self.seqno),
        }
    }

    /// Parse the last non-empty line (the file has one).
    ///
    /// # Errors
    /// No line, no `:`, an empty UUID, or a bad seqno or domain.
    pub fn parse(text: &str) -> Result<Self> {
        let f = Self::FILE;
        let (n, line) = last_line(f, text, "uuid")?;
        let bad = || Error::BadLine {
            file: f,
            line: n + 1,
            text: line.to_owned(),
        };
        let mut fields = line.split_whitespace();
        let state = fields.next().ok_or_else(bad)?;
        let domain = fields.next();
        if fields.next().is_some() {
            return Err(bad());
        }
        let (uuid, seqno) = state.rsplit_once(':').ok_or_else(bad)?;
        if uuid.is_empty() {
            return Err(bad());
        }
        Ok(GaleraInfo {
            uuid: uuid.to_owned(),
            seqno: num(f, "seqno", seqno)?,
            domain_id: domain.map(|d| num(f, "domain_id", d)).transpose()?,
        })
    }
}

/// mariabackup 10.11's backup history table, `mysql.mariadb_backup_history`
/// (`--history`): its definition, and one backup's row.
pub mod history {
    use super::XtrabackupInfo;

    /// The table.
    pub const TABLE: &str = "mysql.mariadb_backup_history";

    /// Its definition, as mariabackup 10.11 creates it when missing.
    pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS mysql.mariadb_backup_history(\
        uuid VARCHAR(40) NOT NULL PRIMARY KEY,\
        name VARCHAR(255) DEFAULT NULL,\
        tool_name VARCHAR(255) DEFAULT NULL,\
        tool_command TEXT DEFAULT NULL,\
        tool_version VARCHAR(255) DEFAULT NULL,\
        ibbackup_version VARCHAR(255) DEFAULT NULL,\
        server_version VARCHAR(255) DEFAULT NULL,\
        start_time TIMESTAMP NULL DEFAULT NULL,\
        end_time TIMESTAMP NULL DEFAULT NULL,\
        lock_time BIGINT UNSIGNED DEFAULT NULL,\
        binlog_pos VARCHAR(128) DEFAULT NULL,\
        innodb_from_lsn BIGINT UNSIGNED DEFAULT NULL,\
        innodb_to_lsn BIGINT UNSIGNED DEFAULT NULL,\
        partial ENUM('Y', 'N') DEFAULT NULL,\
        incremental ENUM('Y', 'N') DEFAULT NULL,\
        format ENUM('file', 'tar', 'mbstream') DEFAULT NULL,\
        compressed ENUM('Y', 'N') DEFAULT NULL\
        ) CHARACTER SET utf8 ENGINE=innodb";

    /// Run before [`CREATE`], as mariabackup 10.11 does: a table made by an
    /// older tool (`format` without `mbstream`) takes the new value.
    pub const WIDEN_FORMAT: &str = "ALTER TABLE IF EXISTS mysql.mariadb_backup_history \
        MODIFY format ENUM('file', 'tar', 'mbstream') DEFAULT NULL";

    /// The insert, with one `?` per [`Row`] field in order (the times are
    /// Unix seconds, as mariabackup passes them to `FROM_UNIXTIME`).
    pub const INSERT: &str = "INSERT INTO mysql.mariadb_backup_history(\
        uuid, name, tool_name, tool_command, tool_version, ibbackup_version, \
        server_version, start_time, end_time, lock_time, binlog_pos, \
        innodb_from_lsn, innodb_to_lsn, partial, incremental, format, compressed) \
        VALUES (?, ?, ?, ?, ?, ?, ?, FROM_UNIXTIME(?), FROM_UNIXTIME(?), ?, ?, ?, ?, ?, ?, ?, ?)";

    /// The `uuid` and `innodb_to_lsn` of the newest backup of a series
    /// (`--incremental-history-name`); one `?`: the name.
    pub const LAST_LSN_BY_NAME: &str =
        "SELECT uuid, innodb_to_lsn FROM mysql.mariadb_backup_history \
        WHERE name = ? AND innodb_to_lsn IS NOT NULL ORDER BY innodb_to_lsn DESC LIMIT 1";

    /// The same for one backup (`--incremental-history-uuid`); one `?`: the uuid.
    pub const LAST_LSN_BY_UUID: &str =
        "SELECT uuid, innodb_to_lsn FROM mysql.mariadb_backup_history \
        WHERE uuid = ? AND innodb_to_lsn IS NOT NULL ORDER BY innodb_to_lsn DESC LIMIT 1";

    /// One value of the insert.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Value {
        /// SQL `NULL`.
        Null,
        /// A string.
        Text(String),
        /// An unsigned number.
        UInt(u64),
        /// A signed number.
        Int(i64),
    }

    /// One backup's row: what its `xtrabackup_info` says, with the times
    /// as Unix seconds.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Row {
        /// The [`INSERT`]'s values, in its column order.
        pub values: Vec<Value>,
    }

    fn yn(b: bool) -> Value {
        Value::Text(if b { "Y" } else { "N" }.to_owned())
    }

    impl Row {
        /// The row of the backup `info` describes, started and ended at
        /// these Unix times. `binlog_pos` is `NULL` without a binlog
        /// position, `format` is `file` or `mbstream` (the table's names;
        /// `xbstream` is written `mbstream`), `compressed` `Y` or `N`.
        #[must_use]
        pub fn new(info: &XtrabackupInfo, start_unix: i64, end_unix: i64) -> Row {
            let text = |s: &str| Value::Text(s.to_owned());
            let format = if info.format == "file" {
                "file"
            } else {
                "mbstream"
            };
            Row {
                values: vec![
                    text(&info.uuid),
                    text(&info.name),
                    text(&info.tool_name),
                    text(&info.tool_command),
                    text(&info.tool_version),
                    text(&info.ibbackup_version),
                    text(&info.server_version),
                    Value::Int(start_unix),
                    Value::Int(end_unix),
                    Value::UInt(u64::try_from(info.lock_time).unwrap_or(0)),
                    if info.binlog_pos.is_empty() {
                        Value::Null
                    } else {
                        text(&info.binlog_pos)
                    },
                    Value::UInt(info.innodb_from_lsn),
                    Value::UInt(info.innodb_to_lsn),
                    yn(info.partial),
                    yn(info.incremental),
                    text(format),
                    yn(info.compressed != "N"),
                ],
            }
        }
    }
}

/// One replication connection, from `SHOW ALL SLAVES STATUS`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReplicaChannel {
    /// `Connection_name` (empty for the default connection).
    pub connection_name: String,
    /// `Master_Host`.
    pub master_host: String,
    /// `Relay_Master_Log_File`.
    pub relay_master_log_file: String,
    /// `Exec_Master_Log_Pos`.
    pub exec_master_log_pos: u64,
    /// `Using_Gtid` (`No`, `Slave_Pos`, `Current_Pos`).
    pub using_gtid: String,
    /// `Slave_SQL_Running` = `Yes`.
    pub sql_running: bool,
    /// `Slave_IO_Running` = `Yes`.
    pub io_running: bool,
}

impl ReplicaChannel {
    fn uses_gtid(&self) -> bool {
        self.using_gtid != "No"
    }

    fn quoted_name(&self) -> String {
        format!("'{}'", self.connection_name)
    }
}

/// `xtrabackup_slave_info` plus the one-line summary mariabackup logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaveInfo {
    /// The file content (SQL to point a new replica at the same place).
    pub sql: String,
    /// Summary ("master '' filename 'F' position 'P'"; channels separated by "; ").
    pub comment: String,
}

impl SlaveInfo {
    /// File name.
    pub const FILE: &'static str = names::SLAVE_INFO;

    /// Build as mariabackup 10.11 (`Show_slave_status::get_slave_info`):
    /// if `gtid_slave_pos` is non-empty and any channel uses GTID, first
    /// `SET GLOBAL gtid_slave_pos = '…';`; then per channel either
    /// `CHANGE MASTER ['name' ]TO master_use_gtid = slave_pos;` or
    /// `CHANGE MASTER ['name' ]TO MASTER_LOG_FILE='F', MASTER_LOG_POS=P;`.
    /// `None` when there is no channel (not a replica).
    #[must_use]
    pub fn from_channels(gtid_slave_pos: &str, channels: &[ReplicaChannel]) -> Option<SlaveInfo> {
        if channels.is_empty() {
            return None;
        }
        let mut sql = String::new();
        let mut comment = String::new();
        let have_gtid = !gtid_slave_pos.is_empty();
        if have_gtid && channels.iter().any(ReplicaChannel::uses_gtid) {
            let _ = writeln!(sql, "SET GLOBAL gtid_slave_pos = '{gtid_slave_pos}';");
            let _ = write!(comment, "gtid_slave_pos '{gtid_slave_pos}'");
        }
        for ch in channels {
            if !comment.is_empty() {
                comment.push_str("; ");
            }
            let name = if ch.connection_name.is_empty() {
                String::new()
            } else {
                format!("{} ", ch.quoted_name())
            };
            let ident = if ch.connection_name.is_empty() {
                "''".to_owned()
            } else {
                ch.quoted_name()
            };
            if have_gtid && ch.uses_gtid() {
                let _ = writeln!(sql, "CHANGE MASTER {name}TO master_use_gtid = slave_pos;");
                let _ = write!(comment, "master {ident} master_use_gtid = slave_pos");
            } else {
                let _ = writeln!(
                    sql,
                    "CHANGE MASTER {name}TO MASTER_LOG_FILE='{}', MASTER_LOG_POS={};",
                    ch.relay_master_log_file, ch.exec_master_log_pos
                );
                let _ = write!(
                    comment,
                    "master {ident} filename '{}' position '{}'",
                    ch.relay_master_log_file, ch.exec_master_log_pos
                );
            }
        }
        Some(SlaveInfo { sql, comment })
    }
}

/// Mask secrets in a command line as mariabackup's `make_argv` does
/// (`--password=...`, `--password ...`, `-p...`), plus hotbak's key options
/// (`--encrypt-key`, `--encrypt-key-file`, `--key`, `--key-file`), and join
/// with spaces. `args` excludes the program name.
#[must_use]
pub fn mask_command_line(args: &[String]) -> String {
    const SECRET_OPTS: &[&str] = &[
        "--password",
        "--encrypt-key",
        "--key",
        "--encrypt-key-file",
        "--key-file",
    ];
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(opt) = SECRET_OPTS.iter().find(|o| a.starts_with(&format!("{o}="))) {
            out.push(format!("{opt}=..."));
        } else if SECRET_OPTS.contains(&a.as_str()) {
            out.push(format!("{a} ..."));
            i += 1;
        } else if a.starts_with("-p") && !a.starts_with("--") {
            out.push("-p...".to_owned());
        } else {
            out.push(a.clone());
        }
        i += 1;
    }
    out.join(" ")
}

/// `%Y-%m-%d %H:%M:%S`, the time format of `xtrabackup_info`.
#[must_use]
pub fn format_time<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `xtrabackup_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtrabackupInfo {
    /// Backup UUID.
    pub uuid: String,
    /// `--history` name (empty if none).
    pub name: String,
    /// Program name (`mariabackup`, `hotbak`).
    pub tool_name: String,
    /// Arguments, secrets masked ([`mask_command_line`]).
    pub tool_command: String,
    /// Tool version.
    pub tool_version: String,
    /// Engine version (mariabackup: same as `tool_version`).
    pub ibbackup_version: String,
    /// `SELECT VERSION()`.
    pub server_version: String,
    /// Local start time, [`format_time`].
    pub start_time: String,
    /// Local end time, [`format_time`].
    pub end_time: String,
    /// Seconds under lock (mariabackup 10.11 writes 0).
    pub lock_time: i64,
    /// [`BinlogInfo::binlog_pos_text`] or empty.
    pub binlog_pos: String,
    /// `from_lsn`.
    pub innodb_from_lsn: u64,
    /// `to_lsn`.
    pub innodb_to_lsn: u64,
    /// Partial backup.
    pub partial: bool,
    /// Incremental backup.
    pub incremental: bool,
    /// `file` (directory) or `mbstream` (streamed).
    pub format: String,
    /// `compressed` or `N`.
    pub compressed: String,
    /// Keys after `compressed` (other tools), kept in order.
    pub extra: Vec<(String, String)>,
}

impl XtrabackupInfo {
    /// File name.
    pub const FILE: &'static str = names::INFO;
    /// hotbak's extra key recording a partial backup's filter options.
    pub const PARTIAL_FILTER: &'static str = "partial_filter";

    /// Render with mariabackup 10.11's keys and order, then `extra`.
    #[must_use]
    pub fn render(&self) -> String {
        let yn = |b: bool| if b { "Y" } else { "N" };
        let mut s = format!(
            "uuid = {}\nname = {}\ntool_name = {}\ntool_command = {}\ntool_version = {}\n\
             ibbackup_version = {}\nserver_version = {}\nstart_time = {}\nend_time = {}\n\
             lock_time = {}\nbinlog_pos = {}\ninnodb_from_lsn = {}\ninnodb_to_lsn = {}\n\
             partial = {}\nincremental = {}\nformat = {}\ncompressed = {}\n",
            self.uuid,
            self.name,
            self.tool_name,
            self.tool_command,
            self.tool_version,
            self.ibbackup_version,
            self.server_version,
            self.start_time,
            self.end_time,
            self.lock_time,
            self.binlog_pos,
            self.innodb_from_lsn,
            self.innodb_to_lsn,
            yn(self.partial),
            yn(self.incremental),
            self.format,
            self.compressed
        );
        for (k, v) in &self.extra {
            let _ = writeln!(s, "{k} = {v}");
        }
        s
    }

    /// Parse. Missing text keys become empty; LSNs and flags must parse.
    ///
    /// # Errors
    /// A malformed line or a bad number / flag.
    pub fn parse(text: &str) -> Result<Self> {
        const KNOWN: &[&str] = &[
            "uuid",
            "name",
            "tool_name",
            "tool_command",
            "tool_version",
            "ibbackup_version",
            "server_version",
            "start_time",
            "end_time",
            "lock_time",
            "binlog_pos",
            "innodb_from_lsn",
            "innodb_to_lsn",
            "partial",
            "incremental",
            "format",
            "compressed",
        ];
        let f = Self::FILE;
        let kv = kv_lines(f, text)?;
        let s = |k: &str| take(&kv, k).unwrap_or("").to_owned();
        let yn = |k: &str| -> Result<bool> {
            match take(&kv, k).unwrap_or("N") {
                "Y" => Ok(true),
                "N" => Ok(false),
                v => Err(Error::BadValue {
                    file: f,
                    key: k.to_owned(),
                    value: v.to_owned(),
                }),
            }
        };
        let n = |k: &'static str| -> Result<u64> { num(f, k, need(f, &kv, k)?) };
        Ok(XtrabackupInfo {
            uuid: s("uuid"),
            name: s("name"),
            tool_name: s("tool_name"),
            tool_command: s("tool_command"),
            tool_version: s("tool_version"),
            ibbackup_version: s("ibbackup_version"),
            server_version: s("server_version"),
            start_time: s("start_time"),
            end_time: s("end_time"),
            lock_time: match take(&kv, "lock_time") {
                Some(v) => num(f, "lock_time", v)?,
                None => 0,
            },
            binlog_pos: s("binlog_pos"),
            innodb_from_lsn: n("innodb_from_lsn")?,
            innodb_to_lsn: n("innodb_to_lsn")?,
            partial: yn("partial")?,
            incremental: yn("incremental")?,
            format: s("format"),
            compressed: take(&kv, "compressed").unwrap_or("N").to_owned(),
            extra: kv
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .cloned()
                .collect(),
        })
    }
}

/// Keep only file names in an `innodb_data_file_path` (mariabackup's
/// `make_local_paths`): `/a/ibdata1:12M;/b/ibdata2:1G:autoextend` →
/// `ibdata1:12M;ibdata2:1G:autoextend`. The backup holds them in its root.
#[must_use]
pub fn local_data_file_path(path: &str) -> String {
    if !path.contains('/') {
        return path.to_owned();
    }
    path.split(';')
        .filter(|t| !t.is_empty())
        .map(|t| t.rsplit_once('/').map_or(t, |(_, f)| f))
        .collect::<Vec<_>>()
        .join(";")
}

/// `backup-my.cnf`: the `[mysqld]` options prepare needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupMyCnf {
    /// `innodb_checksum_algorithm`.
    pub innodb_checksum_algorithm: String,
    /// `innodb_data_file_path`, file names only ([`local_data_file_path`]).
    pub innodb_data_file_path: String,
    /// `innodb_log_file_size` in bytes.
    pub innodb_log_file_size: u64,
    /// `innodb_page_size` in bytes.
    pub innodb_page_size: u64,
    /// `innodb_undo_directory` (`./` in a backup).
    pub innodb_undo_directory: String,
    /// `innodb_undo_tablespaces`.
    pub innodb_undo_tablespaces: u32,
    /// `innodb_compression_level`.
    pub innodb_compression_level: u32,
    /// `innodb_buffer_pool_filename`, if set on the server.
    pub innodb_buffer_pool_filename: Option<String>,
    /// Encryption plugin lines (mariabackup's `encryption_plugin_get_config`),
    /// each ending in `\n`; empty when no encryption plugin.
    pub encryption_config: String,
    /// Other `[mysqld]` keys found when parsing, in order.
    pub extra: Vec<(String, String)>,
}

impl BackupMyCnf {
    /// File name.
    pub const FILE: &'static str = names::BACKUP_MY_CNF;

    /// Render exactly as mariabackup 10.11 (`write_backup_config_file`),
    /// including its two trailing empty lines.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = format!(
            "# This options file was generated by innobackupex.\n\n# The server\n[mysqld]\n\
             innodb_checksum_algorithm={}\ninnodb_data_file_path={}\ninnodb_log_file_size={}\n\
             innodb_page_size={}\ninnodb_undo_directory={}\ninnodb_undo_tablespaces={}\n\
             innodb_compression_level={}\n",
            self.innodb_checksum_algorithm,
            self.innodb_data_file_path,
            self.innodb_log_file_size,
            self.innodb_page_size,
            self.innodb_undo_directory,
            self.innodb_undo_tablespaces,
            self.innodb_compression_level
        );
        if let Some(f) = &self.innodb_buffer_pool_filename {
            s.push_str("innodb_buffer_pool_filename=");
            s.push_str(f);
        }
        s.push('\n');
        s.push_str(&self.encryption_config);
        s.push('\n');
        s
    }

    /// Parse the `[mysqld]` section (other sections are ignored; `_`/`-`
    /// in names both accepted).
    ///
    /// # Errors
    /// Missing page size / data file path, or a bad number.
    pub fn parse(text: &str) -> Result<Self> {
        let f = Self::FILE;
        check_len(f, text)?;
        let mut in_mysqld = false;
        let mut kv: Vec<(String, String)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                in_mysqld = line.eq_ignore_ascii_case("[mysqld]");
                continue;
            }
            if !in_mysqld {
                continue;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            let k = k.trim().replace('-', "_");
            if k.is_empty() {
                return Err(Error::BadLine {
                    file: f,
                    line: i + 1,
                    text: raw.to_owned(),
                });
            }
            kv.push((k, v.trim().to_owned()));
        }
        const KNOWN: &[&str] = &[
            "innodb_checksum_algorithm",
            "innodb_data_file_path",
            "innodb_log_file_size",
            "innodb_page_size",
            "innodb_undo_directory",
            "innodb_undo_tablespaces",
            "innodb_compression_level",
            "innodb_buffer_pool_filename",
        ];
        let opt_num = |k: &str, default: u64| -> Result<u64> {
            match take(&kv, k) {
                Some(v) => num(f, k, v),
                None => Ok(default),
            }
        };
        Ok(BackupMyCnf {
            innodb_checksum_algorithm: take(&kv, "innodb_checksum_algorithm")
                .unwrap_or("crc32")
                .to_owned(),
            innodb_data_file_path: need(f, &kv, "innodb_data_file_path")?.to_owned(),
            innodb_log_file_size: opt_num("innodb_log_file_size", 96 << 20)?,
            innodb_page_size: num(f, "innodb_page_size", need(f, &kv, "innodb_page_size")?)?,
            innodb_undo_directory: take(&kv, "innodb_undo_directory")
                .unwrap_or("./")
                .to_owned(),
            innodb_undo_tablespaces: u32::try_from(opt_num("innodb_undo_tablespaces", 0)?)
                .map_err(|_| Error::BadValue {
                    file: f,
                    key: "innodb_undo_tablespaces".into(),
                    value: String::new(),
                })?,
            innodb_compression_level: u32::try_from(opt_num("innodb_compression_level", 6)?)
                .map_err(|_| Error::BadValue {
                    file: f,
                    key: "innodb_compression_level".into(),
                    value: String::new(),
                })?,
            innodb_buffer_pool_filename: take(&kv, "innodb_buffer_pool_filename")
                .map(str::to_owned),
            encryption_config: String::new(),
            extra: kv
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .cloned()
                .collect(),
        })
    }

    /// `mariadbd` arguments that fix the on-disk geometry of the backup, for
    /// starting a server on it (prepare): page size, data file path, undo
    /// settings, plus every extra `[mysqld]` key (encryption plugin settings).
    /// The undo directory is the datadir.
    #[must_use]
    pub fn server_args(&self) -> Vec<String> {
        let mut v = vec![
            format!("--innodb-page-size={}", self.innodb_page_size),
            format!("--innodb-data-file-path={}", self.innodb_data_file_path),
            format!("--innodb-undo-tablespaces={}", self.innodb_undo_tablespaces),
        ];
        for (k, val) in &self.extra {
            let k = k.replace('_', "-");
            // mariabackup quotes plugin_dir.
            let val = val
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(val);
            // An empty value stays one (`file_key_management_filekey=`:
            // no key file key), never a bare flag.
            v.push(format!("--{k}={val}"));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Files of a real `mariabackup --backup` (10.11.19, Debian 12) of a
    // throwaway server with --log-bin, captured 2026-11-21.
    const REAL_CHECKPOINTS: &str =
        "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 48237\nlast_lsn = 48676\nrecover_binlog_info = 0\n";
    const REAL_BINLOG_INFO: &str = "mysql-bin.000002\t813\t0-1-6\n";
    const REAL_INFO: &str = "uuid = fffa40e9-e600-11f1-bbf0-02fc00000001\nname = \ntool_name = mariabackup\n\
tool_command = --no-defaults --backup --target-dir=/tmp/hb-meta/backup --socket=/tmp/hb-meta/sock --user=bk --password=... --slave-info\n\
tool_version = 10.11.19-MariaDB\nibbackup_version = 10.11.19-MariaDB\nserver_version = 10.11.19-MariaDB-0+deb12u1-log\n\
start_time = 2026-11-21 23:12:18\nend_time = 2026-11-21 23:12:19\nlock_time = 0\n\
binlog_pos = filename 'mysql-bin.000002', position '813', GTID of the last change '0-1-6'\n\
innodb_from_lsn = 0\ninnodb_to_lsn = 48237\npartial = N\nincremental = N\nformat = file\ncompressed = N\n";
    const REAL_MY_CNF: &str = "# This options file was generated by innobackupex.\n\n# The server\n[mysqld]\n\
innodb_checksum_algorithm=crc32\ninnodb_data_file_path=ibdata1:12M:autoextend\ninnodb_log_file_size=16777216\n\
innodb_page_size=16384\ninnodb_undo_directory=./\ninnodb_undo_tablespaces=0\ninnodb_compression_level=6\n\n\n";

    // `mariabackup --backup --galera-info` (10.11.19, Debian 12) on a
    // single-node Galera cluster (galera-4 26.4.23), 2026-12-05.
    const REAL_GALERA_INFO: &str = "0a0c0fbf-f074-11f1-b737-8b33a5e2957c:4 0\n";

    #[test]
    fn real_galera_info_round_trip() {
        let g = GaleraInfo::parse(REAL_GALERA_INFO).expect("parse");
        assert_eq!(g.uuid, "0a0c0fbf-f074-11f1-b737-8b33a5e2957c");
        assert_eq!(g.seqno, 4);
        assert_eq!(g.domain_id, Some(0));
        assert_eq!(g.render(), REAL_GALERA_INFO);
    }

    #[test]
    fn galera_info_older_form_and_bad_lines() {
        let g = GaleraInfo::parse("\nabc:-1\n").expect("older form");
        assert_eq!((g.uuid.as_str(), g.seqno, g.domain_id), ("abc", -1, None));
        assert_eq!(g.render(), "abc:-1\n");
        for bad in ["", "abc", ":5 0", "abc:x 0", "abc:5 zz", "abc:5 0 9"] {
            assert!(GaleraInfo::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn history_row_matches_the_insert() {
        let info = XtrabackupInfo::parse(REAL_INFO).expect("parse");
        let row = history::Row::new(&info, 1_700_000_000, 1_700_000_009);
        // One value per placeholder, one column per value.
        assert_eq!(row.values.len(), history::INSERT.matches('?').count());
        let cols = history::INSERT
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(c, _)| c.split(',').count());
        assert_eq!(cols, Some(row.values.len()));
        use history::Value::{Int, Null, Text, UInt};
        assert_eq!(row.values[0], Text(info.uuid.clone()));
        assert_eq!(row.values[7], Int(1_700_000_000));
        assert_eq!(row.values[10], Text(info.binlog_pos.clone()));
        assert_eq!(row.values[12], UInt(48237));
        assert_eq!(row.values[15], Text("file".into()));
        assert_eq!(row.values[16], Text("N".into()));
        let mut streamed = info.clone();
        streamed.format = "xbstream".into();
        streamed.binlog_pos.clear();
        streamed.compressed = "compressed".into();
        let row = history::Row::new(&streamed, 0, 0);
        assert_eq!(row.values[10], Null);
        assert_eq!(row.values[15], Text("mbstream".into()));
        assert_eq!(row.values[16], Text("Y".into()));
    }

    #[test]
    fn real_checkpoints_round_trip() {
        let c = Checkpoints::parse(REAL_CHECKPOINTS).expect("parse");
        assert_eq!(c.backup_type, BackupType::FullBackuped);
        assert_eq!(
            (c.from_lsn, c.to_lsn, c.last_lsn, c.recover_binlog_info),
            (0, 48237, 48676, false)
        );
        assert_eq!(c.render(), REAL_CHECKPOINTS);
        let inc = Checkpoints {
            backup_type: BackupType::Incremental,
            from_lsn: 5,
            ..c
        };
        assert_eq!(Checkpoints::parse(&inc.render()).expect("re-parse"), inc);
        assert!(Checkpoints::parse("backup_type = full-backuped\nfrom_lsn = x\n").is_err());
        assert!(matches!(
            Checkpoints::parse("backup_type = full-backuped\n"),
            Err(Error::MissingKey {
                key: "from_lsn",
                ..
            })
        ));
    }

    #[test]
    fn real_binlog_info_round_trip() {
        let b = BinlogInfo::parse(REAL_BINLOG_INFO).expect("parse");
        assert_eq!(
            b,
            BinlogInfo {
                file: "mysql-bin.000002".into(),
                position: 813,
                gtid: Some("0-1-6".into())
            }
        );
        assert_eq!(b.render(), REAL_BINLOG_INFO);
        assert_eq!(
            b.binlog_pos_text(),
            "filename 'mysql-bin.000002', position '813', GTID of the last change '0-1-6'"
        );
        let two = BinlogInfo {
            gtid: None,
            ..b.clone()
        };
        assert_eq!(two.render(), "mysql-bin.000002\t813\n");
        assert_eq!(BinlogInfo::parse(&two.render()).expect("2 cols"), two);
        let empty_gtid = BinlogInfo {
            gtid: Some(String::new()),
            ..b
        };
        assert_eq!(empty_gtid.render(), "mysql-bin.000002\t813\t\n");
        assert_eq!(
            BinlogInfo::parse(&empty_gtid.render()).expect("empty gtid"),
            empty_gtid
        );
        let innodb = BinlogInfo::parse("./mysql-bin.000001\t991816\n").expect("pos_innodb");
        assert_eq!(innodb.position, 991_816);
        assert!(BinlogInfo::parse("").is_err());
        assert!(BinlogInfo::parse("f\tx\n").is_err());
    }

    #[test]
    fn real_info_round_trip() {
        let i = XtrabackupInfo::parse(REAL_INFO).expect("parse");
        assert_eq!(i.name, "");
        assert_eq!(i.innodb_to_lsn, 48237);
        assert_eq!(i.format, "file");
        assert!(i.extra.is_empty());
        assert_eq!(i.render(), REAL_INFO);
        let mut p = i.clone();
        p.extra.push(("encrypted".into(), "N".into()));
        p.partial = true;
        assert_eq!(XtrabackupInfo::parse(&p.render()).expect("re-parse"), p);
    }

    #[test]
    fn real_backup_my_cnf_round_trip() {
        let c = BackupMyCnf::parse(REAL_MY_CNF).expect("parse");
        assert_eq!(c.innodb_page_size, 16384);
        assert_eq!(c.innodb_log_file_size, 16_777_216);
        assert_eq!(c.render(), REAL_MY_CNF);
        let mut b = c.clone();
        b.innodb_buffer_pool_filename = Some("ib_buffer_pool".into());
        b.encryption_config =
            "plugin_load_add=file_key_management\nfile_key_management_filename=/k\n".into();
        let text = b.render();
        assert!(text.contains("innodb_compression_level=6\ninnodb_buffer_pool_filename=ib_buffer_pool\nplugin_load_add="));
        let back = BackupMyCnf::parse(&text).expect("re-parse");
        assert_eq!(back.extra.len(), 2);
        assert!(back
            .server_args()
            .contains(&"--plugin-load-add=file_key_management".to_owned()));
        assert!(back
            .server_args()
            .contains(&"--innodb-page-size=16384".to_owned()));
    }

    #[test]
    fn data_file_paths() {
        assert_eq!(
            local_data_file_path("ibdata1:12M:autoextend"),
            "ibdata1:12M:autoextend"
        );
        assert_eq!(
            local_data_file_path("/a/ibdata1:12M;/b/c/ibdata2:1G:autoextend"),
            "ibdata1:12M;ibdata2:1G:autoextend"
        );
    }

    #[test]
    fn masking() {
        let args: Vec<String> = [
            "--backup",
            "--password=s3cret",
            "--password",
            "two",
            "-phunter",
            "--user=bk",
            "--encrypt-key-file=/k",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let m = mask_command_line(&args);
        assert_eq!(
            m,
            "--backup --password=... --password ... -p... --user=bk --encrypt-key-file=..."
        );
    }

    #[test]
    fn slave_info_layouts() {
        let pos = ReplicaChannel {
            master_host: "h".into(),
            relay_master_log_file: "m-bin.000003".into(),
            exec_master_log_pos: 1234,
            using_gtid: "No".into(),
            ..Default::default()
        };
        let s = SlaveInfo::from_channels("", std::slice::from_ref(&pos)).expect("replica");
        assert_eq!(
            s.sql,
            "CHANGE MASTER TO MASTER_LOG_FILE='m-bin.000003', MASTER_LOG_POS=1234;\n"
        );
        assert_eq!(
            s.comment,
            "master '' filename 'm-bin.000003' position '1234'"
        );
        let gtid = ReplicaChannel {
            connection_name: "m2".into(),
            using_gtid: "Slave_Pos".into(),
            ..pos.clone()
        };
        let s = SlaveInfo::from_channels("0-1-5", &[pos, gtid]).expect("replica");
        assert_eq!(
            s.sql,
            "SET GLOBAL gtid_slave_pos = '0-1-5';\n\
             CHANGE MASTER TO MASTER_LOG_FILE='m-bin.000003', MASTER_LOG_POS=1234;\n\
             CHANGE MASTER 'm2' TO master_use_gtid = slave_pos;\n"
        );
        assert_eq!(
            s.comment,
            "gtid_slave_pos '0-1-5'; master '' filename 'm-bin.000003' position '1234'; master 'm2' master_use_gtid = slave_pos"
        );
        assert!(SlaveInfo::from_channels("0-1-5", &[]).is_none());
    }

    #[test]
    fn time_format() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-21T23:12:18+01:00").expect("time");
        assert_eq!(format_time(&t), "2026-11-21 23:12:18");
    }

    #[test]
    fn limits() {
        let big = "a".repeat(MAX_METADATA_LEN + 1);
        assert!(matches!(
            Checkpoints::parse(&big),
            Err(Error::TooLong { .. })
        ));
    }
}

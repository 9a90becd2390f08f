//! The server session: connect + version check, server variables, backup
//! locks with the long-query policy, binlog/GTID, replica information, LSN.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};
use tokio::sync::oneshot;

use super::locks::{must_kill, must_wait_for, LockPolicy, ProcessInfo};
use super::options::{ConnectOptions, Transport};
use super::Error;
use crate::format::metadata::{
    history, BackupMyCnf, BinlogInfo, GaleraInfo, ReplicaChannel, SlaveInfo,
};

type Result<T> = std::result::Result<T, Error>;

/// `lock_wait_timeout` used when none is configured (one year, as mariabackup).
pub const MAX_LOCK_WAIT_TIMEOUT: u64 = 31_536_000;

/// Oldest supported MariaDB: 10.8 introduced the redo log format we read.
pub const MIN_VERSION: (u32, u32) = (10, 8);

/// Seconds between `Slave_open_temp_tables` checks (`--safe-slave-backup`).
pub const SAFE_SLAVE_SLEEP: Duration = Duration::from_secs(3);

// Server error codes.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_SERVER_SHUTDOWN: u16 = 1053;
const ER_CONNECTION_KILLED: u16 = 1927;
const ER_NO_SUCH_THREAD: u16 = 1094;
const CR_SERVER_GONE_ERROR: u16 = 2006;
const CR_SERVER_LOST: u16 = 2013;

/// A parsed, supported server version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
    /// `@@version`, e.g. `10.11.19-MariaDB-0+deb12u1-log`.
    pub text: String,
    /// `@@version_comment`.
    pub comment: String,
}

impl ServerVersion {
    /// Check `@@version` / `@@version_comment`: MariaDB ≥ 10.8 only.
    ///
    /// # Errors
    /// [`Error::UnsupportedServer`] for MySQL, Percona Server, MariaDB < 10.8
    /// or an unparsable version.
    pub fn check(version: &str, comment: &str) -> Result<ServerVersion> {
        let unsupported = |reason: String| Error::UnsupportedServer {
            version: version.to_owned(),
            comment: comment.to_owned(),
            reason,
        };
        let v = version.strip_prefix("5.5.5-").unwrap_or(version);
        let numeric: String = v
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
        let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
            return Err(unsupported("cannot parse the version number".into()));
        };
        let patch = parts.next().flatten().unwrap_or(0);
        let mariadb = version.contains("MariaDB") || comment.contains("MariaDB");
        if !mariadb {
            let flavour = if comment.contains("Percona") {
                "Percona Server"
            } else {
                "MySQL"
            };
            return Err(unsupported(format!(
                "{flavour} {major}.{minor}.{patch} is not supported: hotbak backs up MariaDB {}.{} or later only \
                 (use Percona XtraBackup for MySQL)",
                MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        if (major, minor) < MIN_VERSION {
            return Err(unsupported(format!(
                "MariaDB {major}.{minor}.{patch} is too old: hotbak needs MariaDB {}.{} or later \
                 (the redo log format changed in 10.8; use mariabackup {major}.{minor} for this server)",
                MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        Ok(ServerVersion {
            major,
            minor,
            patch,
            text: version.to_owned(),
            comment: comment.to_owned(),
        })
    }
}

/// Server variables a backup needs (from `SHOW GLOBAL VARIABLES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// `datadir`.
    pub datadir: PathBuf,
    /// `innodb_log_group_home_dir` (`None` when empty or `./`: the datadir).
    pub innodb_log_group_home_dir: Option<PathBuf>,
    /// `innodb_data_home_dir` (`None` when empty: the datadir).
    pub innodb_data_home_dir: Option<PathBuf>,
    /// `innodb_data_file_path`.
    pub innodb_data_file_path: String,
    /// `innodb_page_size` in bytes.
    pub innodb_page_size: u64,
    /// `innodb_undo_directory` (`None` when empty or `./`).
    pub innodb_undo_directory: Option<PathBuf>,
    /// `innodb_undo_tablespaces`.
    pub innodb_undo_tablespaces: u32,
    /// `innodb_log_file_size` in bytes.
    pub innodb_log_file_size: u64,
    /// `innodb_checksum_algorithm`.
    pub innodb_checksum_algorithm: String,
    /// `innodb_compression_level`.
    pub innodb_compression_level: u32,
    /// `innodb_buffer_pool_filename`.
    pub innodb_buffer_pool_filename: Option<String>,
    /// `innodb_encrypt_log`.
    pub innodb_encrypt_log: bool,
    /// The active encryption plugin (name, library, `plugin_dir`), when
    /// the server has one: its settings travel in `backup-my.cnf`.
    pub encryption_plugin: Option<EncryptionPlugin>,
    /// `log_bin`.
    pub log_bin: bool,
    /// `log_bin_basename` (path prefix of the binlog files).
    pub log_bin_basename: Option<PathBuf>,
    /// `aria_log_dir_path` (`None` when empty: the datadir).
    pub aria_log_dir_path: Option<PathBuf>,
    /// `version`.
    pub version: String,
    /// `version_comment`.
    pub version_comment: String,
    /// `server_id`.
    pub server_id: u64,
    /// `gtid_current_pos`.
    pub gtid_current_pos: String,
    /// `gtid_binlog_pos`.
    pub gtid_binlog_pos: String,
    /// `gtid_slave_pos`.
    pub gtid_slave_pos: String,
    /// Every global variable, by lower-case name.
    pub vars: BTreeMap<String, String>,
}

fn nonempty_dir(v: Option<&String>) -> Option<PathBuf> {
    match v.map(String::as_str) {
        None | Some("" | "./" | ".") => None,
        Some(p) => Some(PathBuf::from(p)),
    }
}

impl ServerInfo {
    /// Build from `SHOW GLOBAL VARIABLES` name/value pairs (pure).
    ///
    /// # Errors
    /// [`Error::Unexpected`] when `datadir`, `innodb_page_size` or another
    /// required variable is missing or not a number.
    pub fn from_vars(vars: BTreeMap<String, String>) -> Result<ServerInfo> {
        const STMT: &str = "SHOW GLOBAL VARIABLES";
        let missing = |name: &str| Error::Unexpected {
            statement: STMT.into(),
            detail: format!("no variable {name}"),
        };
        let get = |name: &str| vars.get(name).ok_or_else(|| missing(name));
        let num = |name: &str| -> Result<u64> {
            let v = get(name)?;
            v.trim().parse().map_err(|_| Error::Unexpected {
                statement: STMT.into(),
                detail: format!("{name} = {v:?} is not a number"),
            })
        };
        let small = |name: &str| -> Result<u32> {
            u32::try_from(num(name)?).map_err(|_| Error::Unexpected {
                statement: STMT.into(),
                detail: format!("{name} too large"),
            })
        };
        let on = |name: &str| {
            vars.get(name)
                .is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1")
        };
        let s = |name: &str| vars.get(name).cloned().unwrap_or_default();
        Ok(ServerInfo {
            datadir: PathBuf::from(get("datadir")?),
            innodb_log_group_home_dir: nonempty_dir(vars.get("innodb_log_group_home_dir")),
            innodb_data_home_dir: nonempty_dir(vars.get("innodb_data_home_dir")),
            innodb_data_file_path: get("innodb_data_file_path")?.clone(),
            innodb_page_size: num("innodb_page_size")?,
            innodb_undo_directory: nonempty_dir(vars.get("innodb_undo_directory")),
            innodb_undo_tablespaces: small("innodb_undo_tablespaces")?,
            innodb_log_file_size: num("innodb_log_file_size")?,
            innodb_checksum_algorithm: s("innodb_checksum_algorithm"),
            innodb_compression_level: if vars.contains_key("innodb_compression_level") {
                small("innodb_compression_level")?
            } else {
                6
            },
            innodb_buffer_pool_filename: vars
                .get("innodb_buffer_pool_filename")
                .filter(|v| !v.is_empty())
                .cloned(),
            innodb_encrypt_log: on("innodb_encrypt_log"),
            encryption_plugin: None,
            log_bin: on("log_bin"),
            log_bin_basename: vars
                .get("log_bin_basename")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            aria_log_dir_path: nonempty_dir(vars.get("aria_log_dir_path")),
            version: s("version"),
            version_comment: s("version_comment"),
            server_id: num("server_id")?,
            gtid_current_pos: s("gtid_current_pos"),
            gtid_binlog_pos: s("gtid_binlog_pos"),
            gtid_slave_pos: s("gtid_slave_pos"),
            vars,
        })
    }

    /// Any global variable by name.
    #[must_use]
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Directory of `ib_logfile0` (absolute, or relative to `datadir`).
    #[must_use]
    pub fn redo_log_dir(&self) -> PathBuf {
        match &self.innodb_log_group_home_dir {
            Some(d) => self.datadir.join(d),
            None => self.datadir.clone(),
        }
    }

    /// The encryption plugin's lines of `backup-my.cnf`, as mariabackup
    /// 10.11 writes them (`plugin_load`, `plugin_dir`, every variable of
    /// the plugin, `innodb_encrypt_log`, `innodb_encrypt_tables`), so that a prepare (ours or
    /// mariabackup's) loads the same plugin with the same settings. Never
    /// key material: a `file_key_management_filekey` given literally
    /// (rather than as `FILE:path`) is left out, and prepare then needs it
    /// on its command line; mariabackup would write it in clear.
    #[must_use]
    pub fn encryption_config(&self) -> String {
        let Some(p) = &self.encryption_plugin else {
            return String::new();
        };
        let mut s = format!("plugin_load={}", p.name);
        if let Some(lib) = &p.library {
            s.push('=');
            s.push_str(lib);
        }
        s.push('\n');
        s.push_str(&format!("plugin_dir=\"{}\"\n", p.dir));
        let prefix = format!("{}_", p.name.to_ascii_lowercase());
        for (k, v) in &self.vars {
            if !k.starts_with(&prefix) {
                continue;
            }
            if k.ends_with("_filekey") && !v.is_empty() && !v.starts_with("FILE:") {
                continue;
            }
            s.push_str(&format!("{k}={v}\n"));
        }
        s.push_str(&format!(
            "innodb_encrypt_log={}\n",
            u8::from(self.innodb_encrypt_log)
        ));
        // As mariabackup: its prepare (and hotbak's native one) writes the
        // pages of tablespaces in the default encryption mode encrypted
        // only when this is ON or FORCE.
        if let Some(v) = self.var("innodb_encrypt_tables") {
            s.push_str(&format!("innodb_encrypt_tables={v}\n"));
        }
        s
    }

    /// `backup-my.cnf` for a backup of this server. Differences from
    /// mariabackup: the server's own `innodb_checksum_algorithm` is written
    /// (mariabackup writes its built-in `crc32`); the undo directory is `./`
    /// because the backup holds undo tablespaces in its root.
    #[must_use]
    pub fn backup_my_cnf(&self) -> BackupMyCnf {
        BackupMyCnf {
            innodb_checksum_algorithm: if self.innodb_checksum_algorithm.is_empty() {
                "crc32".into()
            } else {
                self.innodb_checksum_algorithm.clone()
            },
            innodb_data_file_path: crate::format::metadata::local_data_file_path(
                &self.innodb_data_file_path,
            ),
            innodb_log_file_size: self.innodb_log_file_size,
            innodb_page_size: self.innodb_page_size,
            innodb_undo_directory: "./".into(),
            innodb_undo_tablespaces: self.innodb_undo_tablespaces,
            innodb_compression_level: self.innodb_compression_level,
            // mariabackup writes this only when given on its own command line.
            innodb_buffer_pool_filename: None,
            encryption_config: self.encryption_config(),
            extra: Vec::new(),
        }
    }
}

/// An active encryption plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionPlugin {
    /// `plugin_name` (e.g. `file_key_management`).
    pub name: String,
    /// `plugin_library` (e.g. `file_key_management.so`); `None` when built in.
    pub library: Option<String>,
    /// The server's `plugin_dir`.
    pub dir: String,
}

/// The `BACKUP STAGE`s, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupStage {
    /// Start DDL logging; blocks nothing.
    Start,
    /// Flush non-transactional tables, block new writes to them.
    Flush,
    /// Block DDL (waits for running non-transactional writes).
    BlockDdl,
    /// Block commits.
    BlockCommit,
    /// Release everything.
    End,
}

impl BackupStage {
    /// The SQL statement.
    #[must_use]
    pub fn statement(self) -> &'static str {
        match self {
            BackupStage::Start => "BACKUP STAGE START",
            BackupStage::Flush => "BACKUP STAGE FLUSH",
            BackupStage::BlockDdl => "BACKUP STAGE BLOCK_DDL",
            BackupStage::BlockCommit => "BACKUP STAGE BLOCK_COMMIT",
            BackupStage::End => "BACKUP STAGE END",
        }
    }

    /// Whether `--ftwrl-wait-timeout` applies before this stage (the
    /// stages that block other sessions).
    #[must_use]
    pub fn waits_for_long_queries(self) -> bool {
        matches!(self, BackupStage::BlockDdl | BackupStage::BlockCommit)
    }
}

/// What taking a lock cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockReport {
    /// The lock statement.
    pub statement: &'static str,
    /// Time spent waiting for long queries before issuing it (`--ftwrl-wait-timeout`).
    pub waited_for_queries: Duration,
    /// Time the statement itself took.
    pub elapsed: Duration,
    /// Queries killed to unblock it (`--kill-long-queries-timeout`).
    pub killed: Vec<ProcessInfo>,
    /// Why the killer could not run, if it failed (the lock was still taken).
    pub killer_error: Option<String>,
}

/// `SHOW MASTER STATUS` and the GTID positions, read together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinlogPosition {
    /// Current binlog file.
    pub file: String,
    /// Position in it.
    pub position: u64,
    /// `@@gtid_current_pos`.
    pub gtid_current_pos: String,
    /// `@@gtid_binlog_pos`.
    pub gtid_binlog_pos: String,
}

impl BinlogPosition {
    /// The `xtrabackup_binlog_info` content mariabackup writes (MariaDB:
    /// always the GTID column, from `gtid_current_pos`).
    #[must_use]
    pub fn binlog_info(&self) -> BinlogInfo {
        BinlogInfo {
            file: self.file.clone(),
            position: self.position,
            gtid: Some(self.gtid_current_pos.clone()),
        }
    }
}

/// InnoDB LSNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LsnStatus {
    /// Current (end of log) LSN.
    pub current: u64,
    /// Flushed up to.
    pub flushed: Option<u64>,
    /// Last checkpoint LSN.
    pub last_checkpoint: Option<u64>,
}

/// Parse the LSN lines of `SHOW ENGINE INNODB STATUS` (pure).
#[must_use]
pub fn parse_innodb_status_lsn(status: &str) -> Option<LsnStatus> {
    let find = |prefix: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
    };
    Some(LsnStatus {
        current: find("Log sequence number")?,
        flushed: find("Log flushed up to"),
        last_checkpoint: find("Last checkpoint at"),
    })
}

/// A table and its engine (`information_schema.TABLES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineTable {
    /// Schema.
    pub schema: String,
    /// Table.
    pub name: String,
    /// Engine (`None` for views).
    pub engine: Option<String>,
    /// `TABLE_TYPE` (`BASE TABLE`, `SEQUENCE`, `SYSTEM VERSIONED`, …).
    pub table_type: String,
}

/// Replica threads stopped by [`Session::safe_slave_backup`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaState {
    /// The server has replication connections.
    pub is_replica: bool,
    /// Connection names whose SQL thread we stopped (restart them at the end).
    pub stopped_sql_threads: Vec<String>,
}

/// Server activity counters, see [`Session::activity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    /// Statements executed since start.
    pub questions: u64,
    /// Statements this process had sent by then ([`own_statements`]), so
    /// that other clients' are `questions` minus these.
    pub own: u64,
    /// Current redo LSN.
    pub lsn: Option<u64>,
}

/// Statements every [`Session`] of this process has sent: the server
/// counts them in `Questions` like any client's, and the load monitor must
/// tell the server's own load from our sampling.
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Statements sent by this process so far.
#[must_use]
pub fn own_statements() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_statement() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// One result row as text, by column name.
#[derive(Clone, Debug, Default)]
pub struct Record(Vec<(String, Option<String>)>);

impl Record {
    fn from_row(row: Row) -> Record {
        let cols = row.columns();
        let vals = row.unwrap_raw();
        Record(
            cols.iter()
                .zip(vals)
                .map(|(c, v)| (c.name_str().into_owned(), v.and_then(value_text)))
                .collect(),
        )
    }

    /// The value of a column (case-insensitive name); `None` if absent or NULL.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value of column `i`.
    #[must_use]
    pub fn at(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(|(_, v)| v.as_deref())
    }
}

fn params_of(values: &[history::Value]) -> mysql_async::Params {
    mysql_async::Params::Positional(
        values
            .iter()
            .map(|v| match v {
                history::Value::Null => Value::NULL,
                history::Value::Text(s) => Value::Bytes(s.clone().into_bytes()),
                history::Value::UInt(n) => Value::UInt(*n),
                history::Value::Int(n) => Value::Int(*n),
            })
            .collect(),
    )
}

/// The numeric value of `name` in `SHOW STATUS`-shaped rows (name, value).
fn status_u64(rows: &[Record], name: &str) -> Option<u64> {
    rows.iter()
        .find(|r| r.at(0).is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .and_then(|r| r.at(1)?.trim().parse::<u64>().ok())
}

fn value_text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

fn is_lost(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => true,
        mysql_async::Error::Server(s) => {
            matches!(
                s.code,
                ER_CONNECTION_KILLED | ER_SERVER_SHUTDOWN | CR_SERVER_GONE_ERROR | CR_SERVER_LOST
            )
        }
        _ => false,
    }
}

fn query_error(statement: &str, started: Instant, e: mysql_async::Error) -> Error {
    if is_lost(&e) {
        return Error::ConnectionLost {
            statement: statement.to_owned(),
            source: e,
        };
    }
    if let mysql_async::Error::Server(s) = &e {
        if s.code == ER_LOCK_WAIT_TIMEOUT {
            return Error::LockTimeout {
                statement: statement.to_owned(),
                waited: started.elapsed(),
            };
        }
    }
    Error::Query {
        statement: statement.to_owned(),
        source: e,
    }
}

fn parse_u64(statement: &str, what: &str, v: Option<&str>) -> Result<u64> {
    let v = v.ok_or_else(|| Error::Unexpected {
        statement: statement.into(),
        detail: format!("no {what}"),
    })?;
    v.trim().parse().map_err(|_| Error::Unexpected {
        statement: statement.into(),
        detail: format!("{what} = {v:?} is not a number"),
    })
}

/// Quote a string literal for SQL (backslash and quote escaped).
fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// rustls settings from the `--ssl*` options: the CA file replaces the
/// built-in roots; as the MariaDB 10.11 client does, the server's
/// certificate is checked only with `--ssl-verify-server-cert`.
fn tls_options(opts: &ConnectOptions) -> mysql_async::SslOpts {
    let mut ssl = mysql_async::SslOpts::default();
    if let Some(ca) = &opts.ssl_ca {
        ssl = ssl
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if let (Some(cert), Some(key)) = (&opts.ssl_cert, &opts.ssl_key) {
        ssl = ssl.with_client_identity(Some(mysql_async::ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    if opts.ssl_verify_server_cert != Some(true) {
        ssl = ssl
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true);
    }
    ssl
}

/// A connection to the server being backed up.
#[derive(Debug)]
pub struct Session {
    conn: Conn,
    opts: ConnectOptions,
    version: ServerVersion,
    connection_id: u64,
}

impl Session {
    /// Connect, check the server (MariaDB ≥ 10.8), and set the session:
    /// `wait_timeout` to the maximum, `max_statement_time=0`, and
    /// `lock_wait_timeout` (the configured value, else one year).
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::ConnectTimeout`], [`Error::AuthPlugin`],
    /// [`Error::UnsupportedServer`], or a failing `SET`.
    pub async fn connect(opts: &ConnectOptions) -> Result<Session> {
        let target = opts.describe();
        let mut b = OptsBuilder::default()
            .user(opts.effective_user())
            .pass(opts.password.as_ref().map(|p| p.expose().to_owned()))
            .prefer_socket(false)
            .stmt_cache_size(0);
        b = match opts.transport() {
            Transport::Socket(p) => b.socket(Some(p.to_string_lossy().into_owned())),
            Transport::Tcp { host, port } => b.ip_or_hostname(host).tcp_port(port),
        };
        if opts.tls_wanted() {
            b = b.ssl_opts(Some(tls_options(opts)));
        }
        let conn = match tokio::time::timeout(opts.connect_timeout, Conn::new(b)).await {
            Err(_) => {
                return Err(Error::ConnectTimeout {
                    target,
                    waited: opts.connect_timeout,
                })
            }
            Ok(Err(mysql_async::Error::Driver(mysql_async::DriverError::UnknownAuthPlugin {
                name,
            }))) => {
                return Err(Error::AuthPlugin {
                    target,
                    plugin: name,
                })
            }
            Ok(Err(source)) => return Err(Error::Connect { target, source }),
            Ok(Ok(c)) => c,
        };
        let mut s = Session {
            connection_id: u64::from(conn.id()),
            conn,
            opts: opts.clone(),
            version: ServerVersion {
                major: 0,
                minor: 0,
                patch: 0,
                text: String::new(),
                comment: String::new(),
            },
        };
        const VQ: &str = "SELECT @@version, @@version_comment";
        let rows = s.query(VQ).await?;
        let row = rows.first().ok_or_else(|| Error::Unexpected {
            statement: VQ.into(),
            detail: "no row".into(),
        })?;
        s.version = ServerVersion::check(row.at(0).unwrap_or(""), row.at(1).unwrap_or(""))?;
        s.execute("SET SESSION wait_timeout=2147483, max_statement_time=0")
            .await?;
        let lwt = opts.lock_wait_timeout.unwrap_or(MAX_LOCK_WAIT_TIMEOUT);
        s.execute(&format!("SET SESSION lock_wait_timeout={lwt}"))
            .await?;
        Ok(s)
    }

    /// The checked server version.
    #[must_use]
    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    /// This connection's id (`CONNECTION_ID()`).
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The options this session was opened with.
    #[must_use]
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Run a statement, discarding any result.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::ConnectionLost`] or [`Error::LockTimeout`], naming the statement.
    pub async fn execute(&mut self, statement: &str) -> Result<()> {
        count_statement();
        let started = Instant::now();
        self.conn
            .query_drop(statement)
            .await
            .map_err(|e| query_error(statement, started, e))
    }

    /// Run a query and return its rows as text.
    ///
    /// # Errors
    /// As [`Session::execute`].
    pub async fn query(&mut self, statement: &str) -> Result<Vec<Record>> {
        count_statement();
        let started = Instant::now();
        let rows: Vec<Row> = self
            .conn
            .query(statement)
            .await
            .map_err(|e| query_error(statement, started, e))?;
        Ok(rows.into_iter().map(Record::from_row).collect())
    }

    /// The first column of the first row (`None` for no row or NULL).
    ///
    /// # Errors
    /// As [`Session::execute`].
    pub async fn query_value(&mut self, statement: &str) -> Result<Option<String>> {
        Ok(self
            .query(statement)
            .await?
            .first()
            .and_then(|r| r.at(0).map(str::to_owned)))
    }

    /// Read the server variables a backup needs.
    ///
    /// # Errors
    /// Query errors, or [`Error::Unexpected`] if a required variable is missing.
    pub async fn server_info(&mut self) -> Result<ServerInfo> {
        let rows = self.query("SHOW GLOBAL VARIABLES").await?;
        let vars: BTreeMap<String, String> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.at(0)?.to_ascii_lowercase(),
                    r.at(1).unwrap_or("").to_owned(),
                ))
            })
            .collect();
        let mut info = ServerInfo::from_vars(vars)?;
        let rows = self
            .query(
                "SELECT plugin_name, plugin_library, @@plugin_dir FROM information_schema.plugins \
                 WHERE plugin_type='ENCRYPTION' AND plugin_status='ACTIVE'",
            )
            .await?;
        info.encryption_plugin = rows.first().and_then(|r| {
            Some(EncryptionPlugin {
                name: r.at(0)?.to_owned(),
                library: r.at(1).filter(|l| !l.is_empty()).map(str::to_owned),
                dir: r.at(2).unwrap_or("").to_owned(),
            })
        });
        Ok(info)
    }

    /// `SHOW FULL PROCESSLIST`, without this connection.
    ///
    /// # Errors
    /// Query errors.
    pub async fn processlist(&mut self) -> Result<Vec<ProcessInfo>> {
        const Q: &str = "SHOW FULL PROCESSLIST";
        let rows = self.query(Q).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id = parse_u64(Q, "Id", r.get("Id"))?;
            if id == self.connection_id {
                continue;
            }
            out.push(ProcessInfo {
                id,
                user: r.get("User").unwrap_or("").to_owned(),
                command: r.get("Command").unwrap_or("").to_owned(),
                time: r
                    .get("Time")
                    .and_then(|t| t.split('.').next()?.parse().ok())
                    .unwrap_or(0),
                state: r.get("State").map(str::to_owned),
                info: r.get("Info").map(str::to_owned),
            });
        }
        Ok(out)
    }

    /// `--ftwrl-wait-timeout`: wait until no long query runs (see
    /// [`super::locks`]). Returns the time waited.
    ///
    /// # Errors
    /// [`Error::LongQueries`] naming the queries still running at the deadline.
    pub async fn wait_for_no_long_queries(
        &mut self,
        statement: &str,
        policy: &LockPolicy,
    ) -> Result<Duration> {
        let started = Instant::now();
        if policy.ftwrl_wait_timeout.is_zero() {
            return Ok(Duration::ZERO);
        }
        loop {
            let blocking: Vec<ProcessInfo> = self
                .processlist()
                .await?
                .into_iter()
                .filter(|p| {
                    must_wait_for(p, policy.ftwrl_wait_threshold, policy.ftwrl_wait_query_type)
                })
                .collect();
            if blocking.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= policy.ftwrl_wait_timeout {
                return Err(Error::LongQueries {
                    statement: statement.to_owned(),
                    waited: started.elapsed(),
                    threshold: policy.ftwrl_wait_threshold,
                    queries: blocking,
                });
            }
            tokio::time::sleep(policy.poll_interval).await;
        }
    }

    /// Take a lock: optional wait for long queries, then the statement with
    /// the query killer running beside it.
    async fn lock_statement(
        &mut self,
        statement: &'static str,
        policy: &LockPolicy,
        wait: bool,
    ) -> Result<LockReport> {
        let waited_for_queries = if wait {
            self.wait_for_no_long_queries(statement, policy).await?
        } else {
            Duration::ZERO
        };
        let killer = if policy.kill_long_queries_timeout.is_zero() {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            let handle = tokio::spawn(kill_long_queries(
                self.opts.clone(),
                self.connection_id,
                policy.clone(),
                rx,
            ));
            Some((tx, handle))
        };
        let started = Instant::now();
        let res = self.execute(statement).await;
        let elapsed = started.elapsed();
        let (killed, killer_error) = match killer {
            None => (Vec::new(), None),
            Some((tx, handle)) => {
                let _ = tx.send(());
                match handle.await {
                    Ok(Ok(k)) => (k, None),
                    Ok(Err((k, e))) => (k, Some(e.to_string())),
                    Err(e) => (Vec::new(), Some(format!("query killer task failed: {e}"))),
                }
            }
        };
        res?;
        Ok(LockReport {
            statement,
            waited_for_queries,
            elapsed,
            killed,
            killer_error,
        })
    }

    /// Run one `BACKUP STAGE`. Before BLOCK_DDL and BLOCK_COMMIT the
    /// `--ftwrl-wait-*` policy applies; the `--kill-long-queries-*` killer
    /// runs beside every stage statement (as mariabackup 10.11).
    ///
    /// # Errors
    /// [`Error::LongQueries`], [`Error::LockTimeout`], [`Error::ConnectionLost`], [`Error::Query`].
    pub async fn backup_stage(
        &mut self,
        stage: BackupStage,
        policy: &LockPolicy,
    ) -> Result<LockReport> {
        if stage == BackupStage::End {
            let started = Instant::now();
            self.execute(stage.statement()).await?;
            return Ok(LockReport {
                statement: stage.statement(),
                waited_for_queries: Duration::ZERO,
                elapsed: started.elapsed(),
                killed: Vec::new(),
                killer_error: None,
            });
        }
        self.lock_statement(stage.statement(), policy, stage.waits_for_long_queries())
            .await
    }

    /// `BACKUP STAGE START`.
    ///
    /// # Errors
    /// See [`Session::backup_stage`].
    pub async fn stage_start(&mut self, policy: &LockPolicy) -> Result<LockReport> {
        self.backup_stage(BackupStage::Start, policy).await
    }

    /// `BACKUP STAGE FLUSH`.
    ///
    /// # Errors
    /// See [`Session::backup_stage`].
    pub async fn stage_flush(&mut self, policy: &LockPolicy) -> Result<LockReport> {
        self.backup_stage(BackupStage::Flush, policy).await
    }

    /// `BACKUP STAGE BLOCK_DDL`.
    ///
    /// # Errors
    /// See [`Session::backup_stage`].
    pub async fn stage_block_ddl(&mut self, policy: &LockPolicy) -> Result<LockReport> {
        self.backup_stage(BackupStage::BlockDdl, policy).await
    }

    /// `BACKUP STAGE BLOCK_COMMIT`.
    ///
    /// # Errors
    /// See [`Session::backup_stage`].
    pub async fn stage_block_commit(&mut self, policy: &LockPolicy) -> Result<LockReport> {
        self.backup_stage(BackupStage::BlockCommit, policy).await
    }

    /// `BACKUP STAGE END`.
    ///
    /// # Errors
    /// See [`Session::backup_stage`].
    pub async fn stage_end(&mut self) -> Result<LockReport> {
        self.backup_stage(BackupStage::End, &LockPolicy::default())
            .await
    }

    /// `FLUSH TABLES WITH READ LOCK` (fallback when backup stages are not
    /// wanted), with the full long-query policy.
    ///
    /// # Errors
    /// See [`Session::backup_stage`].
    pub async fn flush_tables_with_read_lock(&mut self, policy: &LockPolicy) -> Result<LockReport> {
        self.lock_statement("FLUSH TABLES WITH READ LOCK", policy, true)
            .await
    }

    /// `UNLOCK TABLES`.
    ///
    /// # Errors
    /// Query errors.
    pub async fn unlock_tables(&mut self) -> Result<()> {
        self.execute("UNLOCK TABLES").await
    }

    /// `SHOW MASTER STATUS` + `@@gtid_current_pos`, `@@gtid_binlog_pos`.
    /// `None` when the binary log is off.
    ///
    /// # Errors
    /// Query errors, [`Error::Unexpected`] for a bad position.
    pub async fn binlog_position(&mut self) -> Result<Option<BinlogPosition>> {
        const Q: &str = "SHOW MASTER STATUS";
        let rows = self.query(Q).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let (Some(file), pos) = (r.get("File"), r.get("Position")) else {
            return Ok(None);
        };
        let position = parse_u64(Q, "Position", pos)?;
        let file = file.to_owned();
        const G: &str = "SELECT @@global.gtid_current_pos, @@global.gtid_binlog_pos";
        let g = self.query(G).await?;
        let g = g.first();
        Ok(Some(BinlogPosition {
            file,
            position,
            gtid_current_pos: g.and_then(|r| r.at(0)).unwrap_or("").to_owned(),
            gtid_binlog_pos: g.and_then(|r| r.at(1)).unwrap_or("").to_owned(),
        }))
    }

    /// `SHOW ALL SLAVES STATUS` as [`ReplicaChannel`]s (empty: not a replica).
    ///
    /// # Errors
    /// Query errors.
    pub async fn replica_channels(&mut self) -> Result<Vec<ReplicaChannel>> {
        const Q: &str = "SHOW ALL SLAVES STATUS";
        let rows = self.query(Q).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(ReplicaChannel {
                connection_name: r.get("Connection_name").unwrap_or("").to_owned(),
                master_host: r.get("Master_Host").unwrap_or("").to_owned(),
                relay_master_log_file: r.get("Relay_Master_Log_File").unwrap_or("").to_owned(),
                exec_master_log_pos: parse_u64(
                    Q,
                    "Exec_Master_Log_Pos",
                    r.get("Exec_Master_Log_Pos"),
                )?,
                using_gtid: r.get("Using_Gtid").unwrap_or("No").to_owned(),
                sql_running: r.get("Slave_SQL_Running") == Some("Yes"),
                io_running: r.get("Slave_IO_Running") == Some("Yes"),
            });
        }
        Ok(out)
    }

    /// `--slave-info`: the `xtrabackup_slave_info` content, or `None` when
    /// the server is not a replica (the caller warns and goes on, as
    /// mariabackup: "Ignoring the --slave-info option").
    ///
    /// # Errors
    /// Query errors.
    pub async fn slave_info(&mut self) -> Result<Option<SlaveInfo>> {
        let channels = self.replica_channels().await?;
        if channels.is_empty() {
            return Ok(None);
        }
        let gtid = self
            .query_value("SELECT @@global.gtid_slave_pos")
            .await?
            .unwrap_or_default();
        Ok(SlaveInfo::from_channels(&gtid, &channels))
    }

    async fn open_temp_tables(&mut self) -> Result<u64> {
        const Q: &str = "SHOW GLOBAL STATUS LIKE 'Slave_open_temp_tables'";
        let rows = self.query(Q).await?;
        Ok(rows
            .first()
            .and_then(|r| r.at(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    fn sql_thread_statement(verb: &str, name: &str) -> String {
        if name.is_empty() {
            format!("{verb} SLAVE SQL_THREAD")
        } else {
            format!("{verb} SLAVE {} SQL_THREAD", sql_quote(name))
        }
    }

    async fn sql_threads(&mut self, verb: &str, names: &[String]) -> Result<()> {
        for n in names {
            self.execute(&Self::sql_thread_statement(verb, n)).await?;
        }
        Ok(())
    }

    /// `--safe-slave-backup`: stop the replica SQL threads and wait until
    /// `Slave_open_temp_tables` is 0 (mariabackup's `wait_for_safe_slave`:
    /// up to `timeout / 3 s` rounds of start SQL thread, sleep 3 s, stop,
    /// check; one round when `timeout` is zero). Not a replica: returns
    /// `is_replica = false` and does nothing. Call
    /// [`Session::restart_replica_sql`] with the result after the backup.
    ///
    /// # Errors
    /// [`Error::SafeSlaveTimeout`] (the SQL threads are restarted first), query errors.
    pub async fn safe_slave_backup(&mut self, timeout: Duration) -> Result<ReplicaState> {
        let started = Instant::now();
        let channels = self.replica_channels().await?;
        if channels.is_empty() {
            return Ok(ReplicaState::default());
        }
        let running: Vec<String> = channels
            .iter()
            .filter(|c| c.sql_running)
            .map(|c| c.connection_name.clone())
            .collect();
        self.sql_threads("STOP", &running).await?;
        let state = ReplicaState {
            is_replica: true,
            stopped_sql_threads: running,
        };
        let mut attempts = if timeout.is_zero() {
            1
        } else {
            timeout.as_secs() / SAFE_SLAVE_SLEEP.as_secs()
        };
        let mut open = self.open_temp_tables().await?;
        while open > 0 && attempts > 0 {
            attempts -= 1;
            self.sql_threads("START", &state.stopped_sql_threads)
                .await?;
            tokio::time::sleep(SAFE_SLAVE_SLEEP).await;
            self.sql_threads("STOP", &state.stopped_sql_threads).await?;
            open = self.open_temp_tables().await?;
        }
        if open == 0 {
            return Ok(state);
        }
        self.restart_replica_sql(&state).await?;
        Err(Error::SafeSlaveTimeout {
            open_temp_tables: open,
            waited: started.elapsed(),
        })
    }

    /// Restart the SQL threads stopped by [`Session::safe_slave_backup`].
    ///
    /// # Errors
    /// Query errors.
    pub async fn restart_replica_sql(&mut self, state: &ReplicaState) -> Result<()> {
        self.sql_threads("START", &state.stopped_sql_threads).await
    }

    /// The InnoDB LSNs: `Innodb_lsn_*` status variables when the server has
    /// them, else `SHOW ENGINE INNODB STATUS`.
    ///
    /// # Errors
    /// Query errors, [`Error::Unexpected`] if no LSN can be found.
    pub async fn innodb_lsn(&mut self) -> Result<LsnStatus> {
        let rows = self.query("SHOW GLOBAL STATUS LIKE 'Innodb_lsn%'").await?;
        let get = |n: &str| status_u64(&rows, n);
        if let Some(current) = get("Innodb_lsn_current") {
            return Ok(LsnStatus {
                current,
                flushed: get("Innodb_lsn_flushed"),
                last_checkpoint: get("Innodb_lsn_last_checkpoint"),
            });
        }
        const Q: &str = "SHOW ENGINE INNODB STATUS";
        let rows = self.query(Q).await?;
        let text = rows.first().and_then(|r| r.get("Status")).unwrap_or("");
        parse_innodb_status_lsn(text).ok_or_else(|| Error::Unexpected {
            statement: Q.into(),
            detail: "no 'Log sequence number' line".into(),
        })
    }

    /// Counters of server activity: statements (`Questions`) and, when the
    /// server has it, the redo LSN (`Innodb_lsn_current`).
    ///
    /// # Errors
    /// Query errors, [`Error::Unexpected`] without `Questions`.
    pub async fn activity(&mut self) -> Result<Activity> {
        const Q: &str =
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Innodb_lsn_current')";
        let rows = self.query(Q).await?;
        let get = |n: &str| status_u64(&rows, n);
        let own = own_statements();
        Ok(Activity {
            own,
            questions: get("Questions").ok_or_else(|| Error::Unexpected {
                statement: Q.into(),
                detail: "no Questions counter".into(),
            })?,
            lsn: get("Innodb_lsn_current"),
        })
    }

    /// The Galera node's state as `xtrabackup_galera_info` records it:
    /// `wsrep_local_state_uuid` and `wsrep_last_committed` from `SHOW
    /// GLOBAL STATUS`, `wsrep_gtid_domain_id` from the variables. `None`
    /// when the server is not a Galera node (no wsrep provider loaded: the
    /// status variables are absent or empty), as mariabackup 10.11 decides.
    ///
    /// # Errors
    /// Query errors; [`Error::Unexpected`] for a seqno or domain that is not a number.
    pub async fn galera_state(&mut self) -> Result<Option<GaleraInfo>> {
        const Q: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN \
                         ('wsrep_local_state_uuid', 'wsrep_last_committed')";
        let rows = self.query(Q).await?;
        let text = |n: &str| {
            rows.iter()
                .find(|r| r.at(0).is_some_and(|k| k.eq_ignore_ascii_case(n)))
                .and_then(|r| r.at(1))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let (Some(uuid), Some(seqno)) =
            (text("wsrep_local_state_uuid"), text("wsrep_last_committed"))
        else {
            return Ok(None);
        };
        let bad = |statement: &str, what: &str, v: &str| Error::Unexpected {
            statement: statement.into(),
            detail: format!("{what} {v:?} is not a number"),
        };
        let seqno = seqno
            .parse::<i64>()
            .map_err(|_| bad(Q, "wsrep_last_committed", seqno))?;
        const D: &str = "SELECT @@global.wsrep_gtid_domain_id";
        let domain = self.query_value(D).await?.unwrap_or_default();
        let domain_id = domain
            .trim()
            .parse::<u32>()
            .map_err(|_| bad(D, "wsrep_gtid_domain_id", &domain))?;
        Ok(Some(GaleraInfo {
            uuid: uuid.to_owned(),
            seqno,
            domain_id: Some(domain_id),
        }))
    }

    /// A statement with `?` parameters (sent as a prepared statement, so
    /// no value is ever quoted by hand).
    ///
    /// # Errors
    /// Query errors.
    pub async fn execute_with(&mut self, statement: &str, params: &[history::Value]) -> Result<()> {
        count_statement();
        let started = Instant::now();
        self.conn
            .exec_drop(statement, params_of(params))
            .await
            .map_err(|e| query_error(statement, started, e))
    }

    /// The rows of a statement with `?` parameters.
    ///
    /// # Errors
    /// Query errors.
    pub async fn query_with(
        &mut self,
        statement: &str,
        params: &[history::Value],
    ) -> Result<Vec<Record>> {
        count_statement();
        let started = Instant::now();
        let rows: Vec<Row> = self
            .conn
            .exec(statement, params_of(params))
            .await
            .map_err(|e| query_error(statement, started, e))?;
        Ok(rows.into_iter().map(Record::from_row).collect())
    }

    /// `--history`: the backup's row in `mysql.mariadb_backup_history`,
    /// the table created (or its `format` column widened) first, as
    /// mariabackup 10.11 does. As there, a refused widening is ignored:
    /// it needs `ALTER`, which a backup user lacks, and only a table made
    /// by an older tool needs it.
    ///
    /// # Errors
    /// Query errors (privileges: `CREATE` and `INSERT` on the table).
    pub async fn insert_history(&mut self, row: &history::Row) -> Result<()> {
        if let Err(e) = self.execute(history::WIDEN_FORMAT).await {
            if e.is_connection_lost() {
                return Err(e);
            }
        }
        self.execute(history::CREATE).await?;
        self.execute_with(history::INSERT, &row.values).await
    }

    /// `FLUSH NO_WRITE_TO_BINLOG ENGINE LOGS`.
    ///
    /// # Errors
    /// Query errors.
    pub async fn flush_engine_logs(&mut self) -> Result<()> {
        self.execute("FLUSH NO_WRITE_TO_BINLOG ENGINE LOGS").await
    }

    /// Every base table with its engine (`information_schema.TABLES`), so
    /// the copier can classify files.
    ///
    /// # Errors
    /// Query errors.
    pub async fn tables(&mut self) -> Result<Vec<EngineTable>> {
        let rows = self
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, TABLE_TYPE FROM information_schema.TABLES \
                 WHERE TABLE_TYPE <> 'VIEW' AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema')",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| EngineTable {
                schema: r.at(0).unwrap_or("").to_owned(),
                name: r.at(1).unwrap_or("").to_owned(),
                engine: r.at(2).map(str::to_owned),
                table_type: r.at(3).unwrap_or("").to_owned(),
            })
            .collect())
    }

    /// Close the connection politely.
    ///
    /// # Errors
    /// The server went away meanwhile.
    pub async fn close(self) -> Result<()> {
        let started = Instant::now();
        self.conn
            .disconnect()
            .await
            .map_err(|e| query_error("(disconnect)", started, e))
    }
}

/// The `--kill-long-queries-timeout` killer: after the timeout, on its own
/// connection, once per poll interval, `KILL` the matching queries (never
/// the lock connection) until told to stop. Returns what it killed, and on
/// failure also the error.
async fn kill_long_queries(
    opts: ConnectOptions,
    lock_conn: u64,
    policy: LockPolicy,
    mut stop: oneshot::Receiver<()>,
) -> std::result::Result<Vec<ProcessInfo>, (Vec<ProcessInfo>, Error)> {
    let started = Instant::now();
    tokio::select! {
        _ = &mut stop => return Ok(Vec::new()),
        () = tokio::time::sleep(policy.kill_long_queries_timeout) => {}
    }
    let mut killed: Vec<ProcessInfo> = Vec::new();
    let mut s = match Session::connect(&opts).await {
        Ok(s) => s,
        Err(e) => return Err((killed, e)),
    };
    loop {
        let pending = started.elapsed().as_secs();
        let list = match s.processlist().await {
            Ok(l) => l,
            Err(e) => return Err((killed, e)),
        };
        for p in list {
            if p.id == lock_conn
                || p.command == "Killed"
                || !must_kill(&p, pending, policy.kill_long_query_type)
            {
                continue;
            }
            match s.execute(&format!("KILL {}", p.id)).await {
                Ok(()) => killed.push(p),
                Err(e) if e.server_code() == Some(ER_NO_SUCH_THREAD) => {}
                Err(e) => return Err((killed, e)),
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(policy.poll_interval) => {}
        }
    }
    let _ = s.close().await;
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_check() {
        let v = ServerVersion::check("10.11.19-MariaDB-0+deb12u1-log", "Debian 12").expect("10.11");
        assert_eq!((v.major, v.minor, v.patch), (10, 11, 19));
        assert!(ServerVersion::check("11.4.2-MariaDB", "mariadb.org binary distribution").is_ok());
        assert!(ServerVersion::check("5.5.5-10.8.1-MariaDB", "").is_ok());
        let old = ServerVersion::check("10.6.16-MariaDB", "MariaDB Server").expect_err("10.6");
        assert!(old.to_string().contains("10.6.16"), "{old}");
        let my = ServerVersion::check("8.0.36", "MySQL Community Server - GPL").expect_err("mysql");
        assert!(my.to_string().contains("MySQL 8.0.36"), "{my}");
        let pc = ServerVersion::check("8.0.36-28", "Percona Server (GPL), Release 28")
            .expect_err("percona");
        assert!(pc.to_string().contains("Percona Server"), "{pc}");
        assert!(ServerVersion::check("garbage", "MariaDB").is_err());
        assert_eq!(
            crate::error::Classify::class(&old),
            crate::error::ErrorClass::Server
        );
    }

    #[test]
    fn innodb_status_lsn() {
        let text = "---\nLOG\n---\nLog sequence number 123456\nLog flushed up to   123400\n\
                    Pages flushed up to 120000\nLast checkpoint at  110000\n";
        let l = parse_innodb_status_lsn(text).expect("lsn");
        assert_eq!(
            l,
            LsnStatus {
                current: 123_456,
                flushed: Some(123_400),
                last_checkpoint: Some(110_000)
            }
        );
        assert!(parse_innodb_status_lsn("nothing").is_none());
    }

    #[test]
    fn server_info_from_vars() {
        let mut v: BTreeMap<String, String> = [
            ("datadir", "/var/lib/mysql/"),
            ("innodb_data_file_path", "ibdata1:12M:autoextend"),
            ("innodb_page_size", "16384"),
            ("innodb_undo_tablespaces", "0"),
            ("innodb_undo_directory", "./"),
            ("innodb_log_file_size", "100663296"),
            ("innodb_log_group_home_dir", "./"),
            ("innodb_checksum_algorithm", "full_crc32"),
            ("server_id", "1"),
            ("log_bin", "ON"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let i = ServerInfo::from_vars(v.clone()).expect("info");
        assert!(i.log_bin);
        assert_eq!(i.innodb_log_group_home_dir, None);
        assert_eq!(i.redo_log_dir(), PathBuf::from("/var/lib/mysql/"));
        assert_eq!(i.innodb_compression_level, 6);
        let cnf = i.backup_my_cnf();
        assert_eq!(cnf.innodb_checksum_algorithm, "full_crc32");
        assert_eq!(cnf.innodb_undo_directory, "./");
        v.insert("innodb_page_size".into(), "big".into());
        assert!(ServerInfo::from_vars(v.clone()).is_err());
        v.remove("datadir");
        assert!(ServerInfo::from_vars(v).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(sql_quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(
            Session::sql_thread_statement("STOP", ""),
            "STOP SLAVE SQL_THREAD"
        );
        assert_eq!(
            Session::sql_thread_statement("START", "m1"),
            "START SLAVE 'm1' SQL_THREAD"
        );
    }
}

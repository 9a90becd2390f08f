//! Server session over `mysql_async`: connection options and option files
//! ([`options`]), the session with version check, server variables, backup
//! locks, binlog/GTID and replica information ([`session`]), and the
//! XtraBackup long-query policy around lock statements ([`locks`]).
//!
//! Every error names the statement that failed. A server that goes away is
//! [`Error::ConnectionLost`]. All server-side failures classify as
//! [`ErrorClass::Server`]; bad option files or option values as
//! [`ErrorClass::Usage`].

pub mod keys;
pub mod locks;
pub mod options;
pub mod session;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Classify, ErrorClass};

pub use locks::{LockPolicy, ProcessInfo, QueryType};
pub use options::{ConnectOptions, Defaults, OptionSet, Password, Transport};
pub use session::{
    Activity, BackupStage, BinlogPosition, EngineTable, LockReport, LsnStatus, ReplicaState,
    ServerInfo, ServerVersion, Session,
};

/// Errors of the server session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Could not connect or log in.
    #[error(
        "cannot connect to MariaDB as {target}: {source} (choose the server with --socket, or \
         --host and --port, or in the [client] group of an option file)"
    )]
    Connect {
        /// `user@transport` (never the password).
        target: String,
        /// Cause.
        #[source]
        source: mysql_async::Error,
    },
    /// Connecting took too long.
    #[error("cannot connect to MariaDB as {target}: no answer within {waited:?}")]
    ConnectTimeout {
        /// `user@transport`.
        target: String,
        /// Time waited.
        waited: Duration,
    },
    /// The account uses an authentication plugin the client cannot speak.
    #[error(
        "cannot log in as {target}: the account uses authentication plugin '{plugin}', which hotbak \
         does not support; use an account with a password (CREATE USER ... IDENTIFIED BY '...') \
         or, over the socket, unix_socket (CREATE USER ... IDENTIFIED VIA unix_socket)"
    )]
    AuthPlugin {
        /// `user@transport`.
        target: String,
        /// Plugin name.
        plugin: String,
    },
    /// The server is not a supported MariaDB.
    #[error("unsupported server {version} ({comment}): {reason}")]
    UnsupportedServer {
        /// `@@version`.
        version: String,
        /// `@@version_comment`.
        comment: String,
        /// Why.
        reason: String,
    },
    /// A statement failed on the server.
    #[error("statement `{statement}` failed: {source}")]
    Query {
        /// The statement.
        statement: String,
        /// Cause.
        #[source]
        source: mysql_async::Error,
    },
    /// The connection died (server killed, network lost, connection killed).
    #[error("lost the connection to the server during `{statement}`: {source}")]
    ConnectionLost {
        /// The statement.
        statement: String,
        /// Cause.
        #[source]
        source: mysql_async::Error,
    },
    /// A lock statement hit `lock_wait_timeout`.
    #[error("`{statement}` timed out after {waited:?} waiting for a lock (lock_wait_timeout)")]
    LockTimeout {
        /// The statement.
        statement: String,
        /// Time waited.
        waited: Duration,
    },
    /// `--ftwrl-wait-timeout` expired with long queries still running.
    #[error(
        "unable to obtain the lock for `{statement}`: after waiting {waited:?}, queries running longer \
         than {threshold}s remain: {}", describe_queries(queries)
    )]
    LongQueries {
        /// The lock statement that was not issued.
        statement: String,
        /// Time waited.
        waited: Duration,
        /// `--ftwrl-wait-threshold` in seconds.
        threshold: u64,
        /// The blocking queries at the last check.
        queries: Vec<ProcessInfo>,
    },
    /// `--safe-slave-backup` could not reach `Slave_open_temp_tables = 0`.
    #[error("Slave_open_temp_tables is still {open_temp_tables} after {waited:?} (--safe-slave-backup-timeout)")]
    SafeSlaveTimeout {
        /// The last value seen.
        open_temp_tables: u64,
        /// Time waited.
        waited: Duration,
    },
    /// The server answered something we cannot use.
    #[error("unexpected answer to `{statement}`: {detail}")]
    Unexpected {
        /// The statement.
        statement: String,
        /// What was wrong.
        detail: String,
    },
    /// An option file could not be parsed.
    #[error("option file {path}, line {line}: {message}")]
    OptionFile {
        /// File.
        path: PathBuf,
        /// 1-based line (0 for the whole file).
        line: usize,
        /// Problem.
        message: String,
    },
    /// An option file named explicitly could not be read.
    #[error("cannot read option file {path}: {source}")]
    OptionFileIo {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A bad option value.
    #[error("bad value {value:?} for option {name}: {reason}")]
    BadOption {
        /// Option name.
        name: String,
        /// Value given.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
}

fn describe_queries(qs: &[ProcessInfo]) -> String {
    qs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::OptionFile { .. } | Error::OptionFileIo { .. } | Error::BadOption { .. } => {
                ErrorClass::Usage
            }
            _ => ErrorClass::Server,
        }
    }
}

impl Error {
    /// True for a lost connection (the server died or killed us).
    #[must_use]
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. })
    }

    /// The server error code, if the server reported one.
    #[must_use]
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Error::Query {
                source: mysql_async::Error::Server(e),
                ..
            }
            | Error::ConnectionLost {
                source: mysql_async::Error::Server(e),
                ..
            }
            | Error::Connect {
                source: mysql_async::Error::Server(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }
}

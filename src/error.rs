//! The error classes every module maps into: the ground floor, importing
//! nothing of the crate.
//!
//! Policy (after rustic_core's `error.rs`): each module has its own `Error`
//! enum (thiserror) whose variants carry context (path, stream offset, LSN).
//! Every module error implements [`Classify`] next to its definition, which
//! puts it in one of the [`ErrorClass`]es below. The application layer
//! (`app::exit`) walks an error chain, takes the class of the first
//! classified error and maps it to the one exit-code table. Errors are never
//! downgraded: a corrupt input stays corrupt even when an I/O error follows it.

use std::fmt;

/// What kind of failure an error is. Kept distinct everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad command line, bad option value, bad configuration file.
    Usage,
    /// Input failed a structural, checksum or authentication check.
    Corrupt,
    /// Input ended early (inside a chunk, before a file's end, before the manifest).
    Truncated,
    /// Reading or writing a file, pipe or socket failed (disk full, closed pipe, ...).
    Io,
    /// The database server refused, died, or could not be reached.
    Server,
    /// The object store is unreachable, refused the credentials, lacks an
    /// object, or the prefix holds no committed backup.
    Store,
    /// Anything else that makes the operation fail.
    Failed,
    /// Stopped by SIGINT, SIGTERM or SIGHUP (cleaned up, nothing reported complete).
    Interrupted,
}

/// Implemented by every module error type.
pub trait Classify {
    /// The class of this error, which decides the exit code.
    fn class(&self) -> ErrorClass;
}

impl ErrorClass {
    /// One lower-case word for machine-readable output (the `status` of
    /// `--log-format json`'s summary event): `usage`, `corrupt`,
    /// `truncated`, `io`, `server`, `store`, `failed`, `interrupted`.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            ErrorClass::Usage => "usage",
            ErrorClass::Corrupt => "corrupt",
            ErrorClass::Truncated => "truncated",
            ErrorClass::Io => "io",
            ErrorClass::Server => "server",
            ErrorClass::Store => "store",
            ErrorClass::Failed => "failed",
            ErrorClass::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Usage => "usage",
            ErrorClass::Corrupt => "corrupt",
            ErrorClass::Truncated => "truncated",
            ErrorClass::Io => "i/o",
            ErrorClass::Server => "server",
            ErrorClass::Store => "object store",
            ErrorClass::Failed => "failed",
            ErrorClass::Interrupted => "interrupted",
        })
    }
}

/// A usage error raised at the binaries' edge (bad option combination, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Classify for UsageError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

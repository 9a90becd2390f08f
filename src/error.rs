//! The one exit-code table, and the error classes every module maps into.
//!
//! Policy (after rustic_core's `error.rs`): each module has its own `Error`
//! enum (thiserror) whose variants carry context (path, stream offset, LSN).
//! Every module error implements [`Classify`], which puts it in one of the
//! [`ErrorClass`]es below. The binaries use `anyhow` at their edge and call
//! [`exit_code`] once, which walks the error chain and picks the code from
//! the first classified error. Errors are never downgraded: a corrupt input
//! stays corrupt even when an I/O error follows it.

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
    /// Anything else that makes the operation fail.
    Failed,
}

/// Implemented by every module error type.
pub trait Classify {
    /// The class of this error, which decides the exit code.
    fn class(&self) -> ErrorClass;
}

/// Exit codes. This table is copied verbatim into README.md.
///
/// | code | meaning |
/// |---|---|
/// | 0 | success: everything was written, synced and verified |
/// | 1 | failed: I/O error (disk full, closed pipe or socket), or any other failure |
/// | 2 | usage: bad option, missing argument, bad key file, bad configuration |
/// | 3 | corrupt or truncated input: bad CRC, bad magic, failed authentication, cut stream, manifest mismatch |
/// | 4 | server: cannot connect, unsupported server, lock timeout, server died, redo log overrun |
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// Generic failure, I/O.
    pub const FAILED: i32 = 1;
    /// Usage error.
    pub const USAGE: i32 = 2;
    /// Corrupt or truncated input.
    pub const CORRUPT: i32 = 3;
    /// Server-side failure.
    pub const SERVER: i32 = 4;
}

impl ErrorClass {
    /// The process exit code for this class.
    #[must_use]
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Usage => code::USAGE,
            ErrorClass::Corrupt | ErrorClass::Truncated => code::CORRUPT,
            ErrorClass::Server => code::SERVER,
            ErrorClass::Io | ErrorClass::Failed => code::FAILED,
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
            ErrorClass::Failed => "failed",
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

/// Registry of the module error types that [`classify`] knows. Each entry is a
/// downcast attempt; the first match in the chain wins.
macro_rules! classify_chain {
    ($err:expr, $($ty:ty),* $(,)?) => {{
        let mut found = None;
        for cause in $err.chain() {
            $(
                if found.is_none() {
                    if let Some(e) = cause.downcast_ref::<$ty>() {
                        found = Some(Classify::class(e));
                    }
                }
            )*
            if found.is_some() { break; }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                let _ = io;
                found = Some(ErrorClass::Io);
                break;
            }
        }
        found.unwrap_or(ErrorClass::Failed)
    }};
}

/// Classify an `anyhow` error by walking its chain.
#[must_use]
pub fn classify(err: &anyhow::Error) -> ErrorClass {
    classify_chain!(
        err,
        UsageError,
        crate::format::path::PathError,
        crate::format::xbstream::Error,
        crate::format::manifest::Error,
        crate::sink::Error,
        crate::extract::Error,
        crate::compress::Error,
        crate::encrypt::Error,
        crate::innodb::Error,
        crate::mysql::Error,
        crate::backup::Error,
        crate::prepare::Error,
        crate::restore::Error,
        crate::sandbox::Error,
        crate::format::metadata::Error,
        crate::format::links::Error,
        crate::verify::Error,
        crate::sink::transform::TransformError,
    )
}

/// The exit code for an error at the binaries' edge.
#[must_use]
pub fn exit_code(err: &anyhow::Error) -> i32 {
    classify(err).exit_code()
}

/// Render an error chain on one line, skipping causes whose text the
/// previous message already contains (our messages often embed their cause).
#[must_use]
pub fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

//! InnoDB on-disk knowledge: pages, checksums, redo log.
//!
//! Everything here is pure: no I/O, no async, no logging. The backup code
//! reads bytes and asks these functions what they mean.
//!
//! - [`types`]: the newtypes [`Lsn`], [`SpaceId`], [`PageNo`].
//! - [`page`]: page 0 / tablespace flags ([`page::parse_page0`],
//!   [`page::PageFormat`]) and page validation ([`page::check_page`]).
//! - [`redo`]: the MariaDB 10.8+ redo log (`ib_logfile0`): header and
//!   checkpoints, ring geometry, the mini-transaction scanner, FILE_* record
//!   decoding, the backup log header builder and the overrun check.
//!
//! Byte layouts are in `format-spec/innodb-pages.md` and
//! `format-spec/redo-log.md`.

use crate::error::{Classify, ErrorClass};

pub mod apply;
pub mod cfg;
pub mod page;
pub mod redo;
pub mod relocate;
pub mod types;

pub use types::{Lsn, PageNo, SpaceId};

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is shorter than the structure being parsed.
    #[error("{what}: need {need} bytes, got {got}")]
    Truncated {
        /// What was being parsed.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// `FSP_SPACE_FLAGS` that the server would refuse.
    #[error("invalid or unknown tablespace flags 0x{flags:x}: {reason}")]
    BadFlags {
        /// The raw flags value.
        flags: u32,
        /// Which rule failed.
        reason: &'static str,
    },
    /// Page 0 is inconsistent (wrong page number, space id mismatch, bad checksum).
    #[error("page 0 is corrupt: {0}")]
    Page0(String),
    /// The redo log header block fails its CRC.
    #[error("redo log header checksum mismatch: stored 0x{stored:08x} computed 0x{computed:08x}")]
    LogHeaderChecksum {
        /// CRC-32C stored at byte 508.
        stored: u32,
        /// CRC-32C computed over bytes 0..508.
        computed: u32,
    },
    /// The redo log header is structurally invalid.
    #[error("invalid redo log header: {0}")]
    LogHeader(String),
    /// A redo log format that hotbak does not read (older, or encrypted).
    #[error(
        "unsupported redo log format 0x{format:08x} ({what}); the log was created by {creator:?}"
    )]
    UnsupportedLogFormat {
        /// The format id at byte 0.
        format: u32,
        /// Human description of the format.
        what: &'static str,
        /// The creator text from the header.
        creator: String,
    },
    /// Neither checkpoint block is valid.
    #[error("no valid checkpoint in the redo log header (created by {creator:?})")]
    NoValidCheckpoint {
        /// The creator text from the header.
        creator: String,
    },
    /// The log file size or an LSN is outside what the geometry allows.
    #[error("redo log geometry: {0}")]
    Geometry(String),
    /// A FILE_* record inside a valid mini-transaction is malformed.
    #[error("malformed file-level redo record at byte {offset} of the mini-transaction: {reason}")]
    FileRecord {
        /// Offset of the record inside the mtr.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A caller-supplied argument is invalid (programming error).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Truncated { .. } => ErrorClass::Truncated,
            Error::BadFlags { .. }
            | Error::Page0(_)
            | Error::LogHeaderChecksum { .. }
            | Error::LogHeader(_)
            | Error::NoValidCheckpoint { .. }
            | Error::FileRecord { .. } => ErrorClass::Corrupt,
            Error::UnsupportedLogFormat { .. } => ErrorClass::Server,
            Error::Geometry(_) | Error::InvalidArgument(_) => ErrorClass::Failed,
        }
    }
}

/// Read a big-endian u16 at `off`. `None` if out of range.
#[inline]
pub(crate) fn be16(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Read a big-endian u32 at `off`. `None` if out of range.
#[inline]
pub(crate) fn be32(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Read a big-endian u64 at `off`. `None` if out of range.
#[inline]
pub(crate) fn be64(buf: &[u8], off: usize) -> Option<u64> {
    let b = buf.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn classes() {
        assert_eq!(
            Error::Truncated {
                what: "x",
                need: 2,
                got: 1
            }
            .class(),
            ErrorClass::Truncated
        );
        assert_eq!(
            Error::BadFlags {
                flags: 1,
                reason: "r"
            }
            .class(),
            ErrorClass::Corrupt
        );
        assert_eq!(
            Error::UnsupportedLogFormat {
                format: 1,
                what: "w",
                creator: String::new()
            }
            .class(),
            ErrorClass::Server
        );
    }

    #[test]
    fn be_readers() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(be16(&b, 0), Some(0x0102));
        assert_eq!(be32(&b, 4), Some(0x0506_0708));
        assert_eq!(be64(&b, 0), Some(0x0102_0304_0506_0708));
        assert_eq!(be32(&b, 5), None);
        assert_eq!(be32(&b, usize::MAX), None);
    }
}

//! The MariaDB 10.8+ redo log (`ib_logfile0`, format `FORMAT_10_8`).
//!
//! Layout (see `format-spec/redo-log.md`): a 512-byte header block with a
//! CRC-32C at 508, two 64-byte checkpoint blocks at 4096 and 8192, and a
//! circular payload from byte 12288 of mini-transactions (mtrs), each ending
//! with a termination byte (the sequence bit of the current pass) and a
//! CRC-32C of its record bytes.
//!
//! Pieces, all pure:
//! - [`parse_header`], [`parse_checkpoint_block`], [`parse_log_prefix`]:
//!   read the first 12 KiB of a live log and pick the newest checkpoint.
//! - [`LogGeometry`]: LSN → file offset, sequence bit, and [`LogGeometry::split_read`]
//!   for reads across the wrap.
//! - [`parse_mtr`] / [`scan_mtrs`]: find complete valid mtrs in bytes read
//!   from the ring, stopping at [`ScanStop::NeedMore`] or
//!   [`ScanStop::EndOfLog`].
//! - [`file_records`]: the FILE_CREATE / DELETE / RENAME / MODIFY /
//!   CHECKPOINT records of one mtr (DDL detection).
//! - [`build_backup_log_prefix`]: the 12288-byte head of the backup's own
//!   `ib_logfile0`.
//! - [`follower_safety`]: whether the server may already have overwritten
//!   log the follower has not copied.

use std::fmt;

use super::{be32, be64, Error, Lsn, PageNo, SpaceId};

/// `FORMAT_10_8`: "Phys", the 10.8+ format. 10.11 writes this.
pub const FORMAT_10_8: u32 = 0x5068_7973;
/// `FORMAT_ENC_11`: the encrypted format of newer servers.
pub const FORMAT_ENC_11: u32 = 0xF09F_979D;
/// `FORMAT_10_5`: 10.5 to 10.7.
pub const FORMAT_10_5: u32 = 0x5048_5953;
/// The "encrypted" bit of the pre-10.8 formats.
pub const FORMAT_ENCRYPTED_BIT: u32 = 1 << 31;
/// Size of the header block that carries data.
pub const HEADER_SIZE: usize = 512;
/// Offset of the header CRC-32C.
pub const HEADER_CRC_OFFSET: usize = 508;
/// Offset of the first LSN (8 bytes) in the header.
pub const HEADER_FIRST_LSN: usize = 8;
/// Offset of the creator text in the header.
pub const HEADER_CREATOR: usize = 16;
/// End of the creator text (start of the encryption info).
pub const HEADER_CREATOR_END: usize = 48;
/// Offset of checkpoint block 1.
pub const CHECKPOINT_1: usize = 4096;
/// Offset of checkpoint block 2.
pub const CHECKPOINT_2: usize = 8192;
/// Bytes of a checkpoint block that carry data (CRC at 60).
pub const CHECKPOINT_BLOCK_SIZE: usize = 64;
/// Start of the payload ring; also the smallest valid LSN.
pub const START_OFFSET: u64 = 12288;
/// Smallest possible first LSN.
pub const FIRST_LSN: Lsn = Lsn(START_OFFSET);
/// Longest mini-transaction the server writes or reads.
pub const MTR_SIZE_MAX: usize = 1 << 20;
/// Size of a bare checkpoint mtr (`FILE_CHECKPOINT` + end byte + CRC).
pub const SIZE_OF_FILE_CHECKPOINT: usize = 16;
/// Bytes after the record bytes of an mtr: termination byte + CRC-32C.
pub const MTR_TRAILER: usize = 5;
/// Size of the per-mtr nonce of an encrypted log ([`FORMAT_ENC_11`]),
/// between the termination byte and the CRC-32C.
pub const MTR_NONCE: usize = 8;
/// Bytes of encryption parameters in the header at [`HEADER_CREATOR_END`]:
/// key id, key version, 16-byte message, 4-byte nonce.
pub const HEADER_CRYPT_SIZE: usize = 28;
/// The only key id the server encrypts its log with.
pub const LOG_KEY_ID: u32 = 1;
/// Creator text hotbak writes into its backup log. The server only looks
/// at the `"Backup "` prefix (it then sets `srv_start_after_restore`).
pub const DEFAULT_BACKUP_CREATOR: &str = "Backup 10.11 hotbak";

/// Record type: create a tablespace file.
pub const FILE_CREATE: u8 = 0x80;
/// Record type: delete a tablespace file.
pub const FILE_DELETE: u8 = 0x90;
/// Record type: rename a tablespace file.
pub const FILE_RENAME: u8 = 0xA0;
/// Record type: a tablespace was modified since the last checkpoint.
pub const FILE_MODIFY: u8 = 0xB0;
/// Record type: checkpoint marker.
pub const FILE_CHECKPOINT: u8 = 0xF0;

/// The encryption parameters of an encrypted log ([`FORMAT_ENC_11`]),
/// header bytes 48..76. No key material: the message is encrypted with the
/// key (id [`LOG_KEY_ID`], `key_version`) to give the log's AES key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogCrypt {
    /// Key id (always [`LOG_KEY_ID`]).
    pub key_id: u32,
    /// Key version of the key-management plugin.
    pub key_version: u32,
    /// The random message the log key is derived from.
    pub msg: [u8; 16],
    /// The random nonce of the log (part of the 10.2-era IV; kept as is).
    pub nonce: [u8; 4],
}

impl LogCrypt {
    /// Parse the 28 bytes at header offset 48.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<LogCrypt> {
        let b = b.get(..HEADER_CRYPT_SIZE)?;
        let mut msg = [0u8; 16];
        msg.copy_from_slice(&b[8..24]);
        let mut nonce = [0u8; 4];
        nonce.copy_from_slice(&b[24..28]);
        Some(LogCrypt {
            key_id: be32(b, 0)?,
            key_version: be32(b, 4)?,
            msg,
            nonce,
        })
    }

    /// The 28 header bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_CRYPT_SIZE] {
        let mut o = [0u8; HEADER_CRYPT_SIZE];
        o[..4].copy_from_slice(&self.key_id.to_be_bytes());
        o[4..8].copy_from_slice(&self.key_version.to_be_bytes());
        o[8..24].copy_from_slice(&self.msg);
        o[24..].copy_from_slice(&self.nonce);
        o
    }
}

/// The decoded 512-byte header block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogHeader {
    /// The format id: [`FORMAT_10_8`] or [`FORMAT_ENC_11`].
    pub format: u32,
    /// The LSN stored for byte [`START_OFFSET`].
    pub first_lsn: Lsn,
    /// The creator text (up to the first NUL, lossy UTF-8).
    pub creator: String,
    /// The encryption parameters of an encrypted log; `None` when plain.
    pub crypt: Option<LogCrypt>,
}

impl LogHeader {
    /// Whether the mini-transactions are encrypted (and carry a nonce).
    #[must_use]
    pub fn is_encrypted(&self) -> bool {
        self.crypt.is_some()
    }

    /// Whether the creator marks a log written by a backup tool.
    #[must_use]
    pub fn is_backup(&self) -> bool {
        self.creator.starts_with("Backup ")
    }
}

fn creator_of(block: &[u8]) -> String {
    let raw = block.get(HEADER_CREATOR..HEADER_CREATOR_END).unwrap_or(&[]);
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn describe_format(format: u32) -> &'static str {
    match format & !FORMAT_ENCRYPTED_BIT {
        _ if format == FORMAT_ENC_11 => "encrypted redo log (FORMAT_ENC_11)",
        0 => "pre-10.2 format without checksums",
        1 => "MariaDB 10.2 format",
        103 => "MariaDB 10.3 format",
        104 => "MariaDB 10.4 format",
        FORMAT_10_5 => "MariaDB 10.5 to 10.7 format",
        _ => "unknown format",
    }
}

/// Parse and validate the header block (`buf` must hold at least 512 bytes).
///
/// # Errors
/// [`Error::Truncated`]; [`Error::LogHeaderChecksum`]; [`Error::LogHeader`]
/// for a non-zero reserved word, a first LSN below 12288, or an encrypted
/// log whose key id is not 1; [`Error::UnsupportedLogFormat`] for older
/// formats, unknown formats and the 10.8 format with encryption parameters
/// (per-record encryption, written by earlier releases than
/// [`FORMAT_ENC_11`]).
pub fn parse_header(buf: &[u8]) -> Result<LogHeader, Error> {
    let block = buf.get(..HEADER_SIZE).ok_or(Error::Truncated {
        what: "redo log header",
        need: HEADER_SIZE,
        got: buf.len(),
    })?;
    let format = be32(block, 0).unwrap_or(0);
    let creator = creator_of(block);
    if format == 0 {
        return Err(Error::UnsupportedLogFormat {
            format,
            what: describe_format(format),
            creator,
        });
    }
    let stored = be32(block, HEADER_CRC_OFFSET).unwrap_or(0);
    let computed = crc32c::crc32c(&block[..HEADER_CRC_OFFSET]);
    if stored != computed {
        return Err(Error::LogHeaderChecksum { stored, computed });
    }
    if format != FORMAT_10_8 && format != FORMAT_ENC_11 {
        return Err(Error::UnsupportedLogFormat {
            format,
            what: describe_format(format),
            creator,
        });
    }
    if be32(block, 4) != Some(0) {
        return Err(Error::LogHeader(format!(
            "reserved word at byte 4 is not zero (created by {creator:?})"
        )));
    }
    let first_lsn = Lsn(be64(block, HEADER_FIRST_LSN).unwrap_or(0));
    if first_lsn < FIRST_LSN {
        return Err(Error::LogHeader(format!(
            "first LSN {first_lsn} is below {FIRST_LSN} (created by {creator:?})"
        )));
    }
    let crypt = if format == FORMAT_ENC_11 {
        let c = LogCrypt::parse(&block[HEADER_CREATOR_END..]).ok_or(Error::Truncated {
            what: "redo log encryption parameters",
            need: HEADER_CREATOR_END + HEADER_CRYPT_SIZE,
            got: block.len(),
        })?;
        if c.key_id != LOG_KEY_ID {
            return Err(Error::LogHeader(format!(
                "encrypted log names key id {} at byte 48, expected {LOG_KEY_ID} (created by {creator:?})",
                c.key_id
            )));
        }
        Some(c)
    } else if be32(block, HEADER_CREATOR_END) != Some(0) {
        return Err(Error::UnsupportedLogFormat {
            format,
            what: "10.8 redo log with per-record encryption (FORMAT_ENC_10_8, from earlier 10.8+ releases)",
            creator,
        });
    } else {
        None
    };
    Ok(LogHeader {
        format,
        first_lsn,
        creator,
        crypt,
    })
}

/// One checkpoint block's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Recovery applies page records from here.
    pub checkpoint_lsn: Lsn,
    /// LSN of the checkpoint mtr (FILE_MODIFY… + FILE_CHECKPOINT).
    pub end_lsn: Lsn,
}

/// Why a checkpoint block is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointInvalid {
    /// Fewer than 64 bytes were given.
    Truncated,
    /// The CRC-32C at byte 60 does not match.
    Checksum {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// Bytes 16..60 are not all zero.
    NonZeroPadding,
    /// checkpoint_lsn < first_lsn or end_lsn < checkpoint_lsn.
    LsnOrder,
}

impl fmt::Display for CheckpointInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointInvalid::Truncated => f.write_str("block shorter than 64 bytes"),
            CheckpointInvalid::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored 0x{stored:08x} computed 0x{computed:08x}"
            ),
            CheckpointInvalid::NonZeroPadding => f.write_str("bytes 16..60 are not zero"),
            CheckpointInvalid::LsnOrder => f.write_str("LSNs out of order"),
        }
    }
}

/// Parse one checkpoint block (the 64 bytes at 4096 or 8192).
///
/// # Errors
/// The reason the server would ignore this block.
pub fn parse_checkpoint_block(
    block: &[u8],
    first_lsn: Lsn,
) -> Result<Checkpoint, CheckpointInvalid> {
    let b = block
        .get(..CHECKPOINT_BLOCK_SIZE)
        .ok_or(CheckpointInvalid::Truncated)?;
    let stored = be32(b, 60).unwrap_or(0);
    let computed = crc32c::crc32c(&b[..60]);
    if stored != computed {
        return Err(CheckpointInvalid::Checksum { stored, computed });
    }
    if b[16..60].iter().any(|&x| x != 0) {
        return Err(CheckpointInvalid::NonZeroPadding);
    }
    let checkpoint_lsn = Lsn(be64(b, 0).unwrap_or(0));
    let end_lsn = Lsn(be64(b, 8).unwrap_or(0));
    if checkpoint_lsn < first_lsn || end_lsn < checkpoint_lsn {
        return Err(CheckpointInvalid::LsnOrder);
    }
    Ok(Checkpoint {
        checkpoint_lsn,
        end_lsn,
    })
}

/// Everything the first 12 KiB of a log say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFileInfo {
    /// The header block.
    pub header: LogHeader,
    /// Block 1 (at 4096) and block 2 (at 8192), each valid or why not.
    pub checkpoints: [Result<Checkpoint, CheckpointInvalid>; 2],
    /// The checkpoint recovery would use: the valid one with the larger
    /// checkpoint LSN (block 2 on a tie, like the server).
    pub newest: Checkpoint,
}

/// Parse the header and both checkpoint blocks. `prefix` must hold at least
/// `8192 + 64` bytes (normally the first 12288 bytes of the file).
///
/// # Errors
/// Header errors from [`parse_header`], [`Error::Truncated`], or
/// [`Error::NoValidCheckpoint`].
pub fn parse_log_prefix(prefix: &[u8]) -> Result<LogFileInfo, Error> {
    let need = CHECKPOINT_2 + CHECKPOINT_BLOCK_SIZE;
    if prefix.len() < need {
        return Err(Error::Truncated {
            what: "redo log header and checkpoint blocks",
            need,
            got: prefix.len(),
        });
    }
    let header = parse_header(prefix)?;
    let c1 = parse_checkpoint_block(&prefix[CHECKPOINT_1..], header.first_lsn);
    let c2 = parse_checkpoint_block(&prefix[CHECKPOINT_2..], header.first_lsn);
    let newest = match (c1, c2) {
        (Ok(a), Ok(b)) => {
            if a.checkpoint_lsn > b.checkpoint_lsn {
                a
            } else {
                b
            }
        }
        (Ok(a), Err(_)) => a,
        (Err(_), Ok(b)) => b,
        (Err(_), Err(_)) => {
            return Err(Error::NoValidCheckpoint {
                creator: header.creator,
            })
        }
    };
    Ok(LogFileInfo {
        header,
        checkpoints: [c1, c2],
        newest,
    })
}

/// The ring geometry of one `ib_logfile0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogGeometry {
    first_lsn: Lsn,
    file_size: u64,
    nonce: usize,
}

/// A byte range of the log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRange {
    /// File offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A read of `[lsn, lsn + n)` as at most two file ranges (the second one
/// when the read crosses the end of the file and continues at 12288).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    /// The first range.
    pub first: FileRange,
    /// The continuation after the wrap, if any.
    pub second: Option<FileRange>,
}

impl LogGeometry {
    /// Geometry for a file of `file_size` bytes whose header says `first_lsn`.
    ///
    /// # Errors
    /// [`Error::Geometry`] if the file cannot hold even one checkpoint mtr,
    /// or `first_lsn` is below 12288.
    pub fn new(first_lsn: Lsn, file_size: u64) -> Result<Self, Error> {
        if file_size < START_OFFSET + SIZE_OF_FILE_CHECKPOINT as u64 {
            return Err(Error::Geometry(format!(
                "log file of {file_size} bytes is too small"
            )));
        }
        if first_lsn < FIRST_LSN {
            return Err(Error::Geometry(format!(
                "first LSN {first_lsn} is below {FIRST_LSN}"
            )));
        }
        Ok(LogGeometry {
            first_lsn,
            file_size,
            nonce: 0,
        })
    }

    /// Geometry of the log `header` describes: encrypted logs
    /// ([`FORMAT_ENC_11`]) carry an 8-byte nonce in each mtr's trailer.
    ///
    /// # Errors
    /// As [`LogGeometry::new`].
    pub fn for_header(header: &LogHeader, file_size: u64) -> Result<Self, Error> {
        let mut g = Self::new(header.first_lsn, file_size)?;
        if header.is_encrypted() {
            g.nonce = MTR_NONCE;
        }
        Ok(g)
    }

    /// The same geometry with (`true`) or without the per-mtr nonce.
    #[must_use]
    pub fn with_nonce(mut self, encrypted: bool) -> Self {
        self.nonce = if encrypted { MTR_NONCE } else { 0 };
        self
    }

    /// Whether mtrs carry the nonce of an encrypted log.
    #[must_use]
    pub fn encrypted(&self) -> bool {
        self.nonce != 0
    }

    /// Bytes after an mtr's records: termination byte, nonce (encrypted
    /// logs), CRC-32C.
    #[must_use]
    pub fn trailer(&self) -> usize {
        MTR_TRAILER + self.nonce
    }

    /// The LSN of byte 12288.
    #[must_use]
    pub fn first_lsn(&self) -> Lsn {
        self.first_lsn
    }

    /// The file size.
    #[must_use]
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Payload bytes in the ring: `file_size - 12288`.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.file_size - START_OFFSET
    }

    fn delta(&self, lsn: Lsn) -> Result<u64, Error> {
        lsn.bytes_since(self.first_lsn).ok_or_else(|| {
            Error::Geometry(format!(
                "LSN {lsn} is before the log's first LSN {}",
                self.first_lsn
            ))
        })
    }

    /// File offset of `lsn`.
    ///
    /// # Errors
    /// [`Error::Geometry`] if `lsn` precedes the first LSN.
    pub fn offset(&self, lsn: Lsn) -> Result<u64, Error> {
        Ok(START_OFFSET + self.delta(lsn)? % self.capacity())
    }

    /// The sequence bit expected at `lsn`: 1 on even passes through the
    /// ring, 0 on odd ones.
    ///
    /// # Errors
    /// [`Error::Geometry`] if `lsn` precedes the first LSN.
    pub fn seq_bit(&self, lsn: Lsn) -> Result<u8, Error> {
        Ok(u8::from((self.delta(lsn)? / self.capacity()) & 1 == 0))
    }

    /// Split a read of `[lsn, lsn + len)` into file ranges.
    ///
    /// # Errors
    /// [`Error::Geometry`] if `lsn` precedes the first LSN or `len` exceeds
    /// the capacity (the read would overlap itself).
    pub fn split_read(&self, lsn: Lsn, len: u64) -> Result<ReadPlan, Error> {
        if len > self.capacity() {
            return Err(Error::Geometry(format!(
                "read of {len} bytes exceeds the ring capacity {}",
                self.capacity()
            )));
        }
        let off = self.offset(lsn)?;
        let to_end = self.file_size - off;
        if len <= to_end {
            Ok(ReadPlan {
                first: FileRange { offset: off, len },
                second: None,
            })
        } else {
            Ok(ReadPlan {
                first: FileRange {
                    offset: off,
                    len: to_end,
                },
                second: Some(FileRange {
                    offset: START_OFFSET,
                    len: len - to_end,
                }),
            })
        }
    }
}

/// Number of bytes of the varint starting with `first` (1..=9; only 1..=5
/// can be valid).
#[must_use]
#[inline]
pub fn varint_len(first: u8) -> usize {
    (first.leading_ones() as usize) + 1
}

const MIN_2BYTE: u32 = 1 << 7;
const MIN_3BYTE: u32 = MIN_2BYTE + (1 << 14);
const MIN_4BYTE: u32 = MIN_3BYTE + (1 << 21);
const MIN_5BYTE: u32 = MIN_4BYTE + (1 << 28);

/// Decode a redo-log varint at the start of `buf`: `(value, length)`.
/// `None` if `buf` is too short or the encoding is invalid.
#[must_use]
#[inline(always)]
pub fn decode_varint(buf: &[u8]) -> Option<(u32, usize)> {
    // With 8 bytes at hand, the 1- to 4-byte forms without a branch on
    // the length (most varints of a log; the applier decodes millions).
    if let Some(b8) = buf.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        let w = u64::from_be_bytes(b8);
        let n = varint_len(b8[0]);
        if n <= 4 {
            const OFFSETS: [u32; 5] = [0, 0, MIN_2BYTE, MIN_3BYTE, MIN_4BYTE];
            let bits = 7 * n as u32;
            let raw = (w >> (64 - 8 * n as u32)) & ((1u64 << bits) - 1);
            return Some((raw as u32 + OFFSETS[n], n));
        }
    }
    decode_varint_bytewise(buf)
}

/// [`decode_varint`] one byte at a time (short buffers, 5-byte forms).
#[must_use]
#[inline]
fn decode_varint_bytewise(buf: &[u8]) -> Option<(u32, usize)> {
    let first = *buf.first()?;
    let n = varint_len(first);
    let b = buf.get(..n)?;
    let v = match n {
        1 => u32::from(first),
        2 => MIN_2BYTE + ((u32::from(first & 0x3F) << 8) | u32::from(b[1])),
        3 => {
            MIN_3BYTE + ((u32::from(first & 0x1F) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]))
        }
        4 => {
            MIN_4BYTE
                + ((u32::from(first & 0x0F) << 24)
                    | (u32::from(b[1]) << 16)
                    | (u32::from(b[2]) << 8)
                    | u32::from(b[3]))
        }
        5 if first == 0xF0 => {
            let raw = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
            if raw > !MIN_5BYTE {
                return None;
            }
            MIN_5BYTE + raw
        }
        _ => return None,
    };
    Some((v, n))
}

/// Encode `v` as a redo-log varint; returns the buffer and its used length.
#[must_use]
pub fn encode_varint(v: u32) -> ([u8; 5], usize) {
    let mut o = [0u8; 5];
    if v < MIN_2BYTE {
        o[0] = v as u8;
        (o, 1)
    } else if v < MIN_3BYTE {
        let x = v - MIN_2BYTE;
        o[..2].copy_from_slice(&((x as u16) | 0x8000).to_be_bytes());
        (o, 2)
    } else if v < MIN_4BYTE {
        let x = (v - MIN_3BYTE) | 0x00C0_0000;
        o[..3].copy_from_slice(&x.to_be_bytes()[1..]);
        (o, 3)
    } else if v < MIN_5BYTE {
        let x = (v - MIN_4BYTE) | 0xE000_0000;
        o[..4].copy_from_slice(&x.to_be_bytes());
        (o, 4)
    } else {
        o[0] = 0xF0;
        o[1..].copy_from_slice(&(v - MIN_5BYTE).to_be_bytes());
        (o, 5)
    }
}

/// Why the log ends at an LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndOfLog {
    /// The first byte is 0 or 1: padding, no mtr here.
    NoRecord {
        /// The byte found.
        first_byte: u8,
    },
    /// The termination byte is not the expected sequence bit (data from an
    /// older pass through the ring, or a half-written mtr).
    SequenceBit {
        /// Offset of the termination byte from the mtr start.
        at: usize,
        /// The byte found.
        found: u8,
        /// The expected sequence bit.
        expected: u8,
    },
    /// The CRC-32C does not match.
    Checksum {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// The mtr would exceed [`MTR_SIZE_MAX`].
    TooLong,
    /// An invalid varint record length.
    BadLength,
}

impl fmt::Display for EndOfLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndOfLog::NoRecord { first_byte } => write!(f, "first byte {first_byte} (no record)"),
            EndOfLog::SequenceBit {
                at,
                found,
                expected,
            } => write!(
                f,
                "termination byte {found} at +{at}, expected sequence bit {expected}"
            ),
            EndOfLog::Checksum { stored, computed } => write!(
                f,
                "mtr checksum mismatch: stored 0x{stored:08x} computed 0x{computed:08x}"
            ),
            EndOfLog::TooLong => write!(f, "mtr longer than {MTR_SIZE_MAX} bytes"),
            EndOfLog::BadLength => f.write_str("invalid record length encoding"),
        }
    }
}

/// One complete, valid mtr at the start of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MtrSpan {
    /// Total length: records + termination byte + (nonce) + CRC.
    pub len: usize,
    /// Bytes after the records: [`MTR_TRAILER`], plus [`MTR_NONCE`] in an
    /// encrypted log.
    pub trailer: usize,
}

impl MtrSpan {
    /// A span of `len` bytes in a plain (unencrypted) log.
    #[must_use]
    pub fn plain(len: usize) -> Self {
        MtrSpan {
            len,
            trailer: MTR_TRAILER,
        }
    }

    /// Offset of the termination (sequence) byte inside the mtr.
    #[must_use]
    pub fn term_offset(&self) -> usize {
        self.len - self.trailer
    }

    /// Length of the record bytes.
    #[must_use]
    pub fn records_len(&self) -> usize {
        self.len - self.trailer
    }
}

/// Result of [`parse_mtr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtrParse {
    /// A complete valid mtr.
    Complete(MtrSpan),
    /// The buffer ends inside the mtr: read more and retry.
    NeedMore,
    /// No valid mtr starts here: the logical end of the log (for now).
    End(EndOfLog),
}

/// Parse the mtr starting at `buf[0]`, which is at LSN `lsn` in a log of
/// geometry `geo`. Follows the server's `recv_sys_t::parse` length pass.
///
/// # Errors
/// [`Error::Geometry`] if `lsn` precedes the first LSN of `geo`.
pub fn parse_mtr(geo: &LogGeometry, lsn: Lsn, buf: &[u8]) -> Result<MtrParse, Error> {
    // Validate the LSN once so the later seq_bit call cannot fail.
    geo.seq_bit(lsn)?;
    let Some(&first) = buf.first() else {
        return Ok(MtrParse::NeedMore);
    };
    if first <= 1 {
        return Ok(MtrParse::End(EndOfLog::NoRecord { first_byte: first }));
    }
    let mut pos = 0usize;
    // Sum of record lengths excluding header bytes, as the server counts.
    let mut total = 0usize;
    loop {
        if total >= MTR_SIZE_MAX {
            return Ok(MtrParse::End(EndOfLog::TooLong));
        }
        let Some(&b) = buf.get(pos) else {
            return Ok(MtrParse::NeedMore);
        };
        if b <= 1 {
            break;
        }
        let mut rlen = usize::from(b & 0x0F);
        pos += 1;
        if rlen == 0 {
            let Some(&vfirst) = buf.get(pos) else {
                return Ok(MtrParse::NeedMore);
            };
            let n = varint_len(vfirst);
            if n > 5 || (n == 5 && vfirst != 0xF0) {
                return Ok(MtrParse::End(EndOfLog::BadLength));
            }
            let Some((add, _)) = decode_varint(&buf[pos..]) else {
                if buf.len() - pos < n {
                    return Ok(MtrParse::NeedMore);
                }
                return Ok(MtrParse::End(EndOfLog::BadLength));
            };
            let add = add as usize;
            if add >= MTR_SIZE_MAX {
                return Ok(MtrParse::End(EndOfLog::TooLong));
            }
            rlen = add + 15;
        }
        pos += rlen;
        total += rlen;
    }
    // `pos` is the termination byte.
    let term = buf[pos];
    let term_lsn = lsn
        .checked_add(pos as u64)
        .ok_or_else(|| Error::Geometry(format!("LSN {lsn} + {pos} overflows")))?;
    let expected = geo.seq_bit(term_lsn)?;
    if term != expected {
        return Ok(MtrParse::End(EndOfLog::SequenceBit {
            at: pos,
            found: term,
            expected,
        }));
    }
    let nonce = geo.nonce;
    let Some(stored) = be32(buf, pos + 1 + nonce) else {
        return Ok(MtrParse::NeedMore);
    };
    // The CRC covers the records and (encrypted logs) the nonce, never the
    // termination byte between them.
    let mut computed = crc32c::crc32c(&buf[..pos]);
    if nonce != 0 {
        computed = crc32c::crc32c_append(computed, &buf[pos + 1..pos + 1 + nonce]);
    }
    if stored != computed {
        return Ok(MtrParse::End(EndOfLog::Checksum { stored, computed }));
    }
    Ok(MtrParse::Complete(MtrSpan {
        len: pos + MTR_TRAILER + nonce,
        trailer: MTR_TRAILER + nonce,
    }))
}

/// Why [`scan_mtrs`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The buffer ends inside an mtr (or exactly at an mtr boundary).
    NeedMore,
    /// The next mtr is invalid: end of the log as of this read.
    EndOfLog(EndOfLog),
}

/// Result of [`scan_mtrs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Length of each complete valid mtr, in order from the start of the buffer.
    pub mtr_lens: Vec<usize>,
    /// Sum of `mtr_lens`: bytes that may be appended to the backup log.
    pub consumed: usize,
    /// LSN after the last valid mtr.
    pub end_lsn: Lsn,
    /// Why the scan stopped.
    pub stop: ScanStop,
}

/// Walk complete valid mtrs from the start of `buf` (at LSN `lsn`).
///
/// # Errors
/// [`Error::Geometry`] if `lsn` precedes the first LSN of `geo`.
pub fn scan_mtrs(geo: &LogGeometry, lsn: Lsn, buf: &[u8]) -> Result<Scan, Error> {
    let mut mtr_lens = Vec::new();
    let mut pos = 0usize;
    let mut cur = lsn;
    let stop = loop {
        match parse_mtr(geo, cur, &buf[pos..])? {
            MtrParse::Complete(span) => {
                mtr_lens.push(span.len);
                pos += span.len;
                cur = cur.checked_add(span.len as u64).ok_or_else(|| {
                    Error::Geometry(format!("LSN {cur} + {} overflows", span.len))
                })?;
            }
            MtrParse::NeedMore => break ScanStop::NeedMore,
            MtrParse::End(e) => break ScanStop::EndOfLog(e),
        }
    };
    Ok(Scan {
        mtr_lens,
        consumed: pos,
        end_lsn: cur,
        stop,
    })
}

/// Set the termination byte of a complete mtr of a plain log to 1, as a
/// linear backup log needs (its CRC does not cover that byte). For an
/// encrypted log use [`MtrSpan::term_offset`].
///
/// # Errors
/// [`Error::InvalidArgument`] if `mtr` is shorter than its trailer.
pub fn force_sequence_bit(mtr: &mut [u8]) -> Result<(), Error> {
    let n = mtr.len();
    if n <= MTR_TRAILER {
        return Err(Error::InvalidArgument(format!(
            "mtr of {n} bytes has no records"
        )));
    }
    mtr[n - MTR_TRAILER] = 1;
    Ok(())
}

/// Whether the records of one mtr (plain or encrypted: the record headers,
/// type and length, are never encrypted) hold a file-level record other
/// than `FILE_CHECKPOINT`/`FILE_MODIFY`: `FILE_CREATE`, `FILE_DELETE` or
/// `FILE_RENAME`. `records` are the record bytes (no trailer); `None` if
/// they cannot be delimited.
#[must_use]
pub fn file_record_kinds(records: &[u8]) -> Option<FileKinds> {
    let mut k = FileKinds::default();
    let mut pos = 0usize;
    let mut got_page_op = false;
    while let Some(&b) = records.get(pos) {
        if b <= 1 {
            break;
        }
        let (body_at, rlen) = record_extent(records, pos)?;
        if b & 0x80 == 0 {
            got_page_op = true;
        } else if !got_page_op {
            match b & 0xF0 {
                FILE_CREATE | FILE_DELETE | FILE_RENAME => k.ddl = true,
                FILE_MODIFY => k.modify = true,
                _ => {}
            }
        }
        pos = body_at.checked_add(rlen)?;
    }
    Some(k)
}

/// Which file-level records an mtr holds (see [`file_record_kinds`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileKinds {
    /// A `FILE_CREATE`, `FILE_DELETE` or `FILE_RENAME`.
    pub ddl: bool,
    /// A `FILE_MODIFY`.
    pub modify: bool,
}

impl FileKinds {
    /// Any file record besides `FILE_CHECKPOINT`.
    #[must_use]
    pub fn any(&self) -> bool {
        self.ddl || self.modify
    }
}

/// Where the body of the record at `pos` starts and how long it is: the
/// header byte and (for length 0) the length varint are not part of the
/// body, and are what an encrypted log leaves in clear.
#[must_use]
pub fn record_extent(records: &[u8], pos: usize) -> Option<(usize, usize)> {
    let b = *records.get(pos)?;
    let l = pos + 1;
    let rlen = usize::from(b & 0x0F);
    if rlen != 0 {
        return Some((l, rlen));
    }
    let (add, n) = decode_varint(records.get(l..)?)?;
    Some((l + n, (add as usize + 15).checked_sub(n)?))
}

/// A file-level record of an mtr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp<'a> {
    /// FILE_CREATE: a tablespace file was created.
    Create {
        /// Tablespace id.
        space: SpaceId,
        /// Path as logged (e.g. `./db/t.ibd`), not NUL-terminated.
        path: &'a [u8],
    },
    /// FILE_DELETE: a tablespace file was deleted.
    Delete {
        /// Tablespace id.
        space: SpaceId,
        /// Path as logged.
        path: &'a [u8],
    },
    /// FILE_RENAME: a tablespace file was renamed.
    Rename {
        /// Tablespace id.
        space: SpaceId,
        /// Old path.
        from: &'a [u8],
        /// New path.
        to: &'a [u8],
    },
    /// FILE_MODIFY: the tablespace is modified after the checkpoint.
    Modify {
        /// Tablespace id.
        space: SpaceId,
        /// Path as logged.
        path: &'a [u8],
    },
    /// FILE_CHECKPOINT: the checkpoint LSN this checkpoint mtr belongs to.
    Checkpoint {
        /// The checkpoint LSN.
        lsn: Lsn,
    },
}

/// Iterator over the FILE_* records of one mtr; see [`file_records`].
#[derive(Clone, Debug)]
pub struct FileRecords<'a> {
    mtr: &'a [u8],
    pos: usize,
    got_page_op: bool,
    done: bool,
}

/// Iterate the FILE_* records of one complete mtr (records + trailer, as
/// [`parse_mtr`] delimits them; a slice of just the records works too).
/// Page records are skipped. A malformed record yields one error and ends
/// the iteration.
#[must_use]
pub fn file_records(mtr: &[u8]) -> FileRecords<'_> {
    FileRecords {
        mtr,
        pos: 0,
        got_page_op: false,
        done: false,
    }
}

impl<'a> FileRecords<'a> {
    fn fail(&mut self, offset: usize, reason: &'static str) -> Option<Result<FileOp<'a>, Error>> {
        self.done = true;
        Some(Err(Error::FileRecord { offset, reason }))
    }
}

fn ends_with_ibd(name: &[u8]) -> bool {
    name.len() >= 4 && name.ends_with(b".ibd")
}

impl<'a> Iterator for FileRecords<'a> {
    type Item = Result<FileOp<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let start = self.pos;
            let Some(&b) = self.mtr.get(start) else {
                self.done = true;
                return None;
            };
            if b <= 1 {
                self.done = true;
                return None;
            }
            // Record length, as the server's second parsing pass computes it.
            let mut l = start + 1;
            let mut rlen = usize::from(b & 0x0F);
            if rlen == 0 {
                let Some((add, n)) = self.mtr.get(l..).and_then(decode_varint) else {
                    return self.fail(start, "bad record length");
                };
                rlen = (add as usize + 15).saturating_sub(n);
                l += n;
            }
            let Some(body) = self.mtr.get(l..l.saturating_add(rlen)) else {
                return self.fail(start, "record extends past the mtr");
            };
            self.pos = l + rlen;
            if b & 0x80 != 0 && self.got_page_op {
                continue; // same-page record
            }
            // Space id and page number.
            let idlen = body.first().map_or(0, |&x| varint_len(x));
            if idlen > 5 || idlen >= rlen {
                if body.first() == Some(&0) && b == FILE_CHECKPOINT + 1 {
                    continue; // 2-byte padding record
                }
                return self.fail(start, "corrupted page identifier");
            }
            let Some((space, n1)) = decode_varint(body) else {
                return self.fail(start, "corrupted space id");
            };
            let rest = &body[n1..];
            let n2 = rest.first().map_or(0, |&x| varint_len(x));
            if n2 > 5 || n2 > rest.len() {
                return self.fail(start, "corrupted page number");
            }
            let Some((page_no, n2)) = decode_varint(rest) else {
                return self.fail(start, "corrupted page number");
            };
            let name = &rest[n2..];
            self.got_page_op = b & 0x80 == 0;
            if self.got_page_op {
                continue;
            }
            let space = SpaceId(space);
            let page_no = PageNo(page_no);
            if name.is_empty() {
                if b == FILE_CHECKPOINT + 2 && space.0 == 0 && page_no.0 == 0 {
                    continue; // 3-byte padding record
                }
                return self.fail(start, "file record without a name");
            }
            let kind = b & 0xF0;
            if kind == FILE_CHECKPOINT {
                if space.0 != 0 || page_no.0 != 0 {
                    return self.fail(start, "FILE_CHECKPOINT with a page identifier");
                }
                if name.len() != 8 {
                    if name.iter().all(|&x| x == 0) {
                        continue; // padding
                    }
                    return self.fail(start, "FILE_CHECKPOINT payload is not 8 bytes");
                }
                let lsn = Lsn(be64(name, 0).unwrap_or(0));
                if lsn.0 == 0 {
                    continue;
                }
                return Some(Ok(FileOp::Checkpoint { lsn }));
            }
            if !matches!(kind, FILE_CREATE | FILE_DELETE | FILE_RENAME | FILE_MODIFY) {
                return self.fail(start, "unknown file-level record type");
            }
            if space.0 == 0 || page_no.0 != 0 {
                return self.fail(start, "file record for space 0 or a non-zero page");
            }
            let nul = name.iter().position(|&x| x == 0);
            if nul.is_some() != (kind == FILE_RENAME) {
                return self.fail(start, "name NUL separator present iff FILE_RENAME violated");
            }
            let (first, second) = match nul {
                Some(i) => (&name[..i], Some(&name[i + 1..])),
                None => (name, None),
            };
            if !ends_with_ibd(first) {
                return self.fail(start, "file name does not end in .ibd");
            }
            if let Some(s) = second {
                if s.contains(&0) || !ends_with_ibd(s) {
                    return self.fail(start, "new file name invalid");
                }
            }
            return Some(Ok(match (kind, second) {
                (FILE_CREATE, _) => FileOp::Create { space, path: first },
                (FILE_DELETE, _) => FileOp::Delete { space, path: first },
                (FILE_MODIFY, _) => FileOp::Modify { space, path: first },
                (_, Some(to)) => FileOp::Rename {
                    space,
                    from: first,
                    to,
                },
                (_, None) => return self.fail(start, "FILE_RENAME without a new name"),
            }));
        }
    }
}

/// Build the first 12288 bytes of the backup's own `ib_logfile0`: header
/// (FORMAT_10_8, first LSN = checkpoint LSN, `creator`, CRC), checkpoint
/// block 1 = `checkpoint`, block 2 zero. The copied mtrs (termination bytes
/// forced to 1) follow, starting at LSN `checkpoint.checkpoint_lsn`.
///
/// `creator` must start with `"Backup "` (the server keys
/// `srv_start_after_restore` on that prefix), be at most 31 bytes, and
/// contain no NUL. Use [`DEFAULT_BACKUP_CREATOR`] normally.
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad creator or checkpoint.
pub fn build_backup_log_prefix(checkpoint: Checkpoint, creator: &str) -> Result<Vec<u8>, Error> {
    build_backup_log_prefix_with(checkpoint, creator, None)
}

/// [`build_backup_log_prefix`] for a log that is encrypted (`crypt` is the
/// server's header parameters, kept byte for byte: the same key version,
/// message and nonce, so that recovery with the same keys derives the same
/// log key): format [`FORMAT_ENC_11`], the 28 bytes at 48.
///
/// # Errors
/// As [`build_backup_log_prefix`]; a key id other than 1.
pub fn build_backup_log_prefix_with(
    checkpoint: Checkpoint,
    creator: &str,
    crypt: Option<&LogCrypt>,
) -> Result<Vec<u8>, Error> {
    if let Some(c) = crypt {
        if c.key_id != LOG_KEY_ID {
            return Err(Error::InvalidArgument(format!(
                "log key id {} is not {LOG_KEY_ID}",
                c.key_id
            )));
        }
    }
    if !creator.starts_with("Backup ")
        || creator.len() >= HEADER_CREATOR_END - HEADER_CREATOR
        || creator.as_bytes().contains(&0)
    {
        return Err(Error::InvalidArgument(format!(
            "creator {creator:?} must start with \"Backup \", be shorter than 32 bytes and have no NUL"
        )));
    }
    if checkpoint.checkpoint_lsn < FIRST_LSN || checkpoint.end_lsn < checkpoint.checkpoint_lsn {
        return Err(Error::InvalidArgument(format!(
            "checkpoint {} / end {} is not a valid checkpoint",
            checkpoint.checkpoint_lsn, checkpoint.end_lsn
        )));
    }
    let mut out = vec![0u8; START_OFFSET as usize];
    let format = if crypt.is_some() {
        FORMAT_ENC_11
    } else {
        FORMAT_10_8
    };
    out[..4].copy_from_slice(&format.to_be_bytes());
    out[HEADER_FIRST_LSN..HEADER_FIRST_LSN + 8]
        .copy_from_slice(&checkpoint.checkpoint_lsn.0.to_be_bytes());
    out[HEADER_CREATOR..HEADER_CREATOR + creator.len()].copy_from_slice(creator.as_bytes());
    if let Some(c) = crypt {
        out[HEADER_CREATOR_END..HEADER_CREATOR_END + HEADER_CRYPT_SIZE]
            .copy_from_slice(&c.to_bytes());
    }
    let crc = crc32c::crc32c(&out[..HEADER_CRC_OFFSET]);
    out[HEADER_CRC_OFFSET..HEADER_SIZE].copy_from_slice(&crc.to_be_bytes());
    let c = CHECKPOINT_1;
    out[c..c + 8].copy_from_slice(&checkpoint.checkpoint_lsn.0.to_be_bytes());
    out[c + 8..c + 16].copy_from_slice(&checkpoint.end_lsn.0.to_be_bytes());
    let crc = crc32c::crc32c(&out[c..c + 60]);
    out[c + 60..c + 64].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Whether the server may overwrite, or has overwritten, log the follower
/// still needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowerSafety {
    /// The server's checkpoint is not past the copied LSN, so it cannot
    /// overwrite uncopied log.
    Ok {
        /// Bytes the server may still write before reaching uncopied log.
        headroom_bytes: u64,
    },
    /// The server's checkpoint is past the copied LSN: it is free to
    /// overwrite uncopied log once it has written `headroom_bytes` more.
    AtRisk {
        /// Bytes left before uncopied log is overwritten.
        headroom_bytes: u64,
    },
    /// `server_lsn - capacity > copied_lsn`: uncopied log is gone.
    Overwritten {
        /// How far past the safe limit the server is.
        lost_bytes: u64,
    },
}

/// Decide the follower's safety (internals doc §1.6 and §6).
///
/// - `copied`: the LSN up to which the follower has copied (exclusive).
/// - `server_checkpoint`: the newest checkpoint LSN in the server's log.
/// - `server_lsn`: the best known server write position (at least the
///   checkpoint block's `end_lsn`; larger if known from the server).
/// - `capacity`: [`LogGeometry::capacity`] of the server's log.
///
/// The server writes LSN `L` at the ring slot of `L - capacity`, so the byte
/// at `copied` is gone once `server_lsn - capacity > copied`. The server
/// never overwrites log after its own checkpoint, so uncopied log is only
/// exposed once the checkpoint has moved past `copied`.
#[must_use]
pub fn follower_safety(
    copied: Lsn,
    server_checkpoint: Lsn,
    server_lsn: Lsn,
    capacity: u64,
) -> FollowerSafety {
    let server_lsn = server_lsn.max(server_checkpoint);
    let limit = copied.0.saturating_add(capacity);
    if server_lsn.0 > limit {
        return FollowerSafety::Overwritten {
            lost_bytes: server_lsn.0 - limit,
        };
    }
    let headroom_bytes = limit - server_lsn.0;
    if server_checkpoint > copied {
        FollowerSafety::AtRisk { headroom_bytes }
    } else {
        FollowerSafety::Ok { headroom_bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_fast_path_agrees_with_the_bytewise_one(buf in proptest::collection::vec(any::<u8>(), 0..12)) {
            prop_assert_eq!(decode_varint(&buf), decode_varint_bytewise(&buf));
        }

        #[test]
        fn varints_round_trip_with_any_tail(v in any::<u32>(), tail in proptest::collection::vec(any::<u8>(), 0..10)) {
            let (enc, n) = encode_varint(v);
            let mut buf = enc[..n].to_vec();
            buf.extend_from_slice(&tail);
            prop_assert_eq!(decode_varint(&buf), Some((v, n)));
        }
    }

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/innodb/");
    /// Size of the live ib_logfile0 the fixtures were cut from (README).
    const FIXTURE_FILE_SIZE: u64 = 8 * 1024 * 1024;
    /// File offset the slice fixture starts at.
    const FIXTURE_SLICE_OFFSET: u64 = 39616;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIX}{name}")).expect("fixture file present in the repo")
    }

    fn mtr(records: &[u8], seq: u8) -> Vec<u8> {
        let mut v = records.to_vec();
        v.push(seq);
        v.extend_from_slice(&crc32c::crc32c(records).to_be_bytes());
        v
    }

    fn checkpoint_mtr(ck: u64, seq: u8) -> Vec<u8> {
        let mut r = vec![0xFA, 0, 0];
        r.extend_from_slice(&ck.to_be_bytes());
        mtr(&r, seq)
    }

    fn geo() -> LogGeometry {
        LogGeometry::new(Lsn(12288), 12288 + 1000).expect("valid geometry")
    }

    #[test]
    fn real_header_and_checkpoints() {
        let head = fixture("ib_logfile0.head");
        let info = parse_log_prefix(&head).expect("real header parses");
        assert_eq!(info.header.format, FORMAT_10_8);
        assert_eq!(info.header.first_lsn, Lsn(44404));
        assert_eq!(info.header.creator, "MariaDB 10.11.19");
        assert!(!info.header.is_backup());
        assert_eq!(
            info.checkpoints[0],
            Ok(Checkpoint {
                checkpoint_lsn: Lsn(71716),
                end_lsn: Lsn(71716)
            })
        );
        assert_eq!(
            info.newest,
            Checkpoint {
                checkpoint_lsn: Lsn(71732),
                end_lsn: Lsn(72410)
            }
        );
        let g = LogGeometry::new(info.header.first_lsn, FIXTURE_FILE_SIZE).expect("geometry");
        assert_eq!(
            g.offset(Lsn(71732)).expect("in range"),
            FIXTURE_SLICE_OFFSET
        );
        assert_eq!(g.seq_bit(Lsn(71732)).expect("in range"), 1);
        // A flipped header byte is caught.
        let mut bad = head.clone();
        bad[20] ^= 1;
        assert!(matches!(
            parse_log_prefix(&bad),
            Err(Error::LogHeaderChecksum { .. })
        ));
        // A flipped checkpoint byte invalidates that block only.
        let mut bad = head;
        bad[CHECKPOINT_2 + 3] ^= 1;
        let info = parse_log_prefix(&bad).expect("block 1 still valid");
        assert!(matches!(
            info.checkpoints[1],
            Err(CheckpointInvalid::Checksum { .. })
        ));
        assert_eq!(info.newest.checkpoint_lsn, Lsn(71716));
    }

    #[test]
    fn real_mtrs_scan_and_file_records() {
        let head = fixture("ib_logfile0.head");
        let info = parse_log_prefix(&head).expect("real header parses");
        let g = LogGeometry::new(info.header.first_lsn, FIXTURE_FILE_SIZE).expect("geometry");
        let slice = fixture("ib_logfile0.slice");
        let ck = info.newest;
        let scan = scan_mtrs(&g, ck.checkpoint_lsn, &slice).expect("lsn in range");
        // redo_inspect.py: 79 mtrs, 4603 bytes, end at 76335 on a 0 byte.
        assert_eq!(scan.mtr_lens.len(), 79);
        assert_eq!(scan.consumed, 4603);
        assert_eq!(scan.end_lsn, Lsn(76335));
        assert_eq!(
            scan.stop,
            ScanStop::EndOfLog(EndOfLog::NoRecord { first_byte: 0 })
        );
        // Walk the mtrs and collect file records.
        let mut pos = 0usize;
        let mut lsn = ck.checkpoint_lsn;
        let mut ops = Vec::new();
        let mut checkpoint_at = None;
        for &len in &scan.mtr_lens {
            for op in file_records(&slice[pos..pos + len]) {
                let op = op.expect("server-written records are well formed");
                if let FileOp::Checkpoint { lsn: c } = op {
                    checkpoint_at = Some((lsn, c));
                }
                ops.push(op);
            }
            pos += len;
            lsn = Lsn(lsn.0 + len as u64);
        }
        // FILE_CHECKPOINT(checkpoint_lsn) sits in the mtr at end_lsn.
        assert_eq!(checkpoint_at, Some((ck.end_lsn, ck.checkpoint_lsn)));
        let created: Vec<_> = ops
            .iter()
            .filter_map(|o| match o {
                FileOp::Create { space, path } => Some((*space, path.to_vec())),
                _ => None,
            })
            .collect();
        assert_eq!(created, vec![(SpaceId(9), b"./fx/t_new.ibd".to_vec())]);
        assert!(ops.iter().any(|o| matches!(o,
            FileOp::Rename { space: SpaceId(9), from, to }
                if *from == b"./fx/t_new.ibd" && *to == b"./fx/t_ren.ibd")));
        assert!(ops
            .iter()
            .any(|o| matches!(o, FileOp::Delete { space: SpaceId(9), path } if *path == b"./fx/t_ren.ibd")));
        assert!(ops.iter().any(|o| matches!(o, FileOp::Modify { .. })));
        // Cutting the slice inside an mtr gives NeedMore after the complete ones.
        let cut = scan.mtr_lens[0] + scan.mtr_lens[1] + 3;
        let s2 = scan_mtrs(&g, ck.checkpoint_lsn, &slice[..cut]).expect("in range");
        assert_eq!(s2.mtr_lens.len(), 2);
        assert_eq!(s2.stop, ScanStop::NeedMore);
        // The same bytes seen as the next pass's data: wrong sequence bit.
        let next_pass = Lsn(ck.checkpoint_lsn.0 + g.capacity());
        let s3 = scan_mtrs(&g, next_pass, &slice).expect("in range");
        assert!(s3.mtr_lens.is_empty());
        assert!(matches!(
            s3.stop,
            ScanStop::EndOfLog(EndOfLog::SequenceBit {
                expected: 0,
                found: 1,
                ..
            })
        ));
    }

    #[test]
    fn backup_log_round_trip_with_real_mtrs() {
        let head = fixture("ib_logfile0.head");
        let info = parse_log_prefix(&head).expect("real header parses");
        let ck = info.newest;
        let mut out = build_backup_log_prefix(ck, DEFAULT_BACKUP_CREATOR).expect("valid");
        assert_eq!(out.len(), 12288);
        let slice = fixture("ib_logfile0.slice");
        let g = LogGeometry::new(info.header.first_lsn, FIXTURE_FILE_SIZE).expect("geometry");
        let scan = scan_mtrs(&g, ck.checkpoint_lsn, &slice).expect("in range");
        let mut pos = 0;
        for &len in &scan.mtr_lens {
            let mut m = slice[pos..pos + len].to_vec();
            force_sequence_bit(&mut m).expect("complete mtr");
            out.extend_from_slice(&m);
            pos += len;
        }
        let back = parse_log_prefix(&out).expect("built header parses");
        assert_eq!(back.newest, ck);
        assert_eq!(back.header.first_lsn, ck.checkpoint_lsn);
        assert_eq!(back.header.creator, DEFAULT_BACKUP_CREATOR);
        assert!(back.header.is_backup());
        assert!(matches!(
            back.checkpoints[1],
            Err(CheckpointInvalid::Checksum { .. })
        ));
        // The linear file re-scans to its exact end; the wrap gives seq bit 0.
        let lg = LogGeometry::new(back.header.first_lsn, out.len() as u64).expect("geometry");
        let mut ring = out[12288..].to_vec();
        ring.extend_from_slice(&out[12288..12288 + 64]);
        let rescan = scan_mtrs(&lg, ck.checkpoint_lsn, &ring).expect("in range");
        assert_eq!(rescan.mtr_lens, scan.mtr_lens);
        assert!(matches!(
            rescan.stop,
            ScanStop::EndOfLog(EndOfLog::SequenceBit { expected: 0, .. })
        ));
    }

    /// An encrypted log's mtr: records, termination byte, 8-byte nonce,
    /// CRC-32C over the records and the nonce (not the termination byte).
    #[test]
    fn encrypted_mtr_framing() {
        let g = LogGeometry::new(Lsn(12288), 12288 + 1000)
            .expect("valid")
            .with_nonce(true);
        assert_eq!(g.trailer(), 13);
        let records = [0x32u8, 0x11, 0x22];
        let nonce = 0x0102_0304_0506_0708_u64.to_be_bytes();
        let mut m = records.to_vec();
        m.push(1);
        m.extend_from_slice(&nonce);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&records), &nonce);
        m.extend_from_slice(&crc.to_be_bytes());
        let span = MtrSpan {
            len: 16,
            trailer: 13,
        };
        assert_eq!(
            parse_mtr(&g, Lsn(12288), &m).expect("ok"),
            MtrParse::Complete(span)
        );
        assert_eq!(span.term_offset(), 3);
        // Cut anywhere in the trailer: need more.
        for cut in 4..16 {
            assert_eq!(
                parse_mtr(&g, Lsn(12288), &m[..cut]).expect("ok"),
                MtrParse::NeedMore
            );
        }
        // The nonce is covered by the CRC.
        let mut bad = m.clone();
        bad[6] ^= 1;
        assert!(matches!(
            parse_mtr(&g, Lsn(12288), &bad).expect("ok"),
            MtrParse::End(EndOfLog::Checksum { .. })
        ));
        // The plain geometry reads the same bytes as something else.
        assert_ne!(
            parse_mtr(&g.with_nonce(false), Lsn(12288), &m).expect("ok"),
            MtrParse::Complete(span)
        );
        // Record kinds are visible in the headers.
        assert_eq!(
            file_record_kinds(&[0xB2, 9, 9]),
            Some(FileKinds {
                ddl: false,
                modify: true
            })
        );
        assert_eq!(
            file_record_kinds(&[0x82, 9, 9]),
            Some(FileKinds {
                ddl: true,
                modify: false
            })
        );
        assert_eq!(
            file_record_kinds(&[0x32, 9, 9, 0x82, 1, 1]),
            Some(FileKinds::default())
        );
    }

    #[test]
    fn header_format_errors() {
        let ck = Checkpoint {
            checkpoint_lsn: Lsn(50000),
            end_lsn: Lsn(50000),
        };
        let good = build_backup_log_prefix(ck, "Backup 10.11.19").expect("valid");
        let restamp = |mut b: Vec<u8>| {
            let c = crc32c::crc32c(&b[..508]);
            b[508..512].copy_from_slice(&c.to_be_bytes());
            b
        };
        for (fmt, what) in [
            (FORMAT_10_5, "10.5"),
            (FORMAT_10_5 | FORMAT_ENCRYPTED_BIT, "10.5"),
            (104, "10.4"),
            (0x1234_5678, "unknown"),
        ] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&fmt.to_be_bytes());
            let e = parse_header(&restamp(b)).expect_err("unsupported");
            assert!(matches!(e, Error::UnsupportedLogFormat { .. }), "{e}");
            assert!(e.to_string().contains(what), "{e}");
            assert!(e.to_string().contains("Backup 10.11.19"), "{e}");
        }
        // 10.8 format with encryption parameters: per-record encryption.
        let mut b = good.clone();
        b[48] = 1;
        let e = parse_header(&restamp(b)).expect_err("encrypted");
        assert!(matches!(e, Error::UnsupportedLogFormat { .. }), "{e}");
        assert!(e.to_string().contains("FORMAT_ENC_10_8"), "{e}");
        // FORMAT_ENC_11 needs key id 1.
        let mut b = good.clone();
        b[..4].copy_from_slice(&FORMAT_ENC_11.to_be_bytes());
        let e = parse_header(&restamp(b)).expect_err("key id 0");
        assert!(e.to_string().contains("key id 0"), "{e}");
        // The encrypted backup prefix round-trips its parameters.
        let crypt = LogCrypt {
            key_id: 1,
            key_version: 3,
            msg: [7; 16],
            nonce: [1, 2, 3, 4],
        };
        let enc = build_backup_log_prefix_with(ck, "Backup 10.11.19", Some(&crypt)).expect("valid");
        let info = parse_log_prefix(&enc).expect("parses");
        assert_eq!(info.header.format, FORMAT_ENC_11);
        assert_eq!(info.header.crypt, Some(crypt));
        assert!(LogGeometry::for_header(&info.header, 1 << 20)
            .expect("geo")
            .encrypted());
        let wrong = LogCrypt { key_id: 2, ..crypt };
        assert!(build_backup_log_prefix_with(ck, "Backup 10.11.19", Some(&wrong)).is_err());
        let mut b = good.clone();
        b[5] = 1;
        assert!(matches!(
            parse_header(&restamp(b)),
            Err(Error::LogHeader(_))
        ));
        let mut b = good.clone();
        b[8..16].copy_from_slice(&100u64.to_be_bytes());
        assert!(matches!(
            parse_header(&restamp(b)),
            Err(Error::LogHeader(_))
        ));
        assert!(matches!(
            parse_header(&good[..100]),
            Err(Error::Truncated { .. })
        ));
        let mut b = good;
        b[4096..4160].fill(0);
        assert!(matches!(
            parse_log_prefix(&b),
            Err(Error::NoValidCheckpoint { .. })
        ));
        assert!(build_backup_log_prefix(ck, "MariaDB 10.11").is_err());
        assert!(build_backup_log_prefix(ck, "Backup 0123456789012345678901234567").is_err());
    }

    #[test]
    fn geometry() {
        let g = LogGeometry::new(Lsn(20000), 12288 + 100).expect("valid");
        assert_eq!(g.capacity(), 100);
        assert_eq!(g.offset(Lsn(20000)).expect("ok"), 12288);
        assert_eq!(g.offset(Lsn(20099)).expect("ok"), 12387);
        assert_eq!(g.offset(Lsn(20100)).expect("ok"), 12288);
        assert_eq!(g.seq_bit(Lsn(20099)).expect("ok"), 1);
        assert_eq!(g.seq_bit(Lsn(20100)).expect("ok"), 0);
        assert_eq!(g.seq_bit(Lsn(20200)).expect("ok"), 1);
        assert!(g.offset(Lsn(19999)).is_err());
        let p = g.split_read(Lsn(20090), 30).expect("ok");
        assert_eq!(
            p.first,
            FileRange {
                offset: 12378,
                len: 10
            }
        );
        assert_eq!(
            p.second,
            Some(FileRange {
                offset: 12288,
                len: 20
            })
        );
        let p = g.split_read(Lsn(20000), 100).expect("ok");
        assert_eq!(p.second, None);
        assert!(g.split_read(Lsn(20000), 101).is_err());
        assert!(LogGeometry::new(Lsn(20000), 12288).is_err());
        assert!(LogGeometry::new(Lsn(100), 1 << 20).is_err());
    }

    #[test]
    fn synthetic_mtrs() {
        let g = geo();
        // Bare checkpoint mtr is 16 bytes.
        let m = checkpoint_mtr(12288, 1);
        assert_eq!(m.len(), SIZE_OF_FILE_CHECKPOINT);
        assert_eq!(
            parse_mtr(&g, Lsn(12288), &m).expect("ok"),
            MtrParse::Complete(MtrSpan::plain(16))
        );
        let ops: Vec<_> = file_records(&m).collect();
        assert_eq!(ops, vec![Ok(FileOp::Checkpoint { lsn: Lsn(12288) })]);
        // Wrong sequence bit.
        let m0 = checkpoint_mtr(12288, 0);
        assert!(matches!(
            parse_mtr(&g, Lsn(12288), &m0).expect("ok"),
            MtrParse::End(EndOfLog::SequenceBit {
                at: 11,
                found: 0,
                expected: 1
            })
        ));
        // Bad CRC.
        let mut bad = m.clone();
        bad[5] ^= 1;
        assert!(matches!(
            parse_mtr(&g, Lsn(12288), &bad).expect("ok"),
            MtrParse::End(EndOfLog::Checksum { .. })
        ));
        // Truncations.
        for cut in 0..m.len() {
            assert_eq!(
                parse_mtr(&g, Lsn(12288), &m[..cut]).expect("ok"),
                MtrParse::NeedMore
            );
        }
        assert!(parse_mtr(&g, Lsn(1), &m).is_err());
        // Extended length: a 0x30 (WRITE, len 0) record with varint 2 → 18 bytes.
        let mut rec = vec![0x30, 2];
        rec.extend_from_slice(&[7u8; 16]);
        let m = mtr(&rec, 1);
        assert_eq!(
            parse_mtr(&g, Lsn(12288), &m).expect("ok"),
            MtrParse::Complete(MtrSpan::plain(18 + 5))
        );
        // Huge varint length → TooLong; invalid varint → BadLength.
        let m = mtr(&[0x30, 0xEF, 0xFF, 0xFF, 0xFF], 1);
        assert_eq!(
            parse_mtr(&g, Lsn(12288), &m).expect("ok"),
            MtrParse::End(EndOfLog::TooLong)
        );
        let m = mtr(&[0x30, 0xF8, 0, 0, 0, 0], 1);
        assert_eq!(
            parse_mtr(&g, Lsn(12288), &m).expect("ok"),
            MtrParse::End(EndOfLog::BadLength)
        );
        // Zero / one first byte.
        assert_eq!(
            parse_mtr(&g, Lsn(12288), &[1, 2, 3]).expect("ok"),
            MtrParse::End(EndOfLog::NoRecord { first_byte: 1 })
        );
        // Seq bit evaluated at the termination byte's LSN: an mtr that
        // straddles the wrap ends in pass 2 and needs bit 0.
        let m = checkpoint_mtr(12288, 0);
        assert!(matches!(
            parse_mtr(&g, Lsn(12288 + 995), &m).expect("ok"),
            MtrParse::Complete(_)
        ));
    }

    #[test]
    fn file_record_synthetic() {
        // FILE_CREATE space 5 page 0 "d/t.ibd": rlen = 1 + 1 + 7 = 9.
        let mut r = vec![0x80 | 9, 5, 0];
        r.extend_from_slice(b"d/t.ibd");
        // A page record (WRITE) then a same-page record: not file records.
        r.extend_from_slice(&[0x33, 5, 3, 0x40]);
        r.extend_from_slice(&[0xB1, 0x00]);
        // FILE_RENAME after a page op would be same-page; start a new mtr.
        let m = mtr(&r, 1);
        let ops: Vec<_> = file_records(&m).collect();
        assert_eq!(
            ops,
            vec![Ok(FileOp::Create {
                space: SpaceId(5),
                path: b"d/t.ibd"
            })]
        );
        let mut r = vec![0xA0 | 15];
        r.extend_from_slice(&[6, 0]);
        r.extend_from_slice(b"a.ibd\0b.ibd!!"); // 13 bytes: bad second name
        let m = mtr(&r, 1);
        let ops: Vec<_> = file_records(&m).collect();
        assert!(matches!(ops.as_slice(), [Err(Error::FileRecord { .. })]));
        // Padding records are skipped.
        let m = mtr(&[0xF1, 0x00, 0xF2, 0x00, 0x00], 1);
        assert!(file_records(&m).next().is_none());
        // Record running past the end.
        assert!(matches!(
            file_records(&[0x8F, 1, 0]).next(),
            Some(Err(Error::FileRecord { .. }))
        ));
    }

    #[test]
    fn safety() {
        let cap = 1000;
        assert_eq!(
            follower_safety(Lsn(5000), Lsn(4000), Lsn(5500), cap),
            FollowerSafety::Ok {
                headroom_bytes: 500
            }
        );
        assert_eq!(
            follower_safety(Lsn(5000), Lsn(5200), Lsn(5900), cap),
            FollowerSafety::AtRisk {
                headroom_bytes: 100
            }
        );
        assert_eq!(
            follower_safety(Lsn(5000), Lsn(5200), Lsn(6000), cap),
            FollowerSafety::AtRisk { headroom_bytes: 0 }
        );
        assert_eq!(
            follower_safety(Lsn(5000), Lsn(5900), Lsn(6001), cap),
            FollowerSafety::Overwritten { lost_bytes: 1 }
        );
        assert_eq!(
            follower_safety(Lsn(u64::MAX - 1), Lsn(0), Lsn(10), cap),
            FollowerSafety::Ok {
                headroom_bytes: u64::MAX - 10
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn varint_round_trip(v in any::<u32>()) {
            let (b, n) = encode_varint(v);
            prop_assert_eq!(varint_len(b[0]), n);
            prop_assert_eq!(decode_varint(&b[..n]), Some((v, n)));
            prop_assert_eq!(decode_varint(&b[..n - 1]), None);
        }

        #[test]
        fn varint_boundaries(v in prop::sample::select(vec![0u32, 127, 128, 16511, 16512, 2_113_663, 2_113_664, 270_549_119, 270_549_120, u32::MAX])) {
            let (b, n) = encode_varint(v);
            prop_assert_eq!(decode_varint(&b[..n]), Some((v, n)));
        }

        #[test]
        fn random_log_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4096), lsn in 12288u64..20000) {
            let _ = parse_header(&data);
            let _ = parse_log_prefix(&data);
            let g = LogGeometry::new(Lsn(12288), 12288 + 3000).expect("valid");
            let s = scan_mtrs(&g, Lsn(lsn), &data).expect("lsn in range");
            prop_assert!(s.consumed <= data.len());
            for r in file_records(&data) { let _ = r; }
        }

        #[test]
        fn scanned_mtrs_revalidate(seed in prop::collection::vec((1u8..=15, any::<u8>()), 1..20), start in 12288u64..14000) {
            // Build a run of single-record mtrs with correct sequence bits.
            let g = LogGeometry::new(Lsn(12288), 12288 + 500).expect("valid");
            let mut buf = Vec::new();
            let mut lsn = start;
            let mut lens = Vec::new();
            for (l, fill) in &seed {
                let mut rec = vec![0x30 | l];
                rec.resize(rec.len() + usize::from(*l), (*fill).max(2));
                let seq = g.seq_bit(Lsn(lsn + rec.len() as u64)).expect("in range");
                let m = mtr(&rec, seq);
                lsn += m.len() as u64;
                lens.push(m.len());
                buf.extend_from_slice(&m);
            }
            let s = scan_mtrs(&g, Lsn(start), &buf).expect("in range");
            prop_assert_eq!(&s.mtr_lens, &lens);
            prop_assert_eq!(s.stop, ScanStop::NeedMore);
            let mut pos = 0;
            let mut l = start;
            for &len in &s.mtr_lens {
                prop_assert_eq!(parse_mtr(&g, Lsn(l), &buf[pos..pos + len]).expect("ok"), MtrParse::Complete(MtrSpan::plain(len)));
                pos += len;
                l += len as u64;
            }
        }
    }
}

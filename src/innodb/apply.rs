//! Applying redo records to page images, as InnoDB crash recovery does.
//!
//! Pure: records in, page bytes out. Two layers:
//! - [`decode_mtr`]: the record bytes of one mini-transaction (as
//!   [`super::redo::parse_mtr`] delimits them) become typed [`Record`]s:
//!   page records with absolute byte offsets, and the FILE_* records.
//! - [`apply_op`] changes one page image for one page record;
//!   [`recover_page`] replays every logged record of one page with the
//!   recovery rules (skip records older than the page LSN, start from the
//!   last INIT_PAGE), and [`finish_page`] writes the page LSN and the
//!   checksum the way InnoDB does when it writes a page back.
//!
//! The semantics are described in `format-spec/redo-log.md`, section
//! "Applying records".

use std::fmt;

use super::page::{
    legacy_crc32, zip_crc32, PageFormat, FIL_PAGE_DATA, FIL_PAGE_LSN, FIL_PAGE_OFFSET,
    FIL_PAGE_SPACE_ID, FIL_PAGE_TYPE,
};
use super::redo::{decode_varint, varint_len, FileOp};
use super::{be16, be32, Lsn, PageNo, SpaceId};
use crate::error::{Classify, ErrorClass};

/// Largest logical page size.
pub const MAX_PAGE_SIZE: usize = 65536;
/// Smallest page buffer (a 1 KiB ROW_FORMAT=COMPRESSED page).
pub const MIN_PAGE_BUFFER: usize = 1024;

/// Errors of the applier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record is malformed (the server would call the log corrupted).
    #[error("corrupted redo record at byte {offset} of the mini-transaction: {reason}")]
    Record {
        /// Offset of the record inside the mtr.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A FILE_* record is malformed.
    #[error(transparent)]
    File(#[from] super::Error),
    /// The page does not have the shape the record needs (the server
    /// reports "Not applying ... due to corruption").
    #[error("cannot apply {what} to page {page}: {reason}")]
    Page {
        /// Record kind.
        what: &'static str,
        /// The page.
        page: PageId,
        /// The failed consistency check.
        reason: &'static str,
    },
    /// An OPT_PAGE_CHECKSUM record does not match the page after applying.
    #[error(
        "page {page}: OPT_PAGE_CHECKSUM mismatch (logged 0x{logged:08x}, page 0x{computed:08x})"
    )]
    Checksum {
        /// The page.
        page: PageId,
        /// Value in the log.
        logged: u32,
        /// Value of the page image.
        computed: u32,
    },
    /// A record type this applier does not implement.
    #[error("page {page}: record type {what} is not supported by the native applier")]
    Unsupported {
        /// The page.
        page: PageId,
        /// Record kind.
        what: &'static str,
    },
    /// The page buffer size is not a supported page size.
    #[error("invalid page buffer of {0} bytes")]
    PageSize(usize),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Record { .. } | Error::Page { .. } | Error::Checksum { .. } => {
                ErrorClass::Corrupt
            }
            Error::File(e) => e.class(),
            Error::Unsupported { .. } | Error::PageSize(_) => ErrorClass::Failed,
        }
    }
}

/// A page identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageId {
    /// Tablespace.
    pub space: SpaceId,
    /// Page number.
    pub page: PageNo,
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}:{}]", self.space.0, self.page.0)
    }
}

/// EXTENDED record subtypes.
pub mod ext {
    /// Create a ROW_FORMAT=REDUNDANT index page.
    pub const INIT_ROW_FORMAT_REDUNDANT: u8 = 0;
    /// Create a ROW_FORMAT=COMPACT/DYNAMIC index page.
    pub const INIT_ROW_FORMAT_DYNAMIC: u8 = 1;
    /// Initialise an undo log page.
    pub const UNDO_INIT: u8 = 2;
    /// Append an undo record.
    pub const UNDO_APPEND: u8 = 3;
    /// Insert (heap) into a REDUNDANT page.
    pub const INSERT_HEAP_REDUNDANT: u8 = 4;
    /// Insert (reuse PAGE_FREE) into a REDUNDANT page.
    pub const INSERT_REUSE_REDUNDANT: u8 = 5;
    /// Insert (heap) into a COMPACT/DYNAMIC page.
    pub const INSERT_HEAP_DYNAMIC: u8 = 6;
    /// Insert (reuse PAGE_FREE) into a COMPACT/DYNAMIC page.
    pub const INSERT_REUSE_DYNAMIC: u8 = 7;
    /// Delete from a REDUNDANT page.
    pub const DELETE_ROW_FORMAT_REDUNDANT: u8 = 8;
    /// Delete from a COMPACT/DYNAMIC page.
    pub const DELETE_ROW_FORMAT_DYNAMIC: u8 = 9;
    /// Truncate an undo tablespace.
    pub const TRIM_PAGES: u8 = 10;
}

/// The names of the page-op kinds, indexed by [`PageOp::kind`].
pub const KIND_NAMES: [&str; 15] = [
    "FREE_PAGE",
    "INIT_PAGE",
    "WRITE",
    "MEMSET",
    "MEMMOVE",
    "EXTENDED INIT_ROW_FORMAT_DYNAMIC",
    "EXTENDED INIT_ROW_FORMAT_REDUNDANT",
    "EXTENDED UNDO_INIT",
    "EXTENDED UNDO_APPEND",
    "EXTENDED INSERT_*_REDUNDANT",
    "EXTENDED INSERT_*_DYNAMIC",
    "EXTENDED DELETE_ROW_FORMAT_REDUNDANT",
    "EXTENDED DELETE_ROW_FORMAT_DYNAMIC",
    "EXTENDED TRIM_PAGES",
    "OPTION OPT_PAGE_CHECKSUM",
];

/// One page-level operation, with absolute byte offsets; its bytes are
/// borrowed from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageOp<'a> {
    /// FREE_PAGE: the page is no longer used.
    FreePage,
    /// INIT_PAGE: zero the page and set its identity.
    InitPage,
    /// WRITE: copy bytes to `offset`.
    Write {
        /// Absolute offset.
        offset: u32,
        /// Bytes.
        data: &'a [u8],
    },
    /// MEMSET: fill `len` bytes at `offset` with `fill` repeated.
    Memset {
        /// Absolute offset.
        offset: u32,
        /// Target length.
        len: u32,
        /// Pattern (at least one byte).
        fill: &'a [u8],
    },
    /// MEMMOVE: copy `len` bytes from `source` to `offset`.
    Memmove {
        /// Absolute target offset.
        offset: u32,
        /// Length.
        len: u32,
        /// Absolute source offset.
        source: u32,
    },
    /// EXTENDED INIT_ROW_FORMAT_*: create an empty index page.
    InitIndex {
        /// COMPACT/DYNAMIC (true) or REDUNDANT.
        compact: bool,
    },
    /// EXTENDED UNDO_INIT.
    UndoInit,
    /// EXTENDED UNDO_APPEND.
    UndoAppend {
        /// The undo record.
        data: &'a [u8],
    },
    /// EXTENDED INSERT_*_REDUNDANT.
    InsertRedundant {
        /// Reuse PAGE_FREE instead of extending the heap.
        reuse: bool,
        /// Predecessor, relative to the infimum.
        prev: u32,
        /// Encoded header bits.
        enc_hdr: u32,
        /// Header bytes shared with the predecessor.
        hdr_c: u32,
        /// Data bytes shared with the predecessor.
        data_c: u32,
        /// Literal header and data bytes.
        data: &'a [u8],
    },
    /// EXTENDED INSERT_*_DYNAMIC.
    InsertDynamic {
        /// Reuse PAGE_FREE instead of extending the heap.
        reuse: bool,
        /// Predecessor, relative to the infimum.
        prev: u32,
        /// Shift of the reused slot (sign in bit 0).
        shift: u32,
        /// Copied header bytes << 3 | record type bits.
        enc_hdr_l: u32,
        /// Header bytes shared with the predecessor.
        hdr_c: u32,
        /// Data bytes shared with the predecessor.
        data_c: u32,
        /// Literal header and data bytes.
        data: &'a [u8],
    },
    /// EXTENDED DELETE_ROW_FORMAT_REDUNDANT.
    DeleteRedundant {
        /// Predecessor, relative to the infimum.
        prev: u32,
    },
    /// EXTENDED DELETE_ROW_FORMAT_DYNAMIC.
    DeleteDynamic {
        /// Predecessor, relative to the infimum.
        prev: u32,
        /// Header size without the 5 fixed bytes.
        hdr_size: u32,
        /// Data size.
        data_size: u32,
    },
    /// EXTENDED TRIM_PAGES: the undo tablespace is truncated to `page` pages.
    TrimPages,
    /// OPTION OPT_PAGE_CHECKSUM.
    PageChecksum {
        /// CRC-32C of the page as it must be after the mtr.
        crc: u32,
    },
}

impl PageOp<'_> {
    /// Short name for messages.
    #[must_use]
    pub fn name(&self) -> &'static str {
        KIND_NAMES[self.kind()]
    }

    /// The index of this op's kind in [`KIND_NAMES`] (for counting records
    /// by kind without a map lookup per record).
    #[must_use]
    pub fn kind(&self) -> usize {
        match self {
            PageOp::FreePage => 0,
            PageOp::InitPage => 1,
            PageOp::Write { .. } => 2,
            PageOp::Memset { .. } => 3,
            PageOp::Memmove { .. } => 4,
            PageOp::InitIndex { compact: true } => 5,
            PageOp::InitIndex { compact: false } => 6,
            PageOp::UndoInit => 7,
            PageOp::UndoAppend { .. } => 8,
            PageOp::InsertRedundant { .. } => 9,
            PageOp::InsertDynamic { .. } => 10,
            PageOp::DeleteRedundant { .. } => 11,
            PageOp::DeleteDynamic { .. } => 12,
            PageOp::TrimPages => 13,
            PageOp::PageChecksum { .. } => 14,
        }
    }

    /// Whether this is an EXTENDED record.
    #[must_use]
    pub fn is_extended(&self) -> bool {
        !matches!(
            self,
            PageOp::FreePage
                | PageOp::InitPage
                | PageOp::Write { .. }
                | PageOp::Memset { .. }
                | PageOp::Memmove { .. }
                | PageOp::PageChecksum { .. }
        )
    }

    /// Bytes of heap this op holds (for memory budgets).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        match self {
            PageOp::Write { data, .. }
            | PageOp::UndoAppend { data }
            | PageOp::InsertRedundant { data, .. }
            | PageOp::InsertDynamic { data, .. } => data.len(),
            PageOp::Memset { fill, .. } => fill.len(),
            _ => 0,
        }
    }
}

/// A decoded record of one mtr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A page record.
    Page {
        /// The page.
        id: PageId,
        /// What to do.
        op: PageOp<'a>,
    },
    /// A FILE_* record.
    File(FileOp<'a>),
}

fn corrupt<T>(offset: usize, reason: &'static str) -> Result<T, Error> {
    Err(Error::Record { offset, reason })
}

/// Read a varint of at most `max` bytes from `body[*pos..end]`.
#[inline]
fn varint_at(body: &[u8], pos: &mut usize, max: usize) -> Option<u32> {
    let first = *body.get(*pos)?;
    if first < 0x80 {
        // The 1-byte form (most lengths, and ids of short records whose
        // body is too short for the 8-byte path of `decode_varint`).
        *pos += 1;
        return Some(u32::from(first));
    }
    if varint_len(first) > max {
        return None;
    }
    let (v, n) = decode_varint(body.get(*pos..)?)?;
    *pos += n;
    Some(v)
}

/// Decode the records of one mtr (`recs` = the record bytes; a trailing
/// termination byte and CRC are tolerated). `page_size` is the instance's
/// logical page size (`innodb_page_size`), used for the offset checks the
/// server does while parsing.
///
/// # Errors
/// [`Error::Record`] or [`Error::File`] for a malformed record.
pub fn decode_mtr(recs: &[u8], page_size: u32) -> Result<Vec<Record<'_>>, Error> {
    let mut out = Vec::new();
    decode_mtr_into(recs, page_size, &mut out)?;
    Ok(out)
}

/// [`decode_mtr`] appending to `out` (which the caller reuses, so that
/// decoding allocates nothing: the records borrow their bytes from `recs`).
///
/// # Errors
/// As [`decode_mtr`]; `out` then holds the records before the bad one.
pub fn decode_mtr_into<'a>(
    recs: &'a [u8],
    page_size: u32,
    out: &mut Vec<Record<'a>>,
) -> Result<(), Error> {
    let size = page_size as usize;
    let mut pos = 0usize;
    let mut got_page_op = false;
    let mut cur: Option<PageId> = None;
    // 1 = "no same-page record may follow".
    let mut last_offset: usize = 0;
    while let Some(&b) = recs.get(pos) {
        if b <= 1 {
            break;
        }
        let start = pos;
        let mut l = pos + 1;
        let mut rlen = usize::from(b & 0x0F);
        if rlen == 0 {
            let Some((add, n)) = recs.get(l..).and_then(decode_varint) else {
                return corrupt(start, "bad record length");
            };
            rlen = (add as usize + 15).saturating_sub(n);
            l += n;
        }
        let Some(mut body) = recs.get(l..l.saturating_add(rlen)) else {
            return corrupt(start, "record extends past the mtr");
        };
        pos = l + rlen;
        if (b & 0x70) == 0x60 {
            return corrupt(start, "RESERVED record type");
        }
        let id;
        if b & 0x80 != 0 && got_page_op {
            if (b & 0x70) <= 0x10 {
                return corrupt(start, "FREE_PAGE/INIT_PAGE with the same_page flag");
            }
            let Some(c) = cur else {
                return corrupt(start, "same_page record without a page");
            };
            id = c;
        } else {
            let mut p = 0usize;
            let idlen = body.first().map_or(0, |&x| varint_len(x));
            if idlen > 5 || idlen >= body.len() {
                if body.first() == Some(&0) && b == 0xF1 {
                    continue; // padding
                }
                return corrupt(start, "corrupted page identifier");
            }
            let Some(space) = varint_at(body, &mut p, 5) else {
                return corrupt(start, "corrupted space id");
            };
            let Some(page_no) = varint_at(body, &mut p, 5) else {
                return corrupt(start, "corrupted page number");
            };
            got_page_op = b & 0x80 == 0;
            if !got_page_op {
                // A file record: reuse the redo module's validator.
                let one = &recs[start..pos];
                match super::redo::file_records(one).next() {
                    Some(Ok(op)) => out.push(Record::File(op)),
                    Some(Err(e)) => return Err(e.into()),
                    None => {}
                }
                continue;
            }
            body = &body[p..];
            id = PageId {
                space: SpaceId(space),
                page: PageNo(page_no),
            };
            cur = Some(id);
            last_offset = 0;
        }
        if body.len() + (l - start) > size && !body.is_empty() {
            return corrupt(start, "record longer than a page");
        }
        let op = match b & 0x70 {
            0x00 | 0x10 => {
                if !body.is_empty() {
                    return corrupt(start, "FREE_PAGE/INIT_PAGE with trailing bytes");
                }
                if b & 0x70 == 0 {
                    last_offset = 1;
                    PageOp::FreePage
                } else {
                    last_offset = FIL_PAGE_TYPE;
                    PageOp::InitPage
                }
            }
            0x20 => {
                let Some((&sub, rest)) = body.split_first() else {
                    return corrupt(start, "EXTENDED without subtype");
                };
                let op = decode_extended(sub, rest, start)?;
                last_offset = if op == PageOp::TrimPages {
                    1
                } else {
                    FIL_PAGE_TYPE
                };
                op
            }
            0x70 => {
                if body.len() == 5 && body[0] == 0 {
                    PageOp::PageChecksum {
                        crc: be32(body, 1).unwrap_or(0),
                    }
                } else {
                    continue; // other OPTION records are ignored by recovery
                }
            }
            kind => {
                // WRITE, MEMSET, MEMMOVE
                if body.is_empty() || last_offset == 1 {
                    return corrupt(
                        start,
                        "WRITE/MEMSET/MEMMOVE without data or after FREE_PAGE",
                    );
                }
                let mut p = 0usize;
                let Some(off) = varint_at(body, &mut p, 3) else {
                    return corrupt(start, "bad offset");
                };
                if p >= body.len() || off as usize >= size {
                    return corrupt(start, "bad offset");
                }
                let offset = last_offset + off as usize;
                if !(8..size).contains(&offset) {
                    return corrupt(start, "offset outside the page");
                }
                let rest = &body[p..];
                match kind {
                    0x30 => {
                        if offset + rest.len() > size {
                            return corrupt(start, "WRITE past the end of the page");
                        }
                        last_offset = offset + rest.len();
                        PageOp::Write {
                            offset: offset as u32,
                            data: rest,
                        }
                    }
                    _ => {
                        let mut q = 0usize;
                        let Some(len) = varint_at(rest, &mut q, 3) else {
                            return corrupt(start, "bad length");
                        };
                        let len = len as usize;
                        if offset + len > size {
                            return corrupt(start, "MEMSET/MEMMOVE past the end of the page");
                        }
                        let tail = &rest[q..];
                        last_offset = offset + len;
                        if kind == 0x40 {
                            if tail.is_empty() || tail.len() > len {
                                return corrupt(start, "MEMSET pattern longer than the target");
                            }
                            PageOp::Memset {
                                offset: offset as u32,
                                len: len as u32,
                                fill: tail,
                            }
                        } else {
                            let mut r = 0usize;
                            let Some(s) = varint_at(tail, &mut r, 3) else {
                                return corrupt(start, "bad MEMMOVE source");
                            };
                            if r != tail.len() {
                                return corrupt(start, "MEMMOVE with trailing bytes");
                            }
                            let s = s as usize;
                            let src = if s & 1 == 1 {
                                offset.checked_sub((s >> 1) + 1)
                            } else {
                                Some(offset + (s >> 1) + 1)
                            };
                            let Some(src) = src.filter(|&x| x >= 8 && x + len <= size) else {
                                return corrupt(start, "MEMMOVE source outside the page");
                            };
                            PageOp::Memmove {
                                offset: offset as u32,
                                len: len as u32,
                                source: src as u32,
                            }
                        }
                    }
                }
            }
        };
        out.push(Record::Page { id, op });
    }
    Ok(())
}

fn decode_extended(sub: u8, rest: &[u8], start: usize) -> Result<PageOp<'_>, Error> {
    use ext::*;
    let bad = |reason| corrupt(start, reason);
    let mut p = 0usize;
    // rlen as the server counts it includes the subtype byte.
    let rlen = rest.len() + 1;
    match sub {
        INIT_ROW_FORMAT_REDUNDANT | INIT_ROW_FORMAT_DYNAMIC | UNDO_INIT | TRIM_PAGES => {
            if rlen != 1 {
                return bad("EXTENDED init record with trailing bytes");
            }
            Ok(match sub {
                UNDO_INIT => PageOp::UndoInit,
                TRIM_PAGES => PageOp::TrimPages,
                s => PageOp::InitIndex {
                    compact: s == INIT_ROW_FORMAT_DYNAMIC,
                },
            })
        }
        UNDO_APPEND => {
            if rlen <= 3 {
                return bad("UNDO_APPEND too short");
            }
            Ok(PageOp::UndoAppend { data: rest })
        }
        INSERT_HEAP_REDUNDANT
        | INSERT_REUSE_REDUNDANT
        | INSERT_HEAP_DYNAMIC
        | INSERT_REUSE_DYNAMIC => {
            if rlen < 2 {
                return bad("INSERT too short");
            }
            // Each varint must leave at least one byte (the server's
            // `ll >= rlen` checks), except the last one.
            let mut take = |max: usize, strict: bool| -> Option<u32> {
                let first = *rest.get(p)?;
                let ll = varint_len(first);
                let left = rest.len() - p;
                if ll > max || (strict && ll >= left) || (!strict && ll > left) {
                    return None;
                }
                varint_at(rest, &mut p, max)
            };
            let Some(prev) = take(3, true) else {
                return bad("INSERT: bad predecessor");
            };
            let dynamic = sub & 2 != 0;
            let reuse = sub & 1 != 0;
            let shift = match (dynamic && reuse).then(|| take(3, true)) {
                None => 0,
                Some(Some(s)) => s,
                Some(None) => return bad("INSERT: bad shift"),
            };
            // COMPACT/DYNAMIC allow 3-byte header and data counts.
            let wide = if dynamic { 3 } else { 2 };
            let Some(hdr) = take(wide, true) else {
                return bad("INSERT: bad header");
            };
            let Some(hdr_c) = take(2, true) else {
                return bad("INSERT: bad common header length");
            };
            let Some(data_c) = take(wide, false) else {
                return bad("INSERT: bad common data length");
            };
            let data = &rest[p..];
            Ok(if dynamic {
                PageOp::InsertDynamic {
                    reuse,
                    prev,
                    shift,
                    enc_hdr_l: hdr,
                    hdr_c,
                    data_c,
                    data,
                }
            } else {
                PageOp::InsertRedundant {
                    reuse,
                    prev,
                    enc_hdr: hdr,
                    hdr_c,
                    data_c,
                    data,
                }
            })
        }
        DELETE_ROW_FORMAT_REDUNDANT => {
            if !(2..=4).contains(&rlen) {
                return bad("DELETE_ROW_FORMAT_REDUNDANT length");
            }
            match varint_at(rest, &mut p, 3) {
                Some(prev) if p == rest.len() => Ok(PageOp::DeleteRedundant { prev }),
                _ => bad("DELETE_ROW_FORMAT_REDUNDANT predecessor"),
            }
        }
        DELETE_ROW_FORMAT_DYNAMIC => {
            if rlen < 2 {
                return bad("DELETE_ROW_FORMAT_DYNAMIC too short");
            }
            let prev = match rest.first().map(|&x| varint_len(x)) {
                Some(ll) if ll <= 3 && ll < rest.len() => varint_at(rest, &mut p, 3),
                _ => None,
            };
            let Some(prev) = prev else {
                return bad("DELETE_ROW_FORMAT_DYNAMIC predecessor");
            };
            let hdr = match rest.get(p).map(|&x| varint_len(x)) {
                Some(ll) if ll <= 2 && ll < rest.len() - p => varint_at(rest, &mut p, 2),
                _ => None,
            };
            let Some(hdr_size) = hdr else {
                return bad("DELETE_ROW_FORMAT_DYNAMIC header size");
            };
            match varint_at(rest, &mut p, 3) {
                Some(data_size) if p == rest.len() => Ok(PageOp::DeleteDynamic {
                    prev,
                    hdr_size,
                    data_size,
                }),
                _ => bad("DELETE_ROW_FORMAT_DYNAMIC data size"),
            }
        }
        _ => bad("unknown EXTENDED subtype"),
    }
}

// ---------------------------------------------------------------------
// Page layout constants (index pages, undo pages).

const PAGE_HEADER: usize = FIL_PAGE_DATA;
const PAGE_N_DIR_SLOTS: usize = 0;
const PAGE_HEAP_TOP: usize = 2;
const PAGE_N_HEAP: usize = 4;
const PAGE_FREE: usize = 6;
const PAGE_GARBAGE: usize = 8;
const PAGE_LAST_INSERT: usize = 10;
const PAGE_INSTANT: usize = 12;
const PAGE_DIRECTION_B: usize = 13;
const PAGE_N_DIRECTION: usize = 14;
const PAGE_N_RECS: usize = 16;
const PAGE_HEADER_PRIV_END: usize = 26;
const PAGE_LEVEL: usize = 26;
/// Start of the records: header (36) + two segment headers (2 × 10).
const PAGE_DATA: usize = PAGE_HEADER + 36 + 2 * 10;
const REC_N_OLD_EXTRA_BYTES: usize = 6;
const REC_N_NEW_EXTRA_BYTES: usize = 5;
const PAGE_OLD_INFIMUM: usize = PAGE_DATA + 1 + REC_N_OLD_EXTRA_BYTES;
const PAGE_OLD_SUPREMUM: usize = PAGE_DATA + 2 + 2 * REC_N_OLD_EXTRA_BYTES + 8;
const PAGE_OLD_SUPREMUM_END: usize = PAGE_OLD_SUPREMUM + 9;
const PAGE_NEW_INFIMUM: usize = PAGE_DATA + REC_N_NEW_EXTRA_BYTES;
const PAGE_NEW_SUPREMUM: usize = PAGE_DATA + 2 * REC_N_NEW_EXTRA_BYTES + 8;
const PAGE_NEW_SUPREMUM_END: usize = PAGE_NEW_SUPREMUM + 8;
const PAGE_HEAP_NO_USER_LOW: usize = 2;
const PAGE_DIR: usize = 8;
const PAGE_DIR_SLOT_MAX_N_OWNED: usize = 8;
const PAGE_DIR_SLOT_MIN_N_OWNED: usize = 4;
const PAGE_LEFT: u8 = 1;
const PAGE_RIGHT: u8 = 2;
const PAGE_NO_DIRECTION: u8 = 5;
const REC_MAX_N_FIELDS: usize = 1023;
const REC_STATUS_NODE_PTR: usize = 1;
const REC_STATUS_INSTANT: u32 = 4;
const FIL_PAGE_INDEX: u16 = 17855;
const FIL_PAGE_RTREE: u16 = 17854;
const FIL_PAGE_TYPE_INSTANT: u16 = 18;
const FIL_PAGE_UNDO_LOG: u16 = 2;
const TRX_UNDO_PAGE_HDR: usize = FIL_PAGE_DATA;
const TRX_UNDO_PAGE_START: usize = 2;
const TRX_UNDO_PAGE_FREE: usize = 4;
const TRX_UNDO_PAGE_NODE: usize = 6;
const TRX_UNDO_PAGE_HDR_SIZE: usize = 18;
const TRX_UNDO_SEG_HDR: usize = TRX_UNDO_PAGE_HDR + TRX_UNDO_PAGE_HDR_SIZE;
const TRX_UNDO_SEG_HDR_SIZE: usize = 30;
const FIL_PAGE_DATA_END: usize = 8;

const INFIMUM_SUPREMUM_REDUNDANT: [u8; 2 * (REC_N_OLD_EXTRA_BYTES + 1) + 8 + 9] = [
    0x08, 0x01, 0x00, 0x00, 0x03, 0x00, 0x74, b'i', b'n', b'f', b'i', b'm', b'u', b'm', 0, 0x09,
    0x01, 0x00, 0x08, 0x03, 0x00, 0x00, b's', b'u', b'p', b'r', b'e', b'm', b'u', b'm', 0,
];
const INFIMUM_SUPREMUM_COMPACT: [u8; 2 * REC_N_NEW_EXTRA_BYTES + 16] = [
    0x01, 0x00, 0x02, 0x00, 0x0d, b'i', b'n', b'f', b'i', b'm', b'u', b'm', 0, 0x01, 0x00, 0x0b,
    0x00, 0x00, b's', b'u', b'p', b'r', b'e', b'm', b'u', b'm',
];

/// A page image being changed, with checked 2-byte accessors. Every access
/// is bounds-checked; a failed check becomes an [`Error::Page`].
struct Pg<'p> {
    b: &'p mut [u8],
    id: PageId,
    what: &'static str,
}

impl Pg<'_> {
    fn err<T>(&self, reason: &'static str) -> Result<T, Error> {
        Err(Error::Page {
            what: self.what,
            page: self.id,
            reason,
        })
    }
    fn size(&self) -> usize {
        self.b.len()
    }
    fn r1(&self, off: usize) -> Result<usize, Error> {
        match self.b.get(off) {
            Some(&v) => Ok(usize::from(v)),
            None => self.err("offset outside the page"),
        }
    }
    fn r2(&self, off: usize) -> Result<usize, Error> {
        match be16(self.b, off) {
            Some(v) => Ok(usize::from(v)),
            None => self.err("offset outside the page"),
        }
    }
    fn w1(&mut self, off: usize, v: usize) -> Result<(), Error> {
        match self.b.get_mut(off) {
            Some(x) => {
                *x = v as u8;
                Ok(())
            }
            None => self.err("offset outside the page"),
        }
    }
    fn w2(&mut self, off: usize, v: usize) -> Result<(), Error> {
        match self.b.get_mut(off..off.wrapping_add(2)) {
            Some(x) if off < usize::MAX - 2 => {
                x.copy_from_slice(&(v as u16).to_be_bytes());
                Ok(())
            }
            _ => self.err("offset outside the page"),
        }
    }
    fn copy_within(&mut self, src: usize, dst: usize, len: usize) -> Result<(), Error> {
        let size = self.size();
        if src.checked_add(len).map_or(true, |e| e > size)
            || dst.checked_add(len).map_or(true, |e| e > size)
        {
            return self.err("copy outside the page");
        }
        self.b.copy_within(src..src + len, dst);
        Ok(())
    }
    fn put(&mut self, dst: usize, data: &[u8]) -> Result<(), Error> {
        match dst
            .checked_add(data.len())
            .and_then(|e| self.b.get_mut(dst..e))
        {
            Some(x) => {
                x.copy_from_slice(data);
                Ok(())
            }
            None => self.err("write outside the page"),
        }
    }
    fn fill(&mut self, dst: usize, len: usize, v: u8) -> Result<(), Error> {
        match dst.checked_add(len).and_then(|e| self.b.get_mut(dst..e)) {
            Some(x) => {
                x.fill(v);
                Ok(())
            }
            None => self.err("fill outside the page"),
        }
    }
    fn hdr(&self, field: usize) -> Result<usize, Error> {
        self.r2(PAGE_HEADER + field)
    }
    fn set_hdr(&mut self, field: usize, v: usize) -> Result<(), Error> {
        self.w2(PAGE_HEADER + field, v)
    }
    fn page_type(&self) -> u16 {
        be16(self.b, FIL_PAGE_TYPE).unwrap_or(0)
    }
    fn is_index(&self) -> bool {
        matches!(
            self.page_type(),
            FIL_PAGE_INDEX | FIL_PAGE_RTREE | FIL_PAGE_TYPE_INSTANT
        )
    }
    fn is_leaf(&self) -> Result<bool, Error> {
        Ok(self.hdr(PAGE_LEVEL)? == 0)
    }
    fn page_no(&self) -> u32 {
        be32(self.b, FIL_PAGE_OFFSET).unwrap_or(u32::MAX)
    }
    /// Offset of directory slot `n`.
    fn slot(&self, n: usize) -> Result<usize, Error> {
        match self.size().checked_sub(PAGE_DIR + 2 * (n + 1)) {
            Some(s) if s > PAGE_DATA => Ok(s),
            _ => self.err("directory slot outside the page"),
        }
    }
    fn n_owned_new(&self, rec: usize) -> Result<usize, Error> {
        Ok(self.r1(rec.wrapping_sub(5))? & 0x0F)
    }
    fn n_owned_old(&self, rec: usize) -> Result<usize, Error> {
        Ok(self.r1(rec.wrapping_sub(6))? & 0x0F)
    }
    fn set_n_owned(&mut self, rec: usize, n: usize, comp: bool) -> Result<(), Error> {
        let at = rec.wrapping_sub(if comp { 5 } else { 6 });
        let v = self.r1(at)?;
        self.w1(at, (v & !0x0F) | (n & 0x0F))
    }
    fn heap_no_new(&self, rec: usize) -> Result<usize, Error> {
        Ok(self.r2(rec.wrapping_sub(4))? >> 3)
    }
    fn heap_no_old(&self, rec: usize) -> Result<usize, Error> {
        Ok(self.r2(rec.wrapping_sub(5))? >> 3)
    }
    fn n_fields_old(&self, rec: usize) -> Result<usize, Error> {
        Ok((self.r2(rec.wrapping_sub(4))? & 0x7FE) >> 1)
    }
    fn short_old(&self, rec: usize) -> Result<bool, Error> {
        Ok(self.r1(rec.wrapping_sub(3))? & 1 != 0)
    }
    /// `rec_get_data_size_old`: end offset of the last field.
    fn data_size_old(&self, rec: usize) -> Result<usize, Error> {
        let n = self.n_fields_old(rec)?;
        if n == 0 {
            return Ok(0);
        }
        if self.short_old(rec)? {
            Ok(self.r1(rec.wrapping_sub(REC_N_OLD_EXTRA_BYTES + n))? & !0x80)
        } else {
            Ok(self.r2(rec.wrapping_sub(REC_N_OLD_EXTRA_BYTES + 2 * n))? & !0xC000)
        }
    }
    fn is_comp(&self) -> Result<bool, Error> {
        Ok(self.hdr(PAGE_N_HEAP)? & 0x8000 != 0)
    }
    /// Next record offset (checked like `page_rec_next_get`).
    fn next_rec(&self, rec: usize, comp: bool) -> Result<Option<usize>, Error> {
        let v = self.r2(rec.wrapping_sub(2))?;
        let offs = if comp {
            (rec + v) % self.size().min(65536)
        } else {
            v
        };
        let lo = if comp {
            PAGE_NEW_SUPREMUM
        } else {
            PAGE_OLD_SUPREMUM
        };
        if offs < lo || offs > self.hdr(PAGE_HEAP_TOP)? {
            return Ok(None);
        }
        Ok(Some(offs))
    }
}

/// Apply one page operation to `page`: one page as stored in the file
/// (for ROW_FORMAT=COMPRESSED tablespaces the compressed page, to which
/// the server logs byte-level records only). FREE_PAGE, TRIM_PAGES and
/// OPT_PAGE_CHECKSUM are no-ops here (the caller handles them).
///
/// # Errors
/// [`Error::Page`] if the page does not have the shape the record needs,
/// [`Error::PageSize`] for a buffer that is not a page.
pub fn apply_op(page: &mut [u8], id: PageId, op: &PageOp<'_>) -> Result<(), Error> {
    let size = page.len();
    if !(MIN_PAGE_BUFFER..=MAX_PAGE_SIZE).contains(&size) || !size.is_power_of_two() {
        return Err(Error::PageSize(size));
    }
    let mut pg = Pg {
        b: page,
        id,
        what: op.name(),
    };
    match op {
        PageOp::FreePage | PageOp::TrimPages | PageOp::PageChecksum { .. } => Ok(()),
        PageOp::InitPage => {
            pg.b.fill(0);
            pg.b[FIL_PAGE_OFFSET..FIL_PAGE_OFFSET + 4].copy_from_slice(&id.page.0.to_be_bytes());
            pg.b[8..16].fill(0xFF);
            pg.b[FIL_PAGE_SPACE_ID..FIL_PAGE_SPACE_ID + 4]
                .copy_from_slice(&id.space.0.to_be_bytes());
            Ok(())
        }
        PageOp::Write { offset, data } => pg.put(*offset as usize, data),
        PageOp::Memset { offset, len, fill } => {
            let (off, len) = (*offset as usize, *len as usize);
            if fill.is_empty() || off.checked_add(len).map_or(true, |e| e > size) {
                return pg.err("MEMSET outside the page");
            }
            for (i, b) in pg.b[off..off + len].iter_mut().enumerate() {
                *b = fill[i % fill.len()];
            }
            Ok(())
        }
        PageOp::Memmove {
            offset,
            len,
            source,
        } => pg.copy_within(*source as usize, *offset as usize, *len as usize),
        PageOp::InitIndex { compact } => {
            check_extended(&pg)?;
            page_create(&mut pg, *compact)
        }
        PageOp::UndoInit => {
            check_extended(&pg)?;
            undo_init(&mut pg)
        }
        PageOp::UndoAppend { data } => {
            check_extended(&pg)?;
            undo_append(&mut pg, data)
        }
        PageOp::InsertDynamic {
            reuse,
            prev,
            shift,
            enc_hdr_l,
            hdr_c,
            data_c,
            data,
        } => {
            check_extended(&pg)?;
            insert_dynamic(
                &mut pg,
                *reuse,
                *prev as usize,
                *shift as usize,
                *enc_hdr_l as usize,
                *hdr_c as usize,
                *data_c as usize,
                data,
            )
        }
        PageOp::InsertRedundant {
            reuse,
            prev,
            enc_hdr,
            hdr_c,
            data_c,
            data,
        } => {
            check_extended(&pg)?;
            insert_redundant(
                &mut pg,
                *reuse,
                *prev as usize,
                *enc_hdr as usize,
                *hdr_c as usize,
                *data_c as usize,
                data,
            )
        }
        PageOp::DeleteDynamic {
            prev,
            hdr_size,
            data_size,
        } => {
            check_extended(&pg)?;
            delete_dynamic(
                &mut pg,
                *prev as usize,
                *hdr_size as usize,
                *data_size as usize,
            )
        }
        PageOp::DeleteRedundant { prev } => {
            check_extended(&pg)?;
            delete_redundant(&mut pg, *prev as usize)
        }
    }
}

fn check_extended(pg: &Pg<'_>) -> Result<(), Error> {
    if pg.id.page.0 < 3 {
        return pg.err("EXTENDED record for page 0, 1 or 2");
    }
    Ok(())
}

fn page_create(pg: &mut Pg<'_>, comp: bool) -> Result<(), Error> {
    let size = pg.size();
    pg.w2(FIL_PAGE_TYPE, usize::from(FIL_PAGE_INDEX))?;
    pg.fill(PAGE_HEADER, PAGE_HEADER_PRIV_END, 0)?;
    pg.w1(PAGE_HEADER + PAGE_N_DIR_SLOTS + 1, 2)?;
    pg.w1(PAGE_HEADER + PAGE_INSTANT, 0)?;
    pg.w1(
        PAGE_HEADER + PAGE_DIRECTION_B,
        usize::from(PAGE_NO_DIRECTION),
    )?;
    let (inf, sup, end, tmpl): (usize, usize, usize, &[u8]) = if comp {
        pg.w1(PAGE_HEADER + PAGE_N_HEAP, 0x80)?;
        (
            PAGE_NEW_INFIMUM,
            PAGE_NEW_SUPREMUM,
            PAGE_NEW_SUPREMUM_END,
            &INFIMUM_SUPREMUM_COMPACT,
        )
    } else {
        (
            PAGE_OLD_INFIMUM,
            PAGE_OLD_SUPREMUM,
            PAGE_OLD_SUPREMUM_END,
            &INFIMUM_SUPREMUM_REDUNDANT,
        )
    };
    pg.w1(PAGE_HEADER + PAGE_N_HEAP + 1, PAGE_HEAP_NO_USER_LOW)?;
    pg.w1(PAGE_HEADER + PAGE_HEAP_TOP + 1, end)?;
    pg.put(PAGE_DATA, tmpl)?;
    pg.fill(end, size - PAGE_DIR - end, 0)?;
    pg.w1(size - PAGE_DIR - 4 + 1, sup)?;
    pg.w1(size - PAGE_DIR - 2 + 1, inf)?;
    Ok(())
}

fn undo_init(pg: &mut Pg<'_>) -> Result<(), Error> {
    let size = pg.size();
    pg.w2(FIL_PAGE_TYPE, usize::from(FIL_PAGE_UNDO_LOG))?;
    pg.w2(TRX_UNDO_PAGE_HDR, 0)?; // TRX_UNDO_PAGE_TYPE
    let start = TRX_UNDO_PAGE_HDR + TRX_UNDO_PAGE_HDR_SIZE;
    pg.w2(TRX_UNDO_PAGE_HDR + TRX_UNDO_PAGE_START, start)?;
    pg.w2(TRX_UNDO_PAGE_HDR + TRX_UNDO_PAGE_FREE, start)?;
    let node = TRX_UNDO_PAGE_HDR + TRX_UNDO_PAGE_NODE;
    pg.fill(node, 4, 0xFF)?; // prev page
    pg.fill(node + 4, 2, 0)?; // prev byte
    pg.fill(node + 6, 4, 0xFF)?; // next page
    pg.fill(node + 10, 2, 0)?; // next byte
    let from = TRX_UNDO_SEG_HDR + TRX_UNDO_SEG_HDR_SIZE;
    pg.fill(from, size - from - FIL_PAGE_DATA_END, 0)
}

fn undo_append(pg: &mut Pg<'_>, data: &[u8]) -> Result<(), Error> {
    let size = pg.size();
    let free_p = TRX_UNDO_PAGE_HDR + TRX_UNDO_PAGE_FREE;
    let free = pg.r2(free_p)?;
    let len = data.len();
    if free < TRX_UNDO_PAGE_HDR + TRX_UNDO_PAGE_HDR_SIZE
        || free + len + 6 >= size - FIL_PAGE_DATA_END
    {
        return pg.err("TRX_UNDO_PAGE_FREE out of range");
    }
    pg.w2(free_p, free + 4 + len)?;
    pg.w2(free, free + 4 + len)?;
    pg.put(free + 2, data)?;
    pg.w2(free + 2 + len, free)
}

/// `page_dir_split_slot`.
fn split_slot(pg: &mut Pg<'_>, slot: usize, comp: bool) -> Result<(), Error> {
    let n_owned = PAGE_DIR_SLOT_MAX_N_OWNED + 1;
    // Record owned by the slot above (lower index = higher address).
    let s = pg.r2(slot + 2)?;
    let lo = if comp {
        PAGE_NEW_INFIMUM
    } else {
        PAGE_OLD_INFIMUM
    };
    if s < lo || s > pg.hdr(PAGE_HEAP_TOP)? {
        return pg.err("directory slot points outside the heap");
    }
    let mut rec = s;
    for _ in 0..n_owned / 2 {
        match pg.next_rec(rec, comp)? {
            Some(r) => rec = r,
            None => return pg.err("broken record list while splitting a slot"),
        }
    }
    let n_slots = pg.hdr(PAGE_N_DIR_SLOTS)?;
    let last_slot = match pg.size().checked_sub(PAGE_DIR + 2 + n_slots * 2) {
        Some(x) => x,
        None => return pg.err("too many directory slots"),
    };
    if slot < last_slot {
        return pg.err("slot below the directory");
    }
    pg.copy_within(last_slot + 2, last_slot, slot - last_slot)?;
    let half = n_owned / 2;
    pg.set_hdr(PAGE_N_DIR_SLOTS, n_slots + 1)?;
    pg.w2(slot, rec)?;
    pg.set_n_owned(rec, half, comp)?;
    let r2 = pg.r2(slot - 2)?;
    pg.set_n_owned(r2, n_owned - half, comp)
}

/// `page_dir_balance_slot`.
fn balance_slot(pg: &mut Pg<'_>, s: usize, comp: bool) -> Result<(), Error> {
    let n_slots = pg.hdr(PAGE_N_DIR_SLOTS)?;
    if s + 1 >= n_slots || s == 0 {
        return Ok(());
    }
    let slot = pg.slot(s)?;
    let up_rec = pg.r2(slot - 2)?;
    let slot_rec = pg.r2(slot)?;
    let up_n_owned = if comp {
        pg.n_owned_new(up_rec)?
    } else {
        pg.n_owned_old(up_rec)?
    };
    if up_n_owned <= PAGE_DIR_SLOT_MIN_N_OWNED {
        pg.set_n_owned(slot_rec, 0, comp)?;
        pg.set_n_owned(up_rec, up_n_owned + (PAGE_DIR_SLOT_MIN_N_OWNED - 1), comp)?;
        let last_slot = pg.slot(n_slots - 1)?;
        pg.copy_within(last_slot, last_slot + 2, slot - last_slot)?;
        pg.w2(last_slot, 0)?;
        pg.set_hdr(PAGE_N_DIR_SLOTS, n_slots - 1)?;
        return Ok(());
    }
    let Some(new_rec) = pg.next_rec(slot_rec, comp)? else {
        return pg.err("broken record list while balancing a slot");
    };
    pg.set_n_owned(slot_rec, 0, comp)?;
    pg.set_n_owned(new_rec, PAGE_DIR_SLOT_MIN_N_OWNED, comp)?;
    pg.set_n_owned(up_rec, up_n_owned - 1, comp)?;
    pg.w2(slot, new_rec)
}

/// Find the directory slot that points at `rec`, from the last slot up.
fn find_slot(pg: &Pg<'_>, from_slot: usize, rec: usize) -> Result<usize, Error> {
    let first_slot = pg.slot(0)?;
    let Some(dir) = pg.b.get(from_slot..first_slot.saturating_add(2)) else {
        return pg.err("offset outside the page");
    };
    // The directory as whole 2-byte slots, compared as raw big-endian
    // pairs (the loop vectorises; the server walks it one slot at a time).
    match u16::try_from(rec)
        .ok()
        .and_then(|r| find_pair(dir, r.to_be_bytes()))
    {
        Some(i) => Ok(from_slot + 2 * i),
        None => pg.err("no directory slot owns the record"),
    }
}

/// The index of the first whole 2-byte element of `dir` equal to `want`:
/// 16 elements at a time without an early exit (which vectorises), then
/// one by one within the block that holds it.
fn find_pair(dir: &[u8], want: [u8; 2]) -> Option<usize> {
    const BLOCK: usize = 16;
    let mut base = 0usize;
    for block in dir.chunks_exact(2 * BLOCK) {
        let mut hit = false;
        for k in 0..BLOCK {
            hit |= block[2 * k] == want[0] && block[2 * k + 1] == want[1];
        }
        if hit {
            break;
        }
        base += BLOCK;
    }
    dir.get(2 * base..)?
        .chunks_exact(2)
        .position(|s| s == want)
        .map(|i| base + i)
}

/// The last directory slot, the heap bottom and PAGE_HEAP_TOP of an index
/// page, after the server's checks of the heap and the directory ends.
fn heap_bounds(pg: &Pg<'_>, n_slots: usize, comp: bool) -> Result<(usize, usize, usize), Error> {
    let (inf, sup, bot) = if comp {
        (PAGE_NEW_INFIMUM, PAGE_NEW_SUPREMUM, PAGE_NEW_SUPREMUM_END)
    } else {
        (PAGE_OLD_INFIMUM, PAGE_OLD_SUPREMUM, PAGE_OLD_SUPREMUM_END)
    };
    let last_slot = pg.slot(n_slots.wrapping_sub(1))?;
    let heap_top = pg.hdr(PAGE_HEAP_TOP)?;
    if bot > heap_top || heap_top > last_slot {
        return pg.err("PAGE_HEAP_TOP out of range");
    }
    if pg.r2(last_slot)? != sup || pg.r2(pg.slot(0)?)? != inf {
        return pg.err("directory does not start with infimum and end with supremum");
    }
    Ok((last_slot, bot, heap_top))
}

/// The record owning the directory slot that `next_rec` belongs to, its
/// n_owned and its slot (the server's walk before an insert).
fn find_owner(
    pg: &Pg<'_>,
    next_rec: usize,
    last_slot: usize,
    heap_bot: usize,
    heap_top: usize,
    comp: bool,
) -> Result<(usize, usize, usize), Error> {
    let (sup, extra) = if comp {
        (PAGE_NEW_SUPREMUM, REC_N_NEW_EXTRA_BYTES)
    } else {
        (PAGE_OLD_SUPREMUM, REC_N_OLD_EXTRA_BYTES)
    };
    let mut owner = next_rec;
    for _ in 0..=PAGE_DIR_SLOT_MAX_N_OWNED {
        let n = if comp {
            pg.n_owned_new(owner)?
        } else {
            pg.n_owned_old(owner)?
        };
        if n != 0 {
            if n > PAGE_DIR_SLOT_MAX_N_OWNED {
                return pg.err("n_owned too large");
            }
            return Ok((owner, n, find_slot(pg, last_slot, owner)?));
        }
        let link = pg.r2(owner.wrapping_sub(2))?;
        owner = if comp { (owner + link) & 0xFFFF } else { link };
        if owner != sup && (heap_bot + extra > owner || owner > heap_top) {
            return pg.err("record list leaves the heap");
        }
    }
    pg.err("cyclic record list")
}

/// Common tail of both inserts: PAGE_DIRECTION, PAGE_N_RECS, slot split.
#[allow(clippy::too_many_arguments)]
fn insert_tail(
    pg: &mut Pg<'_>,
    last_insert: usize,
    prev_rec: usize,
    next_rec: usize,
    owner_rec: usize,
    n_owned: usize,
    owner_slot: usize,
    comp: bool,
) -> Result<(), Error> {
    pg.set_n_owned(owner_rec, n_owned + 1, comp)?;
    if pg.page_type() != FIL_PAGE_RTREE {
        let dir_at = PAGE_HEADER + PAGE_DIRECTION_B;
        let dir = pg.r1(dir_at)? as u8;
        let cur = dir & 7;
        if last_insert == 0 {
            pg.w1(dir_at, usize::from((dir & !7) | PAGE_NO_DIRECTION))?;
            pg.set_hdr(PAGE_N_DIRECTION, 0)?;
        } else if last_insert == prev_rec && cur != PAGE_LEFT {
            pg.w1(dir_at, usize::from((dir & !7) | PAGE_RIGHT))?;
            let n = pg.hdr(PAGE_N_DIRECTION)?;
            pg.set_hdr(PAGE_N_DIRECTION, n + 1)?;
        } else if next_rec == last_insert && cur != PAGE_RIGHT {
            pg.w1(dir_at, usize::from((dir & !7) | PAGE_LEFT))?;
            let n = pg.hdr(PAGE_N_DIRECTION)?;
            pg.set_hdr(PAGE_N_DIRECTION, n + 1)?;
        } else {
            pg.w1(dir_at, usize::from((dir & !7) | PAGE_NO_DIRECTION))?;
            pg.set_hdr(PAGE_N_DIRECTION, 0)?;
        }
    }
    let n = pg.hdr(PAGE_N_RECS)?;
    pg.set_hdr(PAGE_N_RECS, n + 1)?;
    if n_owned == PAGE_DIR_SLOT_MAX_N_OWNED {
        split_slot(pg, owner_slot, comp)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_dynamic(
    pg: &mut Pg<'_>,
    reuse: bool,
    prev: usize,
    shift: usize,
    enc_hdr_l: usize,
    hdr_c: usize,
    data_c: usize,
    data: &[u8],
) -> Result<(), Error> {
    let size = pg.size();
    let n_slots = pg.hdr(PAGE_N_DIR_SLOTS)?;
    let mut h = pg.hdr(PAGE_N_HEAP)?;
    let hdr_l = enc_hdr_l >> 3;
    if n_slots < 2
        || h < (PAGE_HEAP_NO_USER_LOW | 0x8000)
        || (h & 0x7fff) >= size / REC_N_NEW_EXTRA_BYTES
        || (h & 0x7fff) < n_slots
        || !pg.is_index()
        || pg.page_no() != pg.id.page.0
        || pg.r2(PAGE_NEW_SUPREMUM - 2)? != 0
        || (enc_hdr_l as u32 & REC_STATUS_INSTANT != 0 && !pg.is_leaf()?)
        || hdr_l > data.len()
    {
        return pg.err("page header inconsistent");
    }
    let (last_slot, heap_bot, heap_top) = heap_bounds(pg, n_slots, true)?;
    let prev_rec = (PAGE_NEW_INFIMUM + prev) & 0xFFFF;
    let next_rec = (prev_rec + pg.r2(prev_rec.wrapping_sub(2))?) & 0xFFFF;
    if prev != 0 && (heap_bot + REC_N_NEW_EXTRA_BYTES > prev_rec || prev_rec > heap_top) {
        return pg.err("predecessor outside the heap");
    }
    if next_rec != PAGE_NEW_SUPREMUM
        && (heap_bot + REC_N_NEW_EXTRA_BYTES > next_rec || next_rec > heap_top)
    {
        return pg.err("successor outside the heap");
    }
    let (owner_rec, n_owned, owner_slot) =
        find_owner(pg, next_rec, last_slot, heap_bot, heap_top, true)?;
    let extra_size = REC_N_NEW_EXTRA_BYTES + hdr_c + hdr_l;
    let data_size = match (data_c + data.len()).checked_sub(hdr_l) {
        Some(x) => x,
        None => return pg.err("record sizes inconsistent"),
    };
    let mut buf;
    if reuse {
        let free_rec = pg.hdr(PAGE_FREE)?;
        if heap_bot + REC_N_NEW_EXTRA_BYTES > free_rec || free_rec > heap_top {
            return pg.err("PAGE_FREE outside the heap");
        }
        let base = free_rec.checked_sub(extra_size);
        buf = match base {
            Some(b) if shift & 1 == 1 => b.checked_sub(shift >> 1),
            Some(b) => Some(b + (shift >> 1)),
            None => None,
        }
        .unwrap_or(0);
        if heap_bot > buf || buf + extra_size + data_size > heap_top {
            return pg.err("reused space outside the heap");
        }
        let garbage = pg.hdr(PAGE_GARBAGE)?;
        if garbage < extra_size + data_size {
            return pg.err("PAGE_GARBAGE too small");
        }
        let mut n = pg.r2(free_rec - 2)?;
        if n != 0 {
            n = (n + free_rec) & 0xFFFF;
            if n < PAGE_NEW_SUPREMUM_END + REC_N_NEW_EXTRA_BYTES || heap_top < n {
                return pg.err("PAGE_FREE list leaves the heap");
            }
        }
        pg.set_hdr(PAGE_FREE, n)?;
        pg.set_hdr(PAGE_GARBAGE, garbage - (extra_size + data_size))?;
        h = pg.heap_no_new(free_rec)?;
    } else {
        if heap_top + extra_size + data_size > last_slot {
            return pg.err("no room on the heap");
        }
        pg.set_hdr(PAGE_N_HEAP, h + 1)?;
        h &= 0x7fff;
        pg.set_hdr(PAGE_HEAP_TOP, heap_top + extra_size + data_size)?;
        buf = heap_top;
    }
    pg.put(buf, &data[..hdr_l])?;
    buf += hdr_l;
    let rest = &data[hdr_l..];
    let from = match prev_rec.checked_sub(REC_N_NEW_EXTRA_BYTES + hdr_c) {
        Some(x) => x,
        None => return pg.err("common header before the page"),
    };
    pg.copy_within(from, buf, hdr_c)?;
    buf += hdr_c;
    pg.w1(buf, (enc_hdr_l & 3) << 4)?;
    buf += 1;
    pg.w1(buf, h >> 5)?;
    buf += 1;
    let mut lo = (h & 0x1F) << 3;
    if pg.is_leaf()? {
        lo |= enc_hdr_l & REC_STATUS_INSTANT as usize;
    } else {
        lo |= REC_STATUS_NODE_PTR;
    }
    pg.w1(buf, lo)?;
    buf += 1;
    buf += 2; // REC_NEXT
    pg.w2(buf - 2, next_rec.wrapping_sub(buf) & 0xFFFF)?;
    let last_insert = pg.hdr(PAGE_LAST_INSERT)?;
    pg.set_hdr(PAGE_LAST_INSERT, buf)?;
    pg.w2(prev_rec - 2, buf.wrapping_sub(prev_rec) & 0xFFFF)?;
    pg.copy_within(prev_rec, buf, data_c)?;
    buf += data_c;
    pg.put(buf, rest)?;
    insert_tail(
        pg,
        last_insert,
        prev_rec,
        next_rec,
        owner_rec,
        n_owned,
        owner_slot,
        true,
    )
}

fn insert_redundant(
    pg: &mut Pg<'_>,
    reuse: bool,
    prev: usize,
    enc_hdr: usize,
    hdr_c: usize,
    data_c: usize,
    data: &[u8],
) -> Result<(), Error> {
    let size = pg.size();
    let n_slots = pg.hdr(PAGE_N_DIR_SLOTS)?;
    let h = pg.hdr(PAGE_N_HEAP)?;
    if n_slots < 2
        || h < n_slots
        || h < PAGE_HEAP_NO_USER_LOW
        || h >= size / REC_N_OLD_EXTRA_BYTES
        || !pg.is_index()
        || pg.page_no() != pg.id.page.0
        || pg.r2(PAGE_OLD_SUPREMUM - 2)? != 0
    {
        return pg.err("page header inconsistent");
    }
    let (last_slot, heap_bot, heap_top) = heap_bounds(pg, n_slots, false)?;
    let prev_rec = PAGE_OLD_INFIMUM + prev;
    if prev != 0 && (heap_bot + REC_N_OLD_EXTRA_BYTES + 1 > prev_rec || prev_rec > heap_top) {
        return pg.err("predecessor outside the heap");
    }
    let pn_fields = pg.n_fields_old(prev_rec)?;
    if pn_fields == 0 || pn_fields > REC_MAX_N_FIELDS {
        return pg.err("predecessor field count");
    }
    let pextra = REC_N_OLD_EXTRA_BYTES
        + if pg.short_old(prev_rec)? {
            pn_fields
        } else {
            pn_fields * 2
        };
    if prev_rec != PAGE_OLD_INFIMUM && prev_rec < heap_bot + pextra {
        return pg.err("predecessor header outside the heap");
    }
    if hdr_c != 0 && prev_rec < heap_bot + hdr_c {
        return pg.err("common header outside the heap");
    }
    let pdata = pg.data_size_old(prev_rec)?;
    if prev_rec + pdata > heap_top {
        return pg.err("predecessor data outside the heap");
    }
    let next_rec = pg.r2(prev_rec - 2)?;
    if next_rec != PAGE_OLD_SUPREMUM
        && (heap_bot + REC_N_OLD_EXTRA_BYTES > next_rec || next_rec > heap_top)
    {
        return pg.err("successor outside the heap");
    }
    let is_short = (enc_hdr >> 2) & 1 == 1;
    let n_fields = (enc_hdr >> 3) + 1;
    if n_fields > REC_MAX_N_FIELDS {
        return pg.err("too many fields");
    }
    let extra_size = REC_N_OLD_EXTRA_BYTES + if is_short { n_fields } else { n_fields * 2 };
    let hdr_c = hdr_c + REC_N_OLD_EXTRA_BYTES;
    if hdr_c > extra_size || extra_size - hdr_c > data.len() {
        return pg.err("header sizes inconsistent");
    }
    let (owner_rec, n_owned, owner_slot) =
        find_owner(pg, next_rec, last_slot, heap_bot, heap_top, false)?;
    // Build the record header locally.
    let mut ins = vec![0u8; extra_size];
    ins[..extra_size - hdr_c].copy_from_slice(&data[..extra_size - hdr_c]);
    match prev_rec.checked_sub(hdr_c) {
        Some(from) if from + hdr_c <= size => {
            ins[extra_size - hdr_c..].copy_from_slice(&pg.b[from..from + hdr_c]);
        }
        _ => return pg.err("common header outside the page"),
    }
    // Bit fields relative to the record origin (= end of `ins`).
    let e = extra_size;
    ins[e - 6] = (ins[e - 6] & !0xF0) | (((enc_hdr & 3) << 4) as u8); // info bits
    ins[e - 3] = (ins[e - 3] & !1) | u8::from(is_short);
    let nf = ((u16::from_be_bytes([ins[e - 4], ins[e - 3]]) & !0x7FE) | ((n_fields as u16) << 1))
        .to_be_bytes();
    ins[e - 4] = nf[0];
    ins[e - 3] = nf[1];
    ins[e - 6] &= !0x0F; // n_owned = 0
    let data_size = {
        let n = n_fields;
        if is_short {
            usize::from(ins[e - (REC_N_OLD_EXTRA_BYTES + n)]) & !0x80
        } else {
            let at = e - (REC_N_OLD_EXTRA_BYTES + 2 * n);
            usize::from(u16::from_be_bytes([ins[at], ins[at + 1]])) & !0xC000
        }
    };
    if data_c > data_size || extra_size - hdr_c + data_size - data_c != data.len() {
        return pg.err("record sizes inconsistent");
    }
    let set_heap_no = |ins: &mut [u8], heap_no: usize| {
        let v = (u16::from_be_bytes([ins[e - 5], ins[e - 4]]) & !0xFFF8) | ((heap_no as u16) << 3);
        let v = v.to_be_bytes();
        ins[e - 5] = v[0];
        ins[e - 4] = v[1];
    };
    let mut buf;
    if reuse {
        let free_rec = pg.hdr(PAGE_FREE)?;
        if heap_bot + REC_N_OLD_EXTRA_BYTES > free_rec || free_rec > heap_top {
            return pg.err("PAGE_FREE outside the heap");
        }
        let fn_fields = pg.n_fields_old(free_rec)?;
        let fextra = REC_N_OLD_EXTRA_BYTES
            + if pg.short_old(free_rec)? {
                fn_fields
            } else {
                fn_fields * 2
            };
        if free_rec < heap_bot + fextra {
            return pg.err("free record header outside the heap");
        }
        let fdata = pg.data_size_old(free_rec)?;
        if free_rec + fdata > heap_top || extra_size + data_size > fextra + fdata {
            return pg.err("free record too small");
        }
        let garbage = pg.hdr(PAGE_GARBAGE)?;
        if garbage < fextra + fdata {
            return pg.err("PAGE_GARBAGE too small");
        }
        buf = free_rec - fextra;
        let next_free = pg.r2(free_rec - 2)?;
        if next_free != 0
            && (next_free < heap_bot + REC_N_OLD_EXTRA_BYTES + 1 || heap_top < next_free)
        {
            return pg.err("PAGE_FREE list leaves the heap");
        }
        pg.set_hdr(PAGE_GARBAGE, garbage - extra_size - data_size)?;
        set_heap_no(&mut ins, pg.heap_no_old(free_rec)?);
        pg.set_hdr(PAGE_FREE, next_free)?;
    } else {
        if heap_top + extra_size + data_size > last_slot {
            return pg.err("no room on the heap");
        }
        set_heap_no(&mut ins, h);
        pg.set_hdr(PAGE_N_HEAP, h + 1)?;
        pg.set_hdr(PAGE_HEAP_TOP, heap_top + extra_size + data_size)?;
        buf = heap_top;
    }
    let last_insert = pg.hdr(PAGE_LAST_INSERT)?;
    pg.put(buf, &ins)?;
    buf += extra_size;
    pg.set_hdr(PAGE_LAST_INSERT, buf)?;
    pg.w2(prev_rec - 2, buf)?;
    pg.copy_within(prev_rec, buf, data_c)?;
    pg.put(buf + data_c, &data[extra_size - hdr_c..])?;
    insert_tail(
        pg,
        last_insert,
        prev_rec,
        next_rec,
        owner_rec,
        n_owned,
        owner_slot,
        false,
    )
}

/// `page_mem_free`.
fn mem_free(
    pg: &mut Pg<'_>,
    rec: usize,
    data_size: usize,
    extra_size: usize,
    comp: bool,
) -> Result<(), Error> {
    let free = pg.hdr(PAGE_FREE)?;
    let n_heap = pg.hdr(PAGE_N_HEAP)?.wrapping_sub(1) & 0xFFFF;
    let rec_heap = if comp {
        pg.heap_no_new(rec)? | 0x8000
    } else {
        pg.heap_no_old(rec)?
    };
    let deleting_top = n_heap == rec_heap;
    let end = rec + data_size;
    if deleting_top {
        let heap_top = pg.hdr(PAGE_HEAP_TOP)?;
        let Some(extra_savings) = heap_top.checked_sub(end) else {
            return pg.err("record beyond PAGE_HEAP_TOP");
        };
        pg.set_hdr(PAGE_HEAP_TOP, rec - extra_size)?;
        pg.set_hdr(PAGE_N_HEAP, n_heap)?;
        if extra_savings != 0 {
            let g = pg.hdr(PAGE_GARBAGE)?;
            pg.set_hdr(PAGE_GARBAGE, g.wrapping_sub(extra_savings) & 0xFFFF)?;
        }
    } else {
        pg.set_hdr(PAGE_FREE, rec)?;
        let g = pg.hdr(PAGE_GARBAGE)?;
        pg.set_hdr(PAGE_GARBAGE, (g + extra_size + data_size) & 0xFFFF)?;
    }
    pg.set_hdr(PAGE_LAST_INSERT, 0)?;
    let n = pg.hdr(PAGE_N_RECS)?;
    pg.set_hdr(PAGE_N_RECS, n.wrapping_sub(1) & 0xFFFF)?;
    let start = if deleting_top {
        rec - extra_size
    } else {
        let next = if free == 0 {
            0
        } else if comp {
            free.wrapping_sub(rec) & 0xFFFF
        } else {
            free
        };
        pg.w2(rec - 2, next)?;
        rec
    };
    pg.fill(start, end - start, 0)
}

#[allow(clippy::too_many_arguments)]
fn delete_common(
    pg: &mut Pg<'_>,
    prev_rec: usize,
    rec: usize,
    next: usize,
    slot_last: usize,
    extra_size: usize,
    data_size: usize,
    comp: bool,
) -> Result<(), Error> {
    let (sup, heap_lo) = if comp {
        (
            PAGE_NEW_SUPREMUM,
            PAGE_NEW_SUPREMUM_END + REC_N_NEW_EXTRA_BYTES,
        )
    } else {
        (
            PAGE_OLD_SUPREMUM,
            PAGE_OLD_SUPREMUM_END + REC_N_OLD_EXTRA_BYTES,
        )
    };
    let n_recs = pg.hdr(PAGE_N_RECS)?;
    let mut s = rec;
    let mut i = n_recs;
    let slot_owned = loop {
        let n = if comp {
            pg.n_owned_new(s)?
        } else {
            pg.n_owned_old(s)?
        };
        if n != 0 {
            break n;
        }
        let v = pg.r2(s.wrapping_sub(2))?;
        if comp {
            if !(REC_N_NEW_EXTRA_BYTES..=(0x10000 - REC_N_NEW_EXTRA_BYTES)).contains(&v) {
                return pg.err("record list link out of range");
            }
            s = (s + v) & 0xFFFF;
        } else {
            s = v;
        }
        if s != sup && (s < heap_lo || slot_last < s) {
            return pg.err("record list leaves the heap");
        }
        if i == 0 {
            return pg.err("cyclic record list");
        }
        i -= 1;
    } - 1;
    let slot = find_slot(pg, slot_last, s)?;
    if rec == s {
        s = prev_rec;
        pg.w2(slot, s)?;
    }
    if comp {
        pg.w2(prev_rec - 2, next.wrapping_sub(prev_rec) & 0xFFFF)?;
    } else {
        pg.w2(prev_rec - 2, next)?;
    }
    pg.set_n_owned(s, slot_owned, comp)?;
    mem_free(pg, rec, data_size, extra_size, comp)?;
    if slot_owned < PAGE_DIR_SLOT_MIN_N_OWNED {
        let first_slot = pg.slot(0)?;
        balance_slot(pg, (first_slot - slot) / 2, comp)?;
    }
    Ok(())
}

fn delete_dynamic(
    pg: &mut Pg<'_>,
    prev: usize,
    hdr_size: usize,
    data_size: usize,
) -> Result<(), Error> {
    let n_slots = pg.hdr(PAGE_N_DIR_SLOTS)?;
    let n_recs = pg.hdr(PAGE_N_RECS)?;
    if n_recs == 0
        || n_slots < 2
        || !pg.is_index()
        || pg.page_no() != pg.id.page.0
        || pg.r2(PAGE_NEW_SUPREMUM - 2)? != 0
        || !pg.is_comp()?
    {
        return pg.err("page header inconsistent");
    }
    let slot = pg.slot(n_slots - 1)?;
    let prev_rec = (PAGE_NEW_INFIMUM + prev) & 0xFFFF;
    if prev_rec > slot {
        return pg.err("predecessor beyond the directory");
    }
    let rec = (prev_rec + pg.r2(prev_rec - 2)?) & 0xFFFF;
    let extra_size = REC_N_NEW_EXTRA_BYTES + hdr_size;
    if rec < PAGE_NEW_SUPREMUM_END + REC_N_NEW_EXTRA_BYTES
        || slot < rec
        || rec < PAGE_NEW_SUPREMUM_END + extra_size
        || slot < rec + data_size
    {
        return pg.err("record outside the heap");
    }
    let next = (rec + pg.r2(rec - 2)?) & 0xFFFF;
    if next != PAGE_NEW_SUPREMUM
        && (next < PAGE_NEW_SUPREMUM_END + REC_N_NEW_EXTRA_BYTES || slot < next)
    {
        return pg.err("successor outside the heap");
    }
    delete_common(pg, prev_rec, rec, next, slot, extra_size, data_size, true)
}

fn delete_redundant(pg: &mut Pg<'_>, prev: usize) -> Result<(), Error> {
    let n_slots = pg.hdr(PAGE_N_DIR_SLOTS)?;
    let n_recs = pg.hdr(PAGE_N_RECS)?;
    if n_recs == 0
        || n_slots < 2
        || !pg.is_index()
        || pg.page_no() != pg.id.page.0
        || pg.r2(PAGE_OLD_SUPREMUM - 2)? != 0
        || pg.is_comp()?
    {
        return pg.err("page header inconsistent");
    }
    let slot = pg.slot(n_slots - 1)?;
    let prev_rec = PAGE_OLD_INFIMUM + prev;
    if prev_rec > slot {
        return pg.err("predecessor beyond the directory");
    }
    let rec = pg.r2(prev_rec - 2)?;
    if rec < PAGE_OLD_SUPREMUM_END + REC_N_OLD_EXTRA_BYTES || slot < rec {
        return pg.err("record outside the heap");
    }
    let nf = pg.n_fields_old(rec)?;
    let extra_size = REC_N_OLD_EXTRA_BYTES + nf * if pg.short_old(rec)? { 1 } else { 2 };
    let data_size = pg.data_size_old(rec)?;
    if rec < PAGE_OLD_SUPREMUM_END + extra_size || slot < rec + data_size {
        return pg.err("record outside the heap");
    }
    let next = pg.r2(rec - 2)?;
    if next != PAGE_OLD_SUPREMUM
        && (next < PAGE_OLD_SUPREMUM_END + REC_N_OLD_EXTRA_BYTES || slot < next)
    {
        return pg.err("successor outside the heap");
    }
    delete_common(pg, prev_rec, rec, next, slot, extra_size, data_size, false)
}

// ---------------------------------------------------------------------
// Per-page recovery.

/// One logged operation for a page, with its mtr's LSNs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedOp<'a> {
    /// Start LSN of the mtr.
    pub start_lsn: Lsn,
    /// End LSN of the mtr (the page LSN after it).
    pub end_lsn: Lsn,
    /// The operation.
    pub op: PageOp<'a>,
}

/// What [`recover_page`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// Records were applied; the page LSN must become `end_lsn`.
    Applied {
        /// New page LSN.
        end_lsn: Lsn,
    },
    /// Nothing to apply (all records older than the page).
    Unchanged,
    /// The page ends freed: the server does not write it.
    Freed,
}

/// Whether recovery reads a page before applying `ops`: not when any
/// record is INIT_PAGE or FREE_PAGE (the server then discards the records
/// before the last such one and never reads the page).
#[must_use]
pub fn needs_read(ops: &[LoggedOp<'_>]) -> bool {
    !ops.iter()
        .any(|o| matches!(o.op, PageOp::InitPage | PageOp::FreePage))
}

/// Replay `ops` (in log order) on `page`, with InnoDB's rules: when the
/// page was read (`needs_read`), records of mtrs that started before the
/// page's FIL_PAGE_LSN are skipped; otherwise replay starts at the last
/// INIT_PAGE/FREE_PAGE. The caller then calls [`finish_page`] for
/// [`Recovered::Applied`].
///
/// # Errors
/// Any [`apply_op`] error, or [`Error::Checksum`].
pub fn recover_page(page: &mut [u8], id: PageId, ops: &[LoggedOp<'_>]) -> Result<Recovered, Error> {
    recover_page_at(page, id, ops).map_err(|(_, e)| e)
}

/// [`recover_page`], whose error names the start LSN of the mtr whose
/// record failed.
///
/// # Errors
/// As [`recover_page`], with that LSN.
pub fn recover_page_at(
    page: &mut [u8],
    id: PageId,
    ops: &[LoggedOp<'_>],
) -> Result<Recovered, (Lsn, Error)> {
    let start = ops
        .iter()
        .rposition(|o| matches!(o.op, PageOp::InitPage | PageOp::FreePage));
    let (ops, page_lsn) = match start {
        Some(i) => (&ops[i..], 0),
        None => (ops, super::be64(page, FIL_PAGE_LSN).unwrap_or(0)),
    };
    let mut applied = false;
    let mut freed = false;
    let mut end_lsn = Lsn(0);
    for o in ops {
        if o.start_lsn.0 < page_lsn {
            continue;
        }
        end_lsn = o.end_lsn;
        match &o.op {
            PageOp::FreePage => {
                freed = true;
                applied = false;
            }
            PageOp::PageChecksum { crc } => {
                let computed = opt_page_checksum(page);
                if computed != *crc {
                    return Err((
                        o.start_lsn,
                        Error::Checksum {
                            page: id,
                            logged: *crc,
                            computed,
                        },
                    ));
                }
                applied = true;
            }
            op => {
                apply_op(page, id, op).map_err(|e| (o.start_lsn, e))?;
                applied = true;
                freed = false;
            }
        }
    }
    Ok(if applied {
        Recovered::Applied { end_lsn }
    } else if freed {
        Recovered::Freed
    } else {
        Recovered::Unchanged
    })
}

/// The CRC-32C that OPT_PAGE_CHECKSUM records carry: bytes 4..16, 24..26
/// and 34..size-8 of the page.
#[must_use]
pub fn opt_page_checksum(page: &[u8]) -> u32 {
    let n = page.len();
    if n < 42 {
        return 0;
    }
    let c = crc32c::crc32c(&page[FIL_PAGE_OFFSET..FIL_PAGE_LSN]);
    let c = crc32c::crc32c_append(c, &page[FIL_PAGE_TYPE..FIL_PAGE_TYPE + 2]);
    crc32c::crc32c_append(c, &page[FIL_PAGE_SPACE_ID..n - 8])
}

/// Write the page LSN and the checksum, as InnoDB does when it writes a
/// recovered page: FIL_PAGE_LSN = `lsn`; full_crc32: the low 4 LSN bytes
/// at size-8 and CRC-32C at size-4; legacy (`crc32`): the 8 LSN bytes at
/// size-8, page types reset as the server does for 16 KiB pages, then the
/// crc32 checksum at 0 and size-8; ROW_FORMAT=COMPRESSED: the compressed
/// page's crc32 checksum at 0.
///
/// # Errors
/// [`Error::PageSize`] if the buffer is not one page of `fmt`, and
/// [`Error::Unsupported`] for page_compressed.
pub fn finish_page(page: &mut [u8], id: PageId, fmt: &PageFormat, lsn: Lsn) -> Result<(), Error> {
    let size = page.len();
    if size != fmt.physical_size() as usize || size < MIN_PAGE_BUFFER {
        return Err(Error::PageSize(size));
    }
    if fmt.is_page_compressed() {
        return Err(Error::Unsupported {
            page: id,
            what: "page_compressed page write-back",
        });
    }
    page[FIL_PAGE_LSN..FIL_PAGE_LSN + 8].copy_from_slice(&lsn.0.to_be_bytes());
    if fmt.is_zip() {
        // No trailer; the crc32 variant of the compressed-page checksum.
        let c = zip_crc32(page);
        page[..4].copy_from_slice(&c.to_be_bytes());
        return Ok(());
    }
    if fmt.is_full_crc32() {
        page.copy_within(FIL_PAGE_LSN + 4..FIL_PAGE_LSN + 8, size - 8);
        let c = crc32c::crc32c(&page[..size - 4]);
        page[size - 4..].copy_from_slice(&c.to_be_bytes());
        return Ok(());
    }
    page.copy_within(FIL_PAGE_LSN..FIL_PAGE_LSN + 8, size - 8);
    if size == 16384 {
        let ty = be16(page, FIL_PAGE_TYPE).unwrap_or(0);
        let reset = legacy_reset_type(id, ty);
        page[FIL_PAGE_TYPE..FIL_PAGE_TYPE + 2].copy_from_slice(&reset.to_be_bytes());
    }
    let c = legacy_crc32(page);
    page[..4].copy_from_slice(&c.to_be_bytes());
    page[size - 8..size - 4].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

fn legacy_reset_type(id: PageId, ty: u16) -> u16 {
    const FSP_HDR: u16 = 8;
    const XDES: u16 = 9;
    const IBUF_BITMAP: u16 = 5;
    const TRX_SYS: u16 = 7;
    match id.page.0 % 16384 {
        0 => {
            if id.page.0 == 0 {
                FSP_HDR
            } else {
                XDES
            }
        }
        1 => IBUF_BITMAP,
        5 if id.space.0 == 0 && id.page.0 == 5 => TRX_SYS,
        _ => match ty {
            // INDEX, INSTANT, RTREE, UNDO, INODE, IBUF_FREE_LIST,
            // ALLOCATED, SYS, TRX_SYS, BLOB, ZBLOB, ZBLOB2
            17855 | 18 | 17854 | 2 | 3 | 4 | 0 | 6 | 7 | 10 | 11 | 12 => ty,
            _ => 13, // FIL_PAGE_TYPE_UNKNOWN
        },
    }
}

#[cfg(test)]
mod tests;

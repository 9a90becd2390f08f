//! InnoDB data pages: tablespace flags from page 0, and page validation.
//!
//! See `format-spec/innodb-pages.md` for the byte layout and the exact list
//! of checks. In short:
//!
//! - [`parse_page0`] reads the FSP header of page 0 and validates
//!   `FSP_SPACE_FLAGS` the way the server does, giving a [`PageFormat`]
//!   (logical and physical page size, full_crc32 or legacy, compression).
//! - [`check_page`] validates one physical page against that format and
//!   returns a [`PageVerdict`]; a failure carries the stored and computed
//!   checksums for the error message.
//! - [`doublewrite_range`] gives the ibdata1 pages that hold the doublewrite
//!   buffer, which a copier must not validate.

use std::fmt;
use std::ops::Range;

use super::{be16, be32, Error, PageNo, SpaceId};

/// Offset of the checksum (legacy) or key version (full_crc32).
pub const FIL_PAGE_SPACE_OR_CHKSUM: usize = 0;
/// Offset of the page number.
pub const FIL_PAGE_OFFSET: usize = 4;
/// Offset of the page LSN (8 bytes).
pub const FIL_PAGE_LSN: usize = 16;
/// Offset of the page type (2 bytes).
pub const FIL_PAGE_TYPE: usize = 24;
/// Offset of the flush LSN (ibdata page 0) or key version + crypt checksum.
pub const FIL_PAGE_FILE_FLUSH_LSN: usize = 26;
/// Offset of the space id.
pub const FIL_PAGE_SPACE_ID: usize = 34;
/// Start of the page body; also where the FSP header starts on page 0.
pub const FIL_PAGE_DATA: usize = 38;
/// FSP header: offset of the space id (relative to [`FIL_PAGE_DATA`]).
pub const FSP_SPACE_ID: usize = 0;
/// FSP header: offset of FSP_SIZE, the tablespace size in pages.
pub const FSP_SIZE: usize = 8;
/// FSP header: offset of FSP_FREE_LIMIT.
pub const FSP_FREE_LIMIT: usize = 12;
/// FSP header: offset of FSP_SPACE_FLAGS.
pub const FSP_SPACE_FLAGS: usize = 16;
/// End of the FSP header fields that [`parse_page0`] reads (absolute offset).
pub const PAGE0_MIN_LEN: usize = FIL_PAGE_DATA + FSP_SPACE_FLAGS + 4;
/// Checksum value meaning "no checksum" (`innodb_checksum_algorithm=none`).
pub const BUF_NO_CHECKSUM_MAGIC: u32 = 0xDEAD_BEEF;
/// Page type of a legacy page_compressed page.
pub const FIL_PAGE_PAGE_COMPRESSED: u16 = 34354;
/// Page type of a legacy page_compressed and encrypted page.
pub const FIL_PAGE_PAGE_COMPRESSED_ENCRYPTED: u16 = 37401;
/// Smallest logical page size (`innodb_page_size`).
pub const MIN_PAGE_SIZE: u32 = 4096;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Smallest ROW_FORMAT=COMPRESSED physical page size.
pub const MIN_ZIP_SIZE: u32 = 1024;

const FCRC32_MARKER: u32 = 1 << 4;
const FCRC32_COMPRESSED_MARKER: u16 = 1 << 15;
/// Highest full_crc32 page compression algorithm number (snappy).
const PAGE_ALGORITHM_LAST: u32 = 6;
/// All persistent legacy flag bits (0..=16).
const LEGACY_FLAGS_MASK: u32 = (1 << 17) - 1;
const LEGACY_POST_ANTELOPE: u32 = 1;
const LEGACY_ATOMIC_BLOBS: u32 = 1 << 5;
const LEGACY_PAGE_COMPRESSION: u32 = 1 << 16;

/// page_compressed algorithm recorded in full_crc32 flags (bits 5..7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompressionAlgorithm {
    /// zlib (1).
    Zlib,
    /// LZ4 (2).
    Lz4,
    /// LZO (3).
    Lzo,
    /// LZMA (4).
    Lzma,
    /// bzip2 (5).
    Bzip2,
    /// Snappy (6).
    Snappy,
}

impl CompressionAlgorithm {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Zlib,
            2 => Self::Lz4,
            3 => Self::Lzo,
            4 => Self::Lzma,
            5 => Self::Bzip2,
            6 => Self::Snappy,
            _ => return None,
        })
    }
}

/// How pages of a tablespace are laid out and checksummed, decoded from
/// `FSP_SPACE_FLAGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageFormat {
    flags: u32,
    logical_size: u32,
    physical_size: u32,
    full_crc32: bool,
    zip: bool,
    page_compressed: bool,
    algorithm: Option<CompressionAlgorithm>,
}

impl PageFormat {
    /// Decode and validate `FSP_SPACE_FLAGS` like the server's
    /// `fil_space_t::is_valid_flags`.
    ///
    /// # Errors
    /// [`Error::BadFlags`] naming the flags value and the failed rule.
    pub fn from_flags(flags: u32) -> Result<Self, Error> {
        let bad = |reason| Error::BadFlags { flags, reason };
        if flags & FCRC32_MARKER != 0 {
            let ssize = flags & 0xF;
            if !(3..=7).contains(&ssize) {
                return Err(bad("full_crc32 page size field not in 3..=7"));
            }
            let algo = flags >> 5;
            if algo > PAGE_ALGORITHM_LAST {
                return Err(bad("full_crc32 compression algorithm or unknown high bits"));
            }
            let size = 512u32 << ssize;
            return Ok(PageFormat {
                flags,
                logical_size: size,
                physical_size: size,
                full_crc32: true,
                zip: false,
                page_compressed: algo != 0,
                algorithm: CompressionAlgorithm::from_code(algo),
            });
        }
        if flags & !LEGACY_FLAGS_MASK != 0 {
            return Err(bad("unknown bits above bit 16"));
        }
        if flags & (LEGACY_POST_ANTELOPE | LEGACY_ATOMIC_BLOBS) == LEGACY_ATOMIC_BLOBS {
            return Err(bad("ATOMIC_BLOBS without POST_ANTELOPE"));
        }
        let reserved = (flags >> 10) & 0x3F;
        if reserved & !1 != 0 {
            return Err(bad("reserved bits 11..15 set (buggy MariaDB 10.1 flags?)"));
        }
        let ssize = (flags >> 6) & 0xF;
        if matches!(ssize, 1 | 2 | 5) || ssize & 8 != 0 {
            return Err(bad("legacy page size field not 0, 3, 4, 6 or 7"));
        }
        let logical = if ssize == 0 { 16384 } else { 512u32 << ssize };
        let zssize = (flags >> 1) & 0xF;
        let mut physical = logical;
        if zssize != 0 {
            let max = if ssize == 0 { 5 } else { ssize };
            if zssize > max {
                return Err(bad("KEY_BLOCK_SIZE larger than the page size"));
            }
            if flags & (LEGACY_POST_ANTELOPE | LEGACY_ATOMIC_BLOBS)
                != (LEGACY_POST_ANTELOPE | LEGACY_ATOMIC_BLOBS)
            {
                return Err(bad(
                    "ROW_FORMAT=COMPRESSED without POST_ANTELOPE and ATOMIC_BLOBS",
                ));
            }
            physical = 512u32 << zssize;
        }
        Ok(PageFormat {
            flags,
            logical_size: logical,
            physical_size: physical,
            full_crc32: false,
            zip: zssize != 0,
            page_compressed: flags & LEGACY_PAGE_COMPRESSION != 0,
            algorithm: None,
        })
    }

    /// The raw `FSP_SPACE_FLAGS`.
    #[must_use]
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The logical (in-memory) page size: `innodb_page_size`.
    #[must_use]
    pub fn logical_size(&self) -> u32 {
        self.logical_size
    }

    /// The size of one page in the file. Smaller than the logical size for
    /// ROW_FORMAT=COMPRESSED tablespaces with a KEY_BLOCK_SIZE below it.
    #[must_use]
    pub fn physical_size(&self) -> u32 {
        self.physical_size
    }

    /// Whether the tablespace uses the full_crc32 page format.
    #[must_use]
    pub fn is_full_crc32(&self) -> bool {
        self.full_crc32
    }

    /// Whether the tablespace is ROW_FORMAT=COMPRESSED.
    #[must_use]
    pub fn is_zip(&self) -> bool {
        self.zip
    }

    /// Whether the tablespace has PAGE_COMPRESSED=1.
    #[must_use]
    pub fn is_page_compressed(&self) -> bool {
        self.page_compressed
    }

    /// The page_compressed algorithm (full_crc32 only; legacy tablespaces
    /// record the algorithm per page).
    #[must_use]
    pub fn compression_algorithm(&self) -> Option<CompressionAlgorithm> {
        self.algorithm
    }

    /// Pages per extent (`FSP_EXTENT_SIZE`) for this logical page size.
    #[must_use]
    pub fn extent_size_pages(&self) -> u32 {
        extent_size_pages(self.logical_size)
    }
}

/// What page 0 says about a tablespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceInfo {
    /// Space id from the FSP header.
    pub space_id: SpaceId,
    /// `FSP_SIZE`: the size in pages (may lag the file length while the
    /// server extends the file).
    pub size_pages: u32,
    /// `FSP_FREE_LIMIT`.
    pub free_limit: u32,
    /// The decoded flags.
    pub format: PageFormat,
}

/// Parse page 0 of a data file.
///
/// `buf` must hold at least [`PAGE0_MIN_LEN`] bytes. When it holds the whole
/// physical page, the page checksum is verified too, so a torn read of page 0
/// is reported instead of trusted.
///
/// # Errors
/// [`Error::Truncated`], [`Error::BadFlags`], or [`Error::Page0`] when the
/// page number is not 0, the two space ids differ, or the checksum fails.
pub fn parse_page0(buf: &[u8]) -> Result<SpaceInfo, Error> {
    let field = |off: usize| {
        be32(buf, off).ok_or(Error::Truncated {
            what: "page 0 FSP header",
            need: PAGE0_MIN_LEN,
            got: buf.len(),
        })
    };
    let flags = field(FIL_PAGE_DATA + FSP_SPACE_FLAGS)?;
    let page_no = field(FIL_PAGE_OFFSET)?;
    let fil_space = field(FIL_PAGE_SPACE_ID)?;
    let fsp_space = field(FIL_PAGE_DATA + FSP_SPACE_ID)?;
    let size_pages = field(FIL_PAGE_DATA + FSP_SIZE)?;
    let free_limit = field(FIL_PAGE_DATA + FSP_FREE_LIMIT)?;
    if buf[..PAGE0_MIN_LEN].iter().all(|&b| b == 0) {
        return Err(Error::Page0("page 0 is all zero".into()));
    }
    let format = PageFormat::from_flags(flags)?;
    if page_no != 0 {
        return Err(Error::Page0(format!(
            "page number field is {page_no}, not 0"
        )));
    }
    if fil_space != fsp_space {
        return Err(Error::Page0(format!(
            "space id {fil_space} in the page header differs from {fsp_space} in the FSP header"
        )));
    }
    let phys = format.physical_size() as usize;
    if buf.len() >= phys {
        if let PageVerdict::Corrupt(c) = check_page(&format, Some(PageNo(0)), &buf[..phys]) {
            return Err(Error::Page0(c.to_string()));
        }
    }
    Ok(SpaceInfo {
        space_id: SpaceId(fsp_space),
        size_pages,
        free_limit,
        format,
    })
}

/// Pages per extent for a logical page size: 1 MiB worth of pages up to
/// 16 KiB pages, 64 pages for 32 KiB and 64 KiB pages.
#[must_use]
pub fn extent_size_pages(page_size: u32) -> u32 {
    if page_size <= 16384 {
        (1u32 << 20) / page_size.max(1)
    } else {
        64
    }
}

/// Page numbers of the system tablespace (ibdata1) that hold the doublewrite
/// buffer: `FSP_EXTENT_SIZE .. 3 * FSP_EXTENT_SIZE`. They hold copies of
/// other pages, so their page number and checksum are not checked.
#[must_use]
pub fn doublewrite_range(page_size: u32) -> Range<u32> {
    let e = extent_size_pages(page_size);
    e..3 * e
}

/// Which checksum a valid page matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidAs {
    /// full_crc32, uncompressed.
    FullCrc32,
    /// full_crc32 page_compressed page; `len` is the checksummed length.
    FullCrc32Compressed {
        /// Compressed length from the page type field.
        len: u32,
    },
    /// Legacy `crc32` in both checksum fields.
    Crc32,
    /// Legacy `innodb` fold checksums (or a mix the server accepts).
    Innodb,
    /// Legacy `none`: 0xDEADBEEF in both fields.
    NoChecksum,
    /// ROW_FORMAT=COMPRESSED with the CRC-32C variant.
    ZipCrc32,
    /// ROW_FORMAT=COMPRESSED with the Adler-32 (`innodb`) variant.
    ZipAdler32,
    /// ROW_FORMAT=COMPRESSED with the `none` magic.
    ZipNoChecksum,
    /// Legacy page_compressed page: carries no checksum before decompression.
    LegacyPageCompressed,
    /// Legacy encrypted page, validated by its post-encryption checksum.
    LegacyEncrypted,
}

/// Which algorithm a checksum mismatch refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// full_crc32: CRC-32C over the page minus its last 4 bytes.
    FullCrc32,
    /// Legacy crc32 (compared against the field at offset 0 or size-8).
    Crc32,
    /// ROW_FORMAT=COMPRESSED crc32 variant.
    ZipCrc32,
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChecksumAlgorithm::FullCrc32 => "full_crc32",
            ChecksumAlgorithm::Crc32 => "crc32",
            ChecksumAlgorithm::ZipCrc32 => "compressed-page crc32",
        })
    }
}

/// Why a page failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The buffer is not one physical page long.
    WrongSize {
        /// The physical page size.
        expected: usize,
        /// The buffer length.
        actual: usize,
    },
    /// The stored checksum does not match.
    Checksum {
        /// The algorithm whose value is shown.
        algorithm: ChecksumAlgorithm,
        /// The stored value.
        stored: u32,
        /// The computed value.
        computed: u32,
    },
    /// The low 32 bits of FIL_PAGE_LSN differ from the copy in the trailer.
    LsnMismatch {
        /// Bytes 20..24.
        header: u32,
        /// The trailer copy.
        trailer: u32,
    },
    /// The page number field does not match the page's position.
    PageNumber {
        /// The position in the file.
        expected: PageNo,
        /// The value at offset 4.
        found: PageNo,
    },
    /// A full_crc32 page_compressed page announces an impossible length.
    CompressedSize {
        /// The raw FIL_PAGE_TYPE value.
        page_type: u16,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Corruption::WrongSize { expected, actual } => {
                write!(f, "page buffer is {actual} bytes, expected {expected}")
            }
            Corruption::Checksum {
                algorithm,
                stored,
                computed,
            } => write!(
                f,
                "{algorithm} checksum mismatch: stored 0x{stored:08x} computed 0x{computed:08x}"
            ),
            Corruption::LsnMismatch { header, trailer } => write!(
                f,
                "LSN mismatch: header low 32 bits 0x{header:08x}, trailer 0x{trailer:08x}"
            ),
            Corruption::PageNumber { expected, found } => {
                write!(f, "page number field is {found}, expected {expected}")
            }
            Corruption::CompressedSize { page_type } => write!(
                f,
                "page_compressed length in page type 0x{page_type:04x} exceeds the page size"
            ),
        }
    }
}

/// The result of [`check_page`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageVerdict {
    /// The checksum matched.
    Valid(ValidAs),
    /// The page is all zero (never written): valid.
    AllZero,
    /// The page failed a check.
    Corrupt(Corruption),
}

impl PageVerdict {
    /// Whether the page may be copied as is.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        !matches!(self, PageVerdict::Corrupt(_))
    }
}

/// Validate one physical page.
///
/// `expected_page_no` is the page's position in the file; when `Some`, the
/// page number field must match it unless the page is all zero. Pass `None`
/// to skip that check (system tablespace files after the first, doublewrite
/// pages).
///
/// Never panics, whatever `buf` holds.
#[must_use]
pub fn check_page(fmt: &PageFormat, expected_page_no: Option<PageNo>, buf: &[u8]) -> PageVerdict {
    let size = fmt.physical_size() as usize;
    if buf.len() != size {
        return PageVerdict::Corrupt(Corruption::WrongSize {
            expected: size,
            actual: buf.len(),
        });
    }
    if is_zero(buf) {
        return PageVerdict::AllZero;
    }
    let v = if fmt.is_full_crc32() {
        check_full_crc32(buf)
    } else if fmt.is_zip() {
        check_zip(buf)
    } else {
        check_legacy(fmt, buf)
    };
    if let (PageVerdict::Valid(_), Some(expected)) = (v, expected_page_no) {
        let found = PageNo(be32(buf, FIL_PAGE_OFFSET).unwrap_or(u32::MAX));
        if found != expected {
            return PageVerdict::Corrupt(Corruption::PageNumber { expected, found });
        }
    }
    v
}

/// Whether `buf` is all zero. A written page stops at its first bytes; a
/// never-written one is scanned in 64-byte blocks, each OR-ed in one go
/// (vectorised), not a byte at a time.
fn is_zero(buf: &[u8]) -> bool {
    let blocks = buf.chunks_exact(64);
    let tail = blocks.remainder();
    blocks
        .into_iter()
        .all(|b| b.iter().fold(0u8, |a, &x| a | x) == 0)
        && tail.iter().all(|&b| b == 0)
}

/// Read a field known to be inside `buf` (callers checked the length).
fn rd32(buf: &[u8], off: usize) -> u32 {
    be32(buf, off).unwrap_or(0)
}

fn check_full_crc32(buf: &[u8]) -> PageVerdict {
    let size = buf.len();
    let ptype = be16(buf, FIL_PAGE_TYPE).unwrap_or(0);
    let (len, compressed) = if ptype & FCRC32_COMPRESSED_MARKER != 0 {
        let len = usize::from(ptype & !FCRC32_COMPRESSED_MARKER) << 8;
        if len >= size || len < FIL_PAGE_DATA + 4 {
            return PageVerdict::Corrupt(Corruption::CompressedSize { page_type: ptype });
        }
        (len, true)
    } else {
        (size, false)
    };
    let stored = rd32(buf, len - 4);
    let computed = crc32c::crc32c(&buf[..len - 4]);
    if stored != computed {
        return PageVerdict::Corrupt(Corruption::Checksum {
            algorithm: ChecksumAlgorithm::FullCrc32,
            stored,
            computed,
        });
    }
    if compressed {
        // `len` < size <= MAX_PAGE_SIZE, so it fits in u32.
        return PageVerdict::Valid(ValidAs::FullCrc32Compressed {
            len: u32::try_from(len).unwrap_or(u32::MAX),
        });
    }
    let key_version = rd32(buf, 0);
    if key_version == 0 {
        let header = rd32(buf, FIL_PAGE_LSN + 4);
        let trailer = rd32(buf, size - 8);
        if header != trailer {
            return PageVerdict::Corrupt(Corruption::LsnMismatch { header, trailer });
        }
    }
    PageVerdict::Valid(ValidAs::FullCrc32)
}

/// Legacy `crc32`: CRC-32C of [4,26) XOR CRC-32C of [38, size-8).
#[must_use]
pub fn legacy_crc32(page: &[u8]) -> u32 {
    let size = page.len();
    if size < FIL_PAGE_DATA + 8 {
        return 0;
    }
    crc32c::crc32c(&page[FIL_PAGE_OFFSET..FIL_PAGE_FILE_FLUSH_LSN])
        ^ crc32c::crc32c(&page[FIL_PAGE_DATA..size - 8])
}

fn fold_pair(n1: u32, n2: u32) -> u32 {
    // The server computes this in 64-bit `ulint` and keeps the low 32 bits;
    // shift, add and xor commute with truncation, so u32 arithmetic agrees.
    ((((n1 ^ n2 ^ 1_653_893_711) << 8).wrapping_add(n1)) ^ 1_463_735_687).wrapping_add(n2)
}

fn fold_binary(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |acc, &b| fold_pair(acc, u32::from(b)))
}

/// Legacy `innodb` "new" checksum (stored at offset 0): fold of [4,26) plus
/// fold of [38, size-8).
#[must_use]
pub fn legacy_innodb_new_checksum(page: &[u8]) -> u32 {
    let size = page.len();
    if size < FIL_PAGE_DATA + 8 {
        return 0;
    }
    fold_binary(&page[FIL_PAGE_OFFSET..FIL_PAGE_FILE_FLUSH_LSN])
        .wrapping_add(fold_binary(&page[FIL_PAGE_DATA..size - 8]))
}

/// Legacy `innodb` "old" checksum (stored at size-8): fold of [0,26).
#[must_use]
pub fn legacy_innodb_old_checksum(page: &[u8]) -> u32 {
    match page.get(..FIL_PAGE_FILE_FLUSH_LSN) {
        Some(p) => fold_binary(p),
        None => 0,
    }
}

fn check_legacy(fmt: &PageFormat, buf: &[u8]) -> PageVerdict {
    let size = buf.len();
    let ptype = be16(buf, FIL_PAGE_TYPE).unwrap_or(0);
    if fmt.is_page_compressed()
        && (ptype == FIL_PAGE_PAGE_COMPRESSED || ptype == FIL_PAGE_PAGE_COMPRESSED_ENCRYPTED)
    {
        return PageVerdict::Valid(ValidAs::LegacyPageCompressed);
    }
    let v = check_legacy_plain(buf, size);
    if v.is_ok() {
        return v;
    }
    if legacy_encrypted_ok(buf, false) {
        return PageVerdict::Valid(ValidAs::LegacyEncrypted);
    }
    v
}

fn check_legacy_plain(buf: &[u8], size: usize) -> PageVerdict {
    let header = rd32(buf, FIL_PAGE_LSN + 4);
    let trailer = rd32(buf, size - 4);
    if header != trailer {
        return PageVerdict::Corrupt(Corruption::LsnMismatch { header, trailer });
    }
    let f1 = rd32(buf, FIL_PAGE_SPACE_OR_CHKSUM);
    let f2 = rd32(buf, size - 8);
    if f1 == 0
        && f2 == 0
        && is_zero(&buf[..FIL_PAGE_FILE_FLUSH_LSN])
        && is_zero(&buf[FIL_PAGE_SPACE_ID..])
    {
        // All zero apart from the flush LSN field of old ibdata page 0s.
        return PageVerdict::AllZero;
    }
    if f1 == BUF_NO_CHECKSUM_MAGIC && f2 == BUF_NO_CHECKSUM_MAGIC {
        return PageVerdict::Valid(ValidAs::NoChecksum);
    }
    let crc = legacy_crc32(buf);
    let crc_both = f1 == crc && f2 == crc;
    if f2 != rd32(buf, FIL_PAGE_LSN) && f2 != BUF_NO_CHECKSUM_MAGIC && !crc_both {
        let old = legacy_innodb_old_checksum(buf);
        if f2 != old {
            return PageVerdict::Corrupt(Corruption::Checksum {
                algorithm: ChecksumAlgorithm::Crc32,
                stored: f2,
                computed: crc,
            });
        }
    }
    if f1 != 0 && f1 != BUF_NO_CHECKSUM_MAGIC && !crc_both {
        let new = legacy_innodb_new_checksum(buf);
        if f1 != new {
            return PageVerdict::Corrupt(Corruption::Checksum {
                algorithm: ChecksumAlgorithm::Crc32,
                stored: f1,
                computed: crc,
            });
        }
    }
    PageVerdict::Valid(if crc_both {
        ValidAs::Crc32
    } else {
        ValidAs::Innodb
    })
}

/// Legacy encryption keeps a checksum of the encrypted page at 30..34 when
/// the key version at 26..30 is non-zero.
fn legacy_encrypted_ok(buf: &[u8], zip: bool) -> bool {
    if rd32(buf, FIL_PAGE_FILE_FLUSH_LSN) == 0 || rd32(buf, FIL_PAGE_OFFSET) == 0 {
        return false;
    }
    if be16(buf, FIL_PAGE_TYPE) == Some(FIL_PAGE_PAGE_COMPRESSED_ENCRYPTED) {
        return true;
    }
    let stored = rd32(buf, FIL_PAGE_FILE_FLUSH_LSN + 4);
    if stored == BUF_NO_CHECKSUM_MAGIC {
        return true;
    }
    if zip {
        stored == zip_crc32(buf) || stored == zip_adler32(buf)
    } else {
        stored == legacy_crc32(buf) || stored == legacy_innodb_new_checksum(buf)
    }
}

/// ROW_FORMAT=COMPRESSED crc32 variant: CRC-32C of [4,16) XOR [24,26) XOR
/// [34, size).
#[must_use]
pub fn zip_crc32(page: &[u8]) -> u32 {
    if page.len() <= FIL_PAGE_SPACE_ID {
        return 0;
    }
    crc32c::crc32c(&page[FIL_PAGE_OFFSET..FIL_PAGE_LSN])
        ^ crc32c::crc32c(&page[FIL_PAGE_TYPE..FIL_PAGE_FILE_FLUSH_LSN])
        ^ crc32c::crc32c(&page[FIL_PAGE_SPACE_ID..])
}

fn adler32_update(adler: u32, data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (adler & 0xFFFF, adler >> 16);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// ROW_FORMAT=COMPRESSED `innodb` variant: zlib Adler-32 (seeded with 0)
/// chained over the same three ranges as [`zip_crc32`].
#[must_use]
pub fn zip_adler32(page: &[u8]) -> u32 {
    if page.len() <= FIL_PAGE_SPACE_ID {
        return 0;
    }
    let a = adler32_update(0, &page[FIL_PAGE_OFFSET..FIL_PAGE_LSN]);
    let a = adler32_update(a, &page[FIL_PAGE_TYPE..FIL_PAGE_FILE_FLUSH_LSN]);
    adler32_update(a, &page[FIL_PAGE_SPACE_ID..])
}

fn check_zip(buf: &[u8]) -> PageVerdict {
    let stored = rd32(buf, FIL_PAGE_SPACE_OR_CHKSUM);
    let crc = zip_crc32(buf);
    if stored == crc {
        return PageVerdict::Valid(ValidAs::ZipCrc32);
    }
    if stored == BUF_NO_CHECKSUM_MAGIC {
        return PageVerdict::Valid(ValidAs::ZipNoChecksum);
    }
    if stored == zip_adler32(buf) {
        return PageVerdict::Valid(ValidAs::ZipAdler32);
    }
    if legacy_encrypted_ok(buf, true) {
        return PageVerdict::Valid(ValidAs::LegacyEncrypted);
    }
    PageVerdict::Corrupt(Corruption::Checksum {
        algorithm: ChecksumAlgorithm::ZipCrc32,
        stored,
        computed: crc,
    })
}

/// Write a valid checksum into a page of format `fmt` (tests and fixtures:
/// hotbak never modifies data pages it backs up). For legacy formats the
/// `crc32` algorithm is used. The buffer must be one physical page.
///
/// # Errors
/// [`Error::InvalidArgument`] if the buffer has the wrong size.
pub fn stamp_checksum(fmt: &PageFormat, buf: &mut [u8]) -> Result<(), Error> {
    let size = fmt.physical_size() as usize;
    if buf.len() != size {
        return Err(Error::InvalidArgument(format!(
            "page buffer is {} bytes, expected {size}",
            buf.len()
        )));
    }
    if fmt.is_full_crc32() {
        let c = crc32c::crc32c(&buf[..size - 4]);
        buf[size - 4..].copy_from_slice(&c.to_be_bytes());
    } else if fmt.is_zip() {
        let c = zip_crc32(buf);
        buf[..4].copy_from_slice(&c.to_be_bytes());
    } else {
        let c = legacy_crc32(buf);
        buf[..4].copy_from_slice(&c.to_be_bytes());
        buf[size - 8..size - 4].copy_from_slice(&c.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/innodb/");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIX}{name}")).expect("fixture file present in the repo")
    }

    #[test]
    fn is_zero_sees_any_one_byte_set() {
        for len in [0, 1, 63, 64, 65, 127, 128, 200, 16384] {
            let mut b = vec![0u8; len];
            assert!(is_zero(&b), "len {len}");
            for at in 0..len {
                b[at] = 0x80;
                assert!(!is_zero(&b), "len {len}, byte {at}");
                b[at] = 0;
            }
        }
    }

    /// A synthetic valid page with some content.
    fn synth_page(fmt: &PageFormat, page_no: u32, seed: u8) -> Vec<u8> {
        let size = fmt.physical_size() as usize;
        let mut p = vec![0u8; size];
        p[4..8].copy_from_slice(&page_no.to_be_bytes());
        p[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        p[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        p[16..24].copy_from_slice(&0x0000_0001_0203_0405u64.to_be_bytes());
        p[24..26].copy_from_slice(&17855u16.to_be_bytes());
        p[34..38].copy_from_slice(&5u32.to_be_bytes());
        for (i, b) in p[38..size - 8].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        if fmt.is_full_crc32() {
            p.copy_within(20..24, size - 8);
        } else if !fmt.is_zip() {
            p.copy_within(20..24, size - 4);
        }
        stamp_checksum(fmt, &mut p).expect("right size");
        p
    }

    #[test]
    fn flags_decode() {
        let f = PageFormat::from_flags(0x15).expect("10.11 default");
        assert!(f.is_full_crc32());
        assert_eq!((f.logical_size(), f.physical_size()), (16384, 16384));
        assert!(!f.is_page_compressed());
        let f = PageFormat::from_flags(0x35).expect("page_compressed zlib");
        assert_eq!(f.compression_algorithm(), Some(CompressionAlgorithm::Zlib));
        let f = PageFormat::from_flags(0x21).expect("legacy dynamic");
        assert!(!f.is_full_crc32());
        assert_eq!(f.physical_size(), 16384);
        let f = PageFormat::from_flags(0x27).expect("zip 4k");
        assert!(f.is_zip());
        assert_eq!((f.logical_size(), f.physical_size()), (16384, 4096));
        assert_eq!(
            PageFormat::from_flags(0).expect("redundant").logical_size(),
            16384
        );
        assert_eq!(
            PageFormat::from_flags(0x13)
                .expect("4k fcrc32")
                .logical_size(),
            4096
        );
        assert_eq!(
            PageFormat::from_flags(0x14)
                .expect("8k fcrc32")
                .logical_size(),
            8192
        );
        let z16 = PageFormat::from_flags(0x2B).expect("KEY_BLOCK_SIZE=16");
        assert!(z16.is_zip());
        assert_eq!(z16.physical_size(), 16384);
        assert_eq!(
            PageFormat::from_flags(0x17).expect("64k").logical_size(),
            65536
        );
        // 4K legacy: ssize 3 at bits 6..9.
        assert_eq!(
            PageFormat::from_flags(3 << 6).expect("4k").logical_size(),
            4096
        );
        for bad in [
            0x12u32,
            0x18,
            0x1D,
            0xF5,
            0x20,
            0x40 * 5,
            1 << 17,
            1 << 11,
            0x2D,
            0x03,
        ] {
            let e = PageFormat::from_flags(bad).expect_err("invalid flags");
            assert!(e.to_string().contains(&format!("0x{bad:x}")), "{e}");
        }
    }

    #[test]
    fn extents_and_doublewrite() {
        assert_eq!(doublewrite_range(16384), 64..192);
        assert_eq!(doublewrite_range(4096), 256..768);
        assert_eq!(doublewrite_range(8192), 128..384);
        assert_eq!(doublewrite_range(32768), 64..192);
        assert_eq!(doublewrite_range(65536), 64..192);
    }

    #[test]
    fn real_full_crc32_pages() {
        let d = fixture("full_crc32_p0_p3.pages");
        let info = parse_page0(&d).expect("page 0 parses");
        assert_eq!(info.format.flags(), 0x15);
        assert_eq!(info.space_id, SpaceId(5));
        assert_eq!(info.size_pages, 4);
        let p3 = &d[16384..];
        assert_eq!(
            check_page(&info.format, Some(PageNo(3)), p3),
            PageVerdict::Valid(ValidAs::FullCrc32)
        );
        // Position check.
        assert_eq!(
            check_page(&info.format, Some(PageNo(4)), p3),
            PageVerdict::Corrupt(Corruption::PageNumber {
                expected: PageNo(4),
                found: PageNo(3)
            })
        );
        assert!(check_page(&info.format, None, p3).is_ok());
        // Torn page: second half zeroed.
        let mut torn = p3.to_vec();
        torn[8192..].fill(0);
        match check_page(&info.format, Some(PageNo(3)), &torn) {
            PageVerdict::Corrupt(Corruption::Checksum {
                algorithm: ChecksumAlgorithm::FullCrc32,
                stored: 0,
                computed,
            }) => assert_eq!(computed, crc32c::crc32c(&torn[..16380])),
            v => panic!("unexpected {v:?}"),
        }
        let ib = fixture("ibdata1_p0.page");
        let info = parse_page0(&ib).expect("ibdata1 page 0");
        assert_eq!(info.space_id, SpaceId::SYSTEM);
        assert!(info.format.is_full_crc32());
    }

    #[test]
    fn real_legacy_crc32_pages() {
        let d = fixture("crc32_p0_p3.pages");
        let info = parse_page0(&d).expect("page 0 parses");
        assert_eq!(info.format.flags(), 0x21);
        assert!(!info.format.is_full_crc32());
        assert_eq!(
            check_page(&info.format, Some(PageNo(3)), &d[16384..]),
            PageVerdict::Valid(ValidAs::Crc32)
        );
        let mut bad = d[16384..].to_vec();
        bad[100] ^= 1;
        let v = check_page(&info.format, Some(PageNo(3)), &bad);
        match v {
            PageVerdict::Corrupt(Corruption::Checksum {
                stored, computed, ..
            }) => {
                assert_eq!(stored, u32::from_be_bytes([bad[0], bad[1], bad[2], bad[3]]));
                assert_eq!(computed, legacy_crc32(&bad));
                let msg = Corruption::Checksum {
                    algorithm: ChecksumAlgorithm::Crc32,
                    stored,
                    computed,
                }
                .to_string();
                assert!(msg.contains(&format!("stored 0x{stored:08x}")), "{msg}");
            }
            v => panic!("unexpected {v:?}"),
        }
    }

    #[test]
    fn real_zip_pages() {
        let d = fixture("zip4k_p0_p3.pages");
        let info = parse_page0(&d).expect("page 0 parses");
        assert!(info.format.is_zip());
        assert_eq!(info.format.physical_size(), 4096);
        assert_eq!(
            check_page(&info.format, Some(PageNo(3)), &d[4096..]),
            PageVerdict::Valid(ValidAs::ZipCrc32)
        );
        let mut bad = d[4096..].to_vec();
        bad[2000] ^= 0x40;
        assert!(!check_page(&info.format, Some(PageNo(3)), &bad).is_ok());
        // Adler variant accepted.
        let mut adler = d[4096..].to_vec();
        let a = zip_adler32(&adler);
        adler[..4].copy_from_slice(&a.to_be_bytes());
        assert_eq!(
            check_page(&info.format, Some(PageNo(3)), &adler),
            PageVerdict::Valid(ValidAs::ZipAdler32)
        );
    }

    #[test]
    fn real_page_compressed_pages() {
        let d = fixture("page_compressed_p0_p3.pages");
        let info = parse_page0(&d).expect("page 0 parses");
        assert!(info.format.is_page_compressed());
        let p3 = &d[16384..];
        match check_page(&info.format, Some(PageNo(3)), p3) {
            PageVerdict::Valid(ValidAs::FullCrc32Compressed { len }) => {
                assert_eq!(len % 256, 0);
                assert!(len < 16384);
            }
            v => panic!("unexpected {v:?}"),
        }
        // Garbage after the compressed length is not covered.
        let mut tail = p3.to_vec();
        tail[16000] ^= 0xFF;
        assert!(check_page(&info.format, Some(PageNo(3)), &tail).is_ok());
        let mut bad = p3.to_vec();
        bad[200] ^= 0xFF;
        assert!(!check_page(&info.format, Some(PageNo(3)), &bad).is_ok());
    }

    #[test]
    fn none_magic_and_innodb_legacy() {
        let fmt = PageFormat::from_flags(0x21).expect("valid");
        let mut p = synth_page(&fmt, 9, 1);
        p[..4].copy_from_slice(&BUF_NO_CHECKSUM_MAGIC.to_be_bytes());
        let n = p.len();
        p[n - 8..n - 4].copy_from_slice(&BUF_NO_CHECKSUM_MAGIC.to_be_bytes());
        assert_eq!(
            check_page(&fmt, Some(PageNo(9)), &p),
            PageVerdict::Valid(ValidAs::NoChecksum)
        );
        let new = legacy_innodb_new_checksum(&p);
        p[..4].copy_from_slice(&new.to_be_bytes());
        let old = legacy_innodb_old_checksum(&p);
        p[n - 8..n - 4].copy_from_slice(&old.to_be_bytes());
        assert_eq!(
            check_page(&fmt, Some(PageNo(9)), &p),
            PageVerdict::Valid(ValidAs::Innodb)
        );
        p[1000] ^= 4;
        assert!(!check_page(&fmt, Some(PageNo(9)), &p).is_ok());
    }

    #[test]
    fn fold_reference_values() {
        // Computed with the server's 64-bit formula by hand-checked
        // arithmetic: fold of a single zero byte from 0.
        let expect = {
            let n1: u64 = 0;
            let n2: u64 = 0;
            (((((n1 ^ n2 ^ 1_653_893_711) << 8) + n1) ^ 1_463_735_687) + n2) as u32
        };
        assert_eq!(fold_binary(&[0]), expect);
        // 64-bit vs 32-bit agreement on a longer input.
        let data: Vec<u8> = (0..=255u8).collect();
        let mut f64v: u64 = 0;
        for &b in &data {
            let n2 = u64::from(b);
            f64v = ((((f64v ^ n2 ^ 1_653_893_711) << 8).wrapping_add(f64v)) ^ 1_463_735_687)
                .wrapping_add(n2);
        }
        assert_eq!(fold_binary(&data), f64v as u32);
    }

    #[test]
    fn adler_matches_zlib_reference() {
        // adler32 of "Wikipedia" with the standard seed 1 is 0x11E60398.
        assert_eq!(adler32_update(1, b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn zero_and_size() {
        let fmt = PageFormat::from_flags(0x15).expect("valid");
        assert_eq!(
            check_page(&fmt, Some(PageNo(7)), &[0u8; 16384]),
            PageVerdict::AllZero
        );
        assert!(matches!(
            check_page(&fmt, None, &[0u8; 100]),
            PageVerdict::Corrupt(Corruption::WrongSize { .. })
        ));
        assert!(matches!(
            parse_page0(&[0u8; 10]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(parse_page0(&[0u8; 16384]), Err(Error::Page0(_))));
    }

    #[test]
    fn fcrc32_compressed_length_bounds() {
        let fmt = PageFormat::from_flags(0x35).expect("valid");
        let mut p = synth_page(&fmt, 3, 0);
        p[24..26].copy_from_slice(&0x8000u16.to_be_bytes()); // length 0
        assert!(matches!(
            check_page(&fmt, None, &p),
            PageVerdict::Corrupt(Corruption::CompressedSize { .. })
        ));
        p[24..26].copy_from_slice(&0x80FFu16.to_be_bytes()); // 65280 >= 16384
        assert!(matches!(
            check_page(&fmt, None, &p),
            PageVerdict::Corrupt(Corruption::CompressedSize { .. })
        ));
    }

    fn formats() -> impl Strategy<Value = PageFormat> {
        prop::sample::select(vec![0x15u32, 0x13, 0x21, 0x27, 0x25, 0x35, 3 << 6 | 0x21])
            .prop_map(|f| PageFormat::from_flags(f).expect("listed flags are valid"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_buffers_never_panic(flags in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..20000)) {
            let _ = parse_page0(&data);
            if let Ok(fmt) = PageFormat::from_flags(flags) {
                let n = (fmt.physical_size() as usize).min(data.len());
                let _ = check_page(&fmt, Some(PageNo(1)), &data[..n]);
                let _ = check_page(&fmt, None, &data);
            }
        }

        #[test]
        fn single_flip_in_checksummed_range_fails(fmt in formats(), seed in any::<u8>(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let p = synth_page(&fmt, 3, seed);
            prop_assert!(check_page(&fmt, Some(PageNo(3)), &p).is_ok());
            let size = p.len();
            // Checksummed ranges: full_crc32 [0,size); legacy [4,26)+[38,size-8)
            // plus the stored fields; zip [0,16)+[24,26)+[34,size).
            let candidates: Vec<usize> = (0..size)
                .filter(|&i| {
                    if fmt.is_full_crc32() { true }
                    else if fmt.is_zip() { i < 16 || (24..26).contains(&i) || i >= 34 }
                    else { !(26..38).contains(&i) }
                })
                .collect();
            let i = candidates[pos.index(candidates.len())];
            let mut q = p.clone();
            q[i] ^= 1 << bit;
            prop_assert!(!check_page(&fmt, Some(PageNo(3)), &q).is_ok(), "flip at {} not detected", i);
        }
    }
}

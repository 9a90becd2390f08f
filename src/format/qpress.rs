//! qpress container decoding (`.qp` files written by `mariabackup --compress`).
//!
//! Layout (all integers little-endian; see `format-spec/compression.md`):
//!
//! ```text
//! "qpress10" <8>  chunk_size <u64>                      archive header
//! 'F' <1>  name_len <u32>  name <name_len>  NUL <1>     one file entry (basename)
//! { "NEWBNEWB" <8>  uoffset <u64>  adler32 <u32>  qlz_block }*
//! "ENDSENDS" <8>  value <u64>                           trailer
//! ```
//!
//! `uoffset` is the block's offset in the decompressed file; `adler32` is the
//! zlib Adler-32 of the whole QuickLZ block (header included). A QuickLZ
//! block is self-delimiting: byte 0 holds flags (bit 0 compressed, bit 1
//! long header); a long header is 9 bytes (flags, u32 total size including
//! the header, u32 decompressed size), a short one 3 bytes (u8, u8).
//!
//! This module is a pure push parser: it checks the structure, the limits
//! (before buffering anything) and the Adler-32, and hands out each complete
//! QuickLZ block; decompressing it is the job of `compress::qp`.

use crate::error::{Classify, ErrorClass};

/// Archive magic.
pub const MAGIC: &[u8; 8] = b"qpress10";
/// Block marker.
pub const BLOCK_MAGIC: &[u8; 8] = b"NEWBNEWB";
/// Trailer marker.
pub const END_MAGIC: &[u8; 8] = b"ENDSENDS";
/// Largest chunk size (decompressed bytes per block) accepted: 16 MiB.
/// mariabackup writes 64 KiB (`--compress-chunk-size`).
pub const MAX_CHUNK_SIZE: u64 = 16 << 20;
/// Longest file name accepted in the `F` entry.
pub const MAX_NAME_LEN: usize = 4096;
/// QuickLZ 1.5 worst-case expansion (bytes) over the input, header included.
pub const QLZ_OVERHEAD: u64 = 400 + 9;

/// Why a qpress stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Structural or checksum failure at `offset` (within the `.qp` file).
    #[error("qpress: corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Byte offset within the stored file.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// The stream ended before the trailer.
    #[error("qpress: truncated: {0}")]
    Truncated(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Corrupt { .. } => ErrorClass::Corrupt,
            Error::Truncated(_) => ErrorClass::Truncated,
        }
    }
}

/// One complete, Adler-checked QuickLZ block.
#[derive(Debug)]
pub struct Block<'a> {
    /// Offset of this block's data in the decompressed file (as stored).
    pub uoffset: u64,
    /// Decompressed size declared by the QuickLZ header (≤ the chunk size).
    pub decompressed_len: u32,
    /// Byte offset of the block marker within the stored file.
    pub at: u64,
    /// The whole QuickLZ block, header included.
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    FileTag,
    NameLen,
    Name(usize),
    Marker,
    BlockHead,
    QlzFlags,
    QlzHeader(usize),
    QlzBody(usize),
    Trailer,
    Done,
}

/// Push parser of one qpress archive holding one file.
#[derive(Debug)]
pub struct Parser {
    state: State,
    buf: Vec<u8>,
    /// Stored bytes consumed.
    offset: u64,
    chunk_size: u64,
    name: Vec<u8>,
    uoffset: u64,
    adler: u32,
    dec_len: u32,
    block_at: u64,
    /// A block was handed out; its bytes are still in `buf`.
    handed_out: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

/// zlib Adler-32 (initial value 1).
#[must_use]
pub fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the largest n with 255n(n+1)/2 + (n+1)(MOD-1) < 2^32.
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

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

impl Parser {
    /// A parser at the start of a `.qp` file.
    #[must_use]
    pub fn new() -> Self {
        Parser {
            state: State::Header,
            buf: Vec::new(),
            offset: 0,
            chunk_size: 0,
            name: Vec::new(),
            uoffset: 0,
            adler: 0,
            dec_len: 0,
            block_at: 0,
            handed_out: false,
        }
    }

    /// The chunk size from the archive header (0 before it was read).
    #[must_use]
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The file name from the `F` entry (basename, as stored).
    #[must_use]
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Stored bytes consumed so far.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn corrupt<T>(&self, offset: u64, reason: impl Into<String>) -> Result<T, Error> {
        Err(Error::Corrupt {
            offset,
            reason: reason.into(),
        })
    }

    /// Copy from `input[*pos..]` into `buf` until it holds `need` bytes.
    fn fill(&mut self, input: &[u8], pos: &mut usize, need: usize) -> bool {
        if self.buf.len() < need {
            let n = (need - self.buf.len()).min(input.len() - *pos);
            self.buf.extend_from_slice(&input[*pos..*pos + n]);
            *pos += n;
            self.offset += n as u64;
        }
        self.buf.len() >= need
    }

    /// Consume bytes from `input[*pos..]` until the next complete block (then
    /// `Some`, with `*pos` just past it) or the end of `input` (`None`).
    ///
    /// # Errors
    /// [`Error::Corrupt`] on a bad magic, marker, size, name or Adler-32, or
    /// on bytes after the trailer.
    pub fn feed<'a>(
        &'a mut self,
        input: &[u8],
        pos: &mut usize,
    ) -> Result<Option<Block<'a>>, Error> {
        if self.handed_out {
            self.handed_out = false;
            self.buf.clear();
        }
        loop {
            let here = self.offset;
            match self.state {
                State::Done => {
                    if *pos < input.len() {
                        return self.corrupt(here, "data after the ENDSENDS trailer");
                    }
                    return Ok(None);
                }
                _ if *pos == input.len() => return Ok(None),
                State::Header => {
                    if !self.fill(input, pos, 16) {
                        continue;
                    }
                    if &self.buf[..8] != MAGIC {
                        return self.corrupt(0, "not a qpress archive (magic is not \"qpress10\")");
                    }
                    let cs = le_u64(&self.buf[8..]);
                    if cs == 0 || cs > MAX_CHUNK_SIZE {
                        return self
                            .corrupt(8, format!("chunk size {cs} outside 1..={MAX_CHUNK_SIZE}"));
                    }
                    self.chunk_size = cs;
                    self.buf.clear();
                    self.state = State::FileTag;
                }
                State::FileTag => {
                    if !self.fill(input, pos, 1) {
                        continue;
                    }
                    let t = self.buf[0];
                    self.buf.clear();
                    if t != b'F' {
                        return self.corrupt(
                            here,
                            format!("expected a file entry 'F', found {t:#04x} (directories and multi-file archives are not supported)"),
                        );
                    }
                    self.state = State::NameLen;
                }
                State::NameLen => {
                    if !self.fill(input, pos, 4) {
                        continue;
                    }
                    let n = le_u32(&self.buf) as usize;
                    self.buf.clear();
                    if n == 0 || n > MAX_NAME_LEN {
                        return self.corrupt(
                            self.offset - 4,
                            format!("file name length {n} outside 1..={MAX_NAME_LEN}"),
                        );
                    }
                    self.state = State::Name(n);
                }
                State::Name(n) => {
                    if !self.fill(input, pos, n + 1) {
                        continue;
                    }
                    if self.buf[n] != 0 || self.buf[..n].contains(&0) {
                        return self.corrupt(
                            self.offset - n as u64 - 1,
                            "file name is not NUL-terminated",
                        );
                    }
                    self.name = self.buf[..n].to_vec();
                    self.buf.clear();
                    self.state = State::Marker;
                }
                State::Marker => {
                    if self.buf.is_empty() {
                        self.block_at = here;
                    }
                    if !self.fill(input, pos, 8) {
                        continue;
                    }
                    let at = self.block_at;
                    if &self.buf[..] == BLOCK_MAGIC {
                        self.state = State::BlockHead;
                    } else if &self.buf[..] == END_MAGIC {
                        self.state = State::Trailer;
                    } else {
                        return self.corrupt(at, "expected NEWBNEWB or ENDSENDS");
                    }
                    self.buf.clear();
                }
                State::BlockHead => {
                    if !self.fill(input, pos, 12) {
                        continue;
                    }
                    self.uoffset = le_u64(&self.buf);
                    self.adler = le_u32(&self.buf[8..]);
                    self.buf.clear();
                    self.state = State::QlzFlags;
                }
                State::QlzFlags => {
                    if !self.fill(input, pos, 1) {
                        continue;
                    }
                    let hl = if self.buf[0] & 2 != 0 { 9 } else { 3 };
                    self.state = State::QlzHeader(hl);
                }
                State::QlzHeader(hl) => {
                    if !self.fill(input, pos, hl) {
                        continue;
                    }
                    let (total, dec) = if hl == 9 {
                        (
                            u64::from(le_u32(&self.buf[1..])),
                            u64::from(le_u32(&self.buf[5..])),
                        )
                    } else {
                        (u64::from(self.buf[1]), u64::from(self.buf[2]))
                    };
                    let at = self.block_at;
                    if total < hl as u64 {
                        return self.corrupt(
                            at,
                            format!("QuickLZ block size {total} smaller than its header"),
                        );
                    }
                    if dec > self.chunk_size {
                        return self.corrupt(
                            at,
                            format!(
                                "block decompresses to {dec} bytes, more than the chunk size {}",
                                self.chunk_size
                            ),
                        );
                    }
                    if total > dec + QLZ_OVERHEAD {
                        return self.corrupt(
                            at,
                            format!("QuickLZ block of {total} bytes for {dec} bytes of data"),
                        );
                    }
                    // Both bounded by MAX_CHUNK_SIZE + QLZ_OVERHEAD: fits usize and u32.
                    self.dec_len = dec as u32;
                    self.buf.reserve_exact(total as usize - self.buf.len());
                    self.state = State::QlzBody(total as usize);
                }
                State::QlzBody(total) => {
                    if !self.fill(input, pos, total) {
                        continue;
                    }
                    let at = self.block_at;
                    let got = adler32(&self.buf);
                    if got != self.adler {
                        return self.corrupt(
                            at,
                            format!(
                                "Adler-32 mismatch: stored {:#010x}, computed {got:#010x}",
                                self.adler
                            ),
                        );
                    }
                    self.state = State::Marker;
                    self.handed_out = true;
                    return Ok(Some(Block {
                        uoffset: self.uoffset,
                        decompressed_len: self.dec_len,
                        at,
                        data: &self.buf,
                    }));
                }
                State::Trailer => {
                    if !self.fill(input, pos, 8) {
                        continue;
                    }
                    // The trailer's u64 is 0 in every observed file; not checked.
                    self.buf.clear();
                    self.state = State::Done;
                }
            }
        }
    }

    /// The stored file ended.
    ///
    /// # Errors
    /// [`Error::Truncated`] unless the trailer was read.
    pub fn finish(&self) -> Result<(), Error> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(Error::Truncated(format!(
                "no ENDSENDS trailer ({} bytes stored, state {:?})",
                self.offset, self.state
            )))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn adler_known_answer() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let big = vec![0xffu8; 100_000];
        // Reference value computed with zlib.adler32.
        assert_eq!(adler32(&big), 0x149A_302C);
    }

    fn archive(blocks: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&65536u64.to_le_bytes());
        v.push(b'F');
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(b"a.b\0");
        for (off, b) in blocks {
            v.extend_from_slice(BLOCK_MAGIC);
            v.extend_from_slice(&off.to_le_bytes());
            v.extend_from_slice(&adler32(b).to_le_bytes());
            v.extend_from_slice(b);
        }
        v.extend_from_slice(END_MAGIC);
        v.extend_from_slice(&0u64.to_le_bytes());
        v
    }

    #[test]
    fn parses_byte_by_byte() {
        let blk = quicklz::compress(b"hello hello hello hello", quicklz::CompressionLevel::Lvl1);
        let a = archive(&[(0, blk.clone())]);
        let mut p = Parser::new();
        let mut found = Vec::new();
        for i in 0..a.len() {
            let mut pos = 0;
            let piece = &a[i..=i];
            while pos < piece.len() {
                if let Some(b) = p.feed(piece, &mut pos).unwrap() {
                    found.push(b.data.to_vec());
                }
            }
        }
        p.finish().unwrap();
        assert_eq!(found, vec![blk]);
        assert_eq!(p.name(), b"a.b");
        // Trailing data is refused; truncation is reported.
        let mut pos = 0;
        assert!(p.feed(b"x", &mut pos).is_err());
        let mut q = Parser::new();
        let mut pos = 0;
        q.feed(&a[..a.len() - 1], &mut pos).unwrap();
        assert!(matches!(q.finish(), Err(Error::Truncated(_))));
    }

    #[test]
    fn refuses_oversized_blocks_before_buffering() {
        let mut blk = vec![0x47u8];
        blk.extend_from_slice(&u32::MAX.to_le_bytes());
        blk.extend_from_slice(&1000u32.to_le_bytes());
        let a = archive(&[(0, blk)]);
        let mut p = Parser::new();
        let mut pos = 0;
        assert!(matches!(p.feed(&a, &mut pos), Err(Error::Corrupt { .. })));
    }
}

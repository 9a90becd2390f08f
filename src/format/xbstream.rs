//! xbstream container codec (`XBSTCK01`), pure: no I/O.
//!
//! Layout (little-endian, see `format-spec/xbstream.md`):
//!
//! ```text
//! magic "XBSTCK01" (8) | flags (1) | type (1) | path_len u32 (4) | path (path_len)
//!   'P': payload_len u64 | payload_offset u64 | crc32 u32 (of payload) | payload
//!   'E': nothing
//!   'D': nothing                      (MariaDB remove)
//!   'R': new_len u32 | new_path       (MariaDB rename)
//!   'S': refused (Percona sparse and MariaDB seek share the byte, with different layouts)
//!   unknown + IGNORABLE flag: parsed like 'P', CRC checked, payload skipped
//! ```
//!
//! Every length is checked against [`MAX_PATH_LEN`] / [`MAX_PAYLOAD_LEN`]
//! before anything is allocated. Errors carry the stream offset of the
//! field at fault and the path when it is known. Input that ends inside a
//! chunk is [`Error::Truncated`]; a bad magic, CRC or field is
//! [`Error::Corrupt`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Classify, ErrorClass};

/// Chunk magic.
pub const MAGIC: &[u8; 8] = b"XBSTCK01";
/// Flag bit: a reader that does not know the type may skip the chunk.
pub const FLAG_IGNORABLE: u8 = 0x01;
/// Flag bit used by MariaDB 10.11 for "rewrite" files (truncate an existing file).
pub const FLAG_REWRITE: u8 = 0x02;
/// Longest path accepted (the stock readers refuse 512 and more).
pub const MAX_PATH_LEN: usize = 511;
/// Largest payload accepted in one chunk. mariabackup writes at most 10 MiB
/// per chunk for 16 KiB pages (640 pages), 40 MiB for 64 KiB pages.
pub const MAX_PAYLOAD_LEN: u64 = 64 << 20;
/// Payload size hotbak's writers aim for (the stock writers' buffer size).
pub const DEFAULT_CHUNK_LEN: usize = 10 << 20;
/// Fixed prefix: magic, flags, type, path_len.
pub const PREFIX_LEN: usize = 14;
/// Bytes after the path in a `P` chunk header: len, offset, crc.
pub const PAYLOAD_FIELDS_LEN: usize = 20;

/// Chunk types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkType {
    /// `P`: file data.
    Payload,
    /// `E`: end of file.
    Eof,
    /// `D`: MariaDB remove.
    Remove,
    /// `R`: MariaDB rename.
    Rename,
    /// `S`: Percona sparse / MariaDB seek (refused).
    Sparse,
    /// Anything else.
    Unknown(u8),
}

impl ChunkType {
    /// From the type byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Self {
        match b {
            b'P' => ChunkType::Payload,
            b'E' => ChunkType::Eof,
            b'D' => ChunkType::Remove,
            b'R' => ChunkType::Rename,
            b'S' => ChunkType::Sparse,
            other => ChunkType::Unknown(other),
        }
    }

    /// The type byte.
    #[must_use]
    pub fn byte(self) -> u8 {
        match self {
            ChunkType::Payload => b'P',
            ChunkType::Eof => b'E',
            ChunkType::Remove => b'D',
            ChunkType::Rename => b'R',
            ChunkType::Sparse => b'S',
            ChunkType::Unknown(b) => b,
        }
    }
}

/// Errors of the codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A structural or checksum failure.
    #[error("corrupt stream at offset {offset}{}: {reason}", path_suffix(path.as_deref()))]
    Corrupt {
        /// Stream offset of the field at fault.
        offset: u64,
        /// Path of the chunk, when known.
        path: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The input ended inside a chunk.
    #[error("truncated stream: input ended at offset {offset} inside a chunk that started at offset {chunk_offset}{}", path_suffix(path.as_deref()))]
    Truncated {
        /// Where the input ended.
        offset: u64,
        /// Where the unfinished chunk started.
        chunk_offset: u64,
        /// Path of the chunk, when known.
        path: Option<String>,
    },
    /// A chunk type hotbak does not accept.
    #[error("unsupported chunk type {ty:?} ('{}') at offset {offset} (path {path:?}): {reason}", char::from(*ty))]
    Unsupported {
        /// The type byte.
        ty: u8,
        /// Stream offset of the chunk.
        offset: u64,
        /// Path of the chunk.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

fn path_suffix(p: Option<&str>) -> String {
    p.map(|p| format!(" (path {p:?})")).unwrap_or_default()
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Truncated { .. } => ErrorClass::Truncated,
            _ => ErrorClass::Corrupt,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// One decoded chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Stream offset of the chunk's magic.
    pub stream_offset: u64,
    /// Flags byte.
    pub flags: u8,
    /// Type.
    pub ty: ChunkType,
    /// Raw path bytes (not yet validated as a `RelPath`).
    pub path: Bytes,
    /// For `P` and ignorable unknown types: the file offset.
    pub file_offset: u64,
    /// For `P`: the payload (CRC already verified). Empty for ignored types.
    pub payload: Bytes,
    /// For `R`: the new path (raw).
    pub new_path: Bytes,
}

impl Chunk {
    /// The path as lossy text, for messages.
    #[must_use]
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    /// Total encoded length of a `P` chunk with this path and payload length.
    #[must_use]
    pub fn payload_chunk_len(path_len: usize, payload_len: usize) -> usize {
        PREFIX_LEN + path_len + PAYLOAD_FIELDS_LEN + payload_len
    }
}

/// Append the header of a `P` chunk (everything but the payload) to `out`.
///
/// # Panics
/// If `path` is longer than [`MAX_PATH_LEN`]: callers pass validated paths.
pub fn put_payload_header(out: &mut impl BufMut, path: &[u8], file_offset: u64, payload: &[u8]) {
    assert!(path.len() <= MAX_PATH_LEN, "caller passes validated paths");
    out.put_slice(MAGIC);
    out.put_u8(0);
    out.put_u8(b'P');
    out.put_u32_le(u32::try_from(path.len()).expect("checked above"));
    out.put_slice(path);
    out.put_u64_le(payload.len() as u64);
    out.put_u64_le(file_offset);
    out.put_u32_le(crc32fast::hash(payload));
}

/// Append a whole `P` chunk to `out`.
pub fn put_payload(out: &mut impl BufMut, path: &[u8], file_offset: u64, payload: &[u8]) {
    put_payload_header(out, path, file_offset, payload);
    out.put_slice(payload);
}

/// Append an `E` chunk to `out`.
///
/// # Panics
/// If `path` is longer than [`MAX_PATH_LEN`].
pub fn put_eof(out: &mut impl BufMut, path: &[u8]) {
    put_simple(out, b'E', path);
}

fn put_simple(out: &mut impl BufMut, ty: u8, path: &[u8]) {
    assert!(path.len() <= MAX_PATH_LEN, "caller passes validated paths");
    out.put_slice(MAGIC);
    out.put_u8(0);
    out.put_u8(ty);
    out.put_u32_le(u32::try_from(path.len()).expect("checked above"));
    out.put_slice(path);
}

/// Append a MariaDB `D` (remove) chunk. hotbak never writes it; tests do.
pub fn put_remove(out: &mut impl BufMut, path: &[u8]) {
    put_simple(out, b'D', path);
}

/// Append a MariaDB `R` (rename) chunk. hotbak never writes it; tests do.
///
/// # Panics
/// If either path is longer than [`MAX_PATH_LEN`].
pub fn put_rename(out: &mut impl BufMut, path: &[u8], new_path: &[u8]) {
    put_simple(out, b'R', path);
    assert!(
        new_path.len() <= MAX_PATH_LEN,
        "caller passes validated paths"
    );
    out.put_u32_le(u32::try_from(new_path.len()).expect("checked above"));
    out.put_slice(new_path);
}

/// Streaming decoder: feed it bytes, get chunks. A `Head → Body` state
/// machine in the style of tokio-util's `LengthDelimitedCodec`.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Stream offset of the first byte of the buffer passed to `decode`.
    consumed: u64,
}

impl Decoder {
    /// A decoder at stream offset 0.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stream offset of the next undecoded byte.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Decode one chunk from the front of `buf`. Returns `Ok(None)` when
    /// more bytes are needed (reserving room for the rest of the chunk once
    /// its length is known and checked).
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::Unsupported`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>> {
        let start = self.consumed;
        let Some(head) = parse_head(buf, start)? else {
            return Ok(None);
        };
        let total = head.total_len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut chunk_bytes = buf.split_to(total).freeze();
        self.consumed += total as u64;
        chunk_bytes.advance(PREFIX_LEN);
        let path = chunk_bytes.split_to(head.path_len);
        let mut chunk = Chunk {
            stream_offset: start,
            flags: head.flags,
            ty: head.ty,
            path,
            file_offset: 0,
            payload: Bytes::new(),
            new_path: Bytes::new(),
        };
        match head.body {
            Body::None => {}
            Body::Rename { new_len } => {
                chunk_bytes.advance(4);
                chunk.new_path = chunk_bytes.split_to(new_len);
            }
            Body::Payload {
                len,
                file_offset,
                crc,
                keep,
            } => {
                chunk_bytes.advance(PAYLOAD_FIELDS_LEN);
                let payload = chunk_bytes.split_to(len);
                let got = crc32fast::hash(&payload);
                if got != crc {
                    return Err(Error::Corrupt {
                        offset: start + (PREFIX_LEN + head.path_len + 16) as u64,
                        path: Some(chunk.path_lossy()),
                        reason: format!(
                            "payload CRC-32 mismatch: stored 0x{crc:08x}, computed 0x{got:08x}"
                        ),
                    });
                }
                chunk.file_offset = file_offset;
                if keep {
                    chunk.payload = payload;
                }
            }
        }
        Ok(Some(chunk))
    }

    /// Call at end of input: leftover bytes mean the stream was cut inside a chunk.
    ///
    /// # Errors
    /// [`Error::Truncated`] if `buf` is not empty.
    pub fn decode_eof(&mut self, buf: &BytesMut) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = if buf.len() >= PREFIX_LEN {
            let n = u32::from_le_bytes([buf[10], buf[11], buf[12], buf[13]]) as usize;
            let avail = &buf[PREFIX_LEN..buf.len().min(PREFIX_LEN + n.min(MAX_PATH_LEN))];
            Some(String::from_utf8_lossy(avail).into_owned())
        } else {
            None
        };
        Err(Error::Truncated {
            offset: self.consumed + buf.len() as u64,
            chunk_offset: self.consumed,
            path,
        })
    }
}

enum Body {
    None,
    Rename {
        new_len: usize,
    },
    Payload {
        len: usize,
        file_offset: u64,
        crc: u32,
        keep: bool,
    },
}

struct Head {
    flags: u8,
    ty: ChunkType,
    path_len: usize,
    total_len: usize,
    body: Body,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parse the header at the front of `b`, if enough bytes are there.
fn parse_head(b: &[u8], start: u64) -> Result<Option<Head>> {
    // Check the magic as far as we have it, so garbage fails fast.
    let m = b.len().min(8);
    if b[..m] != MAGIC[..m] {
        return Err(Error::Corrupt {
            offset: start,
            path: None,
            reason: format!("bad chunk magic {:02x?} (expected \"XBSTCK01\")", &b[..m]),
        });
    }
    if b.len() < PREFIX_LEN {
        return Ok(None);
    }
    let flags = b[8];
    let ty = ChunkType::from_byte(b[9]);
    let path_len = le_u32(b, 10) as usize;
    if path_len > MAX_PATH_LEN {
        return Err(Error::Corrupt {
            offset: start + 10,
            path: None,
            reason: format!("path length {path_len} exceeds the limit of {MAX_PATH_LEN}"),
        });
    }
    let after_path = PREFIX_LEN + path_len;
    if b.len() < after_path {
        return Ok(None);
    }
    let path_lossy = || String::from_utf8_lossy(&b[PREFIX_LEN..after_path]).into_owned();
    let payload_like = |keep: bool| -> Result<Option<Head>> {
        if b.len() < after_path + PAYLOAD_FIELDS_LEN {
            return Ok(None);
        }
        let len = le_u64(b, after_path);
        if len > MAX_PAYLOAD_LEN {
            return Err(Error::Corrupt {
                offset: start + after_path as u64,
                path: Some(path_lossy()),
                reason: format!("payload length {len} exceeds the limit of {MAX_PAYLOAD_LEN}"),
            });
        }
        let len = usize::try_from(len).expect("bounded by MAX_PAYLOAD_LEN");
        Ok(Some(Head {
            flags,
            ty,
            path_len,
            total_len: after_path + PAYLOAD_FIELDS_LEN + len,
            body: Body::Payload {
                len,
                file_offset: le_u64(b, after_path + 8),
                crc: le_u32(b, after_path + 16),
                keep,
            },
        }))
    };
    match ty {
        ChunkType::Payload => payload_like(true),
        ChunkType::Eof | ChunkType::Remove => Ok(Some(Head {
            flags,
            ty,
            path_len,
            total_len: after_path,
            body: Body::None,
        })),
        ChunkType::Rename => {
            if b.len() < after_path + 4 {
                return Ok(None);
            }
            let new_len = le_u32(b, after_path) as usize;
            if new_len > MAX_PATH_LEN {
                return Err(Error::Corrupt {
                    offset: start + after_path as u64,
                    path: Some(path_lossy()),
                    reason: format!("rename target length {new_len} exceeds the limit of {MAX_PATH_LEN}"),
                });
            }
            Ok(Some(Head {
                flags,
                ty,
                path_len,
                total_len: after_path + 4 + new_len,
                body: Body::Rename { new_len },
            }))
        }
        ChunkType::Sparse => Err(Error::Unsupported {
            ty: b'S',
            offset: start,
            path: path_lossy(),
            reason: "Percona sparse and MariaDB seek chunks share this type byte with different layouts; hotbak refuses both",
        }),
        ChunkType::Unknown(t) if flags & FLAG_IGNORABLE != 0 => {
            let _ = t;
            payload_like(false)
        }
        ChunkType::Unknown(t) => Err(Error::Unsupported {
            ty: t,
            offset: start,
            path: path_lossy(),
            reason: "unknown chunk type without the ignorable flag",
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Chunk>> {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(c) = d.decode(&mut buf)? {
            out.push(c);
        }
        d.decode_eof(&buf)?;
        Ok(out)
    }

    #[test]
    fn known_answer_v02_small() {
        // The real mbstream chunk from formats.md §1.2 (v02_small).
        let mut v = Vec::new();
        put_payload(&mut v, b"hello.txt", 0, b"hello, xbstream\n");
        assert_eq!(&v[30 + 9..34 + 9], &[0xFA, 0x98, 0xD3, 0x1E]);
        assert_eq!(v.len(), 59);
        let c = decode_all(&v).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(&c[0].payload[..], b"hello, xbstream\n");
    }

    #[test]
    fn crc_mismatch_is_corrupt_with_offset() {
        let mut v = Vec::new();
        put_payload(&mut v, b"a", 0, b"xyz");
        let n = v.len();
        v[n - 1] ^= 1;
        match decode_all(&v) {
            Err(Error::Corrupt { offset, path, .. }) => {
                assert_eq!(offset, (14 + 1 + 16) as u64);
                assert_eq!(path.as_deref(), Some("a"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_magic_and_huge_lengths() {
        assert!(matches!(
            decode_all(b"XBSTCK02xxxxxxxxxx"),
            Err(Error::Corrupt { offset: 0, .. })
        ));
        let mut v = Vec::new();
        put_payload_header(&mut v, b"big", 0, b"");
        v[14 + 3..14 + 3 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(decode_all(&v), Err(Error::Corrupt { .. })));
        let mut v = Vec::new();
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&[0, b'P']);
        v.extend_from_slice(&512u32.to_le_bytes());
        assert!(matches!(
            decode_all(&v),
            Err(Error::Corrupt { offset: 10, .. })
        ));
    }

    #[test]
    fn unknown_types() {
        let mut v = Vec::new();
        put_payload(&mut v, b"u", 0, b"junk");
        v[9] = b'X';
        assert!(matches!(
            decode_all(&v),
            Err(Error::Unsupported { ty: b'X', .. })
        ));
        v[8] = FLAG_IGNORABLE;
        let c = decode_all(&v).unwrap();
        assert_eq!(c[0].ty, ChunkType::Unknown(b'X'));
        assert!(c[0].payload.is_empty());
        let mut s = Vec::new();
        put_eof(&mut s, b"s");
        s[9] = b'S';
        assert!(matches!(
            decode_all(&s),
            Err(Error::Unsupported { ty: b'S', .. })
        ));
    }

    #[test]
    fn rename_and_remove_parse() {
        let mut v = Vec::new();
        put_rename(&mut v, b"a", b"../b");
        put_remove(&mut v, b"/etc/x");
        let c = decode_all(&v).unwrap();
        assert_eq!(c[0].ty, ChunkType::Rename);
        assert_eq!(&c[0].new_path[..], b"../b");
        assert_eq!(c[1].ty, ChunkType::Remove);
    }

    #[test]
    fn every_prefix_is_none_or_truncated() {
        let mut v = Vec::new();
        put_payload(&mut v, b"dir/f", 0, b"0123456789");
        put_eof(&mut v, b"dir/f");
        put_rename(&mut v, b"a", b"b");
        for cut in 0..v.len() {
            let r = decode_all(&v[..cut]);
            let boundary = [0usize, 49, 49 + 19, v.len()].contains(&cut);
            if boundary {
                assert!(r.is_ok(), "cut {cut}");
            } else {
                assert!(
                    matches!(r, Err(Error::Truncated { .. })),
                    "cut {cut}: {r:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn roundtrip_any_split(files in proptest::collection::vec((
            "[a-z]{1,8}(/[a-z]{1,8}){0,2}", proptest::collection::vec(any::<u8>(), 0..3000)), 0..6),
            split in 1usize..700) {
            let mut v = Vec::new();
            for (p, data) in &files {
                for (i, c) in data.chunks(1000).enumerate() {
                    put_payload(&mut v, p.as_bytes(), (i * 1000) as u64, c);
                }
                put_eof(&mut v, p.as_bytes());
            }
            // Feed the bytes in pieces of `split`.
            let mut d = Decoder::new();
            let mut buf = BytesMut::new();
            let mut got: Vec<Chunk> = Vec::new();
            for piece in v.chunks(split) {
                buf.extend_from_slice(piece);
                while let Some(c) = d.decode(&mut buf).unwrap() { got.push(c); }
            }
            d.decode_eof(&buf).unwrap();
            let mut i = 0;
            for (p, data) in &files {
                let mut rebuilt = Vec::new();
                while got[i].ty == ChunkType::Payload {
                    prop_assert_eq!(&got[i].path[..], p.as_bytes());
                    prop_assert_eq!(got[i].file_offset, rebuilt.len() as u64);
                    rebuilt.extend_from_slice(&got[i].payload);
                    i += 1;
                }
                prop_assert_eq!(got[i].ty, ChunkType::Eof);
                i += 1;
                prop_assert_eq!(&rebuilt, data);
            }
            prop_assert_eq!(i, got.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(&bytes);
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&bytes);
            let _ = decode_all(&v);
        }
    }
}

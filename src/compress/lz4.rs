//! LZ4 frame format: one complete frame per chunk (64 KiB independent
//! blocks, content size, content checksum — the header Percona writes), and
//! a push decoder of concatenated frames (independent or linked blocks,
//! optional block checksums, skippable frames).

use twox_hash::XxHash32;

use super::MAX_FRAME_DECODED;
use crate::format::path::RelPath;
use crate::transform::{
    fill, take, BoundedInverse, ChunkCtx, ChunkTransform, InverseTransform, TransformError,
};

/// LZ4 frame magic (`04 22 4D 18`).
pub const MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];
const MAGIC_U32: u32 = 0x184D_2204;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE: u32 = 0x184D_2A50;
const LEGACY: u32 = 0x184C_2102;

/// Block size the writer uses (BD code 4 = 64 KiB, as Percona).
pub const BLOCK_SIZE: usize = 64 << 10;
/// FLG the writer emits: version 01, independent blocks, no block checksum,
/// content size present, content checksum present, no dictionary.
pub const WRITER_FLG: u8 = 0x6C;
/// BD the writer emits: 64 KiB blocks.
pub const WRITER_BD: u8 = 0x40;
/// LZ4 window (history a linked block may refer to).
const WINDOW: usize = 64 << 10;

/// Forward LZ4 transform: each chunk becomes one complete LZ4 frame.
/// `lz4_flex` has a single (fast) level.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lz4Compress;

impl Lz4Compress {
    /// The compressor.
    #[must_use]
    pub fn new() -> Self {
        Lz4Compress
    }

    /// Compress `input` as one complete frame appended to `out`.
    pub fn compress_frame(input: &[u8], out: &mut Vec<u8>) {
        let blocks = input.len().div_ceil(BLOCK_SIZE);
        out.reserve(
            19 + 8
                + blocks * 4
                + lz4_flex::block::get_maximum_output_size(input.len())
                + blocks * 16,
        );
        out.extend_from_slice(&MAGIC);
        let d = out.len();
        out.push(WRITER_FLG);
        out.push(WRITER_BD);
        out.extend_from_slice(&(input.len() as u64).to_le_bytes());
        let hc = (XxHash32::oneshot(0, &out[d..]) >> 8) as u8;
        out.push(hc);
        for block in input.chunks(BLOCK_SIZE) {
            let hdr = out.len();
            let bound = lz4_flex::block::get_maximum_output_size(block.len());
            out.resize(hdr + 4 + bound, 0);
            match lz4_flex::block::compress_into(block, &mut out[hdr + 4..]) {
                Ok(n) if n < block.len() => {
                    out.truncate(hdr + 4 + n);
                    out[hdr..hdr + 4].copy_from_slice(&(n as u32).to_le_bytes());
                }
                _ => {
                    // Incompressible (or bound too small, which cannot happen): store.
                    out.truncate(hdr + 4);
                    out[hdr..hdr + 4]
                        .copy_from_slice(&(block.len() as u32 | 0x8000_0000).to_le_bytes());
                    out.extend_from_slice(block);
                }
            }
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&XxHash32::oneshot(0, input).to_le_bytes());
    }
}

impl ChunkTransform for Lz4Compress {
    type File = ();

    fn name(&self) -> &'static str {
        "lz4"
    }

    fn rename(&self, path: &RelPath) -> Result<RelPath, TransformError> {
        Ok(path.with_suffix(super::LZ4_SUFFIX)?)
    }

    fn begin(&self, _path: &RelPath, _out: &mut Vec<u8>) -> Result<(), TransformError> {
        Ok(())
    }

    fn apply(
        &self,
        _file: &(),
        ctx: ChunkCtx<'_>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransformError> {
        // Empty file: one empty frame, so every stored .lz4 file has a frame.
        if input.is_empty() && ctx.index != 0 {
            return Ok(());
        }
        Self::compress_frame(input, out);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Magic,
    Descriptor,
    SkipLen,
    Skip(u64),
    BlockHeader,
    BlockData { len: usize, raw: bool },
    ContentChecksum,
}

struct Frame {
    block_max: usize,
    block_checksum: bool,
    content_checksum: bool,
    independent: bool,
    content_size: Option<u64>,
    hasher: XxHash32,
    decoded: u64,
    dict: Vec<u8>,
}

enum Fail {
    Corrupt(u64, String),
    Limit(String),
}

/// Streaming decoder of concatenated LZ4 frames.
pub struct Lz4Decompress {
    what: String,
    state: State,
    buf: Vec<u8>,
    /// Stored bytes consumed before the current call.
    offset: u64,
    frame_start: u64,
    block_start: u64,
    frame: Option<Frame>,
    failed: bool,
}

impl std::fmt::Debug for Lz4Decompress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lz4Decompress")
            .field("what", &self.what)
            .field("state", &self.state)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

fn u32_le(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn decode_block(
    f: &mut Frame,
    data: &[u8],
    raw: bool,
    out: &mut Vec<u8>,
    at: u64,
) -> Result<(), Fail> {
    let block = if f.block_checksum {
        let (b, c) = data.split_at(data.len() - 4);
        if XxHash32::oneshot(0, b) != u32_le(c) {
            return Err(Fail::Corrupt(at, "block checksum mismatch".into()));
        }
        b
    } else {
        data
    };
    let start = out.len();
    if raw {
        out.extend_from_slice(block);
    } else {
        out.resize(start + f.block_max, 0);
        let r = if f.independent || f.dict.is_empty() {
            lz4_flex::block::decompress_into(block, &mut out[start..])
        } else {
            lz4_flex::block::decompress_into_with_dict(block, &mut out[start..], &f.dict)
        };
        match r {
            Ok(n) => out.truncate(start + n),
            Err(e) => {
                out.truncate(start);
                return Err(Fail::Corrupt(at, format!("bad LZ4 block: {e}")));
            }
        }
    }
    let dec = &out[start..];
    f.decoded += dec.len() as u64;
    if f.decoded > MAX_FRAME_DECODED {
        return Err(Fail::Limit(format!(
            "frame decodes to more than {MAX_FRAME_DECODED} bytes"
        )));
    }
    if f.content_checksum {
        std::hash::Hasher::write(&mut f.hasher, dec);
    }
    if !f.independent {
        if dec.len() >= WINDOW {
            f.dict.clear();
            f.dict.extend_from_slice(&dec[dec.len() - WINDOW..]);
        } else {
            f.dict.extend_from_slice(dec);
            if f.dict.len() > WINDOW {
                let cut = f.dict.len() - WINDOW;
                f.dict.drain(..cut);
            }
        }
    }
    Ok(())
}

impl Lz4Decompress {
    /// A decoder; `what` names the file in error messages.
    #[must_use]
    pub fn new(what: &str) -> Self {
        Lz4Decompress {
            what: format!("{what} (lz4)"),
            state: State::Magic,
            buf: Vec::new(),
            offset: 0,
            frame_start: 0,
            block_start: 0,
            frame: None,
            failed: false,
        }
    }

    fn parse_descriptor(&mut self) -> Result<Option<usize>, Fail> {
        // Returns Some(total) when the buffer holds the whole descriptor.
        let flg = self.buf[0];
        let need =
            2 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 } + 1;
        if self.buf.len() < need {
            return Ok(Some(need));
        }
        let at = self.frame_start;
        let bad = |r: &str| Err(Fail::Corrupt(at, r.to_owned()));
        let bd = self.buf[1];
        if flg >> 6 != 1 {
            return bad("unsupported LZ4 frame version");
        }
        if flg & 0x02 != 0 || bd & 0x8F != 0 {
            return bad("reserved bits set in the LZ4 frame descriptor");
        }
        if flg & 0x01 != 0 {
            return bad("LZ4 dictionaries are not supported");
        }
        let block_max = match (bd >> 4) & 7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            _ => return bad("invalid LZ4 block maximum size"),
        };
        let hc = (XxHash32::oneshot(0, &self.buf[..need - 1]) >> 8) as u8;
        if hc != self.buf[need - 1] {
            return bad("LZ4 frame descriptor checksum mismatch");
        }
        let content_size = if flg & 0x08 != 0 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&self.buf[2..10]);
            Some(u64::from_le_bytes(a))
        } else {
            None
        };
        if let Some(cs) = content_size {
            if cs > MAX_FRAME_DECODED {
                return Err(Fail::Limit(format!(
                    "frame at byte {at} declares {cs} bytes, more than {MAX_FRAME_DECODED}"
                )));
            }
        }
        self.frame = Some(Frame {
            block_max,
            block_checksum: flg & 0x10 != 0,
            content_checksum: flg & 0x04 != 0,
            independent: flg & 0x20 != 0,
            content_size,
            hasher: XxHash32::with_seed(0),
            decoded: 0,
            dict: Vec::new(),
        });
        Ok(None)
    }

    fn end_frame(&mut self) -> Result<(), Fail> {
        if let Some(f) = self.frame.take() {
            if let Some(cs) = f.content_size {
                if cs != f.decoded {
                    return Err(Fail::Corrupt(
                        self.frame_start,
                        format!("frame declares {cs} bytes but decodes to {}", f.decoded),
                    ));
                }
            }
        }
        self.state = State::Magic;
        Ok(())
    }

    fn run(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
        out_start: usize,
        max_out: usize,
    ) -> Result<(), Fail> {
        loop {
            if out.len() - out_start >= max_out {
                return Ok(());
            }
            let here = self.offset + *pos as u64;
            match self.state {
                State::Magic => {
                    if *pos == input.len() {
                        return Ok(());
                    }
                    if self.buf.is_empty() {
                        self.frame_start = here;
                    }
                    if !fill(&mut self.buf, input, pos, 4) {
                        return Ok(());
                    }
                    let m = u32_le(&self.buf);
                    self.buf.clear();
                    self.state = if m == MAGIC_U32 {
                        State::Descriptor
                    } else if m & SKIPPABLE_MASK == SKIPPABLE {
                        State::SkipLen
                    } else if m == LEGACY {
                        return Err(Fail::Corrupt(
                            self.frame_start,
                            "legacy LZ4 format is not supported".into(),
                        ));
                    } else {
                        return Err(Fail::Corrupt(
                            self.frame_start,
                            format!("not an LZ4 frame (magic {m:#010x})"),
                        ));
                    };
                }
                State::Descriptor => {
                    if !fill(&mut self.buf, input, pos, 2) {
                        return Ok(());
                    }
                    while let Some(need) = self.parse_descriptor()? {
                        if !fill(&mut self.buf, input, pos, need) {
                            return Ok(());
                        }
                    }
                    self.buf.clear();
                    self.state = State::BlockHeader;
                }
                State::SkipLen => {
                    if !fill(&mut self.buf, input, pos, 4) {
                        return Ok(());
                    }
                    let n = u32_le(&self.buf);
                    self.buf.clear();
                    self.state = State::Skip(u64::from(n));
                }
                State::Skip(n) => {
                    let k = (n as usize).min(input.len() - *pos);
                    *pos += k;
                    let left = n - k as u64;
                    if left == 0 {
                        self.state = State::Magic;
                    } else {
                        self.state = State::Skip(left);
                        return Ok(());
                    }
                }
                State::BlockHeader => {
                    if self.buf.is_empty() {
                        self.block_start = here;
                    }
                    if !fill(&mut self.buf, input, pos, 4) {
                        return Ok(());
                    }
                    let v = u32_le(&self.buf);
                    self.buf.clear();
                    let Some(f) = self.frame.as_ref() else {
                        return Err(Fail::Corrupt(here, "block outside a frame".into()));
                    };
                    if v == 0 {
                        if f.content_checksum {
                            self.state = State::ContentChecksum;
                        } else {
                            self.end_frame()?;
                        }
                    } else {
                        let len = (v & 0x7FFF_FFFF) as usize;
                        if len > f.block_max {
                            return Err(Fail::Corrupt(
                                self.block_start,
                                format!(
                                    "block of {len} bytes exceeds the frame's maximum {}",
                                    f.block_max
                                ),
                            ));
                        }
                        let len = len + if f.block_checksum { 4 } else { 0 };
                        self.state = State::BlockData {
                            len,
                            raw: v & 0x8000_0000 != 0,
                        };
                    }
                }
                State::BlockData { len, raw } => {
                    let Some(f) = self.frame.as_mut() else {
                        return Err(Fail::Corrupt(here, "block outside a frame".into()));
                    };
                    let Some(data) = take(&mut self.buf, input, pos, len) else {
                        return Ok(());
                    };
                    decode_block(f, data, raw, out, self.block_start)?;
                    self.buf.clear();
                    self.state = State::BlockHeader;
                }
                State::ContentChecksum => {
                    if !fill(&mut self.buf, input, pos, 4) {
                        return Ok(());
                    }
                    let stored = u32_le(&self.buf);
                    self.buf.clear();
                    let computed = self.frame.as_ref().map(|f| f.hasher.finish_32());
                    if computed != Some(stored) {
                        return Err(Fail::Corrupt(here, "LZ4 content checksum mismatch".into()));
                    }
                    self.end_frame()?;
                }
            }
        }
    }
}

impl BoundedInverse for Lz4Decompress {
    fn update_bounded(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, TransformError> {
        if self.failed {
            return Err(TransformError::Corrupt {
                what: self.what.clone(),
                offset: self.offset,
                reason: "decoder already failed".into(),
            });
        }
        let out_start = out.len();
        let mut pos = 0;
        let r = self.run(input, &mut pos, out, out_start, max_out);
        self.offset += pos as u64;
        match r {
            Ok(()) => Ok(pos),
            Err(f) => {
                self.failed = true;
                out.truncate(out_start);
                Err(match f {
                    Fail::Corrupt(offset, reason) => TransformError::Corrupt {
                        what: self.what.clone(),
                        offset,
                        reason,
                    },
                    Fail::Limit(reason) => TransformError::Limit {
                        what: self.what.clone(),
                        reason,
                    },
                })
            }
        }
    }
}

impl InverseTransform for Lz4Decompress {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        self.update_bounded(input, out, usize::MAX).map(|_| ())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), TransformError> {
        if self.failed {
            return Err(TransformError::Corrupt {
                what: self.what.clone(),
                offset: self.offset,
                reason: "decoder already failed".into(),
            });
        }
        if self.state == State::Magic && self.buf.is_empty() {
            return Ok(());
        }
        Err(TransformError::Truncated {
            what: self.what.clone(),
            reason: format!(
                "the LZ4 frame starting at byte {} is incomplete ({} bytes stored)",
                self.frame_start, self.offset
            ),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    #[test]
    fn header_matches_percona() {
        let out = forward(&Lz4Compress, b"hello hello hello hello", 1 << 20);
        assert_eq!(&out[..6], &[0x04, 0x22, 0x4D, 0x18, 0x6C, 0x40]);
        let empty = forward(&Lz4Compress, &[], 1 << 20);
        assert!(inverse(&mut Lz4Decompress::new("e"), &empty, &[1])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn truncation_and_garbage() {
        let data = sample(300_000, 9);
        let enc = forward(&Lz4Compress, &data, 100_000);
        for cut in [1, 5, 9, enc.len() / 2, enc.len() - 1] {
            let e = inverse(&mut Lz4Decompress::new("f"), &enc[..cut], &[999]).unwrap_err();
            assert!(
                matches!(e, TransformError::Truncated { .. }),
                "cut {cut}: {e}"
            );
        }
        let mut bad = enc.clone();
        bad.extend_from_slice(b"garbage!");
        match inverse(&mut Lz4Decompress::new("f"), &bad, &[4096]).unwrap_err() {
            TransformError::Corrupt { offset, .. } => assert_eq!(offset, enc.len() as u64),
            other => panic!("{other}"),
        }
        for i in (0..enc.len()).step_by(997) {
            let mut flip = enc.clone();
            flip[i] ^= 0x10;
            assert!(
                inverse(&mut Lz4Decompress::new("f"), &flip, &[4096]).is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn synthetic_vector() {
        let dir = std::path::Path::new("/work/shared/vectors/synthetic");
        if vector_missing(&dir.join("plain.bin.lz4")) {
            return;
        }
        let (Ok(plain), Ok(enc)) = (
            std::fs::read(dir.join("plain.bin")),
            std::fs::read(dir.join("plain.bin.lz4")),
        ) else {
            panic!("cannot read vectors");
        };
        for split in [1usize << 20, 4096, 777] {
            let dec = inverse(&mut Lz4Decompress::new("plain.bin.lz4"), &enc, &[split]).unwrap();
            assert!(dec == plain, "split {split}");
        }
    }

    #[test]
    fn interop_with_lz4_cli() {
        if tool_missing("lz4") {
            return;
        }
        let data = sample(2_500_000, 4);
        for (d, chunk) in [(&data[..], 1 << 20), (&[][..], 1 << 20), (&data[..1], 1)] {
            let enc = forward(&Lz4Compress, d, chunk);
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(&enc).unwrap();
            let o = std::process::Command::new("lz4")
                .args(["-d", "-c", "-q"])
                .arg(f.path())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(o.stdout == d);
        }
        // CLI output (default: 4 MiB blocks; also linked blocks + block checksums) decodes with ours.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        for args in [&["-1"][..], &["-9", "-BD", "-BX", "-B4"][..]] {
            let o = std::process::Command::new("lz4")
                .args(args)
                .args(["-c", "-q"])
                .arg(f.path())
                .output()
                .unwrap();
            assert!(o.status.success());
            assert!(
                inverse(&mut Lz4Decompress::new("x"), &o.stdout, &[1000]).unwrap() == data,
                "{args:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn roundtrip_any_chunking_any_split(
            len in 0usize..200_000,
            seed in any::<u64>(),
            chunk in 1usize..150_000,
            splits in proptest::collection::vec(1usize..20_000, 1..8),
        ) {
            let data = sample(len, seed);
            let enc = forward(&Lz4Compress, &data, chunk);
            let one = inverse(&mut Lz4Decompress::new("p"), &enc, &[enc.len().max(1)]).unwrap();
            let split = inverse(&mut Lz4Decompress::new("p"), &enc, &splits).unwrap();
            prop_assert!(one == data);
            prop_assert!(split == data);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), split in 1usize..300) {
            let mut b = bytes;
            if b.len() > 6 && b[0] & 1 == 0 {
                // Often start with a valid magic to get past the first check.
                b[..4].copy_from_slice(&MAGIC);
            }
            let _ = inverse(&mut Lz4Decompress::new("g"), &b, &[split]);
        }
    }
}

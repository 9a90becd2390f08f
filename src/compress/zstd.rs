//! zstd: one complete standard frame per chunk (content size + content
//! checksum), and a streaming decoder of concatenated frames.

use std::cell::RefCell;

use ::zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use ::zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};

use super::{Error, MAX_FRAME_DECODED};
use crate::format::path::RelPath;
use crate::transform::{
    BoundedInverse, ChunkCtx, ChunkTransform, InverseTransform, TransformError,
};

/// zstd frame magic (`28 B5 2F FD`).
pub const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Largest window the decoder accepts (log2): 64 MiB, matching
/// [`MAX_FRAME_DECODED`]. Bounds the decoder's memory per file.
pub const WINDOW_LOG_MAX: u32 = 26;

/// Output reserved per decoder step.
const STEP_OUT: usize = 256 << 10;

/// Smallest and largest accepted compression level.
pub const MIN_LEVEL: i32 = 1;
/// Largest accepted compression level.
pub const MAX_LEVEL: i32 = 22;

thread_local! {
    /// One compression context per worker thread, reused across chunks.
    static CCTX: RefCell<Option<(i32, CCtx<'static>)>> = const { RefCell::new(None) };
}

/// Forward zstd transform: each chunk becomes one complete zstd frame.
#[derive(Clone, Copy, Debug)]
pub struct ZstdCompress {
    level: i32,
}

impl ZstdCompress {
    /// A compressor at `level` (1..=22; 1 is the fast default).
    ///
    /// # Errors
    /// [`Error::BadLevel`] (usage) when out of range.
    pub fn new(level: i32) -> Result<Self, Error> {
        if !(MIN_LEVEL..=MAX_LEVEL).contains(&level) {
            return Err(Error::BadLevel {
                algorithm: "zstd",
                level,
                min: MIN_LEVEL,
                max: MAX_LEVEL,
            });
        }
        Ok(ZstdCompress { level })
    }

    /// The configured level.
    #[must_use]
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Compress `input` as one frame appended to `out`.
    ///
    /// # Errors
    /// Only if the library fails (not input-dependent).
    pub fn compress_frame(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        CCTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(l, _)| *l) != Some(self.level) {
                let mut c = CCtx::create();
                let zerr = |e| {
                    TransformError::Internal(format!(
                        "zstd: {}",
                        ::zstd::zstd_safe::get_error_name(e)
                    ))
                };
                c.set_parameter(CParameter::CompressionLevel(self.level))
                    .map_err(zerr)?;
                c.set_parameter(CParameter::ChecksumFlag(true))
                    .map_err(zerr)?;
                c.set_parameter(CParameter::ContentSizeFlag(true))
                    .map_err(zerr)?;
                *slot = Some((self.level, c));
            }
            let Some((_, cctx)) = slot.as_mut() else {
                return Err(TransformError::Internal("zstd context missing".into()));
            };
            let zerr = |e| {
                TransformError::Internal(format!("zstd: {}", ::zstd::zstd_safe::get_error_name(e)))
            };
            // A previous call that failed may have left a session open.
            cctx.reset(ResetDirective::SessionOnly).map_err(zerr)?;
            out.reserve(::zstd::zstd_safe::compress_bound(input.len()));
            let start = out.len();
            let mut ob = OutBuffer::around_pos(out, start);
            let mut ib = InBuffer::around(input);
            // ZSTD_e_end on the first call: single pass, content size written.
            let left = cctx
                .compress_stream2(&mut ob, &mut ib, ZSTD_EndDirective::ZSTD_e_end)
                .map_err(zerr)?;
            if left != 0 || ib.pos() != input.len() {
                return Err(TransformError::Internal(
                    "zstd frame did not fit its bound".into(),
                ));
            }
            Ok(())
        })
    }
}

impl ChunkTransform for ZstdCompress {
    type File = ();

    fn name(&self) -> &'static str {
        "zstd"
    }

    fn rename(&self, path: &RelPath) -> Result<RelPath, TransformError> {
        Ok(path.with_suffix(super::ZSTD_SUFFIX)?)
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
        // An empty trailing chunk adds nothing, except for an empty file,
        // which gets one empty frame: `zstd -d` refuses a zero-byte file.
        if input.is_empty() && ctx.index != 0 {
            return Ok(());
        }
        self.compress_frame(input, out)
    }
}

/// Streaming decoder of concatenated zstd frames (skippable frames allowed).
pub struct ZstdDecompress {
    what: String,
    dctx: DCtx<'static>,
    /// Stored bytes consumed so far.
    offset: u64,
    /// Offset where the current frame started.
    frame_start: u64,
    /// Bytes decoded in the current frame.
    frame_out: u64,
    /// Some input of a frame has been consumed and the frame is not done.
    in_frame: bool,
    /// The last call filled its output window: more output may be pending.
    pending: bool,
    failed: bool,
}

impl std::fmt::Debug for ZstdDecompress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdDecompress")
            .field("what", &self.what)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl ZstdDecompress {
    /// A decoder; `what` names the file in error messages.
    #[must_use]
    pub fn new(what: &str) -> Self {
        let mut dctx = DCtx::create();
        // Cannot fail for an in-range value; if it did, the default (27) applies.
        let _ = dctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX));
        ZstdDecompress {
            what: format!("{what} (zstd)"),
            dctx,
            offset: 0,
            frame_start: 0,
            frame_out: 0,
            in_frame: false,
            pending: false,
            failed: false,
        }
    }

    fn corrupt(&mut self, offset: u64, reason: String) -> TransformError {
        self.failed = true;
        TransformError::Corrupt {
            what: self.what.clone(),
            offset,
            reason,
        }
    }
}

impl BoundedInverse for ZstdDecompress {
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
        let mut ib = InBuffer::around(input);
        while ib.pos() < input.len() || self.pending {
            if out.len() - out_start >= max_out {
                break;
            }
            out.reserve(STEP_OUT);
            let before = out.len();
            let in_before = ib.pos();
            let res = {
                let mut ob = OutBuffer::around_pos(out, before);
                self.dctx.decompress_stream(&mut ob, &mut ib)
            };
            let produced = out.len() - before;
            let consumed = ib.pos() - in_before;
            self.offset += consumed as u64;
            match res {
                Err(code) => {
                    out.truncate(out_start);
                    let at = if self.in_frame {
                        self.frame_start
                    } else {
                        self.offset - consumed as u64
                    };
                    let reason = format!(
                        "{} (in the frame starting at byte {at})",
                        ::zstd::zstd_safe::get_error_name(code)
                    );
                    return Err(self.corrupt(at, reason));
                }
                Ok(hint) => {
                    if consumed > 0 || produced > 0 {
                        self.in_frame = true;
                    }
                    self.frame_out += produced as u64;
                    if self.frame_out > MAX_FRAME_DECODED {
                        out.truncate(out_start);
                        self.failed = true;
                        return Err(TransformError::Limit {
                            what: self.what.clone(),
                            reason: format!(
                                "frame starting at byte {} decodes to more than {MAX_FRAME_DECODED} bytes",
                                self.frame_start
                            ),
                        });
                    }
                    // A full output window means the decoder may hold more.
                    self.pending = produced > 0 && out.len() == out.capacity();
                    if hint == 0 {
                        self.in_frame = false;
                        self.frame_out = 0;
                        self.frame_start = self.offset;
                    }
                    if consumed == 0 && produced == 0 {
                        // No progress possible without more input.
                        self.pending = false;
                        if ib.pos() < input.len() {
                            return Err(
                                self.corrupt(self.offset, "zstd decoder made no progress".into())
                            );
                        }
                    }
                }
            }
        }
        Ok(ib.pos())
    }
}

impl InverseTransform for ZstdDecompress {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        let n = self.update_bounded(input, out, usize::MAX)?;
        debug_assert_eq!(n, input.len());
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TransformError> {
        while self.pending {
            self.update_bounded(&[], out, usize::MAX)?;
        }
        if self.failed {
            return Err(TransformError::Corrupt {
                what: self.what.clone(),
                offset: self.offset,
                reason: "decoder already failed".into(),
            });
        }
        if self.in_frame {
            return Err(TransformError::Truncated {
                what: self.what.clone(),
                reason: format!(
                    "the zstd frame starting at byte {} is incomplete ({} bytes stored)",
                    self.frame_start, self.offset
                ),
            });
        }
        Ok(())
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
    fn empty_file_is_one_empty_frame() {
        let z = ZstdCompress::new(1).unwrap();
        let out = forward(&z, &[], 1024);
        assert_eq!(&out[..4], &MAGIC);
        let dec = inverse(&mut ZstdDecompress::new("x"), &out, &[1]).unwrap();
        assert!(dec.is_empty());
        // A zero-byte stored file (Percona writes these) decodes to nothing.
        assert!(inverse(&mut ZstdDecompress::new("x"), &[], &[1])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn frames_have_checksum_and_size() {
        let z = ZstdCompress::new(3).unwrap();
        let data = sample(100_000, 1);
        let mut out = Vec::new();
        z.compress_frame(&data, &mut out).unwrap();
        // Frame header descriptor: checksum flag (bit 2) set, FCS present.
        let fhd = out[4];
        assert_ne!(fhd & 0x04, 0, "checksum flag");
        assert_eq!(
            ::zstd::zstd_safe::get_frame_content_size(&out).ok(),
            Some(Some(100_000))
        );
    }

    #[test]
    fn truncation_and_garbage() {
        let z = ZstdCompress::new(1).unwrap();
        let data = sample(300_000, 2);
        let enc = forward(&z, &data, 100_000);
        for cut in [1, 5, enc.len() / 2, enc.len() - 1] {
            let e = inverse(&mut ZstdDecompress::new("f"), &enc[..cut], &[7000]).unwrap_err();
            assert!(
                matches!(e, TransformError::Truncated { .. }),
                "cut {cut}: {e}"
            );
        }
        let mut bad = enc.clone();
        bad.extend_from_slice(b"garbage!");
        let e = inverse(&mut ZstdDecompress::new("f"), &bad, &[4096]).unwrap_err();
        match e {
            TransformError::Corrupt { offset, .. } => assert_eq!(offset, enc.len() as u64),
            other => panic!("{other}"),
        }
        // A flipped byte in the middle of the payload: checksum or structure fails.
        let mut flip = enc.clone();
        let mid = flip.len() / 2;
        flip[mid] ^= 0x55;
        assert!(inverse(&mut ZstdDecompress::new("f"), &flip, &[4096]).is_err());
    }

    #[test]
    fn frame_cap() {
        // 70 MiB of zeros as one frame: over the cap.
        let data = vec![0u8; 70 << 20];
        let mut enc = Vec::new();
        ZstdCompress::new(1)
            .unwrap()
            .compress_frame(&data, &mut enc)
            .unwrap();
        let e = inverse(&mut ZstdDecompress::new("f"), &enc, &[enc.len()]).unwrap_err();
        assert!(matches!(e, TransformError::Limit { .. }), "{e}");
    }

    #[test]
    fn bounded_update_stops_early() {
        let data = vec![0u8; 8 << 20];
        let enc = forward(&ZstdCompress::new(1).unwrap(), &data, 1 << 20);
        let mut d = ZstdDecompress::new("f");
        let mut out = Vec::new();
        let mut pos = 0;
        let mut max_call = 0;
        while pos < enc.len() || d.pending {
            let before = out.len();
            pos += d.update_bounded(&enc[pos..], &mut out, 1 << 20).unwrap();
            max_call = max_call.max(out.len() - before);
            out.clear();
        }
        d.finish(&mut out).unwrap();
        assert!(max_call <= (1 << 20) + STEP_OUT * 2, "{max_call}");
    }

    #[test]
    fn synthetic_vector() {
        let dir = std::path::Path::new("/work/shared/vectors/synthetic");
        if vector_missing(&dir.join("plain.bin.zst")) {
            return;
        }
        let (Ok(plain), Ok(enc)) = (
            std::fs::read(dir.join("plain.bin")),
            std::fs::read(dir.join("plain.bin.zst")),
        ) else {
            panic!("cannot read vectors");
        };
        for split in [1usize << 20, 4096, 777] {
            let dec = inverse(&mut ZstdDecompress::new("plain.bin.zst"), &enc, &[split]).unwrap();
            assert!(dec == plain, "split {split}");
        }
    }

    #[test]
    fn interop_with_zstd_cli() {
        if tool_missing("zstd") {
            return;
        }
        let data = sample(2_500_000, 3);
        for (d, chunk) in [(&data[..], 1 << 20), (&[][..], 1 << 20), (&data[..1], 1)] {
            let enc = forward(&ZstdCompress::new(1).unwrap(), d, chunk);
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(&enc).unwrap();
            let o = std::process::Command::new("zstd")
                .args(["-d", "-c", "-q"])
                .arg(f.path())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(o.stdout == d);
        }
        // And the other way: the CLI's output decodes with ours.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        let o = std::process::Command::new("zstd")
            .args(["-19", "-c", "-q"])
            .arg(f.path())
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(inverse(&mut ZstdDecompress::new("x"), &o.stdout, &[1000]).unwrap() == data);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn roundtrip_any_chunking_any_split(
            len in 0usize..200_000,
            seed in any::<u64>(),
            chunk in 1usize..70_000,
            splits in proptest::collection::vec(1usize..20_000, 1..8),
        ) {
            let data = sample(len, seed);
            let enc = forward(&ZstdCompress::new(1).unwrap(), &data, chunk);
            let one = inverse(&mut ZstdDecompress::new("p"), &enc, &[enc.len().max(1)]).unwrap();
            let split = inverse(&mut ZstdDecompress::new("p"), &enc, &splits).unwrap();
            prop_assert!(one == data);
            prop_assert!(split == data);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), split in 1usize..300) {
            let _ = inverse(&mut ZstdDecompress::new("g"), &bytes, &[split]);
        }
    }
}

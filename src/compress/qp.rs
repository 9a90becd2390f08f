//! `.qp` (qpress + QuickLZ 1.5, `mariabackup --compress`) streaming decoder.
//! The container is parsed by [`crate::format::qpress`]; each block is
//! decompressed with the `quicklz` crate, capped at the archive's chunk size.

use std::io::Cursor;

use crate::format::qpress::{self, Parser};
use crate::transform::{BoundedInverse, InverseTransform, TransformError};

/// Streaming decoder of one `.qp` file.
#[derive(Debug)]
pub struct QpDecompress {
    what: String,
    parser: Parser,
    /// Decompressed bytes produced so far.
    decoded: u64,
    failed: bool,
}

impl QpDecompress {
    /// A decoder; `what` names the file in error messages.
    #[must_use]
    pub fn new(what: &str) -> Self {
        QpDecompress {
            what: format!("{what} (qpress)"),
            parser: Parser::new(),
            decoded: 0,
            failed: false,
        }
    }

    /// The file name stored in the archive's `F` entry (basename).
    #[must_use]
    pub fn stored_name(&self) -> &[u8] {
        self.parser.name()
    }

    fn err(&mut self, e: qpress::Error) -> TransformError {
        self.failed = true;
        match e {
            qpress::Error::Corrupt { offset, reason } => TransformError::Corrupt {
                what: self.what.clone(),
                offset,
                reason,
            },
            qpress::Error::Truncated(reason) => TransformError::Truncated {
                what: self.what.clone(),
                reason,
            },
        }
    }
}

/// Decompress one QuickLZ block (levels 1 and 3) of at most `max` bytes.
fn decode_block(data: &[u8], max: u32) -> Result<Vec<u8>, String> {
    let mut cur = Cursor::new(data);
    // Third-party decoder on untrusted input: a panic becomes a corrupt block.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        quicklz::decompress(&mut cur, max)
    }));
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("bad QuickLZ block: {e}")),
        Err(_) => Err("bad QuickLZ block (decoder panicked)".into()),
    }
}

impl BoundedInverse for QpDecompress {
    fn update_bounded(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, TransformError> {
        if self.failed {
            return Err(TransformError::Corrupt {
                what: self.what.clone(),
                offset: self.parser.offset(),
                reason: "decoder already failed".into(),
            });
        }
        let out_start = out.len();
        let mut pos = 0;
        while pos < input.len() && out.len() - out_start < max_out {
            let step = match self.parser.feed(input, &mut pos) {
                Ok(None) => Ok(None),
                Ok(Some(b)) => {
                    let (uoffset, dec_len, at) = (b.uoffset, b.decompressed_len, b.at);
                    match decode_block(b.data, dec_len) {
                        Ok(v) => Ok(Some((uoffset, dec_len, at, v))),
                        Err(reason) => Err(qpress::Error::Corrupt { offset: at, reason }),
                    }
                }
                Err(e) => Err(e),
            };
            match step {
                Ok(None) => break,
                Ok(Some((uoffset, dec_len, at, v))) => {
                    if uoffset != self.decoded {
                        out.truncate(out_start);
                        return Err(self.err(qpress::Error::Corrupt {
                            offset: at,
                            reason: format!(
                                "block claims offset {uoffset}, expected {}",
                                self.decoded
                            ),
                        }));
                    }
                    if v.len() != dec_len as usize {
                        out.truncate(out_start);
                        return Err(self.err(qpress::Error::Corrupt {
                            offset: at,
                            reason: format!(
                                "block decoded to {} bytes, header says {dec_len}",
                                v.len()
                            ),
                        }));
                    }
                    self.decoded += v.len() as u64;
                    out.extend_from_slice(&v);
                }
                Err(e) => {
                    out.truncate(out_start);
                    return Err(self.err(e));
                }
            }
        }
        Ok(pos)
    }
}

impl InverseTransform for QpDecompress {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        self.update_bounded(input, out, usize::MAX).map(|_| ())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), TransformError> {
        if self.failed {
            return Err(TransformError::Corrupt {
                what: self.what.clone(),
                offset: self.parser.offset(),
                reason: "decoder already failed".into(),
            });
        }
        // Run the parser over no input once more so a trailer-complete state is seen.
        let mut pos = 0;
        if let Err(e) = self.parser.feed(&[], &mut pos) {
            return Err(self.err(e));
        }
        match self.parser.finish() {
            Ok(()) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::format::qpress::{adler32, BLOCK_MAGIC, END_MAGIC, MAGIC};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::path::Path;

    fn archive(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&(chunk as u64).to_le_bytes());
        v.push(b'F');
        v.extend_from_slice(&5u32.to_le_bytes());
        v.extend_from_slice(b"x.ibd\0");
        for (i, c) in data.chunks(chunk).enumerate() {
            let b = quicklz::compress(c, quicklz::CompressionLevel::Lvl1);
            v.extend_from_slice(BLOCK_MAGIC);
            v.extend_from_slice(&((i * chunk) as u64).to_le_bytes());
            v.extend_from_slice(&adler32(&b).to_le_bytes());
            v.extend_from_slice(&b);
        }
        v.extend_from_slice(END_MAGIC);
        v.extend_from_slice(&0u64.to_le_bytes());
        v
    }

    #[test]
    fn roundtrip_and_damage() {
        let data = sample(200_000, 5);
        let a = archive(&data, 65536);
        assert!(inverse(&mut QpDecompress::new("x"), &a, &[333]).unwrap() == data);
        assert!(matches!(
            inverse(&mut QpDecompress::new("x"), &a[..a.len() - 3], &[333]),
            Err(TransformError::Truncated { .. })
        ));
        for i in (0..a.len()).step_by(211) {
            let mut b = a.clone();
            b[i] ^= 0x01;
            // Not checked: the chunk size (only bounded), the stored name,
            // the trailer's value. Everything else is.
            if (8..16).contains(&i) || (21..26).contains(&i) || i >= a.len() - 8 {
                continue;
            }
            assert!(
                inverse(&mut QpDecompress::new("x"), &b, &[4096]).is_err(),
                "flip at {i}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn garbage_blocks_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), flags in any::<u8>()) {
            let mut blk = vec![flags | 0x04];
            if flags & 2 != 0 {
                blk.extend_from_slice(&((body.len() + 9) as u32).to_le_bytes());
                blk.extend_from_slice(&300u32.to_le_bytes());
            } else {
                blk.push((body.len() + 3).min(255) as u8);
                blk.push(200);
            }
            blk.extend_from_slice(&body);
            let _ = decode_block(&blk, 65536);
        }
    }

    /// Decode every `.qp` member of the real mariabackup vector (extracted
    /// with the stock `mbstream`) and compare with the published digests.
    #[test]
    fn mariabackup_vector() {
        let dir = Path::new("/work/shared/vectors/mariabackup");
        let stream = dir.join("mb_full_compress_qp.xbstream");
        let sums = dir.join("mb_full_compress_qp.decoded.sha256");
        if vector_missing(&stream) || vector_missing(&sums) || tool_missing("mbstream") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mbstream")
            .args(["-x", "-C"])
            .arg(tmp.path())
            .stdin(std::fs::File::open(&stream).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
        let mut expected: HashMap<String, (String, u64)> = HashMap::new();
        for line in std::fs::read_to_string(&sums).unwrap().lines() {
            let mut it = line.split_whitespace();
            let (Some(h), Some(n), Some(p)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            expected.insert(p.to_owned(), (h.to_owned(), n.parse().unwrap()));
        }
        let mut checked = 0;
        let mut stack = vec![tmp.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p
                    .strip_prefix(tmp.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                let Some(base) = rel.strip_suffix(".qp") else {
                    continue;
                };
                let data = std::fs::read(&p).unwrap();
                let dec = inverse(&mut QpDecompress::new(&rel), &data, &[8191]).unwrap();
                let (h, n) = expected
                    .get(base)
                    .unwrap_or_else(|| panic!("{base} not in the digest list"));
                assert_eq!(dec.len() as u64, *n, "{base}");
                assert_eq!(&hex::encode(Sha256::digest(&dec)), h, "{base}");
                checked += 1;
            }
        }
        assert_eq!(checked, expected.len());
        assert_eq!(checked, 212);
    }
}

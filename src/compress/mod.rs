//! Compression transforms (zstd, lz4) and their streaming inverses, plus the
//! qpress (`.qp`, `mariabackup --compress`) decoder.
//!
//! Forward ([`ChunkTransform`](crate::transform::ChunkTransform)): every
//! chunk becomes one *complete, standard* frame (zstd frame with content size
//! and content checksum; LZ4 frame with content size and content checksum), so
//! a compressed file is a concatenation of frames that the stock `zstd -d` /
//! `lz4 -d` decode, and chunks can be compressed in parallel.
//!
//! Inverse ([`InverseTransform`](crate::transform::InverseTransform)):
//! push decoders of concatenated frames that never trust a declared size for
//! allocation, cap every frame at [`MAX_FRAME_DECODED`] bytes of output, and
//! report garbage as `Corrupt` with the byte offset inside the stored file.
//! See `format-spec/compression.md`.

use crate::error::{Classify, ErrorClass};
use crate::transform::{InverseTransform, TransformError};

pub mod lz4;
pub mod qp;
pub mod zstd;

pub use self::lz4::{Lz4Compress, Lz4Decompress};
pub use self::qp::QpDecompress;
pub use self::zstd::{ZstdCompress, ZstdDecompress};

/// Hard cap on the decoded size of one zstd or LZ4 frame (64 MiB). Our own
/// frames hold one chunk (a few MiB at most); Percona's hold at most 1 MiB.
pub const MAX_FRAME_DECODED: u64 = 64 << 20;

/// File suffix of zstd-compressed files.
pub const ZSTD_SUFFIX: &str = ".zst";
/// File suffix of LZ4-compressed files.
pub const LZ4_SUFFIX: &str = ".lz4";
/// File suffix of qpress-compressed files (`mariabackup --compress`).
pub const QP_SUFFIX: &str = ".qp";

/// Errors of this module (configuration; decoding errors are
/// [`TransformError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Unknown algorithm name.
    #[error("unknown compression algorithm {0:?} (expected \"zstd\" or \"lz4\")")]
    UnknownAlgorithm(String),
    /// Level out of range for the algorithm.
    #[error("{algorithm} level {level} out of range {min}..={max}")]
    BadLevel {
        /// Algorithm name.
        algorithm: &'static str,
        /// Requested level.
        level: i32,
        /// Smallest accepted level.
        min: i32,
        /// Largest accepted level.
        max: i32,
    },
    /// Input failed a structural or checksum check.
    #[error("corrupt compressed data: {0}")]
    Corrupt(String),
    /// Input ended early.
    #[error("truncated compressed data: {0}")]
    Truncated(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::UnknownAlgorithm(_) | Error::BadLevel { .. } => ErrorClass::Usage,
            Error::Corrupt(_) => ErrorClass::Corrupt,
            Error::Truncated(_) => ErrorClass::Truncated,
        }
    }
}

impl From<Error> for TransformError {
    fn from(e: Error) -> Self {
        match e {
            Error::Truncated(reason) => TransformError::Truncated {
                what: "compressed data".into(),
                reason,
            },
            Error::Corrupt(reason) => TransformError::Corrupt {
                what: "compressed data".into(),
                offset: 0,
                reason,
            },
            other => TransformError::Internal(other.to_string()),
        }
    }
}

/// A forward compression algorithm hotbak can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Zstandard, `.zst`.
    Zstd,
    /// LZ4 frame format, `.lz4`.
    Lz4,
}

impl Algorithm {
    /// Parse `"zstd"` or `"lz4"` (ASCII case-insensitive).
    ///
    /// # Errors
    /// [`Error::UnknownAlgorithm`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.eq_ignore_ascii_case("zstd") {
            Ok(Algorithm::Zstd)
        } else if s.eq_ignore_ascii_case("lz4") {
            Ok(Algorithm::Lz4)
        } else {
            Err(Error::UnknownAlgorithm(s.to_owned()))
        }
    }

    /// Stable name, also the transform's `name()`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Lz4 => "lz4",
        }
    }

    /// The file suffix this algorithm appends.
    #[must_use]
    pub fn suffix(self) -> &'static str {
        match self {
            Algorithm::Zstd => ZSTD_SUFFIX,
            Algorithm::Lz4 => LZ4_SUFFIX,
        }
    }

    /// A fresh streaming decoder for this algorithm; `what` names the file
    /// in error messages.
    #[must_use]
    pub fn decoder(self, what: &str) -> Box<dyn InverseTransform> {
        match self {
            Algorithm::Zstd => Box::new(ZstdDecompress::new(what)),
            Algorithm::Lz4 => Box::new(Lz4Decompress::new(what)),
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testutil {
    //! Shared helpers for the compression tests.
    use crate::format::path::RelPath;
    use crate::transform::{ChunkCtx, ChunkTransform, InverseTransform, TransformError};

    /// Is a required external tool missing? Fails under HOTBAK_REQUIRE_TOOLS=1.
    pub fn tool_missing(tool: &str) -> bool {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var("HOTBAK_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "{tool} not on PATH and HOTBAK_REQUIRE_TOOLS=1"
            );
            eprintln!("skipping: {tool} not on PATH");
        }
        !found
    }

    /// Is a required vector file missing? Same rule.
    pub fn vector_missing(p: &std::path::Path) -> bool {
        let missing = !p.exists();
        if missing {
            assert!(
                std::env::var("HOTBAK_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "{} missing and HOTBAK_REQUIRE_TOOLS=1",
                p.display()
            );
            eprintln!("skipping: {} missing", p.display());
        }
        missing
    }

    /// Run a forward transform over `data` cut into `chunk`-sized chunks.
    pub fn forward<T: ChunkTransform>(t: &T, data: &[u8], chunk: usize) -> Vec<u8> {
        let path = RelPath::new("db/t1.ibd").unwrap();
        let mut out = Vec::new();
        let f = t.begin(&path, &mut out).unwrap();
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(chunk.max(1)).collect()
        };
        let n = pieces.len();
        for (i, p) in pieces.into_iter().enumerate() {
            let ctx = ChunkCtx {
                path: &path,
                index: i as u64,
                last: i + 1 == n,
            };
            t.apply(&f, ctx, p, &mut out).unwrap();
        }
        out
    }

    /// Feed `data` into an inverse in pieces of the given sizes (cycled).
    pub fn inverse(
        inv: &mut dyn InverseTransform,
        data: &[u8],
        splits: &[usize],
    ) -> Result<Vec<u8>, TransformError> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < data.len() {
            let n = splits
                .get(i % splits.len().max(1))
                .copied()
                .unwrap_or(data.len())
                .max(1);
            let end = (pos + n).min(data.len());
            inv.update(&data[pos..end], &mut out)?;
            pos = end;
            i += 1;
        }
        inv.finish(&mut out)?;
        Ok(out)
    }

    /// Compressible-ish test data.
    pub fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|i| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                if (i / 4096) % 3 == 0 {
                    0
                } else if (i / 512) % 2 == 0 {
                    b"hotbak page "[i % 12]
                } else {
                    (x >> 56) as u8
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_parse_and_suffix() {
        assert_eq!(Algorithm::parse("zstd").unwrap(), Algorithm::Zstd);
        assert_eq!(Algorithm::parse("LZ4").unwrap(), Algorithm::Lz4);
        assert!(matches!(
            Algorithm::parse("gzip"),
            Err(Error::UnknownAlgorithm(_))
        ));
        assert_eq!(Algorithm::Zstd.suffix(), ".zst");
        assert_eq!(Algorithm::Lz4.suffix(), ".lz4");
        assert_eq!(
            Error::UnknownAlgorithm("x".into()).class(),
            ErrorClass::Usage
        );
    }
}

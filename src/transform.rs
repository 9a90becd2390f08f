//! Pure byte transforms that slot into the graph: compress, encrypt (forward)
//! and decrypt, decompress (inverse). No I/O, no async.
//!
//! Forward transforms are chunk-oriented so the runner can process several
//! chunks of one file in parallel and still emit them in order:
//! `begin` once per file (may emit a header and returns per-file state),
//! then `apply` once per chunk with its index and a `last` flag. The runner
//! always calls `apply` with `last = true` exactly once per file, with empty
//! input if the file had no data, so a format can mark its end.
//!
//! Inverse transforms are streaming and sequential per file
//! ([`InverseTransform`]): bytes in, bytes out, `finish` at the end of the
//! file, which must fail if the input stopped early (missing last chunk,
//! unfinished frame).

use crate::error::{Classify, ErrorClass};
use crate::format::path::{PathError, RelPath};

/// Errors of the pure transforms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// Input failed a structural, checksum or authentication check.
    #[error("{what}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// What was being decoded (path and layer).
        what: String,
        /// Offset within that file's stored bytes.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// Input ended before the format said it was complete.
    #[error("{what}: truncated: {reason}")]
    Truncated {
        /// What was being decoded.
        what: String,
        /// Why.
        reason: String,
    },
    /// A configured limit was hit (decompressed size cap, ...).
    #[error("{what}: limit exceeded: {reason}")]
    Limit {
        /// What was being decoded.
        what: String,
        /// Which limit.
        reason: String,
    },
    /// The key does not match the one the file was sealed with.
    #[error("{what}: {reason}")]
    WrongKey {
        /// What was being decoded.
        what: String,
        /// Both key ids.
        reason: String,
    },
    /// The path cannot be renamed (too long after a suffix, ...).
    #[error(transparent)]
    Path(#[from] PathError),
    /// The codec library failed in a way that is not about the input.
    #[error("{0}")]
    Internal(String),
}

impl Classify for TransformError {
    fn class(&self) -> ErrorClass {
        match self {
            TransformError::Corrupt { .. }
            | TransformError::Limit { .. }
            | TransformError::Path(_) => ErrorClass::Corrupt,
            TransformError::Truncated { .. } => ErrorClass::Truncated,
            TransformError::WrongKey { .. } => ErrorClass::Usage,
            TransformError::Internal(_) => ErrorClass::Failed,
        }
    }
}

/// Facts a chunk transform may bind into its output.
#[derive(Clone, Copy, Debug)]
pub struct ChunkCtx<'a> {
    /// The file's path *as it enters this transform* (before `rename`).
    pub path: &'a RelPath,
    /// 0-based chunk index within the file.
    pub index: u64,
    /// True for the last chunk of the file (possibly empty).
    pub last: bool,
}

/// A CPU-bound forward transform applied chunk by chunk (compress, seal).
pub trait ChunkTransform: Send + Sync + 'static {
    /// Per-file state created by `begin` (salt, derived key, ...).
    type File: Send + Sync + 'static;

    /// Stable name recorded in metadata, e.g. "zstd" or "aes256gcm".
    fn name(&self) -> &'static str;

    /// Path rewrite applied on open, e.g. append ".zst".
    ///
    /// # Errors
    /// If the new path breaks a path rule.
    fn rename(&self, path: &RelPath) -> Result<RelPath, TransformError>;

    /// Start a file; may append a header to `out`.
    ///
    /// # Errors
    /// Implementation-defined.
    fn begin(&self, path: &RelPath, out: &mut Vec<u8>) -> Result<Self::File, TransformError>;

    /// Transform one chunk, appending the result to `out`.
    ///
    /// # Errors
    /// Implementation-defined.
    fn apply(
        &self,
        file: &Self::File,
        ctx: ChunkCtx<'_>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransformError>;
}

/// A streaming inverse transform for one file (decrypt, decompress).
pub trait InverseTransform: Send {
    /// Consume `input`, append whatever output is ready to `out`.
    ///
    /// # Errors
    /// Corrupt, truncated or limit errors, naming the file and offset.
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError>;

    /// The file's stored bytes ended: flush, and fail if the format is not complete.
    ///
    /// # Errors
    /// [`TransformError::Truncated`] when the end marker is missing.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TransformError>;
}

/// Decoders that can stop early so that one call never produces much more
/// than `max_out` bytes (plus at most one block). The plain
/// [`InverseTransform::update`] consumes all its input, so its output is only
/// bounded by the input's compression ratio; callers that must bound memory
/// per call use this instead and re-feed the unconsumed rest.
pub trait BoundedInverse: InverseTransform {
    /// Consume a prefix of `input`, append output to `out`, and return how
    /// many input bytes were consumed. Stops as soon as `out` grew by at
    /// least `max_out` bytes. Always makes progress if `input` is non-empty
    /// or output is pending.
    ///
    /// # Errors
    /// As [`InverseTransform::update`].
    fn update_bounded(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, TransformError>;
}

/// Copy bytes from `input[*pos..]` into `buf` until it holds `need` bytes.
/// True when complete.
pub(crate) fn fill(buf: &mut Vec<u8>, input: &[u8], pos: &mut usize, need: usize) -> bool {
    if buf.len() < need {
        let take = (need - buf.len()).min(input.len() - *pos);
        buf.extend_from_slice(&input[*pos..*pos + take]);
        *pos += take;
    }
    buf.len() >= need
}

/// Like [`fill`] but avoids the copy when the whole piece is in `input` and
/// nothing is buffered. Returns the complete piece, or `None` (then the
/// partial piece is in `buf`). The caller clears `buf` after using the piece.
pub(crate) fn take<'a>(
    buf: &'a mut Vec<u8>,
    input: &'a [u8],
    pos: &mut usize,
    need: usize,
) -> Option<&'a [u8]> {
    if buf.is_empty() && input.len() - *pos >= need {
        let s = &input[*pos..*pos + need];
        *pos += need;
        return Some(s);
    }
    if buf.capacity() < need {
        buf.reserve_exact(need - buf.len());
    }
    if fill(buf, input, pos, need) {
        Some(&buf[..])
    } else {
        None
    }
}

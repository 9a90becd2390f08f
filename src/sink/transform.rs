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

impl crate::error::Classify for TransformError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
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

/// The identity transform: for testing the plumbing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl ChunkTransform for Identity {
    type File = ();
    fn name(&self) -> &'static str {
        "identity"
    }
    fn rename(&self, path: &RelPath) -> Result<RelPath, TransformError> {
        Ok(path.clone())
    }
    fn begin(&self, _path: &RelPath, _out: &mut Vec<u8>) -> Result<(), TransformError> {
        Ok(())
    }
    fn apply(
        &self,
        _file: &(),
        _ctx: ChunkCtx<'_>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransformError> {
        out.extend_from_slice(input);
        Ok(())
    }
}

impl InverseTransform for Identity {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        out.extend_from_slice(input);
        Ok(())
    }
    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), TransformError> {
        Ok(())
    }
}

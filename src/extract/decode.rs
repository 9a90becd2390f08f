//! Which inverse transforms a stored file needs, from its suffixes:
//! `.hbenc` (decrypt, always first), then `.zst` / `.lz4` / `.qp`
//! (decompress). Decryption always runs before decompression, so no
//! unauthenticated byte is ever decompressed.

use std::sync::Arc;

use super::{Error, Result};
use crate::format::path::RelPath;
use crate::transform::{BoundedInverse, InverseTransform, TransformError};

/// Suffix of hotbak's encrypted files.
pub const ENCRYPTED_SUFFIX: &str = ".hbenc";

/// Builds an inverse transform for a file, given its logical path (the
/// path after removing this layer's suffix).
pub type InverseFactory = Arc<
    dyn Fn(&RelPath) -> std::result::Result<Box<dyn InverseTransform>, TransformError>
        + Send
        + Sync,
>;

/// Builds a decompressor whose output per call can be bounded.
pub type DecompressFactory = Arc<
    dyn Fn(&RelPath) -> std::result::Result<Box<dyn BoundedInverse>, TransformError> + Send + Sync,
>;

/// The decoders of one file.
#[derive(Default)]
pub(crate) struct Chain {
    /// Decryption (first).
    pub decrypt: Option<Box<dyn InverseTransform>>,
    /// Decompression (second), with bounded output per call.
    pub decompress: Option<Box<dyn BoundedInverse>>,
    /// A decompressor run only to hash the original content, when a hotbak
    /// stream's compressed files are kept as they are (`--no-decompress`).
    pub verify: Option<Box<dyn BoundedInverse>>,
    /// The original path (after every suffix), which the manifest names.
    pub logical: Option<RelPath>,
}

/// Decoding options.
#[derive(Clone, Default)]
pub struct DecodeOptions {
    /// Decryptor factory (from the key), if a key was given.
    pub decrypt: Option<InverseFactory>,
    /// Decompressors by suffix (".zst", ".lz4", ".qp").
    pub decompressors: Vec<(&'static str, DecompressFactory)>,
    /// `Some(true)`: decompress every known suffix; `Some(false)`: never;
    /// `None` (default): decompress hotbak streams' `.zst`/`.lz4`, and leave
    /// stock `.qp` files alone.
    pub decompress: Option<bool>,
}

impl std::fmt::Debug for DecodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeOptions")
            .field("decrypt", &self.decrypt.is_some())
            .field(
                "decompressors",
                &self.decompressors.iter().map(|d| d.0).collect::<Vec<_>>(),
            )
            .field("decompress", &self.decompress)
            .finish()
    }
}

/// The output path and the inverse chain, in application order.
pub(crate) fn chain(
    stored: &RelPath,
    hotbak: bool,
    opts: &DecodeOptions,
) -> Result<(RelPath, Chain)> {
    let mut path = stored.clone();
    let mut chain = Chain::default();
    let tf = |source| Error::Transform {
        path: stored.to_string(),
        source,
    };
    if let Some(inner) = path.strip_suffix(ENCRYPTED_SUFFIX) {
        match &opts.decrypt {
            Some(f) => {
                chain.decrypt = Some(f(&inner).map_err(tf)?);
                path = inner;
            }
            None if hotbak => {
                return Err(Error::Usage(format!(
                    "{stored} is encrypted: pass --decrypt-key-file or --decrypt-key-env to extract this stream"
                )));
            }
            None => {}
        }
    }
    for (suffix, f) in &opts.decompressors {
        let wanted = match opts.decompress {
            Some(v) => v,
            None => hotbak && *suffix != ".qp",
        };
        let Some(inner) = path.strip_suffix(suffix) else {
            continue;
        };
        if wanted {
            chain.decompress = Some(f(&inner).map_err(tf)?);
            path = inner;
        } else if hotbak {
            // Kept compressed, but still checked against the manifest.
            chain.verify = Some(f(&inner).map_err(tf)?);
            chain.logical = Some(inner);
        }
        break;
    }
    Ok((path, chain))
}

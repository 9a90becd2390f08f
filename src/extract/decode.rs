//! Which inverse transforms a stored file needs. In a hotbak stream, from
//! the stage chain its stream info records (each stage that applied to a
//! file left its suffix, so the suffixes are only matched against that
//! chain, never guessed); in a stock stream, from the suffixes alone:
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

/// Where a file's inverse chain comes from.
#[derive(Clone, Debug)]
pub(crate) enum Layers {
    /// A stock stream: the stored name's suffixes.
    Stock,
    /// A hotbak file whose stream info is not at hand (a directory decoded
    /// at rest, the stream info itself): the suffixes, with hotbak's
    /// defaults (decompress `.zst`/`.lz4`, refuse `.hbenc` without a key).
    HotbakSuffixes,
    /// A hotbak stream: the forward stage chain its stream info records.
    Recorded(Arc<[String]>),
}

impl Layers {
    /// Whether the file comes from hotbak.
    pub(crate) fn is_hotbak(&self) -> bool {
        !matches!(self, Layers::Stock)
    }
}

/// The output path and the inverse chain, in application order.
pub(crate) fn chain(
    stored: &RelPath,
    layers: &Layers,
    opts: &DecodeOptions,
) -> Result<(RelPath, Chain)> {
    match layers {
        Layers::Stock => by_suffix(stored, false, opts),
        Layers::HotbakSuffixes => by_suffix(stored, true, opts),
        Layers::Recorded(stages) => recorded(stored, stages, opts),
    }
}

/// The usage error for an encrypted hotbak file without a key.
fn needs_key(stored: &RelPath) -> Error {
    Error::Usage(format!(
        "{stored} is encrypted: pass --decrypt-key-file or --decrypt-key-env to extract this stream"
    ))
}

/// The inverse chain from the recorded forward chain: its stages undone
/// last first, each one only where its suffix shows it applied.
fn recorded(stored: &RelPath, stages: &[String], opts: &DecodeOptions) -> Result<(RelPath, Chain)> {
    let mut path = stored.clone();
    let mut chain = Chain::default();
    let tf = |source| Error::Transform {
        path: stored.to_string(),
        source,
    };
    for stage in stages.iter().rev() {
        if stage == crate::encrypt::STAGE_NAME {
            let Some(inner) = path.strip_suffix(ENCRYPTED_SUFFIX) else {
                continue;
            };
            let f = opts.decrypt.as_ref().ok_or_else(|| needs_key(stored))?;
            chain.decrypt = Some(f(&inner).map_err(tf)?);
            path = inner;
            continue;
        }
        let algorithm = crate::compress::Algorithm::parse(stage).map_err(|_| {
            Error::Manifest(format!("the stream info names an unknown stage {stage:?}"))
        })?;
        let Some(inner) = path.strip_suffix(algorithm.suffix()) else {
            continue;
        };
        let Some((_, f)) = opts
            .decompressors
            .iter()
            .find(|(suffix, _)| *suffix == algorithm.suffix())
        else {
            continue;
        };
        if opts.decompress.unwrap_or(true) {
            chain.decompress = Some(f(&inner).map_err(tf)?);
            path = inner;
        } else {
            // Kept compressed, but still checked against the manifest.
            chain.verify = Some(f(&inner).map_err(tf)?);
            chain.logical = Some(inner);
        }
    }
    Ok((path, chain))
}

/// The inverse chain guessed from the stored name's suffixes.
fn by_suffix(stored: &RelPath, hotbak: bool, opts: &DecodeOptions) -> Result<(RelPath, Chain)> {
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
            None if hotbak => return Err(needs_key(stored)),
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

//! Wires the transform modules into the extractor's decode options.

use std::path::Path;
use std::sync::Arc;

use super::decode::{DecodeOptions, DecompressFactory};
use crate::compress::{
    Lz4Decompress, QpDecompress, ZstdDecompress, LZ4_SUFFIX, QP_SUFFIX, ZSTD_SUFFIX,
};
use crate::encrypt::{Key, Open};
use crate::error::UsageError;
use crate::transform::{BoundedInverse, InverseTransform};

/// Default decode options with [`install_decoders`] applied.
///
/// # Errors
/// As [`install_decoders`].
pub fn decoders(key_file: Option<&Path>, key_env: Option<&str>) -> anyhow::Result<DecodeOptions> {
    let mut d = DecodeOptions::default();
    install_decoders(&mut d, key_file, key_env)?;
    Ok(d)
}

/// Install the decompressors, and the decryptor when a key is given
/// (from a key file or an environment variable; never from the command line).
///
/// # Errors
/// A bad or unreadable key, or both key sources given.
pub fn install_decoders(
    d: &mut DecodeOptions,
    key_file: Option<&Path>,
    key_env: Option<&str>,
) -> anyhow::Result<()> {
    let zstd: DecompressFactory =
        Arc::new(|p| Ok(Box::new(ZstdDecompress::new(p.as_str())) as Box<dyn BoundedInverse>));
    let lz4: DecompressFactory =
        Arc::new(|p| Ok(Box::new(Lz4Decompress::new(p.as_str())) as Box<dyn BoundedInverse>));
    let qp: DecompressFactory =
        Arc::new(|p| Ok(Box::new(QpDecompress::new(p.as_str())) as Box<dyn BoundedInverse>));
    d.decompressors = vec![(ZSTD_SUFFIX, zstd), (LZ4_SUFFIX, lz4), (QP_SUFFIX, qp)];
    let key = match (key_file, key_env) {
        (None, None) => None,
        (Some(f), None) => Some(Key::from_file(f)?),
        (None, Some(v)) => Some(Key::from_env(v)?),
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "give only one of --decrypt-key-file and --decrypt-key-env".into(),
            )
            .into())
        }
    };
    if let Some(key) = key {
        let key = Arc::new(key);
        d.decrypt = Some(Arc::new(move |logical| {
            Ok(Box::new(Open::new(&key, logical)) as Box<dyn InverseTransform>)
        }));
    }
    Ok(())
}

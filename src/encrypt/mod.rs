//! AES-256-GCM encryption transform ([`Seal`]) and its inverse ([`Open`]),
//! in hotbak's own authenticated `.hbenc` envelope — not xbcrypt.
//!
//! Construction (see `format-spec/encryption.md`): a random 32-byte salt per
//! file; per-file key = HKDF-SHA256(master key, salt, "hotbak file key v1" ||
//! logical path); one AES-256-GCM record per chunk with the age STREAM nonce
//! (11-byte big-endian record index || last flag) and AAD = file header ||
//! logical path. Dropping, reordering, duplicating, truncating records or
//! moving them (or whole files) between paths fails authentication or
//! `finish`. The *logical* path is the stored path without `.hbenc`.

use crate::error::{Classify, ErrorClass};

pub mod aes_gcm;
pub mod key;
pub mod mariadb;
pub mod mariadb_page;

pub use self::aes_gcm::{peek_key_id, Open, Seal, SealFile};
pub use self::key::{Key, KeyId, KEY_LEN};
pub use crate::format::envelope::{MAX_RECORD_PLAINTEXT, SUFFIX};

/// The stage name [`Seal`] records in a stream's chain.
pub const STAGE_NAME: &str = "aes256gcm";

/// Errors of this module outside the streaming inverse (which returns
/// [`crate::transform::TransformError`]). Never contains key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key material has the wrong shape.
    #[error("bad key: {0}")]
    KeyFormat(String),
    /// A key file could not be read or parsed.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why (no key bytes).
        reason: String,
    },
    /// A key environment variable is unset or malformed.
    #[error("key variable {var}: {reason}")]
    KeyEnv {
        /// The variable name.
        var: String,
        /// Why (no key bytes).
        reason: String,
    },
    /// Chunk size option out of range.
    #[error("encryption chunk size {0} outside 1..={MAX_RECORD_PLAINTEXT}")]
    ChunkSize(usize),
    /// Invalid envelope header.
    #[error(transparent)]
    Envelope(#[from] crate::format::envelope::Error),
    /// Input ended early.
    #[error("truncated encrypted file: {0}")]
    Truncated(String),
    /// The OS random source failed.
    #[error("random source failed: {0}")]
    Rng(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::KeyFormat(_)
            | Error::KeyFile { .. }
            | Error::KeyEnv { .. }
            | Error::ChunkSize(_) => ErrorClass::Usage,
            Error::Envelope(_) => ErrorClass::Corrupt,
            Error::Truncated(_) => ErrorClass::Truncated,
            Error::Rng(_) => ErrorClass::Failed,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::format::path::RelPath;
    use crate::transform::{ChunkCtx, ChunkTransform, InverseTransform};

    #[test]
    fn suffix_binding_and_key_check() {
        let k = Key::from_bytes([1; 32]);
        let s = Seal::new(k.clone());
        let logical = RelPath::new("db/t.ibd.zst").unwrap();
        let stored = s.rename(&logical).unwrap();
        assert_eq!(stored.as_str(), "db/t.ibd.zst.hbenc");
        let mut out = Vec::new();
        let f = s.begin(&logical, &mut out).unwrap();
        s.apply(
            &f,
            ChunkCtx {
                path: &logical,
                index: 0,
                last: true,
            },
            b"abc",
            &mut out,
        )
        .unwrap();
        let (p, mut inv) = Open::for_stored_path(&k, &stored).unwrap();
        assert_eq!(p, logical);
        let mut plain = Vec::new();
        inv.update(&out, &mut plain).unwrap();
        inv.finish(&mut plain).unwrap();
        assert_eq!(plain, b"abc");
        assert_eq!(peek_key_id(&out).unwrap(), k.id());
        let (_, mut wrong) = Open::for_stored_path(&Key::from_bytes([2; 32]), &stored).unwrap();
        let e = wrong.update(&out, &mut plain).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Usage);
        assert!(Open::for_stored_path(&k, &logical).is_none());
    }
}

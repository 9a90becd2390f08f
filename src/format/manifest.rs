//! The completeness manifest and the stream-info header, pure.
//!
//! A hotbak stream starts with [`STREAM_INFO_NAME`] (plain JSON: tool, the
//! stage chain, the key id when encrypted) and ends with [`MANIFEST_NAME`]
//! (JSON: every file with its original path, the name it has in the
//! stream, its size and BLAKE3 of its original content). Both are ordinary
//! files written with `P`/`E` chunks, so stock tools extract them
//! harmlessly. When encryption is on, the manifest is sealed like every
//! other file (`hotbak_manifest.hbenc`), which authenticates it.
//! See `format-spec/manifest.md`.

use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};

/// Reserved name of the manifest (last file of a hotbak stream).
pub const MANIFEST_NAME: &str = "hotbak_manifest";
/// Reserved name of the stream-info file (first file of a hotbak stream).
pub const STREAM_INFO_NAME: &str = "hotbak_stream_info";
/// Largest manifest or stream-info accepted, in bytes.
pub const MAX_MANIFEST_LEN: usize = 64 << 20;
/// Current format version.
pub const VERSION: u32 = 1;

/// Errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not valid JSON of the expected shape, or a bad field.
    #[error("{what}: corrupt: {reason}")]
    Corrupt {
        /// Which file.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Larger than [`MAX_MANIFEST_LEN`].
    #[error("{what}: {len} bytes exceeds the limit of {MAX_MANIFEST_LEN}")]
    TooLarge {
        /// Which file.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A newer format.
    #[error("{what}: format version {version} is not supported (this hotbak reads {VERSION})")]
    Version {
        /// Which file.
        what: &'static str,
        /// Its version.
        version: u32,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Corrupt
    }
}

/// One file of the backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Original path (what the extractor writes).
    pub path: String,
    /// Name in the stream (after stage suffixes such as `.zst.hbenc`).
    pub stored: String,
    /// Original size in bytes.
    pub size: u64,
    /// BLAKE3 of the original content, lowercase hex.
    pub blake3: String,
}

/// The manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Producing tool and version.
    pub tool: String,
    /// Stage chain applied to files, in order (e.g. `["zstd", "aes256gcm"]`).
    pub chain: Vec<String>,
    /// Every file, in the order they were closed.
    pub files: Vec<Entry>,
}

/// The stream-info header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Format version.
    pub version: u32,
    /// Producing tool and version.
    pub tool: String,
    /// Stage chain applied to files, in order.
    pub chain: Vec<String>,
    /// Key id (hex) when encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// The producing tool string.
#[must_use]
pub fn tool_string() -> String {
    format!("hotbak {}", env!("CARGO_PKG_VERSION"))
}

fn parse<T: for<'de> Deserialize<'de>>(what: &'static str, b: &[u8]) -> Result<T, Error> {
    if b.len() > MAX_MANIFEST_LEN {
        return Err(Error::TooLarge { what, len: b.len() });
    }
    serde_json::from_slice(b).map_err(|e| Error::Corrupt {
        what,
        reason: e.to_string(),
    })
}

impl Manifest {
    /// Serialize (pretty JSON with a trailing newline).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("plain data serializes");
        v.push(b'\n');
        v
    }

    /// Parse and check the version and entries.
    ///
    /// # Errors
    /// [`Error`] for bad JSON, a newer version, bad hex or a duplicate path.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let m: Manifest = parse("manifest", b)?;
        if m.version != VERSION {
            return Err(Error::Version {
                what: "manifest",
                version: m.version,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for e in &m.files {
            if e.blake3.len() != 64 || !e.blake3.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(Error::Corrupt {
                    what: "manifest",
                    reason: format!("bad blake3 for {:?}", e.path),
                });
            }
            if !seen.insert(e.path.as_str()) {
                return Err(Error::Corrupt {
                    what: "manifest",
                    reason: format!("duplicate path {:?}", e.path),
                });
            }
        }
        Ok(m)
    }
}

impl StreamInfo {
    /// Serialize.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("plain data serializes");
        v.push(b'\n');
        v
    }

    /// Parse.
    ///
    /// # Errors
    /// [`Error`] for bad JSON or a newer version.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let s: StreamInfo = parse("stream info", b)?;
        if s.version != VERSION {
            return Err(Error::Version {
                what: "stream info",
                version: s.version,
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let m = Manifest {
            version: VERSION,
            tool: tool_string(),
            chain: vec!["zstd".into()],
            files: vec![Entry {
                path: "a b/c".into(),
                stored: "a b/c.zst".into(),
                size: 3,
                blake3: "0".repeat(64),
            }],
        };
        assert_eq!(Manifest::from_bytes(&m.to_bytes()).unwrap(), m);
        let mut dup = m.clone();
        dup.files.push(dup.files[0].clone());
        assert!(Manifest::from_bytes(&dup.to_bytes()).is_err());
        let mut v2 = m.clone();
        v2.version = 2;
        assert!(matches!(
            Manifest::from_bytes(&v2.to_bytes()),
            Err(Error::Version { .. })
        ));
        assert!(Manifest::from_bytes(b"{").is_err());
        let s = StreamInfo {
            version: 1,
            tool: tool_string(),
            chain: vec![],
            key_id: None,
        };
        assert_eq!(StreamInfo::from_bytes(&s.to_bytes()).unwrap(), s);
    }
}

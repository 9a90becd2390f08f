//! hotbak's encrypted file envelope (`.hbenc`): byte layout only, no crypto.
//! The sealing and opening live in the `encrypt` module; the full description
//! is `format-spec/encryption.md`. This is **not** xbcrypt (`XBCRYP0x`).
//!
//! ```text
//! file   = header record* last_record
//! header = "HOTBAKE1" <8> | version <1> = 1 | algorithm <1> = 1 (AES-256-GCM)
//!        | flags <2> = 0 | max_plaintext <u32 LE> | key_id <8> | salt <32>     (56 bytes)
//! record = prefix <u32 LE: bit 31 = last, bits 0..30 = ciphertext length incl. tag>
//!        | ciphertext | tag <16>
//! nonce  = record index <11 bytes big-endian> | last <1: 0x00 or 0x01>      (age STREAM)
//! aad    = header bytes || logical path
//! ```

use crate::error::{Classify, ErrorClass};

/// File suffix of sealed files.
pub const SUFFIX: &str = ".hbenc";
/// Magic at offset 0.
pub const MAGIC: &[u8; 8] = b"HOTBAKE1";
/// Envelope version.
pub const VERSION: u8 = 1;
/// Algorithm byte for AES-256-GCM (the only one).
pub const ALG_AES_256_GCM: u8 = 1;
/// Length of the key id.
pub const KEY_ID_LEN: usize = 8;
/// Length of the per-file salt.
pub const SALT_LEN: usize = 32;
/// Length of the file header.
pub const HEADER_LEN: usize = 8 + 1 + 1 + 2 + 4 + KEY_ID_LEN + SALT_LEN;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Length of a record prefix.
pub const PREFIX_LEN: usize = 4;
/// Largest plaintext per record (16 MiB). A writer may declare less in the
/// header's `max_plaintext`; a reader enforces the declared value.
pub const MAX_RECORD_PLAINTEXT: u32 = 16 << 20;
/// Largest record (ciphertext + tag) a reader accepts.
pub const MAX_RECORD: u32 = MAX_RECORD_PLAINTEXT + TAG_LEN as u32;
/// Bit 31 of the prefix: this is the last record of the file.
pub const LAST_FLAG: u32 = 0x8000_0000;
/// HKDF info prefix of the per-file key; the logical path follows it.
pub const FILE_KEY_INFO: &[u8] = b"hotbak file key v1";
/// HKDF info of the key id.
pub const KEY_ID_INFO: &[u8] = b"hotbak key id";

/// Why envelope bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a hotbak envelope.
    #[error("not a hotbak encrypted file (bad magic)")]
    BadMagic,
    /// Unknown version.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// Unknown algorithm.
    #[error("unsupported envelope algorithm {0}")]
    Algorithm(u8),
    /// Reserved flag bits set.
    #[error("reserved envelope flags {0:#06x} set")]
    Flags(u16),
    /// `max_plaintext` is 0 or above [`MAX_RECORD_PLAINTEXT`].
    #[error("declared record size {0} outside 1..={MAX_RECORD_PLAINTEXT}")]
    MaxPlaintext(u32),
    /// A record length is shorter than a tag or longer than the declared maximum.
    #[error("record length {len} outside {TAG_LEN}..={max}")]
    RecordLength {
        /// Stored length (ciphertext + tag).
        len: u32,
        /// Largest allowed.
        max: u32,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Corrupt
    }
}

/// The decoded file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Largest plaintext per record the writer emits.
    pub max_plaintext: u32,
    /// Key id of the sealing key.
    pub key_id: [u8; KEY_ID_LEN],
    /// Random per-file salt (HKDF salt of the file key).
    pub salt: [u8; SALT_LEN],
}

impl Header {
    /// Serialize (always version 1, AES-256-GCM, flags 0).
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8] = VERSION;
        h[9] = ALG_AES_256_GCM;
        // h[10..12]: flags, 0.
        h[12..16].copy_from_slice(&self.max_plaintext.to_le_bytes());
        h[16..24].copy_from_slice(&self.key_id);
        h[24..56].copy_from_slice(&self.salt);
        h
    }

    /// Parse and check a header.
    ///
    /// # Errors
    /// [`Error`] naming the field that is wrong.
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Self, Error> {
        if &h[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        if h[8] != VERSION {
            return Err(Error::Version(h[8]));
        }
        if h[9] != ALG_AES_256_GCM {
            return Err(Error::Algorithm(h[9]));
        }
        let flags = u16::from_le_bytes([h[10], h[11]]);
        if flags != 0 {
            return Err(Error::Flags(flags));
        }
        let max_plaintext = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if max_plaintext == 0 || max_plaintext > MAX_RECORD_PLAINTEXT {
            return Err(Error::MaxPlaintext(max_plaintext));
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&h[16..24]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&h[24..56]);
        Ok(Header {
            max_plaintext,
            key_id,
            salt,
        })
    }
}

/// Record prefix for a record of `ciphertext_len` bytes (tag included).
#[must_use]
pub fn encode_prefix(ciphertext_len: u32, last: bool) -> [u8; PREFIX_LEN] {
    (ciphertext_len | if last { LAST_FLAG } else { 0 }).to_le_bytes()
}

/// Parse a record prefix: `(ciphertext length incl. tag, last)`, checked
/// against the header's `max_plaintext` before anything is buffered.
///
/// # Errors
/// [`Error::RecordLength`].
pub fn decode_prefix(p: [u8; PREFIX_LEN], max_plaintext: u32) -> Result<(u32, bool), Error> {
    let v = u32::from_le_bytes(p);
    let len = v & !LAST_FLAG;
    let max = max_plaintext.min(MAX_RECORD_PLAINTEXT) + TAG_LEN as u32;
    if (len as usize) < TAG_LEN || len > max {
        return Err(Error::RecordLength { len, max });
    }
    Ok((len, v & LAST_FLAG != 0))
}

/// The 96-bit nonce of record `index`: 11-byte big-endian counter, then the
/// last-record flag byte.
#[must_use]
pub fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// The associated data of every record: the header bytes, then the logical path.
#[must_use]
pub fn aad(header: &[u8; HEADER_LEN], logical_path: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(HEADER_LEN + logical_path.len());
    a.extend_from_slice(header);
    a.extend_from_slice(logical_path);
    a
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_checks() {
        let h = Header {
            max_plaintext: 1 << 20,
            key_id: [1, 2, 3, 4, 5, 6, 7, 8],
            salt: [9; 32],
        };
        let b = h.encode();
        assert_eq!(b.len(), 56);
        assert_eq!(&b[..8], b"HOTBAKE1");
        assert_eq!(Header::decode(&b).unwrap(), h);
        let mut x = b;
        x[8] = 2;
        assert_eq!(Header::decode(&x), Err(Error::Version(2)));
        let mut x = b;
        x[10] = 1;
        assert!(matches!(Header::decode(&x), Err(Error::Flags(1))));
        let mut x = b;
        x[12..16].copy_from_slice(&(MAX_RECORD_PLAINTEXT + 1).to_le_bytes());
        assert!(matches!(Header::decode(&x), Err(Error::MaxPlaintext(_))));
    }

    #[test]
    fn prefix_and_nonce() {
        assert_eq!(
            decode_prefix(encode_prefix(100, true), 1000),
            Ok((100, true))
        );
        assert_eq!(
            decode_prefix(encode_prefix(16, false), 1000),
            Ok((16, false))
        );
        assert!(decode_prefix(encode_prefix(15, false), 1000).is_err());
        assert!(decode_prefix(encode_prefix(1017, false), 1000).is_err());
        assert_eq!(nonce(0x0102, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1]);
    }
}

//! The 32-byte master key: loading (file, environment), key id, hygiene.
//!
//! Key file rule (also in `format-spec/encryption.md`):
//! * exactly 32 bytes → the raw key, taken as is (no trimming at all);
//! * otherwise the content, with leading and trailing ASCII whitespace
//!   removed (so one trailing newline is fine), must be exactly 64 hex
//!   digits (either case) → the key.
//!
//! Anything else is refused with a message that never contains key bytes.
//! The environment variable form accepts only the hex form (same trimming).

use std::fmt;
use std::io::Read;
use std::path::Path;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::Error;
use crate::format::envelope::{KEY_ID_INFO, KEY_ID_LEN};

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
/// Largest key file read (anything longer is refused unread).
const MAX_KEY_FILE: u64 = 4096;

/// A key's public fingerprint: HKDF-SHA256(key, no salt, "hotbak key id"),
/// 8 bytes. Stored in every sealed file's header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit master key. Zeroized on drop; `Debug` shows only the key id.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {} }}", self.id)
    }
}

impl Key {
    /// A key from raw bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut id = [0u8; KEY_ID_LEN];
        // 8 bytes is far below HKDF-SHA256's 8160-byte limit: cannot fail.
        let _ = Hkdf::<Sha256>::new(None, &bytes).expand(KEY_ID_INFO, &mut id);
        Key {
            bytes,
            id: KeyId(id),
        }
    }

    /// A fresh random key (for `keygen` and tests).
    ///
    /// # Errors
    /// [`Error::Rng`] if the OS random source fails.
    pub fn generate() -> Result<Self, Error> {
        let mut b = Zeroizing::new([0u8; KEY_LEN]);
        rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut b[..])
            .map_err(|e| Error::Rng(e.to_string()))?;
        Ok(Self::from_bytes(*b))
    }

    /// Write a fresh random key into a new file `path` (64 hex digits and a
    /// newline, mode 0600, synced) and return its id. An existing file is
    /// never overwritten.
    ///
    /// # Errors
    /// [`Error::KeyFile`] (usage) if the file exists or cannot be written;
    /// [`Error::Rng`].
    pub fn write_new_file(path: &Path) -> Result<KeyId, Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |reason: String| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let key = Self::generate()?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    err("exists; a key file is never overwritten (remove it first, if no backup needs it)".into())
                }
                _ => err(e.to_string()),
            })?;
        let mut text = key.to_hex();
        text.push('\n');
        let written = f
            .write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| err(e.to_string()));
        if let Err(e) = written {
            drop(f);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(key.id())
    }

    /// Parse key material by the key-file rule (module docs).
    ///
    /// # Errors
    /// [`Error::KeyFormat`] describing the shape problem (never the bytes).
    pub fn parse(content: &[u8]) -> Result<Self, Error> {
        if content.len() == KEY_LEN {
            let mut b = Zeroizing::new([0u8; KEY_LEN]);
            b.copy_from_slice(content);
            return Ok(Self::from_bytes(*b));
        }
        Self::parse_hex(content)
    }

    /// Parse 64 hex digits, surrounding ASCII whitespace ignored.
    ///
    /// # Errors
    /// [`Error::KeyFormat`].
    pub fn parse_hex(content: &[u8]) -> Result<Self, Error> {
        let t = content.trim_ascii();
        if t.len() != 2 * KEY_LEN {
            return Err(Error::KeyFormat(format!(
                "expected exactly {KEY_LEN} raw bytes, or {} hex digits (surrounding whitespace allowed); found {} bytes ({} after trimming whitespace)",
                2 * KEY_LEN,
                content.len(),
                t.len()
            )));
        }
        let mut b = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(t, &mut b[..]).map_err(|_| {
            Error::KeyFormat("the 64-character key contains a non-hex character".into())
        })?;
        Ok(Self::from_bytes(*b))
    }

    /// Load a key file (see the module docs for the accepted forms).
    ///
    /// # Errors
    /// [`Error::KeyFile`] (usage) naming the file and the problem.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let err = |reason: String| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let mut content = Zeroizing::new(Vec::with_capacity(128));
        f.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut content)
            .map_err(|e| err(e.to_string()))?;
        if content.len() as u64 > MAX_KEY_FILE {
            return Err(err(format!(
                "larger than {MAX_KEY_FILE} bytes: not a key file"
            )));
        }
        Self::parse(&content).map_err(|e| match e {
            Error::KeyFormat(r) => err(r),
            other => other,
        })
    }

    /// Load a hex key from environment variable `var`.
    ///
    /// # Errors
    /// [`Error::KeyEnv`] (usage) if unset, not Unicode, or not 64 hex digits.
    pub fn from_env(var: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::KeyEnv {
            var: var.to_owned(),
            reason,
        };
        let v = Zeroizing::new(std::env::var(var).map_err(|e| err(e.to_string()))?);
        Self::parse_hex(v.as_bytes()).map_err(|e| match e {
            Error::KeyFormat(r) => err(r),
            other => other,
        })
    }

    /// The key id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key as 64 lowercase hex digits (for writing a new key file).
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.bytes))
    }

    /// Raw key bytes, for the key derivation in this module's siblings.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};
    use std::io::Write;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keygen_writes_a_new_private_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        let id = Key::write_new_file(&p).unwrap();
        assert_eq!(Key::from_file(&p).unwrap().id(), id);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let before = std::fs::read(&p).unwrap();
        let e = Key::write_new_file(&p).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Usage);
        assert!(e.to_string().contains("never overwritten"), "{e}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "the old key is untouched"
        );
        assert_ne!(Key::write_new_file(&d.path().join("k2")).unwrap(), id);
    }

    #[test]
    fn parse_forms() {
        let raw: Vec<u8> = (0u8..32).collect();
        let k = Key::parse(&raw).unwrap();
        assert_eq!(k.to_hex().as_str(), HEX);
        for text in [
            HEX.to_owned(),
            format!("{HEX}\n"),
            format!("  {}\r\n", HEX.to_uppercase()),
        ] {
            assert_eq!(Key::parse(text.as_bytes()).unwrap().id(), k.id());
        }
        // A raw key followed by a newline is 33 bytes: refused, not silently used.
        let mut r33 = raw.clone();
        r33.push(b'\n');
        assert!(Key::parse(&r33).is_err());
        assert!(Key::parse(&HEX.as_bytes()[..62]).is_err());
        let bad = format!("{}zz", &HEX[..62]);
        let e = Key::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Usage);
        assert!(!e.to_string().contains(&HEX[..20]));
    }

    #[test]
    fn debug_hides_key_and_id_is_stable() {
        let k = Key::from_bytes([7u8; 32]);
        let d = format!("{k:?}");
        assert!(!d.contains("07, 07") && !d.contains("0707"), "{d}");
        assert_eq!(k.id(), Key::from_bytes([7u8; 32]).id());
        assert_ne!(k.id(), Key::from_bytes([8u8; 32]).id());
    }

    #[test]
    fn from_file_and_env() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{HEX}").unwrap();
        let k = Key::from_file(f.path()).unwrap();
        assert_eq!(k.to_hex().as_str(), HEX);
        let e = Key::from_file(Path::new("/nonexistent/key")).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Usage);
        let var = "HOTBAK_TEST_KEY_FROM_ENV_UNIT";
        std::env::set_var(var, HEX);
        assert_eq!(Key::from_env(var).unwrap().id(), k.id());
        std::env::remove_var(var);
        assert_eq!(Key::from_env(var).unwrap_err().class(), ErrorClass::Usage);
    }
}

//! The `file_key_management` plugin's keys, read as the plugin reads them:
//! the key file `file_key_management_filename`, opened with
//! `file_key_management_filekey` (a literal secret, or `FILE:path` naming a
//! file that holds it) when it is `Salted__`-encrypted, and the mode
//! `file_key_management_encryption_algorithm`. The settings come from the
//! server's variables (backup) or from `backup-my.cnf` and the command line
//! (prepare). Parsing is [`crate::encrypt::mariadb`]; this module only reads
//! the files. Errors name the file and never carry key material.

use std::path::{Path, PathBuf};

use crate::encrypt::mariadb::{self, Algorithm, KeyFile};
use crate::error::{Classify, ErrorClass};

/// Variable names of the plugin's settings.
pub const FILENAME: &str = "file_key_management_filename";
/// The file key setting.
pub const FILEKEY: &str = "file_key_management_filekey";
/// The mode setting.
pub const ALGORITHM: &str = "file_key_management_encryption_algorithm";

/// Errors reading the keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key file or the file key file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `key file` or `file key file`.
        what: &'static str,
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not parse or open.
    #[error("key file {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: mariadb::Error,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Read { .. } => ErrorClass::Io,
            Error::Parse { source, .. } => source.class(),
        }
    }
}

/// The plugin's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileKeySettings {
    /// `file_key_management_filename`.
    pub filename: PathBuf,
    /// `file_key_management_filekey` as set (literal or `FILE:path`); empty
    /// when the key file is not encrypted.
    pub filekey: String,
    /// `file_key_management_encryption_algorithm`.
    pub algorithm: String,
}

/// Keys loaded from a key file, with the mode they are used in.
#[derive(Debug, Clone)]
pub struct FileKeys {
    /// The keys.
    pub keys: KeyFile,
    /// The mode.
    pub algorithm: Algorithm,
    /// The key file they came from (for messages).
    pub path: PathBuf,
}

impl FileKeySettings {
    /// From settings looked up by (lower-case) name; `None` when no key
    /// file is set (another key-management plugin, or none).
    pub fn from_lookup<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let filename = get(FILENAME).map(str::trim).filter(|v| !v.is_empty())?;
        Some(FileKeySettings {
            filename: PathBuf::from(filename),
            filekey: get(FILEKEY).unwrap_or("").to_owned(),
            algorithm: get(ALGORITHM).unwrap_or("").to_owned(),
        })
    }

    /// Read and parse the key file (relative names against `base`).
    ///
    /// # Errors
    /// [`Error::Read`] naming the file; [`Error::Parse`] (wrong or missing
    /// file key, syntax, no key 1, unknown algorithm).
    pub fn load(&self, base: &Path) -> Result<FileKeys, Error> {
        let path = base.join(&self.filename);
        let parse = |source| Error::Parse {
            path: path.display().to_string(),
            source,
        };
        let algorithm = Algorithm::from_setting(&self.algorithm).map_err(parse)?;
        let secret = match self.filekey.strip_prefix("FILE:") {
            Some(f) => {
                let fp = base.join(f);
                let data = read_limited(&fp, mariadb::MAX_SECRET_SIZE as u64 + 2, "file key file")?;
                Some(mariadb::file_key_from_file(&data).map_err(parse)?)
            }
            None if self.filekey.is_empty() => None,
            None => Some(zeroize::Zeroizing::new(self.filekey.as_bytes().to_vec())),
        };
        let data = read_limited(&path, mariadb::MAX_KEY_FILE_SIZE as u64 + 1, "key file")?;
        let keys = KeyFile::parse(&data, secret.as_deref().map(Vec::as_slice)).map_err(parse)?;
        Ok(FileKeys {
            keys,
            algorithm,
            path,
        })
    }
}

fn read_limited(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let err = |source| Error::Read {
        what,
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut data = Vec::new();
    f.take(limit).read_to_end(&mut data).map_err(err)?;
    Ok(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn settings_and_loading() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("keys.txt"),
            "1;00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        let mut vars = BTreeMap::new();
        assert!(FileKeySettings::from_lookup(|k| vars.get(k).copied()).is_none());
        vars.insert(FILENAME, "keys.txt");
        vars.insert(ALGORITHM, "AES_CTR");
        let s = FileKeySettings::from_lookup(|k| vars.get(k).copied()).unwrap();
        let k = s.load(d.path()).unwrap();
        assert_eq!(k.algorithm, Algorithm::AesCtr);
        assert_eq!(k.keys.ids(), vec![1]);
        let missing = FileKeySettings {
            filename: "nope.txt".into(),
            ..s.clone()
        };
        let e = missing.load(d.path()).unwrap_err();
        assert!(e.to_string().contains("nope.txt"), "{e}");
        assert_eq!(e.class(), ErrorClass::Io);
        let with_key = FileKeySettings {
            filekey: "FILE:absent".into(),
            ..s
        };
        let e = with_key.load(d.path()).unwrap_err();
        assert!(e.to_string().contains("file key file"), "{e}");
    }
}

//! MariaDB's data-at-rest encryption, as far as a backup tool needs it
//! without the server (see `format-spec/redo-log.md`, "Encrypted log"):
//!
//! - the `file_key_management` plugin's key file ([`KeyFile::parse`]):
//!   `id;hex` lines, optionally inside OpenSSL's `Salted__` AES-256-CBC
//!   envelope (key and IV from the file key by `EVP_BytesToKey` with SHA-1,
//!   one round), as `openssl enc -aes-256-cbc -md sha1 -pass …` writes it;
//! - the redo log key ([`LogKey::derive`]): the header's 16-byte message
//!   encrypted (AES-ECB) with key 1 of the plugin;
//! - the records of one encrypted mini-transaction ([`LogKey::decrypt_mtr`],
//!   [`LogKey::encrypt_records`]).
//!
//! The modes are written here over the `aes` block cipher rather than taken
//! from the `cbc`/`ctr` crates because MariaDB's "no padding" CBC encrypts
//! a final partial block in its own way (XOR with the ECB encryption of the
//! initial IV), which those crates do not offer. Pure: no I/O.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

use crate::error::{Classify, ErrorClass};
use crate::innodb::redo::{self, LogCrypt, MTR_NONCE, MTR_TRAILER};

/// Largest key file the plugin reads.
pub const MAX_KEY_FILE_SIZE: usize = 1 << 20;
/// Longest file key (`file_key_management_filekey`) the plugin accepts.
pub const MAX_SECRET_SIZE: usize = 256;
/// OpenSSL's prefix of a password-encrypted file.
pub const SALTED_PREFIX: &[u8] = b"Salted__";
const AES_BLOCK: usize = 16;

/// Errors of this module. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key file does not parse as the plugin would read it.
    #[error("key file line {line}, column {column}: {reason}")]
    KeyFileSyntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The key file is larger than the plugin reads.
    #[error("key file of {0} bytes exceeds {MAX_KEY_FILE_SIZE} bytes")]
    KeyFileTooLarge(usize),
    /// The key file is `Salted__`-encrypted and the file key does not open it.
    #[error("cannot decrypt the key file with the file key (wrong file_key_management_filekey?)")]
    WrongFileKey,
    /// The key file is encrypted but no file key was given.
    #[error("the key file is encrypted (Salted__) and no file_key_management_filekey was given")]
    FileKeyMissing,
    /// A file key was given but the key file is not encrypted.
    #[error("a file key was given but the key file is not encrypted")]
    NotEncrypted,
    /// The file key is longer than the plugin accepts.
    #[error("the file key is longer than {MAX_SECRET_SIZE} bytes")]
    FileKeyTooLong,
    /// The key file has no key with this id (or version).
    #[error("no key id {id} version {version} in the key file")]
    NoKey {
        /// Key id.
        id: u32,
        /// Key version asked for (`file_key_management` only has 1).
        version: u32,
    },
    /// A setting has a value this module does not know.
    #[error("{name} = {value:?}: {reason}")]
    Setting {
        /// Setting name.
        name: &'static str,
        /// Value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// An mtr cannot be delimited into records.
    #[error("encrypted mini-transaction: {0}")]
    Mtr(&'static str),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Mtr(_) => ErrorClass::Corrupt,
            _ => ErrorClass::Usage,
        }
    }
}

/// `file_key_management_encryption_algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `aes_cbc` (the default).
    #[default]
    AesCbc,
    /// `aes_ctr`.
    AesCtr,
}

impl Algorithm {
    /// From the server variable's value (case-insensitive; empty = default).
    ///
    /// # Errors
    /// [`Error::Setting`] for another value.
    pub fn from_setting(v: &str) -> Result<Self, Error> {
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "aes_cbc" => Ok(Algorithm::AesCbc),
            "aes_ctr" => Ok(Algorithm::AesCtr),
            _ => Err(Error::Setting {
                name: "file_key_management_encryption_algorithm",
                value: v.to_owned(),
                reason: "expected aes_cbc or aes_ctr",
            }),
        }
    }
}

/// The keys of a `file_key_management` key file, by id (version 1 each).
#[derive(Clone, Default)]
pub struct KeyFile {
    keys: BTreeMap<u32, Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The file key from the contents of the file `FILE:path` names: trailing
/// CR/LF removed, at most [`MAX_SECRET_SIZE`] bytes.
///
/// # Errors
/// [`Error::FileKeyTooLong`].
pub fn file_key_from_file(data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut n = data.len();
    while n > 0 && matches!(data[n - 1], b'\r' | b'\n') {
        n -= 1;
    }
    if n > MAX_SECRET_SIZE {
        return Err(Error::FileKeyTooLong);
    }
    // The plugin reads it as a C string.
    let end = data[..n].iter().position(|&b| b == 0).unwrap_or(n);
    Ok(Zeroizing::new(data[..end].to_vec()))
}

/// OpenSSL's `EVP_BytesToKey` with SHA-1 and one round: 32 key bytes and
/// 16 IV bytes from the password and the 8-byte salt.
fn bytes_to_key(secret: &[u8], salt: &[u8]) -> Zeroizing<[u8; 48]> {
    let mut out = Zeroizing::new([0u8; 48]);
    let mut filled = 0;
    let mut prev: Option<[u8; 20]> = None;
    while filled < 48 {
        let mut h = Sha1::new();
        if let Some(p) = prev {
            h.update(p);
        }
        h.update(secret);
        h.update(salt);
        let d: [u8; 20] = h.finalize().into();
        let n = (48 - filled).min(20);
        out[filled..filled + n].copy_from_slice(&d[..n]);
        filled += n;
        prev = Some(d);
    }
    out
}

impl KeyFile {
    /// Parse a key file as the plugin does. `file_key` is the secret that
    /// opens a `Salted__` file (`None` or empty for a plain file).
    ///
    /// # Errors
    /// [`Error::KeyFileTooLarge`], [`Error::FileKeyMissing`],
    /// [`Error::WrongFileKey`], [`Error::NotEncrypted`],
    /// [`Error::KeyFileSyntax`] (also when key 1 is missing).
    pub fn parse(data: &[u8], file_key: Option<&[u8]>) -> Result<Self, Error> {
        if data.len() > MAX_KEY_FILE_SIZE {
            return Err(Error::KeyFileTooLarge(data.len()));
        }
        let secret = file_key.filter(|s| !s.is_empty());
        let text: Zeroizing<Vec<u8>> =
            if data.len() > SALTED_PREFIX.len() && data.starts_with(SALTED_PREFIX) {
                let Some(secret) = secret else {
                    return Err(Error::FileKeyMissing);
                };
                let salt = data.get(8..16).ok_or(Error::WrongFileKey)?;
                let body = &data[16.min(data.len())..];
                let kiv = bytes_to_key(secret, salt);
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&kiv[32..48]);
                cbc_decrypt_pkcs7(&kiv[..32], &iv, body).ok_or(Error::WrongFileKey)?
            } else if secret.is_some() {
                return Err(Error::NotEncrypted);
            } else {
                Zeroizing::new(data.to_vec())
            };
        // The plugin reads a C string.
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let mut keys = BTreeMap::new();
        for (i, line) in text[..end].split(|&b| b == b'\n').enumerate() {
            if let Some((id, key)) = parse_line(line, i + 1)? {
                keys.insert(id, key);
            }
        }
        if !keys.contains_key(&1) {
            return Err(Error::KeyFileSyntax {
                line: 0,
                column: 0,
                reason: "system key id 1 is missing",
            });
        }
        Ok(KeyFile { keys })
    }

    /// The key `id` at `version` (`file_key_management` has only version 1).
    ///
    /// # Errors
    /// [`Error::NoKey`].
    pub fn key(&self, id: u32, version: u32) -> Result<&[u8], Error> {
        match self.keys.get(&id) {
            Some(k) if version == 1 => Ok(k.as_slice()),
            _ => Err(Error::NoKey { id, version }),
        }
    }

    /// The ids present.
    #[must_use]
    pub fn ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }
}

/// A key of the file: its id and bytes.
type KeyLine = (u32, Zeroizing<Vec<u8>>);

fn parse_line(line: &[u8], no: usize) -> Result<Option<KeyLine>, Error> {
    let err = |col: usize, reason| Error::KeyFileSyntax {
        line: no,
        column: col + 1,
        reason,
    };
    let mut p = 0;
    while p < line.len() && line[p].is_ascii_whitespace() {
        p += 1;
    }
    if p == line.len() || line[p] == b'#' {
        return Ok(None);
    }
    if !line[p].is_ascii_digit() {
        return Err(err(p, "syntax error"));
    }
    let mut id: u64 = 0;
    while p < line.len() && line[p].is_ascii_digit() {
        id = id * 10 + u64::from(line[p] - b'0');
        if id > u64::from(u32::MAX) {
            return Err(err(p, "invalid key id"));
        }
        p += 1;
    }
    if id < 1 {
        return Err(err(p, "invalid key id"));
    }
    if line.get(p) != Some(&b';') {
        return Err(err(p, "syntax error"));
    }
    p += 1;
    let mut key = Zeroizing::new(Vec::with_capacity(32));
    let hex = |b: u8| (b as char).to_digit(16);
    while key.len() < 32 {
        match (
            line.get(p).copied().and_then(hex),
            line.get(p + 1).copied().and_then(hex),
        ) {
            (Some(h), Some(l)) => {
                key.push((h * 16 + l) as u8);
                p += 2;
            }
            _ => break,
        }
    }
    if line.get(p).copied().and_then(hex).is_some() || !matches!(key.len(), 16 | 24 | 32) {
        return Err(err(p, "invalid key"));
    }
    Ok(Some((u32::try_from(id).unwrap_or(u32::MAX), key)))
}

/// AES with a 16, 24 or 32-byte key.
pub(super) enum Aes {
    A128(Box<aes::Aes128>),
    A192(Box<aes::Aes192>),
    A256(Box<aes::Aes256>),
}

impl Aes {
    pub(super) fn new(key: &[u8]) -> Option<Aes> {
        Some(match key.len() {
            16 => Aes::A128(Box::new(aes::Aes128::new_from_slice(key).ok()?)),
            24 => Aes::A192(Box::new(aes::Aes192::new_from_slice(key).ok()?)),
            32 => Aes::A256(Box::new(aes::Aes256::new_from_slice(key).ok()?)),
            _ => return None,
        })
    }

    pub(super) fn encrypt(&self, b: &mut [u8; AES_BLOCK]) {
        let g = GenericArray::from_mut_slice(b);
        match self {
            Aes::A128(c) => c.encrypt_block(g),
            Aes::A192(c) => c.encrypt_block(g),
            Aes::A256(c) => c.encrypt_block(g),
        }
    }

    fn decrypt(&self, b: &mut [u8; AES_BLOCK]) {
        let g = GenericArray::from_mut_slice(b);
        match self {
            Aes::A128(c) => c.decrypt_block(g),
            Aes::A192(c) => c.decrypt_block(g),
            Aes::A256(c) => c.decrypt_block(g),
        }
    }
}

fn block(s: &[u8]) -> [u8; AES_BLOCK] {
    let mut b = [0u8; AES_BLOCK];
    b.copy_from_slice(&s[..AES_BLOCK]);
    b
}

/// AES-CBC decryption with PKCS#7 padding; `None` when the padding is wrong
/// (the usual sign of a wrong password) or the length is not whole blocks.
fn cbc_decrypt_pkcs7(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if data.is_empty() || data.len() % AES_BLOCK != 0 {
        return None;
    }
    let aes = Aes::new(key)?;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    let mut prev = *iv;
    for c in data.chunks_exact(AES_BLOCK) {
        let mut b = block(c);
        aes.decrypt(&mut b);
        for (x, p) in b.iter_mut().zip(prev) {
            *x ^= p;
        }
        out.extend_from_slice(&b);
        prev = block(c);
    }
    let pad = usize::from(*out.last()?);
    if pad == 0
        || pad > AES_BLOCK
        || out[out.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return None;
    }
    let n = out.len() - pad;
    out.truncate(n);
    Some(out)
}

/// MariaDB's "no padding" stream over AES (`my_aes_crypt` with
/// `ENCRYPTION_FLAG_NOPAD`): CBC on whole blocks with the final partial
/// block XORed with ECB(IV); or CTR (big-endian 128-bit counter).
pub(super) fn crypt_nopad(
    aes: &Aes,
    alg: Algorithm,
    iv: &[u8; 16],
    data: &mut [u8],
    encrypt: bool,
) {
    match alg {
        Algorithm::AesCtr => {
            let mut ctr = u128::from_be_bytes(*iv);
            for chunk in data.chunks_mut(AES_BLOCK) {
                let mut ks = ctr.to_be_bytes();
                aes.encrypt(&mut ks);
                for (x, k) in chunk.iter_mut().zip(ks) {
                    *x ^= k;
                }
                ctr = ctr.wrapping_add(1);
            }
        }
        Algorithm::AesCbc => {
            let whole = data.len() / AES_BLOCK * AES_BLOCK;
            let mut prev = *iv;
            for c in data[..whole].chunks_exact_mut(AES_BLOCK) {
                let mut b = block(c);
                if encrypt {
                    for (x, p) in b.iter_mut().zip(prev) {
                        *x ^= p;
                    }
                    aes.encrypt(&mut b);
                    prev = b;
                } else {
                    let cipher = b;
                    aes.decrypt(&mut b);
                    for (x, p) in b.iter_mut().zip(prev) {
                        *x ^= p;
                    }
                    prev = cipher;
                }
                c.copy_from_slice(&b);
            }
            if whole < data.len() {
                let mut mask = *iv;
                aes.encrypt(&mut mask);
                for (x, m) in data[whole..].iter_mut().zip(mask) {
                    *x ^= m;
                }
            }
        }
    }
}

/// The AES-128 key of one encrypted redo log and the plugin's mode.
pub struct LogKey {
    aes: Aes,
    alg: Algorithm,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey").field("alg", &self.alg).finish()
    }
}

impl LogKey {
    /// Derive the log key: the header's message encrypted with `key` (the
    /// plugin's key id 1 at the header's key version) in AES-ECB.
    ///
    /// # Errors
    /// [`Error::Setting`] for a key that is not 16, 24 or 32 bytes.
    pub fn derive(crypt: &LogCrypt, key: &[u8], alg: Algorithm) -> Result<Self, Error> {
        let bad = || Error::Setting {
            name: "key 1",
            value: format!("{} bytes", key.len()),
            reason: "a key must be 16, 24 or 32 bytes",
        };
        let master = Aes::new(key).ok_or_else(bad)?;
        let mut k = Zeroizing::new(crypt.msg);
        master.encrypt(&mut k);
        let aes = Aes::new(&k[..]).ok_or_else(bad)?;
        Ok(LogKey { aes, alg })
    }

    /// Derive the log key of `crypt` from a key file.
    ///
    /// # Errors
    /// [`Error::NoKey`] when the file lacks the key id and version the log
    /// header names; as [`LogKey::derive`].
    pub fn from_key_file(crypt: &LogCrypt, keys: &KeyFile, alg: Algorithm) -> Result<Self, Error> {
        Self::derive(crypt, keys.key(crypt.key_id, crypt.key_version)?, alg)
    }

    /// Encrypt or decrypt, in place, the record bodies of one mtr's
    /// `records` (the bytes before the termination byte) with the mtr's
    /// 8-byte `nonce`. The record headers (type byte and length varint)
    /// stay as they are; the bodies of all records form one stream whose
    /// IV is the nonce followed by the first record's header bytes, zero
    /// padded to 16 bytes.
    ///
    /// # Errors
    /// [`Error::Mtr`] when the records cannot be delimited.
    pub fn crypt_records(
        &self,
        records: &mut [u8],
        nonce: &[u8],
        encrypt: bool,
    ) -> Result<(), Error> {
        let mut spans = Vec::new();
        let mut pos = 0usize;
        let mut iv = [0u8; 16];
        let n = nonce.len().min(8);
        iv[..n].copy_from_slice(&nonce[..n]);
        while pos < records.len() {
            let (body, len) =
                redo::record_extent(records, pos).ok_or(Error::Mtr("bad record length"))?;
            if spans.is_empty() {
                let hdr = &records[pos..body];
                if hdr.len() > 8 {
                    return Err(Error::Mtr("record header too long"));
                }
                iv[8..8 + hdr.len()].copy_from_slice(hdr);
            }
            let end = body.checked_add(len).filter(|&e| e <= records.len());
            let end = end.ok_or(Error::Mtr("record extends past the mini-transaction"))?;
            spans.push(body..end);
            pos = end;
        }
        let mut stream = Zeroizing::new(Vec::with_capacity(records.len()));
        for s in &spans {
            stream.extend_from_slice(&records[s.clone()]);
        }
        crypt_nopad(&self.aes, self.alg, &iv, &mut stream, encrypt);
        let mut at = 0;
        for s in spans {
            let l = s.len();
            records[s].copy_from_slice(&stream[at..at + l]);
            at += l;
        }
        Ok(())
    }

    /// Encrypt `records` in place (see [`LogKey::crypt_records`]).
    ///
    /// # Errors
    /// As [`LogKey::crypt_records`].
    pub fn encrypt_records(&self, records: &mut [u8], nonce: &[u8]) -> Result<(), Error> {
        self.crypt_records(records, nonce, true)
    }

    /// A copy of one complete encrypted mtr (records, termination byte,
    /// 8-byte nonce, CRC-32C, as `redo::parse_mtr` delimits it) with its
    /// records decrypted. The trailer is copied unchanged (so the CRC no
    /// longer matches the copy: it covers the ciphertext).
    ///
    /// # Errors
    /// [`Error::Mtr`] when the mtr is shorter than its trailer or its
    /// records cannot be delimited.
    pub fn decrypt_mtr(&self, mtr: &[u8]) -> Result<Vec<u8>, Error> {
        let trailer = MTR_TRAILER + MTR_NONCE;
        if mtr.len() <= trailer {
            return Err(Error::Mtr("shorter than its trailer"));
        }
        let mut out = mtr.to_vec();
        let rec = mtr.len() - trailer;
        let (records, tail) = out.split_at_mut(rec);
        self.crypt_records(records, &tail[1..1 + MTR_NONCE], false)?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY1: &str = "a7addd9adea9978fda19f21e6be987880e68ac92632ca052e5bb42b1a506939a";

    fn keys() -> KeyFile {
        KeyFile::parse(
            format!("# c\n1;{KEY1}\n  2;00112233445566778899aabbccddeeff\n").as_bytes(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn key_file_lines() {
        let k = keys();
        assert_eq!(k.ids(), vec![1, 2]);
        assert_eq!(k.key(1, 1).unwrap(), hex::decode(KEY1).unwrap());
        assert_eq!(k.key(2, 1).unwrap().len(), 16);
        assert_eq!(k.key(2, 2), Err(Error::NoKey { id: 2, version: 2 }));
        assert_eq!(k.key(3, 1), Err(Error::NoKey { id: 3, version: 1 }));
        for (bad, line) in [
            ("1;abc\n", 1),
            ("x;00\n", 1),
            (
                "1;00112233445566778899aabbccddeeff\n0;00112233445566778899aabbccddeeff\n",
                2,
            ),
            ("1:00112233445566778899aabbccddeeff\n", 1),
            ("1;00112233445566778899aabbccddeeff0\n", 1),
        ] {
            match KeyFile::parse(bad.as_bytes(), None) {
                Err(Error::KeyFileSyntax { line: l, .. }) => assert_eq!(l, line, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            KeyFile::parse(b"2;00112233445566778899aabbccddeeff\n", None),
            Err(Error::KeyFileSyntax { line: 0, .. })
        ));
        assert_eq!(
            KeyFile::parse(format!("1;{KEY1}\n").as_bytes(), Some(b"pw")).err(),
            Some(Error::NotEncrypted)
        );
    }

    /// `printf '1;<KEY1>\n' | openssl enc -aes-256-cbc -md sha1 -pass pass:secret | xxd -p`
    const SALTED_HEX: &str = include_str!("testdata/keys_salted.hex");

    #[test]
    fn salted_key_file_opens_with_the_file_key_only() {
        let data = hex::decode(SALTED_HEX.trim()).unwrap();
        assert!(data.starts_with(SALTED_PREFIX));
        let k = KeyFile::parse(&data, Some(b"secret")).unwrap();
        assert_eq!(k.key(1, 1).unwrap(), hex::decode(KEY1).unwrap());
        assert_eq!(
            KeyFile::parse(&data, None).err(),
            Some(Error::FileKeyMissing)
        );
        assert!(matches!(
            KeyFile::parse(&data, Some(b"wrong")),
            Err(Error::WrongFileKey | Error::KeyFileSyntax { .. })
        ));
        assert_eq!(
            file_key_from_file(b"secret\r\n").unwrap().as_slice(),
            b"secret"
        );
        assert_eq!(
            file_key_from_file(&[b'a'; 257]).err(),
            Some(Error::FileKeyTooLong)
        );
    }

    fn crypt() -> LogCrypt {
        LogCrypt {
            key_id: 1,
            key_version: 1,
            msg: *b"0123456789abcdef",
            nonce: [1, 2, 3, 4],
        }
    }

    fn records() -> Vec<u8> {
        // A FILE_MODIFY with a long (varint) length, a page WRITE (12
        // bytes of body), a same-page WRITE.
        let name = b"./db/a_rather_long_table_name.ibd";
        let body = 2 + name.len();
        let mut r = vec![0xB0];
        let (v, n) = redo::encode_varint(u32::try_from(body + 1 - 15).unwrap());
        r.extend_from_slice(&v[..n]);
        r.extend_from_slice(&[7, 0]);
        r.extend_from_slice(name);
        r.push(0x3C);
        r.extend_from_slice(&[5, 3, 0x81, 0x20, 1, 2, 3, 4, 5, 6, 7, 8]);
        r.extend_from_slice(&[0xB3, 9, 9, 9]);
        r
    }

    #[test]
    fn records_round_trip_in_both_modes_and_headers_stay_clear() {
        for alg in [Algorithm::AesCbc, Algorithm::AesCtr] {
            let k = LogKey::from_key_file(&crypt(), &keys(), alg).unwrap();
            let plain = records();
            let mut c = plain.clone();
            let nonce = 0x1234_5678_u64.to_be_bytes();
            k.encrypt_records(&mut c, &nonce).unwrap();
            assert_ne!(c, plain);
            // Headers unchanged: the same record kinds and extents.
            assert_eq!(c[..2], plain[..2]);
            assert_eq!(redo::file_record_kinds(&c), redo::file_record_kinds(&plain));
            assert!(redo::file_record_kinds(&c).unwrap().modify);
            // A whole mtr: records, termination byte, nonce, CRC.
            let mut mtr = c.clone();
            mtr.push(1);
            mtr.extend_from_slice(&nonce);
            mtr.extend_from_slice(&[0; 4]);
            let d = k.decrypt_mtr(&mtr).unwrap();
            assert_eq!(&d[..plain.len()], &plain[..], "{alg:?}");
            let ops: Vec<_> = redo::file_records(&d[..plain.len()]).collect();
            assert!(
                matches!(ops[..], [Ok(redo::FileOp::Modify { path, .. })] if path == b"./db/a_rather_long_table_name.ibd"),
                "{ops:?}"
            );
            // Another nonce, another ciphertext; a wrong key, garbage.
            let mut c2 = plain.clone();
            k.encrypt_records(&mut c2, &1u64.to_be_bytes()).unwrap();
            assert_ne!(c2, c);
            let other = KeyFile::parse(b"1;00112233445566778899aabbccddeeff\n", None).unwrap();
            let wrong = LogKey::from_key_file(&crypt(), &other, alg).unwrap();
            let g = wrong.decrypt_mtr(&mtr).unwrap();
            assert_ne!(&g[..plain.len()], &plain[..]);
        }
    }

    #[test]
    fn cbc_partial_block_is_xor_with_ecb_of_the_iv() {
        let aes = Aes::new(&[7u8; 16]).unwrap();
        let iv = [9u8; 16];
        let mut d = [0u8; 5];
        crypt_nopad(&aes, Algorithm::AesCbc, &iv, &mut d, true);
        let mut m = iv;
        aes.encrypt(&mut m);
        assert_eq!(d, m[..5]);
    }

    #[test]
    fn algorithm_setting() {
        assert_eq!(
            Algorithm::from_setting("AES_CTR").unwrap(),
            Algorithm::AesCtr
        );
        assert_eq!(Algorithm::from_setting("").unwrap(), Algorithm::AesCbc);
        assert!(Algorithm::from_setting("aes_gcm").is_err());
    }
}

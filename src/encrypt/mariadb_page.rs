//! MariaDB's page encryption of InnoDB tablespaces (`innodb_encrypt_tables`,
//! `ENCRYPTED=YES`), as the native prepare needs it: the per-tablespace
//! crypt data on page 0 ([`CryptData`]), the tablespace's local key
//! ([`SpaceKey`]), and the decryption and re-encryption of one page in the
//! full_crc32 format ([`SpaceKey::decrypt_page`], [`SpaceKey::encrypt_page`]).
//! See `format-spec/innodb-pages.md`, "Encrypted pages".
//!
//! The full_crc32 page format (10.11's default) and the legacy formats
//! (ROW_FORMAT=COMPRESSED pages, which are always legacy, and legacy
//! uncompressed pages) are handled; page_compressed pages are refused with
//! [`Error::Unsupported`]. Pure: no I/O.

use zeroize::Zeroizing;

use super::mariadb::{crypt_nopad, Aes, Algorithm, KeyFile};
use crate::error::{Classify, ErrorClass};
use crate::innodb::page::{
    legacy_crc32, legacy_innodb_new_checksum, zip_adler32, zip_crc32, PageFormat,
    BUF_NO_CHECKSUM_MAGIC, FIL_PAGE_DATA, FIL_PAGE_FILE_FLUSH_LSN, FIL_PAGE_LSN, FIL_PAGE_OFFSET,
    FIL_PAGE_PAGE_COMPRESSED, FIL_PAGE_PAGE_COMPRESSED_ENCRYPTED, FIL_PAGE_SPACE_ID, FIL_PAGE_TYPE,
};

/// The 6 bytes that open the crypt data on page 0 (`CRYPT_MAGIC`).
pub const CRYPT_MAGIC: [u8; 6] = [b's', 0x0E, 0x0C, b'R', b'E', b't'];
/// Bytes after the magic: type, IV length, IV, min key version, key id,
/// encryption mode (what a page-0 write of the crypt data logs).
pub const CRYPT_BODY_LEN: usize = 2 + 16 + 4 + 4 + 1;
/// The crypt data with its magic.
pub const CRYPT_DATA_LEN: usize = CRYPT_MAGIC.len() + CRYPT_BODY_LEN;
/// Where full_crc32 keeps the key version of an encrypted page (bytes 0..4).
pub const FCRC32_KEY_VERSION: usize = 0;
/// First encrypted byte of a full_crc32 page (the old flush-LSN field).
pub const FCRC32_ENCRYPTED_FROM: usize = FIL_PAGE_FILE_FLUSH_LSN;
/// full_crc32 marks a page_compressed page by this bit of the page type.
pub const FCRC32_COMPRESSED_MARKER: u16 = 1 << 15;
/// Where the legacy formats keep the key version of an encrypted page
/// (bytes 26..30), followed by the checksum of the encrypted page (30..34).
pub const LEGACY_KEY_VERSION: usize = FIL_PAGE_FILE_FLUSH_LSN;
/// Page types never encrypted (`fil_space_encrypt_valid_page_type`).
const FIL_PAGE_TYPE_FSP_HDR: u16 = 8;
const FIL_PAGE_TYPE_XDES: u16 = 9;
/// R-tree pages are encrypted in the full_crc32 format only.
const FIL_PAGE_RTREE: u16 = 17854;
/// `TRX_SYS_PAGE_NO`: page 5 of the system tablespace is never encrypted.
const TRX_SYS_PAGE_NO: u32 = 5;

/// Errors of this module. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key for the page is not in the key file.
    #[error(transparent)]
    Key(#[from] super::mariadb::Error),
    /// The crypt data on page 0 is not what InnoDB writes.
    #[error("crypt data on page 0: {0}")]
    CryptData(&'static str),
    /// An encrypted page's checksum (over its ciphertext) does not match.
    #[error("encrypted page {page} of tablespace {space}: the checksum over the ciphertext does not match (a damaged page)")]
    Checksum {
        /// Space id.
        space: u32,
        /// Page number.
        page: u32,
    },
    /// The page decrypts to something that is not this page.
    #[error("encrypted page {page} of tablespace {space} does not decrypt with key id {key_id} version {key_version} ({what} after decryption): a wrong key, or another file_key_management_encryption_algorithm")]
    WrongKey {
        /// Space id.
        space: u32,
        /// Page number.
        page: u32,
        /// Key id of the tablespace.
        key_id: u32,
        /// Key version of the page.
        key_version: u32,
        /// What the decrypted page shows (`its space id field reads 77`).
        what: String,
    },
    /// A page format or kind this module does not encrypt or decrypt.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Key(e) => e.class(),
            Error::WrongKey { .. } => ErrorClass::Usage,
            Error::CryptData(_) | Error::Checksum { .. } => ErrorClass::Corrupt,
            Error::Unsupported(_) => ErrorClass::Failed,
        }
    }
}

/// The tablespace's encryption mode (`fil_encryption_t`, the table option
/// `ENCRYPTED=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `DEFAULT`: encrypted while `innodb_encrypt_tables` is on.
    Default,
    /// `ENCRYPTED=YES`.
    On,
    /// `ENCRYPTED=NO`.
    Off,
}

/// The per-tablespace crypt data (`fil_space_crypt_t` on page 0).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CryptData {
    /// `CRYPT_SCHEME_1` (1) or unencrypted (0).
    pub scheme: u8,
    /// The tablespace's IV (the message its local key encrypts).
    pub iv: [u8; 16],
    /// Oldest key version still in the tablespace.
    pub min_key_version: u32,
    /// Key id of the tablespace (`ENCRYPTION_KEY_ID`).
    pub key_id: u32,
    /// Encryption mode.
    pub mode: Mode,
}

impl std::fmt::Debug for CryptData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptData")
            .field("scheme", &self.scheme)
            .field("min_key_version", &self.min_key_version)
            .field("key_id", &self.key_id)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Offset of the crypt data on page 0: after the FSP header and the
/// extent descriptor array, whose length depends on the page size
/// (`FSP_HEADER_OFFSET + fsp_header_get_encryption_offset`).
#[must_use]
pub fn crypt_data_offset(fmt: &PageFormat) -> usize {
    const FSP_HEADER_OFFSET: usize = 38;
    const XDES_ARR_OFFSET: usize = FSP_HEADER_OFFSET + 112;
    let extent = fmt.extent_size_pages() as usize;
    // XDES_SIZE: 24 bytes of list node and state, 2 bits per page.
    let xdes_size = 24 + (extent * 2).div_ceil(8);
    FSP_HEADER_OFFSET + XDES_ARR_OFFSET + xdes_size * fmt.physical_size() as usize / extent.max(1)
}

impl CryptData {
    /// The crypt data of page 0, `None` when it has none (the tablespace
    /// was never encrypted).
    ///
    /// # Errors
    /// [`Error::CryptData`] for a scheme or IV length InnoDB would not
    /// accept.
    pub fn from_page0(page0: &[u8], fmt: &PageFormat) -> Result<Option<CryptData>, Error> {
        let at = crypt_data_offset(fmt);
        let Some(b) = page0.get(at..at + CRYPT_DATA_LEN) else {
            return Ok(None);
        };
        if b[..CRYPT_MAGIC.len()] != CRYPT_MAGIC {
            return Ok(None);
        }
        Self::from_body(&b[CRYPT_MAGIC.len()..]).map(Some)
    }

    /// From the [`CRYPT_BODY_LEN`] bytes after the magic (as a redo write
    /// of page 0 logs them).
    ///
    /// # Errors
    /// [`Error::CryptData`].
    pub fn from_body(b: &[u8]) -> Result<CryptData, Error> {
        let b = b
            .get(..CRYPT_BODY_LEN)
            .ok_or(Error::CryptData("shorter than 27 bytes"))?;
        if b[0] > 1 {
            return Err(Error::CryptData("unknown crypt scheme"));
        }
        if b[1] != 16 {
            return Err(Error::CryptData("IV length is not 16"));
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&b[2..18]);
        let be = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mode = match b[26] {
            0 => Mode::Default,
            1 => Mode::On,
            2 => Mode::Off,
            _ => return Err(Error::CryptData("unknown encryption mode")),
        };
        Ok(CryptData {
            scheme: b[0],
            iv,
            min_key_version: be(18),
            key_id: be(22),
            mode,
        })
    }

    /// The bytes InnoDB writes, magic first.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; CRYPT_DATA_LEN] {
        let mut o = [0u8; CRYPT_DATA_LEN];
        o[..6].copy_from_slice(&CRYPT_MAGIC);
        o[6] = self.scheme;
        o[7] = 16;
        o[8..24].copy_from_slice(&self.iv);
        o[24..28].copy_from_slice(&self.min_key_version.to_be_bytes());
        o[28..32].copy_from_slice(&self.key_id.to_be_bytes());
        o[32] = match self.mode {
            Mode::Default => 0,
            Mode::On => 1,
            Mode::Off => 2,
        };
        o
    }

    /// Whether InnoDB encrypts the pages it writes to this tablespace
    /// (`buf_page_encrypt`): scheme 1, not `ENCRYPTED=NO`, and for the
    /// default mode only while `innodb_encrypt_tables` is on.
    #[must_use]
    pub fn encrypts_writes(&self, encrypt_tables: bool) -> bool {
        self.scheme == 1
            && match self.mode {
                Mode::On => true,
                Mode::Off => false,
                Mode::Default => encrypt_tables,
            }
    }
}

/// Whether InnoDB ever encrypts page `page_no` of `space` with this
/// page type: never page 0, the TRX_SYS page of the system tablespace,
/// FSP_HDR/XDES pages, or (legacy formats) R-tree pages.
#[must_use]
pub fn page_kind_encryptable(space: u32, page_no: u32, page: &[u8], fmt: &PageFormat) -> bool {
    if page_no == 0 || (space == 0 && page_no == TRX_SYS_PAGE_NO) {
        return false;
    }
    let ty = page_type(page);
    !(matches!(ty, FIL_PAGE_TYPE_FSP_HDR | FIL_PAGE_TYPE_XDES)
        || (ty == FIL_PAGE_RTREE && !fmt.is_full_crc32()))
}

fn page_type(page: &[u8]) -> u16 {
    page.get(FIL_PAGE_TYPE..FIL_PAGE_TYPE + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

/// The key version of a full_crc32 page as read from disk (0: not
/// encrypted).
#[must_use]
pub fn fcrc32_key_version(page: &[u8]) -> u32 {
    be32(page, FCRC32_KEY_VERSION)
}

/// The key version of a page as read from disk, where its format keeps
/// it (0: not encrypted).
#[must_use]
pub fn key_version(page: &[u8], fmt: &PageFormat) -> u32 {
    if fmt.is_full_crc32() {
        be32(page, FCRC32_KEY_VERSION)
    } else {
        be32(page, LEGACY_KEY_VERSION)
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The local key of one tablespace at one key version: the plugin's key
/// (the tablespace's key id at that version) encrypting the tablespace's
/// IV in AES-ECB, used in the plugin's mode.
pub struct SpaceKey {
    aes: Aes,
    alg: Algorithm,
    space: u32,
    key_id: u32,
    key_version: u32,
    fmt: PageFormat,
}

impl std::fmt::Debug for SpaceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceKey")
            .field("space", &self.space)
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SpaceKey {
    /// The local key of tablespace `space` (pages in format `fmt`) from its
    /// crypt data and the plugin's key (`key`, of `crypt.key_id` at
    /// `key_version`).
    ///
    /// # Errors
    /// [`Error::Key`] for a key that is not 16, 24 or 32 bytes.
    pub fn new(
        (space, fmt): (u32, PageFormat),
        crypt: &CryptData,
        key: &[u8],
        key_version: u32,
        alg: Algorithm,
    ) -> Result<Self, Error> {
        let bad = || super::mariadb::Error::Setting {
            name: "key",
            value: format!("{} bytes", key.len()),
            reason: "a key must be 16, 24 or 32 bytes",
        };
        let global = Aes::new(key).ok_or_else(bad)?;
        let mut local = Zeroizing::new(crypt.iv);
        global.encrypt(&mut local);
        let aes = Aes::new(&local[..]).ok_or_else(bad)?;
        Ok(SpaceKey {
            aes,
            alg,
            space,
            key_id: crypt.key_id,
            key_version,
            fmt,
        })
    }

    /// The local key from a `file_key_management` key file: key
    /// `crypt.key_id`, version 1 (the only version the plugin has, so also
    /// the latest, which InnoDB writes pages with).
    ///
    /// # Errors
    /// [`Error::Key`] ([`super::mariadb::Error::NoKey`]) when the file has
    /// no such key.
    pub fn from_key_file(
        space: (u32, PageFormat),
        crypt: &CryptData,
        keys: &KeyFile,
        alg: Algorithm,
    ) -> Result<Self, Error> {
        Self::new(space, crypt, keys.key(crypt.key_id, 1)?, 1, alg)
    }

    /// The key id of the tablespace.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The key version pages are written with.
    #[must_use]
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// The IV of one page: space id, page number (little-endian 32-bit
    /// each) and the page LSN (little-endian 64-bit).
    fn page_iv(&self, page_no: u32, lsn: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..4].copy_from_slice(&self.space.to_le_bytes());
        iv[4..8].copy_from_slice(&page_no.to_le_bytes());
        iv[8..].copy_from_slice(&lsn.to_le_bytes());
        iv
    }

    fn check_page(&self, page: &[u8]) -> Result<(), Error> {
        if page.len() != self.fmt.physical_size() as usize || page.len() < 1024 {
            return Err(Error::Unsupported("not a whole page of its tablespace"));
        }
        let ty = page_type(page);
        let compressed = if self.fmt.is_full_crc32() {
            ty & FCRC32_COMPRESSED_MARKER != 0
        } else {
            matches!(
                ty,
                FIL_PAGE_PAGE_COMPRESSED | FIL_PAGE_PAGE_COMPRESSED_ENCRYPTED
            )
        };
        if compressed {
            return Err(Error::Unsupported(
                "a page_compressed and encrypted page (not supported by the native prepare)",
            ));
        }
        Ok(())
    }

    /// The encrypted byte range and the checksum of the encrypted page.
    fn layout(&self, n: usize) -> std::ops::Range<usize> {
        if self.fmt.is_full_crc32() {
            FCRC32_ENCRYPTED_FROM..n - 4
        } else {
            FIL_PAGE_DATA..n - 8
        }
    }

    /// The checksum InnoDB stores for the encrypted page: full_crc32 over
    /// bytes 0..n-4 (stored at n-4); legacy: the crc32 page checksum of
    /// the encrypted page (ROW_FORMAT=COMPRESSED: its zip variant), stored
    /// at 30 after the key version.
    fn crypt_checksum(&self, page: &[u8]) -> u32 {
        let n = page.len();
        if self.fmt.is_full_crc32() {
            crc32c::crc32c(&page[..n - 4])
        } else if self.fmt.is_zip() {
            zip_crc32(page)
        } else {
            legacy_crc32(page)
        }
    }

    fn stored_checksum(&self, page: &[u8]) -> u32 {
        if self.fmt.is_full_crc32() {
            be32(page, page.len() - 4)
        } else {
            be32(page, LEGACY_KEY_VERSION + 4)
        }
    }

    /// Decrypt, in place, a page read from disk whose key version is not 0
    /// (see [`key_version`]): check its checksum over the ciphertext as
    /// InnoDB does before decrypting, then decrypt (full_crc32: bytes 26 up
    /// to the 4-byte checksum; legacy: bytes 38 up to the 8-byte trailer).
    /// The bytes outside that range stay as read (the key version
    /// included), as in InnoDB's buffer pool. A wrong key reads as garbage:
    /// a full_crc32 page's space id field is encrypted and must read as the
    /// tablespace's id afterwards; a legacy page's own checksum at 0 (in
    /// clear, computed over the plaintext) must match the decrypted page.
    ///
    /// # Errors
    /// [`Error::Checksum`], [`Error::Key`] (the page's key version is not
    /// this key's), [`Error::WrongKey`], [`Error::Unsupported`].
    pub fn decrypt_page(&self, page: &mut [u8]) -> Result<(), Error> {
        self.check_page(page)?;
        let n = page.len();
        let page_no = be32(page, FIL_PAGE_OFFSET);
        if self.crypt_checksum(page) != self.stored_checksum(page) {
            return Err(Error::Checksum {
                space: self.space,
                page: page_no,
            });
        }
        let version = key_version(page, &self.fmt);
        if version != self.key_version {
            return Err(super::mariadb::Error::NoKey {
                id: self.key_id,
                version,
            }
            .into());
        }
        let iv = self.page_iv(page_no, be64(page, FIL_PAGE_LSN));
        let range = self.layout(n);
        crypt_nopad(&self.aes, self.alg, &iv, &mut page[range], false);
        let wrong = if self.fmt.is_full_crc32() {
            let got = be32(page, FIL_PAGE_SPACE_ID);
            (got != self.space).then(|| format!("its space id field reads {got}"))
        } else {
            // The page checksum at 0 was computed over the plaintext
            // before encryption (crc32; pages of older servers may carry
            // the innodb checksum).
            let stored = be32(page, 0);
            let ok = if self.fmt.is_zip() {
                zip_crc32(page) == stored || zip_adler32(page) == stored
            } else {
                legacy_crc32(page) == stored
                    || legacy_innodb_new_checksum(page) == stored
                    || stored == BUF_NO_CHECKSUM_MAGIC
            };
            (!ok).then(|| format!("its page checksum 0x{stored:08x} does not match"))
        };
        if let Some(what) = wrong {
            return Err(Error::WrongKey {
                space: self.space,
                page: page_no,
                key_id: self.key_id,
                key_version: version,
                what,
            });
        }
        Ok(())
    }

    /// Encrypt, in place, a plaintext page whose LSN, trailer, page number
    /// and (legacy) page checksums are final, as `buf_page_encrypt` then
    /// `fil_encrypt_buf` do: the key version into bytes 0..4 (full_crc32)
    /// or 26..30 (legacy), the range [`SpaceKey::decrypt_page`] names
    /// encrypted, then the checksum of the encrypted page (full_crc32:
    /// CRC-32C of everything before the last 4 bytes, stored there;
    /// legacy: stored at 30).
    ///
    /// # Errors
    /// [`Error::Unsupported`].
    pub fn encrypt_page(&self, page: &mut [u8]) -> Result<(), Error> {
        self.check_page(page)?;
        let n = page.len();
        let page_no = be32(page, FIL_PAGE_OFFSET);
        let iv = self.page_iv(page_no, be64(page, FIL_PAGE_LSN));
        let v = self.key_version.to_be_bytes();
        if self.fmt.is_full_crc32() {
            page[FCRC32_KEY_VERSION..FCRC32_KEY_VERSION + 4].copy_from_slice(&v);
        } else {
            page[LEGACY_KEY_VERSION..LEGACY_KEY_VERSION + 4].copy_from_slice(&v);
        }
        let range = self.layout(n);
        crypt_nopad(&self.aes, self.alg, &iv, &mut page[range], true);
        let c = self.crypt_checksum(page).to_be_bytes();
        if self.fmt.is_full_crc32() {
            page[n - 4..].copy_from_slice(&c);
        } else {
            page[LEGACY_KEY_VERSION + 4..LEGACY_KEY_VERSION + 8].copy_from_slice(&c);
        }
        Ok(())
    }
}

fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Pages of a throwaway 10.11 server (innodb_encrypt_tables=ON,
    // file_key_management, aes_cbc): tablespace 5 (`d/t`, key 1,
    // ENCRYPTED=DEFAULT) and 6 (`d/u`, ENCRYPTED=YES ENCRYPTION_KEY_ID=2),
    // page 0 and the clustered index root (page 3) of each.
    const S5_P0: &[u8] = include_bytes!("testdata/fcrc32_cbc_s5_p0.page");
    const S5_P3: &[u8] = include_bytes!("testdata/fcrc32_cbc_s5_p3.page");
    const S6_P0: &[u8] = include_bytes!("testdata/fcrc32_cbc_s6_p0.page");
    const S6_P3: &[u8] = include_bytes!("testdata/fcrc32_cbc_s6_p3.page");
    const KEYS: &[u8] = include_bytes!("testdata/page_keys.txt");
    // A ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8 table of the same server
    // (tablespace 7, key 1): page 0 and its index root.
    const Z7_P0: &[u8] = include_bytes!("testdata/zip8k_cbc_s7_p0.page");
    const Z7_P3: &[u8] = include_bytes!("testdata/zip8k_cbc_s7_p3.page");
    // A table created with innodb_checksum_algorithm=crc32 (the legacy
    // page format, flags 0x21; tablespace 8, key 1).
    const L8_P0: &[u8] = include_bytes!("testdata/legacy_cbc_s8_p0.page");
    const L8_P3: &[u8] = include_bytes!("testdata/legacy_cbc_s8_p3.page");

    fn fmt() -> PageFormat {
        PageFormat::from_flags(0x15).unwrap()
    }

    fn keys() -> KeyFile {
        KeyFile::parse(KEYS, None).unwrap()
    }

    #[test]
    fn crypt_data_of_real_page0() {
        assert_eq!(crypt_data_offset(&fmt()), 10428);
        let c5 = CryptData::from_page0(S5_P0, &fmt()).unwrap().unwrap();
        assert_eq!((c5.scheme, c5.key_id, c5.min_key_version), (1, 1, 1));
        assert_eq!(c5.mode, Mode::Default);
        let c6 = CryptData::from_page0(S6_P0, &fmt()).unwrap().unwrap();
        assert_eq!((c6.scheme, c6.key_id, c6.mode), (1, 2, Mode::On));
        assert_ne!(c5.iv, c6.iv);
        assert_eq!(c5.to_bytes()[..], S5_P0[10428..10428 + CRYPT_DATA_LEN]);
        assert!(c5.encrypts_writes(true) && !c5.encrypts_writes(false));
        assert!(c6.encrypts_writes(false));
        // Page 0 itself is never encrypted; a page without the magic has
        // no crypt data.
        assert_eq!(fcrc32_key_version(S5_P0), 0);
        assert!(!page_kind_encryptable(5, 0, S5_P0, &fmt()));
        assert_eq!(CryptData::from_page0(S5_P3, &fmt()).unwrap(), None);
        let mut bad = S5_P0.to_vec();
        bad[10428 + 7] = 8;
        assert!(CryptData::from_page0(&bad, &fmt()).is_err());
    }

    #[test]
    fn real_pages_decrypt_and_reencrypt_to_the_same_bytes() {
        for (space, p0, p3, key_id) in [(5, S5_P0, S5_P3, 1), (6, S6_P0, S6_P3, 2)] {
            let crypt = CryptData::from_page0(p0, &fmt()).unwrap().unwrap();
            let k = SpaceKey::from_key_file((space, fmt()), &crypt, &keys(), Algorithm::AesCbc)
                .unwrap();
            assert_eq!(k.key_id(), key_id);
            assert_eq!(fcrc32_key_version(p3), 1);
            assert!(page_kind_encryptable(space, 3, p3, &fmt()));
            let mut page = p3.to_vec();
            k.decrypt_page(&mut page).unwrap();
            // The plaintext page: its number, space id, an index page
            // (FIL_PAGE_INDEX) whose trailer holds the low LSN, zero
            // flush-LSN field, and an infimum record in clear.
            assert_eq!(be32(&page, FIL_PAGE_OFFSET), 3);
            assert_eq!(be32(&page, FIL_PAGE_SPACE_ID), space);
            assert_eq!(u16::from_be_bytes([page[24], page[25]]), 17855);
            assert_eq!(page[26..34], [0; 8]);
            assert_eq!(page[16384 - 8..16384 - 4], page[20..24]);
            assert!(page.windows(8).any(|w| w == b"infimum\0"));
            // Re-encrypted with the same key version: the bytes on disk.
            k.encrypt_page(&mut page).unwrap();
            assert!(page == p3, "space {space}: re-encryption differs");
        }
    }

    #[test]
    fn wrong_key_damage_and_missing_key_are_detected() {
        let crypt = CryptData::from_page0(S5_P0, &fmt()).unwrap().unwrap();
        // Key 2's bytes under id 1: a wrong key.
        let wrong = KeyFile::parse(
            b"1;49c16acc2dffe616710c9ba9a10b94944a737de1beccb52dc1560abfdd67388b\n",
            None,
        )
        .unwrap();
        let k = SpaceKey::from_key_file((5, fmt()), &crypt, &wrong, Algorithm::AesCbc).unwrap();
        let mut page = S5_P3.to_vec();
        match k.decrypt_page(&mut page) {
            Err(Error::WrongKey {
                space: 5,
                page: 3,
                key_id: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // The right key in the wrong mode is as wrong.
        let k = SpaceKey::from_key_file((5, fmt()), &crypt, &keys(), Algorithm::AesCtr).unwrap();
        assert!(matches!(
            k.decrypt_page(&mut S5_P3.to_vec()),
            Err(Error::WrongKey { .. })
        ));
        // A flipped ciphertext bit: the checksum says so before decrypting.
        let k = SpaceKey::from_key_file((5, fmt()), &crypt, &keys(), Algorithm::AesCbc).unwrap();
        let mut page = S5_P3.to_vec();
        page[5000] ^= 1;
        assert_eq!(
            k.decrypt_page(&mut page),
            Err(Error::Checksum { space: 5, page: 3 })
        );
        // Tablespace 6 wants key id 2, which this file lacks.
        let c6 = CryptData::from_page0(S6_P0, &fmt()).unwrap().unwrap();
        let e = SpaceKey::from_key_file((6, fmt()), &c6, &wrong, Algorithm::AesCbc).unwrap_err();
        assert_eq!(
            e,
            Error::Key(super::super::mariadb::Error::NoKey { id: 2, version: 1 })
        );
        // A page_compressed page is refused, not garbled.
        let mut page = S5_P3.to_vec();
        page[24] |= 0x80;
        assert!(matches!(
            k.encrypt_page(&mut page),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn real_compressed_pages_decrypt_and_reencrypt_to_the_same_bytes() {
        // ROW_FORMAT=COMPRESSED, KEY_BLOCK_SIZE=8, on 16 KiB pages.
        let zfmt = PageFormat::from_flags(u32::from_be_bytes([
            Z7_P0[54], Z7_P0[55], Z7_P0[56], Z7_P0[57],
        ]))
        .unwrap();
        assert!(zfmt.is_zip() && !zfmt.is_full_crc32());
        assert_eq!(zfmt.physical_size(), 8192);
        assert_eq!(crypt_data_offset(&zfmt), 5308);
        let crypt = CryptData::from_page0(Z7_P0, &zfmt).unwrap().unwrap();
        assert_eq!((crypt.scheme, crypt.key_id), (1, 1));
        assert_eq!(key_version(Z7_P3, &zfmt), 1);
        assert!(page_kind_encryptable(7, 3, Z7_P3, &zfmt));
        let k = SpaceKey::from_key_file((7, zfmt), &crypt, &keys(), Algorithm::AesCbc).unwrap();
        let mut page = Z7_P3.to_vec();
        k.decrypt_page(&mut page).unwrap();
        // The header (in clear) and the trailer are as read; the page
        // header after byte 38 (stored uncompressed in a compressed page)
        // now reads as an index page's: leaf level, a small index id.
        assert_eq!(page[..38], Z7_P3[..38]);
        assert_eq!(page[8184..], Z7_P3[8184..]);
        assert_ne!(page[38..8184], Z7_P3[38..8184]);
        let level = u16::from_be_bytes([page[38 + 26], page[38 + 27]]);
        let index_id = be64(&page, 38 + 28);
        assert!(
            level < 4 && (1..1 << 32).contains(&index_id),
            "{level} {index_id}"
        );
        assert_eq!(zip_crc32(&page), be32(&page, 0));
        k.encrypt_page(&mut page).unwrap();
        assert!(page == Z7_P3, "re-encryption differs");
        let wrong = KeyFile::parse(
            b"1;49c16acc2dffe616710c9ba9a10b94944a737de1beccb52dc1560abfdd67388b\n",
            None,
        )
        .unwrap();
        let w = SpaceKey::from_key_file((7, zfmt), &crypt, &wrong, Algorithm::AesCbc).unwrap();
        assert!(matches!(
            w.decrypt_page(&mut Z7_P3.to_vec()),
            Err(Error::WrongKey { space: 7, .. })
        ));
        // A flipped ciphertext bit fails the checksum at 30.
        let mut bad = Z7_P3.to_vec();
        bad[4000] ^= 4;
        assert_eq!(
            k.decrypt_page(&mut bad),
            Err(Error::Checksum { space: 7, page: 3 })
        );
    }

    #[test]
    fn real_legacy_pages_decrypt_and_reencrypt_to_the_same_bytes() {
        let lfmt = PageFormat::from_flags(0x21).unwrap();
        let crypt = CryptData::from_page0(L8_P0, &lfmt).unwrap().unwrap();
        assert_eq!(key_version(L8_P3, &lfmt), 1);
        let k = SpaceKey::from_key_file((8, lfmt), &crypt, &keys(), Algorithm::AesCbc).unwrap();
        let mut page = L8_P3.to_vec();
        k.decrypt_page(&mut page).unwrap();
        // The plaintext's own checksum (at 0 and in the trailer, both in
        // clear) now matches; so do the infimum and supremum records.
        assert_eq!(legacy_crc32(&page), be32(&page, 0));
        assert_eq!(page[16376..16380], page[..4]);
        assert!(page.windows(8).any(|w| w == b"infimum\0"));
        assert!(page.windows(8).any(|w| w == b"supremum"));
        k.encrypt_page(&mut page).unwrap();
        assert!(page == L8_P3, "re-encryption differs");
        // Key 2's bytes as key 1: caught by the plaintext checksum.
        let wrong = KeyFile::parse(
            b"1;49c16acc2dffe616710c9ba9a10b94944a737de1beccb52dc1560abfdd67388b\n",
            None,
        )
        .unwrap();
        let w = SpaceKey::from_key_file((8, lfmt), &crypt, &wrong, Algorithm::AesCbc).unwrap();
        assert!(matches!(
            w.decrypt_page(&mut L8_P3.to_vec()),
            Err(Error::WrongKey {
                space: 8,
                page: 3,
                ..
            })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn round_trip_any_contents(
            body in proptest::collection::vec(any::<u8>(), 16384),
            page_no in 1u32..1_000_000,
            lsn in any::<u64>(),
            space in 1u32..1_000_000,
            ctr in any::<bool>(),
            key_idx in 0usize..2,
        ) {
            let alg = if ctr { Algorithm::AesCtr } else { Algorithm::AesCbc };
            let mut crypt = CryptData::from_page0(S5_P0, &fmt()).unwrap().unwrap();
            crypt.key_id = [1, 2][key_idx];
            let k = SpaceKey::from_key_file((space, fmt()), &crypt, &keys(), alg).unwrap();
            let mut plain = body;
            plain[4..8].copy_from_slice(&page_no.to_be_bytes());
            plain[16..24].copy_from_slice(&lsn.to_be_bytes());
            plain[24] &= 0x7F;
            plain[34..38].copy_from_slice(&space.to_be_bytes());
            let mut page = plain.clone();
            k.encrypt_page(&mut page).unwrap();
            prop_assert_eq!(fcrc32_key_version(&page), 1);
            prop_assert_eq!(&page[4..26], &plain[4..26]);
            prop_assert_ne!(&page[26..16380], &plain[26..16380]);
            let enc = page.clone();
            k.decrypt_page(&mut page).unwrap();
            prop_assert_eq!(&page[4..16380], &plain[4..16380]);
            // Another tablespace's key (another IV, so another local key)
            // does not decrypt it.
            let mut other = crypt;
            other.iv[0] ^= 1;
            let w = SpaceKey::from_key_file((space, fmt()), &other, &keys(), alg).unwrap();
            let mut page = enc;
            let wrong = matches!(w.decrypt_page(&mut page), Err(Error::WrongKey { .. }));
            prop_assert!(wrong);
        }
    }
}

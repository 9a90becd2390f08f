//! AES-256-GCM STREAM sealing ([`Seal`], a chunk transform) and opening
//! ([`Open`], a streaming inverse) of the `.hbenc` envelope
//! ([`crate::format::envelope`]).

use hkdf::Hkdf;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::key::{Key, KeyId};
use super::Error;
use crate::format::envelope::{
    self, Header, FILE_KEY_INFO, HEADER_LEN, MAX_RECORD_PLAINTEXT, PREFIX_LEN, SALT_LEN, SUFFIX,
    TAG_LEN,
};
use crate::format::path::RelPath;
use crate::transform::{ChunkCtx, ChunkTransform, InverseTransform, TransformError};

/// Derive the per-file AEAD key: HKDF-SHA256(ikm = master key, salt = file
/// salt, info = "hotbak file key v1" || logical path).
fn file_key(
    key: &Key,
    salt: &[u8; SALT_LEN],
    path: &RelPath,
) -> Result<LessSafeKey, TransformError> {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), key.expose())
        .expand_multi_info(&[FILE_KEY_INFO, path.as_bytes()], &mut okm[..])
        .map_err(|_| TransformError::Internal("HKDF expand failed".into()))?;
    let unbound = UnboundKey::new(&AES_256_GCM, &okm[..])
        .map_err(|_| TransformError::Internal("AES key setup failed".into()))?;
    Ok(LessSafeKey::new(unbound))
}

/// Forward transform: seals each chunk as one AES-256-GCM record.
#[derive(Clone, Debug)]
pub struct Seal {
    key: Key,
    max_plaintext: u32,
}

/// Per-file state of [`Seal`]: the derived key and the record AAD.
pub struct SealFile {
    key: LessSafeKey,
    aad: Vec<u8>,
}

impl std::fmt::Debug for SealFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealFile { .. }")
    }
}

impl Seal {
    /// A sealer accepting chunks up to [`MAX_RECORD_PLAINTEXT`] bytes.
    #[must_use]
    pub fn new(key: Key) -> Self {
        Seal {
            key,
            max_plaintext: MAX_RECORD_PLAINTEXT,
        }
    }

    /// A sealer that declares (and enforces) a smaller largest chunk, so
    /// readers buffer at most `max_chunk` + 16 bytes per record.
    ///
    /// # Errors
    /// [`Error::ChunkSize`] (usage) if 0 or above [`MAX_RECORD_PLAINTEXT`].
    pub fn with_max_chunk(key: Key, max_chunk: usize) -> Result<Self, Error> {
        if max_chunk == 0 || max_chunk > MAX_RECORD_PLAINTEXT as usize {
            return Err(Error::ChunkSize(max_chunk));
        }
        Ok(Seal {
            key,
            max_plaintext: max_chunk as u32,
        })
    }

    /// The sealing key's id.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.key.id()
    }
}

impl ChunkTransform for Seal {
    type File = SealFile;

    fn name(&self) -> &'static str {
        super::STAGE_NAME
    }

    fn rename(&self, path: &RelPath) -> Result<RelPath, TransformError> {
        Ok(path.with_suffix(SUFFIX)?)
    }

    fn begin(&self, path: &RelPath, out: &mut Vec<u8>) -> Result<SealFile, TransformError> {
        let mut salt = [0u8; SALT_LEN];
        rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut salt)
            .map_err(|e| TransformError::Internal(format!("OS random source failed: {e}")))?;
        let header = Header {
            max_plaintext: self.max_plaintext,
            key_id: self.key.id().0,
            salt,
        }
        .encode();
        out.extend_from_slice(&header);
        Ok(SealFile {
            key: file_key(&self.key, &salt, path)?,
            aad: envelope::aad(&header, path.as_bytes()),
        })
    }

    fn apply(
        &self,
        file: &SealFile,
        ctx: ChunkCtx<'_>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransformError> {
        if input.len() > self.max_plaintext as usize {
            return Err(TransformError::Internal(format!(
                "{}: chunk of {} bytes exceeds the sealer's record limit of {}",
                ctx.path,
                input.len(),
                self.max_plaintext
            )));
        }
        out.reserve(PREFIX_LEN + input.len() + TAG_LEN);
        out.extend_from_slice(&envelope::encode_prefix(
            (input.len() + TAG_LEN) as u32,
            ctx.last,
        ));
        let start = out.len();
        out.extend_from_slice(input);
        let nonce = Nonce::assume_unique_for_key(envelope::nonce(ctx.index, ctx.last));
        let tag = file
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&file.aad[..]), &mut out[start..])
            .map_err(|_| TransformError::Internal("AES-GCM seal failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Prefix,
    Record { len: usize, last: bool },
    Done,
}

/// Streaming inverse: checks the header and key id, opens records in order,
/// refuses anything after the last record; `finish` fails unless the last
/// record was seen. Plaintext of a record is output only after its tag verified.
pub struct Open {
    key: Key,
    path: RelPath,
    what: String,
    state: State,
    buf: Vec<u8>,
    file: Option<(LessSafeKey, Vec<u8>, u32)>,
    index: u64,
    /// Stored bytes consumed before the current call.
    offset: u64,
    record_start: u64,
    failed: bool,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open")
            .field("path", &self.path)
            .field("state", &self.state)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Read the key id from the first bytes of a sealed file (at least
/// [`HEADER_LEN`]), e.g. to pick a key or report a mismatch early.
///
/// # Errors
/// [`Error::Envelope`] if the header is short or invalid.
pub fn peek_key_id(first_bytes: &[u8]) -> Result<KeyId, Error> {
    let Some(h) = first_bytes.get(..HEADER_LEN) else {
        return Err(Error::Truncated(format!("header needs {HEADER_LEN} bytes")));
    };
    let mut a = [0u8; HEADER_LEN];
    a.copy_from_slice(h);
    Ok(KeyId(Header::decode(&a)?.key_id))
}

enum Fail {
    Corrupt(u64, String),
    WrongKey(String),
}

impl Open {
    /// An opener for the file whose *logical* path (the stored path without
    /// `.hbenc`) is `logical_path`; that path is bound into the key and AAD.
    #[must_use]
    pub fn new(key: &Key, logical_path: &RelPath) -> Self {
        Open {
            key: key.clone(),
            path: logical_path.clone(),
            what: format!("{logical_path}{SUFFIX} (decrypt)"),
            state: State::Header,
            buf: Vec::new(),
            file: None,
            index: 0,
            offset: 0,
            record_start: 0,
            failed: false,
        }
    }

    /// For a stored path ending in `.hbenc`: the logical path and an opener.
    #[must_use]
    pub fn for_stored_path(key: &Key, stored: &RelPath) -> Option<(RelPath, Self)> {
        let logical = stored.strip_suffix(SUFFIX)?;
        let o = Self::new(key, &logical);
        Some((logical, o))
    }

    fn run(&mut self, input: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Result<(), Fail> {
        loop {
            let here = self.offset + *pos as u64;
            match self.state {
                State::Done => {
                    if *pos < input.len() {
                        return Err(Fail::Corrupt(here, "data after the last record".into()));
                    }
                    return Ok(());
                }
                _ if *pos == input.len() => return Ok(()),
                State::Header => {
                    if !crate::transform::fill(&mut self.buf, input, pos, HEADER_LEN) {
                        return Ok(());
                    }
                    let mut h = [0u8; HEADER_LEN];
                    h.copy_from_slice(&self.buf);
                    self.buf.clear();
                    let header = Header::decode(&h).map_err(|e| Fail::Corrupt(0, e.to_string()))?;
                    if header.key_id != self.key.id().0 {
                        return Err(Fail::WrongKey(format!(
                            "wrong key (key id {}, file was sealed with key id {})",
                            self.key.id(),
                            KeyId(header.key_id)
                        )));
                    }
                    let k = file_key(&self.key, &header.salt, &self.path)
                        .map_err(|e| Fail::Corrupt(0, e.to_string()))?;
                    self.file = Some((
                        k,
                        envelope::aad(&h, self.path.as_bytes()),
                        header.max_plaintext,
                    ));
                    self.state = State::Prefix;
                }
                State::Prefix => {
                    if self.buf.is_empty() {
                        self.record_start = here;
                    }
                    if !crate::transform::fill(&mut self.buf, input, pos, PREFIX_LEN) {
                        return Ok(());
                    }
                    let max = self.file.as_ref().map_or(0, |f| f.2);
                    let p = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
                    self.buf.clear();
                    let (len, last) = envelope::decode_prefix(p, max).map_err(|e| {
                        Fail::Corrupt(self.record_start, format!("record {}: {e}", self.index))
                    })?;
                    self.state = State::Record {
                        len: len as usize,
                        last,
                    };
                }
                State::Record { len, last } => {
                    let Some((key, aad, _)) = self.file.as_ref() else {
                        return Err(Fail::Corrupt(here, "record before header".into()));
                    };
                    let nonce = Nonce::assume_unique_for_key(envelope::nonce(self.index, last));
                    let auth_fail = |idx: u64, at: u64| {
                        Fail::Corrupt(
                            at,
                            format!(
                                "record {idx} failed authentication (tampered, reordered, truncated, or moved from another file)"
                            ),
                        )
                    };
                    if self.buf.is_empty() && input.len() - *pos >= len {
                        // Whole record in the input: decrypt in place in `out`.
                        let start = out.len();
                        out.extend_from_slice(&input[*pos..*pos + len]);
                        *pos += len;
                        if key
                            .open_in_place(nonce, Aad::from(&aad[..]), &mut out[start..])
                            .is_err()
                        {
                            out.truncate(start);
                            return Err(auth_fail(self.index, self.record_start));
                        }
                        out.truncate(start + len - TAG_LEN);
                    } else {
                        if self.buf.capacity() < len {
                            self.buf.reserve_exact(len - self.buf.len());
                        }
                        if !crate::transform::fill(&mut self.buf, input, pos, len) {
                            return Ok(());
                        }
                        let r = key.open_in_place(nonce, Aad::from(&aad[..]), &mut self.buf);
                        match r {
                            Ok(plain) => out.extend_from_slice(plain),
                            Err(_) => {
                                self.buf.clear();
                                return Err(auth_fail(self.index, self.record_start));
                            }
                        }
                        self.buf.clear();
                    }
                    self.index += 1;
                    self.state = if last { State::Done } else { State::Prefix };
                }
            }
        }
    }
}

impl InverseTransform for Open {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        if self.failed {
            return Err(TransformError::Corrupt {
                what: self.what.clone(),
                offset: self.offset,
                reason: "decryption already failed".into(),
            });
        }
        let mut pos = 0;
        let r = self.run(input, &mut pos, out);
        self.offset += pos as u64;
        match r {
            Ok(()) => Ok(()),
            Err(f) => {
                self.failed = true;
                match f {
                    Fail::Corrupt(offset, reason) => Err(TransformError::Corrupt {
                        what: self.what.clone(),
                        offset,
                        reason,
                    }),
                    Fail::WrongKey(reason) => Err(TransformError::WrongKey {
                        what: self.what.clone(),
                        reason,
                    }),
                }
            }
        }
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), TransformError> {
        if self.failed {
            return Err(TransformError::Corrupt {
                what: self.what.clone(),
                offset: self.offset,
                reason: "decryption already failed".into(),
            });
        }
        match self.state {
            State::Done => Ok(()),
            State::Header => Err(TransformError::Truncated {
                what: self.what.clone(),
                reason: format!(
                    "file header incomplete ({} of {HEADER_LEN} bytes)",
                    self.buf.len()
                ),
            }),
            _ => Err(TransformError::Truncated {
                what: self.what.clone(),
                reason: format!(
                    "the last record never arrived ({} records authenticated, {} bytes stored)",
                    self.index, self.offset
                ),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    /// Seal `data` in `chunk`-sized chunks; returns the file and record boundaries.
    fn seal(seal: &Seal, path: &RelPath, data: &[u8], chunk: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let f = seal.begin(path, &mut out).unwrap();
        let mut bounds = vec![out.len()];
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(chunk).collect()
        };
        let n = pieces.len();
        for (i, c) in pieces.into_iter().enumerate() {
            let ctx = ChunkCtx {
                path,
                index: i as u64,
                last: i + 1 == n,
            };
            seal.apply(&f, ctx, c, &mut out).unwrap();
            bounds.push(out.len());
        }
        (out, bounds)
    }

    fn open(
        key: &Key,
        path: &RelPath,
        data: &[u8],
        split: usize,
    ) -> Result<Vec<u8>, TransformError> {
        let mut o = Open::new(key, path);
        let mut out = Vec::new();
        for piece in data.chunks(split.max(1)) {
            o.update(piece, &mut out)?;
        }
        o.finish(&mut out)?;
        Ok(out)
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn empty_file_is_one_empty_last_record() {
        let s = Seal::new(key(1));
        let (f, b) = seal(&s, &p("a"), &[], 10);
        assert_eq!(f.len(), HEADER_LEN + PREFIX_LEN + TAG_LEN);
        assert_eq!(b.len(), 2);
        assert!(open(&key(1), &p("a"), &f, 7).unwrap().is_empty());
        // Zero stored bytes: truncated.
        assert!(matches!(
            open(&key(1), &p("a"), &[], 7),
            Err(TransformError::Truncated { .. })
        ));
    }

    #[test]
    fn detects_every_single_byte_flip() {
        let s = Seal::new(key(1));
        let data = sample(1000);
        let (f, _) = seal(&s, &p("db/t.ibd"), &data, 300);
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x01;
            let r = open(&key(1), &p("db/t.ibd"), &g, 97);
            assert!(r.is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn detects_drop_reorder_duplicate_truncate_trailing() {
        let s = Seal::new(key(2));
        let path = p("db/t.ibd");
        let data = sample(1000);
        let (f, b) = seal(&s, &path, &data, 250); // 4 records
        assert_eq!(b.len(), 5);
        let rec = |i: usize| &f[b[i]..b[i + 1]];
        let hdr = &f[..b[0]];
        let build = |order: &[usize]| {
            let mut v = hdr.to_vec();
            for &i in order {
                v.extend_from_slice(rec(i));
            }
            v
        };
        assert!(open(&key(2), &path, &build(&[0, 1, 2, 3]), 64).unwrap() == data);
        for order in [
            &[0, 2, 3][..],
            &[1, 0, 2, 3],
            &[0, 1, 1, 2, 3],
            &[0, 1, 3, 2],
            &[0, 1, 2, 3, 3],
        ] {
            assert!(
                open(&key(2), &path, &build(order), 64).is_err(),
                "{order:?}"
            );
        }
        // Truncation at every record boundary (and inside): finish fails.
        for cut in b.iter().take(b.len() - 1).copied().chain([1, b[1] + 3]) {
            let e = open(&key(2), &path, &f[..cut], 64).unwrap_err();
            assert!(
                matches!(e, TransformError::Truncated { .. }),
                "cut {cut}: {e}"
            );
        }
        // Trailing garbage after the last record.
        let mut g = f.clone();
        g.push(0);
        assert!(matches!(
            open(&key(2), &path, &g, 64),
            Err(TransformError::Corrupt { .. })
        ));
    }

    #[test]
    fn swapped_files_and_wrong_key() {
        let s = Seal::new(key(3));
        let (a, _) = seal(&s, &p("db/a.ibd"), &sample(500), 100);
        // Sealed under one path, opened under another: authentication fails.
        let e = open(&key(3), &p("db/b.ibd"), &a, 1000).unwrap_err();
        assert!(e.to_string().contains("authentication"), "{e}");
        let e = open(&key(4), &p("db/a.ibd"), &a, 1000).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("wrong key") && msg.contains(&key(3).id().to_string()),
            "{msg}"
        );
        assert_eq!(peek_key_id(&a).unwrap(), key(3).id());
    }

    #[test]
    fn max_chunk_is_enforced_both_ways() {
        let s = Seal::with_max_chunk(key(5), 100).unwrap();
        let path = p("x");
        let mut out = Vec::new();
        let f = s.begin(&path, &mut out).unwrap();
        let ctx = ChunkCtx {
            path: &path,
            index: 0,
            last: true,
        };
        assert!(s.apply(&f, ctx, &[0u8; 101], &mut out).is_err());
        // A reader refuses a record longer than the header declares.
        let big = Seal::new(key(5));
        let (mut g, _) = seal(&big, &path, &[1u8; 200], 200);
        g[12..16].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            open(&key(5), &path, &g, 50),
            Err(TransformError::Corrupt { .. })
        ));
        assert!(Seal::with_max_chunk(key(5), 0).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn roundtrip_any_chunking_any_split(len in 0usize..50_000, chunk in 1usize..9000, split in 1usize..10_000) {
            let s = Seal::new(key(9));
            let path = p("db/x.ibd.zst");
            let data = sample(len);
            let (f, _) = seal(&s, &path, &data, chunk);
            prop_assert!(open(&key(9), &path, &f, split).unwrap() == data);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), split in 1usize..100) {
            let mut b = bytes;
            if b.len() >= HEADER_LEN && b[0] & 1 == 0 {
                let h = Header { max_plaintext: 64, key_id: key(1).id().0, salt: [0; 32] }.encode();
                b[..HEADER_LEN].copy_from_slice(&h);
            }
            let _ = open(&key(1), &p("g"), &b, split);
        }
    }
}

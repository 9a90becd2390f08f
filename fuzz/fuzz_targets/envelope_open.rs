//! `envelope_open`: (a) arbitrary bytes, fed in arbitrary pieces to `Open`
//! under a fixed key, never panic; (b) seal an arbitrary plaintext, flip one
//! bit chosen by the fuzzer, and opening must fail.
#![no_main]

use arbitrary::Arbitrary;
use hotbak::encrypt::{Key, Open, Seal};
use hotbak::format::envelope::Header;
use hotbak::format::path::RelPath;
use hotbak::transform::{ChunkCtx, ChunkTransform, InverseTransform};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    /// Arbitrary stored bytes; optionally behind a valid header for the key
    /// so the fuzzer reaches the record parser quickly.
    Raw {
        valid_header: bool,
        max_plaintext: u16,
        bytes: Vec<u8>,
        split: u16,
    },
    /// A sealed file with one bit flipped.
    Flip {
        plaintext: Vec<u8>,
        chunk: u16,
        pos: u32,
        bit: u8,
        split: u16,
    },
}

fn open(key: &Key, path: &RelPath, data: &[u8], split: u16) -> Result<Vec<u8>, ()> {
    let mut o = Open::new(key, path);
    let mut out = Vec::new();
    for piece in data.chunks(usize::from(split).max(1)) {
        o.update(piece, &mut out).map_err(|_| ())?;
    }
    o.finish(&mut out).map_err(|_| ())?;
    Ok(out)
}

fuzz_target!(|input: Input| {
    let key = Key::from_bytes([0x42; 32]);
    let Ok(path) = RelPath::new("db/t1.ibd.zst") else {
        return;
    };
    match input {
        Input::Raw {
            valid_header,
            max_plaintext,
            bytes,
            split,
        } => {
            let mut data = Vec::new();
            if valid_header {
                let h = Header {
                    max_plaintext: u32::from(max_plaintext).max(1),
                    key_id: key.id().0,
                    salt: [7; 32],
                };
                data.extend_from_slice(&h.encode());
            }
            data.extend_from_slice(&bytes);
            let _ = open(&key, &path, &data, split);
        }
        Input::Flip {
            plaintext,
            chunk,
            pos,
            bit,
            split,
        } => {
            let plaintext = &plaintext[..plaintext.len().min(1 << 16)];
            let chunk = usize::from(chunk).max(1);
            let seal = Seal::new(key.clone());
            let mut sealed = Vec::new();
            let Ok(file) = seal.begin(&path, &mut sealed) else {
                return;
            };
            let pieces: Vec<&[u8]> = if plaintext.is_empty() {
                vec![&[][..]]
            } else {
                plaintext.chunks(chunk).collect()
            };
            let n = pieces.len();
            for (i, p) in pieces.into_iter().enumerate() {
                let ctx = ChunkCtx {
                    path: &path,
                    index: i as u64,
                    last: i + 1 == n,
                };
                if seal.apply(&file, ctx, p, &mut sealed).is_err() {
                    return;
                }
            }
            assert_eq!(open(&key, &path, &sealed, split).as_deref(), Ok(plaintext));
            let at = pos as usize % sealed.len();
            sealed[at] ^= 1 << (bit % 8);
            assert!(
                open(&key, &path, &sealed, split).is_err(),
                "bit flip at byte {at} not detected"
            );
        }
    }
});

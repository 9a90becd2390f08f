//! `decompress`: arbitrary bytes fed in arbitrary pieces to each inverse
//! (zstd, lz4, qpress) never panic, every call makes progress, and the total
//! output stays within one frame cap per possible frame.
#![no_main]

use arbitrary::Arbitrary;
use hotbak::compress::{lz4, zstd, Lz4Decompress, QpDecompress, ZstdDecompress, MAX_FRAME_DECODED};
use hotbak::format::qpress;
use hotbak::transform::BoundedInverse;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    which: u8,
    with_magic: bool,
    splits: Vec<u16>,
    bytes: Vec<u8>,
}

/// Output collected per bounded call before it is dropped.
const MAX_OUT: usize = 1 << 20;

fuzz_target!(|input: Input| {
    let (mut dec, magic): (Box<dyn BoundedInverse>, &[u8]) = match input.which % 3 {
        0 => (Box::new(ZstdDecompress::new("f")), &zstd::MAGIC),
        1 => (Box::new(Lz4Decompress::new("f")), &lz4::MAGIC),
        _ => (Box::new(QpDecompress::new("f")), qpress::MAGIC),
    };
    let mut data = Vec::new();
    if input.with_magic {
        data.extend_from_slice(magic);
    }
    data.extend_from_slice(&input.bytes);
    // Smallest frame of any format is well over 8 bytes.
    let bound = (data.len() as u64 / 8 + 1) * MAX_FRAME_DECODED;
    let mut total = 0u64;
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = input
            .splits
            .get(i)
            .map_or(data.len(), |&s| usize::from(s).max(1));
        i += 1;
        let end = (pos + n).min(data.len());
        let mut rest = &data[pos..end];
        pos = end;
        while !rest.is_empty() {
            match dec.update_bounded(rest, &mut out, MAX_OUT) {
                Ok(used) => {
                    assert!(used > 0 || !out.is_empty(), "no progress");
                    rest = &rest[used..];
                }
                Err(_) => return,
            }
            total += out.len() as u64;
            out.clear();
            assert!(
                total <= bound,
                "{total} bytes out of {} bytes in",
                data.len()
            );
        }
    }
    let _ = dec.finish(&mut out);
    total += out.len() as u64;
    assert!(total <= bound);
});

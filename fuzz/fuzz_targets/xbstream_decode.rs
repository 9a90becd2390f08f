//! Arbitrary bytes, fed to the xbstream decoder in arbitrary pieces.
//!
//! Asserts: no panic; the decoder never buffers more than one maximal chunk beyond
//! the input; the chunks and the final outcome are the same whatever the split
//! (one-shot vs pieces); every returned chunk lies where the decoder says it does,
//! respects `MAX_PATH_LEN` / `MAX_PAYLOAD_LEN`, and (for P, E, D, R) re-encodes to
//! exactly the bytes it was decoded from.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use hotbak::format::xbstream::{
    self, Chunk, ChunkType, Decoder, MAGIC, MAX_PATH_LEN, MAX_PAYLOAD_LEN, PAYLOAD_FIELDS_LEN,
    PREFIX_LEN,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Piece sizes for the split feed (cycled; 0 counts as 1).
    splits: Vec<u16>,
    /// Start with a valid magic so the fuzzer gets past the first check quickly.
    magic_prefix: bool,
    data: Vec<u8>,
}

type Outcome = (Vec<Chunk>, Option<xbstream::Error>);

fn run(data: &[u8], splits: &[u16]) -> Outcome {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut chunks = Vec::new();
    let mut fed = 0usize;
    let mut k = 0usize;
    loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(c)) => {
                    check_chunk(data, &c, dec.offset());
                    chunks.push(c);
                }
                Ok(None) => break,
                Err(e) => return (chunks, Some(e)),
            }
            // Bounded buffering: at most one maximal chunk beyond what was fed.
            let max_chunk =
                PREFIX_LEN + MAX_PATH_LEN + PAYLOAD_FIELDS_LEN + MAX_PAYLOAD_LEN as usize;
            assert!(
                buf.capacity() <= 2 * (max_chunk + data.len()) + 4096,
                "capacity {}",
                buf.capacity()
            );
        }
        if fed == data.len() {
            break;
        }
        let n = if splits.is_empty() {
            data.len() - fed
        } else {
            usize::from(splits[k % splits.len()]).max(1)
        };
        k += 1;
        let end = (fed + n).min(data.len());
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
    }
    let err = dec.decode_eof(&buf).err();
    (chunks, err)
}

fn check_chunk(data: &[u8], c: &Chunk, end: u64) {
    let start = usize::try_from(c.stream_offset).expect("offset fits");
    let end = usize::try_from(end).expect("offset fits");
    assert!(start < end && end <= data.len());
    assert!(c.path.len() <= MAX_PATH_LEN && c.new_path.len() <= MAX_PATH_LEN);
    assert!(c.payload.len() as u64 <= MAX_PAYLOAD_LEN);
    let raw = &data[start..end];
    assert_eq!(&raw[..8], MAGIC);
    assert_eq!(raw[8], c.flags);
    assert_eq!(raw[9], c.ty.byte());
    let mut re = Vec::new();
    match c.ty {
        ChunkType::Payload => xbstream::put_payload(&mut re, &c.path, c.file_offset, &c.payload),
        ChunkType::Eof => xbstream::put_eof(&mut re, &c.path),
        ChunkType::Remove => xbstream::put_remove(&mut re, &c.path),
        ChunkType::Rename => xbstream::put_rename(&mut re, &c.path, &c.new_path),
        ChunkType::Sparse => panic!("the decoder must refuse S chunks"),
        ChunkType::Unknown(_) => {
            // Ignorable: parsed like P with the payload dropped. Re-encode it as a P chunk
            // from the raw payload bytes: that checks the length field and the CRC.
            assert!(
                c.flags & xbstream::FLAG_IGNORABLE != 0,
                "non-ignorable unknown type returned"
            );
            assert!(c.payload.is_empty());
            let payload = &raw[PREFIX_LEN + c.path.len() + PAYLOAD_FIELDS_LEN..];
            xbstream::put_payload(&mut re, &c.path, c.file_offset, payload);
            re[9] = c.ty.byte();
        }
    }
    re[8] = c.flags;
    assert_eq!(&re[..], raw, "re-encoding differs from the consumed bytes");
}

/// What must not depend on the split: the kind of error, its offset and path. (A bad
/// magic's message shows the bytes seen so far, which may be fewer when split.)
fn key(e: xbstream::Error) -> (u8, u64, u64, Option<String>) {
    match e {
        xbstream::Error::Corrupt { offset, path, .. } => (0, offset, 0, path),
        xbstream::Error::Truncated {
            offset,
            chunk_offset,
            path,
        } => (1, offset, chunk_offset, path),
        xbstream::Error::Unsupported {
            ty, offset, path, ..
        } => (2, offset, u64::from(ty), Some(path)),
        _ => (255, 0, 0, None),
    }
}

fuzz_target!(|input: Input| {
    let mut data = Vec::with_capacity(input.data.len() + 8);
    if input.magic_prefix {
        data.extend_from_slice(MAGIC);
    }
    data.extend_from_slice(&input.data);
    let (chunks_a, err_a) = run(&data, &[]);
    let (chunks_b, err_b) = run(&data, &input.splits);
    assert_eq!(
        chunks_a, chunks_b,
        "chunks depend on how the input was split"
    );
    assert_eq!(
        err_a.map(key),
        err_b.map(key),
        "outcome depends on how the input was split"
    );
});

//! Arbitrary operations over a few files → xbstream encoding → decoding (in arbitrary
//! pieces) must give back exactly the model: the same chunk sequence, and per file
//! the same bytes at contiguous offsets.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use hotbak::format::xbstream::{self, ChunkType, Decoder};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 5] = [
    "ibdata1",
    "db/t1.ibd",
    "my db/t 1.frm",
    "a/b/c/d",
    "x.hbpart",
];

#[derive(Arbitrary, Debug)]
enum Op {
    /// Append bytes to a file (opens it if needed; an empty write is a zero-length P chunk).
    Write {
        file: u8,
        data: Vec<u8>,
    },
    /// End a file (a file never written is an empty file: a lone E chunk).
    Close {
        file: u8,
    },
    /// MariaDB remove / rename chunks (decoded, never applied here).
    Remove {
        file: u8,
    },
    Rename {
        file: u8,
        to: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    splits: Vec<u16>,
}

#[derive(Debug, PartialEq)]
enum Expect {
    P {
        path: &'static str,
        offset: u64,
        data: Vec<u8>,
    },
    E {
        path: &'static str,
    },
    D {
        path: &'static str,
    },
    R {
        path: &'static str,
        to: &'static str,
    },
}

fuzz_target!(|input: Input| {
    // Encode, building the model as we go.
    let mut out = Vec::new();
    let mut model = Vec::new();
    let mut next_off = [0u64; PATHS.len()];
    let mut contents: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PATHS.len()];
    let mut current: Vec<Vec<u8>> = vec![Vec::new(); PATHS.len()];
    for op in input.ops.iter().take(64) {
        match op {
            Op::Write { file, data } => {
                let i = usize::from(*file) % PATHS.len();
                let data = &data[..data.len().min(4096)];
                xbstream::put_payload(&mut out, PATHS[i].as_bytes(), next_off[i], data);
                model.push(Expect::P {
                    path: PATHS[i],
                    offset: next_off[i],
                    data: data.to_vec(),
                });
                next_off[i] += data.len() as u64;
                current[i].extend_from_slice(data);
            }
            Op::Close { file } => {
                let i = usize::from(*file) % PATHS.len();
                xbstream::put_eof(&mut out, PATHS[i].as_bytes());
                model.push(Expect::E { path: PATHS[i] });
                next_off[i] = 0;
                contents[i].push(std::mem::take(&mut current[i]));
            }
            Op::Remove { file } => {
                let i = usize::from(*file) % PATHS.len();
                xbstream::put_remove(&mut out, PATHS[i].as_bytes());
                model.push(Expect::D { path: PATHS[i] });
            }
            Op::Rename { file, to } => {
                let (i, j) = (
                    usize::from(*file) % PATHS.len(),
                    usize::from(*to) % PATHS.len(),
                );
                xbstream::put_rename(&mut out, PATHS[i].as_bytes(), PATHS[j].as_bytes());
                model.push(Expect::R {
                    path: PATHS[i],
                    to: PATHS[j],
                });
            }
        }
    }

    // Decode in pieces.
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut rebuilt: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PATHS.len()];
    let mut cur: Vec<Vec<u8>> = vec![Vec::new(); PATHS.len()];
    let mut fed = 0usize;
    let mut k = 0usize;
    let idx = |p: &[u8]| {
        PATHS
            .iter()
            .position(|q| q.as_bytes() == p)
            .expect("a model path")
    };
    loop {
        while let Some(c) = dec.decode(&mut buf).expect("a valid encoding decodes") {
            let i = idx(&c.path);
            got.push(match c.ty {
                ChunkType::Payload => {
                    assert_eq!(c.file_offset, cur[i].len() as u64, "offsets are contiguous");
                    cur[i].extend_from_slice(&c.payload);
                    Expect::P {
                        path: PATHS[i],
                        offset: c.file_offset,
                        data: c.payload.to_vec(),
                    }
                }
                ChunkType::Eof => {
                    rebuilt[i].push(std::mem::take(&mut cur[i]));
                    Expect::E { path: PATHS[i] }
                }
                ChunkType::Remove => Expect::D { path: PATHS[i] },
                ChunkType::Rename => Expect::R {
                    path: PATHS[i],
                    to: PATHS[idx(&c.new_path)],
                },
                other => panic!("decoded a type that was never written: {other:?}"),
            });
        }
        if fed == out.len() {
            break;
        }
        let n = if input.splits.is_empty() {
            out.len()
        } else {
            usize::from(input.splits[k % input.splits.len()]).max(1)
        };
        k += 1;
        let end = (fed + n).min(out.len());
        buf.extend_from_slice(&out[fed..end]);
        fed = end;
    }
    dec.decode_eof(&buf).expect("ends at a chunk boundary");
    assert_eq!(dec.offset(), out.len() as u64);
    assert_eq!(got, model);
    assert_eq!(rebuilt, contents);
    assert_eq!(cur, current, "files still open");
});

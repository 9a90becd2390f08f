//! Single-core throughput of the pure transforms (no I/O): zstd, lz4,
//! AES-256-GCM seal and open, and the inverses, over 1 MiB chunks of a
//! half-compressible buffer. Run: `cargo run --release` in this directory
//! (optional argument: MiB of synthetic data, default 256, or a
//! file whose bytes are used instead). Prints MB/s (10^6 bytes per
//! second of *uncompressed* input) and the compression ratio.

use std::time::Instant;

use hotbak::compress::{Lz4Compress, Lz4Decompress, ZstdCompress, ZstdDecompress};
use hotbak::encrypt::{Key, Open, Seal};
use hotbak::format::path::RelPath;
use hotbak::transform::{ChunkCtx, ChunkTransform, InverseTransform};

const CHUNK: usize = 1 << 20;

fn data(mib: usize) -> Vec<u8> {
    // Page-like: runs of zeros, repeated text and noise.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..mib << 20)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match (i / 4096) % 4 {
                0 => 0,
                1 => b"INSERT INTO t VALUES (42, 'hotbak');"[i % 36],
                2 => (x % 16) as u8 + b'a',
                _ => x as u8,
            }
        })
        .collect()
}

/// Run a forward transform over `input` in 1 MiB chunks. With `keep`, the
/// output is collected (for the inverse); otherwise one reused per-chunk
/// buffer is used, as the pipeline does, and only the length is counted.
fn forward<T: ChunkTransform>(
    t: &T,
    path: &RelPath,
    input: &[u8],
    keep: bool,
) -> Result<(usize, Vec<u8>), String> {
    let mut all = Vec::new();
    let mut out = Vec::with_capacity(2 * CHUNK);
    let f = t.begin(path, &mut out).map_err(|e| e.to_string())?;
    let mut total = out.len();
    let n = input.len().div_ceil(CHUNK);
    for (i, c) in input.chunks(CHUNK).enumerate() {
        if keep {
            all.extend_from_slice(&out);
        }
        out.clear();
        let ctx = ChunkCtx {
            path,
            index: i as u64,
            last: i + 1 == n,
        };
        t.apply(&f, ctx, c, &mut out).map_err(|e| e.to_string())?;
        total += out.len();
    }
    if keep {
        all.extend_from_slice(&out);
    }
    Ok((total, all))
}

/// Time the forward transform, then produce the stored bytes (untimed).
fn timed_forward<T: ChunkTransform>(
    name: &str,
    t: &T,
    path: &RelPath,
    input: &[u8],
) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    let (n, _) = forward(t, path, input, false)?;
    let s = start.elapsed().as_secs_f64();
    report(
        name,
        input.len(),
        s,
        &format!("ratio {:.2}", input.len() as f64 / n as f64),
    );
    Ok(forward(t, path, input, true)?.1)
}

fn inverse(inv: &mut dyn InverseTransform, stored: &[u8]) -> Result<usize, String> {
    let mut out = Vec::with_capacity(4 * CHUNK);
    let mut total = 0;
    for c in stored.chunks(CHUNK) {
        inv.update(c, &mut out).map_err(|e| e.to_string())?;
        total += out.len();
        out.clear();
    }
    inv.finish(&mut out).map_err(|e| e.to_string())?;
    Ok(total + out.len())
}

fn report(name: &str, bytes: usize, secs: f64, extra: &str) {
    println!("{name:<16} {:>8.0} MB/s {extra}", bytes as f64 / secs / 1e6);
}

fn main() -> Result<(), String> {
    // A number is MiB of synthetic data; anything else is a file to read
    // (real data files, e.g. a sysbench `.ibd`, to compare with `zstd -b1`).
    let arg = std::env::args().nth(1);
    let input = match arg.as_deref().map(|a| (a, a.parse::<usize>())) {
        None => data(256),
        Some((_, Ok(mib))) => data(mib),
        Some((file, Err(_))) => std::fs::read(file).map_err(|e| format!("{file}: {e}"))?,
    };
    let path = RelPath::new("db/t1.ibd").map_err(|e| e.to_string())?;
    for level in [1, 3] {
        let z = ZstdCompress::new(level).map_err(|e| e.to_string())?;
        let enc = timed_forward(&format!("zstd -{level}"), &z, &path, &input)?;
        let t = Instant::now();
        let n = inverse(&mut ZstdDecompress::new("b"), &enc)?;
        report(
            &format!("zstd -{level} -d"),
            n,
            t.elapsed().as_secs_f64(),
            "",
        );
    }
    let enc = timed_forward("lz4", &Lz4Compress, &path, &input)?;
    let t = Instant::now();
    let n = inverse(&mut Lz4Decompress::new("b"), &enc)?;
    report("lz4 -d", n, t.elapsed().as_secs_f64(), "");
    let key = Key::generate().map_err(|e| e.to_string())?;
    let sealed = timed_forward("aes-gcm seal", &Seal::new(key.clone()), &path, &input)?;
    let t = Instant::now();
    let n = inverse(&mut Open::new(&key, &path), &sealed)?;
    report("aes-gcm open", n, t.elapsed().as_secs_f64(), "");
    Ok(())
}

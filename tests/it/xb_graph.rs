//! Issue 2: the datasink graph and the extractor as a library.
//!
//! - any set of files round-trips `Pipeline` → xbstream → `extract::extract` byte for
//!   byte, whatever the producer's write sizes, the reader's piece sizes and `parallel`;
//! - a full pipe blocks the producer (bounded bytes in flight) and loses nothing;
//! - a closed output makes `finish()` return an I/O error;
//! - memory stays bounded while 200 MiB cross a slow pipe (in-flight bytes checked
//!   in-process; RSS checked in a child process running only the probe test).
//!
//! Every async test runs under `tokio::time::timeout`: backpressure bugs are hangs.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hotbak::error::{Classify, ErrorClass};
use hotbak::extract::{self, DecodeOptions, Plan};
use hotbak::format::manifest::{MANIFEST_NAME, STREAM_INFO_NAME};
use hotbak::format::path::RelPath;
use hotbak::format::xbstream::{ChunkType, Decoder, DEFAULT_CHUNK_LEN};
use hotbak::sink::{self, FileMeta, Output, Pipeline};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::xb_interop::{gen_bytes, read_tree};

const GUARD: Duration = Duration::from_secs(120);

fn plan(dir: &std::path::Path, parallel: usize) -> Plan {
    Plan {
        dir: dir.to_path_buf(),
        parallel,
        force: false,
        sync: false,
        verbose: false,
        list: false,
        decode: DecodeOptions::default(),
    }
}

use crate::support::rt;

/// A reader that hands out random-sized pieces (1..=max bytes), sometimes returns
/// `Pending` first, and records every byte it passed on.
struct Choppy<R> {
    inner: R,
    state: u64,
    max: usize,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<R> Choppy<R> {
    fn new(inner: R, seed: u64, max: usize) -> Self {
        Choppy {
            inner,
            state: seed | 1,
            max: max.max(1),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Choppy<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = this.next();
        if r % 5 == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = (1 + (r >> 8) as usize % this.max).min(buf.remaining());
        let mut tmp = vec![0u8; n];
        let mut rb = ReadBuf::new(&mut tmp);
        match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(rb.filled());
                this.seen
                    .lock()
                    .expect("lock")
                    .extend_from_slice(rb.filled());
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Produce `files` into `input`: each file's content is written in pieces whose sizes
/// cycle through `sizes`; with `interleave`, all files are open at once and written
/// round-robin.
async fn produce(
    input: sink::GraphInput,
    files: Vec<(String, Vec<u8>)>,
    sizes: Vec<usize>,
    interleave: bool,
) -> sink::Result<()> {
    let mut writers = Vec::new();
    let mut cursors = Vec::new();
    for (p, data) in &files {
        let path = RelPath::new(p).expect("valid test path");
        if interleave {
            writers.push(Some(input.open(FileMeta::new(path)).await?));
            cursors.push(0usize);
        } else {
            let mut w = input.open(FileMeta::new(path)).await?;
            let mut at = 0;
            let mut k = 0;
            while at < data.len() {
                let n = sizes[k % sizes.len()].min(data.len() - at);
                w.write(Bytes::copy_from_slice(&data[at..at + n])).await?;
                at += n;
                k += 1;
            }
            w.close().await?;
        }
    }
    let mut k = 0;
    while writers.iter().any(Option::is_some) {
        for (i, slot) in writers.iter_mut().enumerate() {
            let Some(w) = slot.as_mut() else { continue };
            let data = &files[i].1;
            let at = cursors[i];
            if at >= data.len() {
                if let Some(w) = slot.take() {
                    w.close().await?;
                }
                continue;
            }
            let n = sizes[k % sizes.len()].min(data.len() - at);
            k += 1;
            w.write(Bytes::copy_from_slice(&data[at..at + n])).await?;
            cursors[i] = at + n;
        }
    }
    drop(input);
    Ok(())
}

struct RoundTrip {
    extracted: BTreeMap<String, Vec<u8>>,
    stream: Vec<u8>,
    summary: extract::Summary,
}

/// Pipeline → duplex → Choppy → extract, concurrently.
async fn round_trip(
    files: Vec<(String, Vec<u8>)>,
    sizes: Vec<usize>,
    interleave: bool,
    read_max: usize,
    parallel: usize,
    seed: u64,
) -> RoundTrip {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let (w, r) = tokio::io::duplex(64 * 1024);
    let (input, pipeline) = Pipeline::builder().build(Output::Xbstream {
        writer: Box::new(w),
        dest: "duplex".into(),
    });
    let producer = tokio::spawn(async move {
        produce(input, files, sizes, interleave).await?;
        pipeline.finish().await
    });
    let reader = Choppy::new(r, seed, read_max);
    let seen = reader.seen.clone();
    let summary = extract::extract(&plan(&out, parallel), reader, "duplex")
        .await
        .expect("extract");
    let report = producer.await.expect("producer task").expect("pipeline");
    let stream = std::mem::take(&mut *seen.lock().expect("lock"));
    assert_eq!(summary.bytes_in, stream.len() as u64);
    assert!(report.manifest.is_some());
    RoundTrip {
        extracted: read_tree(&out),
        stream,
        summary,
    }
}

/// Check the stream's structure: stream info first, manifest last, only P/E, chunk
/// payloads within the stock size, offsets contiguous.
fn check_structure(stream: &[u8]) {
    let mut d = Decoder::new();
    let mut buf = BytesMut::from(stream);
    let mut closed = Vec::new();
    let mut next: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    while let Some(c) = d.decode(&mut buf).expect("valid stream") {
        match c.ty {
            ChunkType::Payload => {
                assert!(c.payload.len() <= DEFAULT_CHUNK_LEN);
                let n = next.entry(c.path.to_vec()).or_insert(0);
                assert_eq!(c.file_offset, *n);
                *n += c.payload.len() as u64;
            }
            ChunkType::Eof => closed.push(c.path_lossy()),
            other => panic!("unexpected {other:?}"),
        }
    }
    d.decode_eof(&buf).expect("ends on a boundary");
    assert_eq!(closed.first().map(String::as_str), Some(STREAM_INFO_NAME));
    assert_eq!(closed.last().map(String::as_str), Some(MANIFEST_NAME));
}

fn no_dir_prefix(paths: &BTreeMap<String, Vec<u8>>) -> bool {
    paths
        .keys()
        .all(|a| paths.keys().all(|b| !b.starts_with(&format!("{a}/"))))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn xb_graph_roundtrip_any_files_sizes_reads_parallel(
        files in prop::collection::btree_map("[a-z]{1,6}( [a-z]{1,3})?(/[a-z]{1,6}){0,2}", prop::collection::vec(any::<u8>(), 0..40_000), 0..7)
            .prop_filter("a path is also another's directory", no_dir_prefix),
        sizes in prop::collection::vec(1usize..9000, 1..6),
        interleave in any::<bool>(),
        read_max in 1usize..100_000,
        parallel in 1usize..5,
        seed in any::<u64>(),
    ) {
        let want = files.clone();
        let files: Vec<(String, Vec<u8>)> = files.into_iter().collect();
        let res = rt().block_on(async {
            tokio::time::timeout(GUARD, round_trip(files, sizes, interleave, read_max, parallel, seed)).await
        }).expect("hang guard");
        check_structure(&res.stream);
        let mut got = res.extracted;
        prop_assert!(got.remove(MANIFEST_NAME).is_some());
        prop_assert!(got.remove(STREAM_INFO_NAME).is_some());
        prop_assert!(res.summary.verified);
        prop_assert_eq!(res.summary.files, want.len() as u64 + 2);
        prop_assert_eq!(got, want);
    }
}

/// A file over two stock chunk sizes, written in one call, with four workers and odd reads.
#[test]
fn xb_graph_multi_chunk_file_roundtrip() {
    let big = gen_bytes(11, 2 * DEFAULT_CHUNK_LEN + 12345);
    let files = vec![
        ("db/big.ibd".to_owned(), big.clone()),
        ("db/small.frm".to_owned(), b"frm".to_vec()),
    ];
    let res = rt()
        .block_on(async {
            tokio::time::timeout(
                GUARD,
                round_trip(files, vec![big.len()], true, 300_000, 4, 5),
            )
            .await
        })
        .expect("hang guard");
    check_structure(&res.stream);
    let mut d = Decoder::new();
    let mut buf = BytesMut::from(&res.stream[..]);
    let mut sizes = Vec::new();
    while let Some(c) = d.decode(&mut buf).expect("valid") {
        if c.ty == ChunkType::Payload && &c.path[..] == b"db/big.ibd" {
            sizes.push(c.payload.len());
        }
    }
    assert_eq!(sizes, vec![DEFAULT_CHUNK_LEN, DEFAULT_CHUNK_LEN, 12345]);
    assert!(
        res.extracted.get("db/big.ibd") == Some(&big),
        "big file differs"
    );
    assert_eq!(
        res.extracted.get("db/small.frm").map(Vec::as_slice),
        Some(&b"frm"[..])
    );
}

/// Reassemble the files of a stream (no checks beyond the codec's).
fn files_of(stream: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut d = Decoder::new();
    let mut buf = BytesMut::from(stream);
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    while let Some(c) = d.decode(&mut buf).expect("valid stream") {
        let f = out.entry(c.path_lossy()).or_default();
        if c.ty == ChunkType::Payload {
            assert_eq!(c.file_offset, f.len() as u64);
            f.extend_from_slice(&c.payload);
        }
    }
    d.decode_eof(&buf).expect("boundary");
    out
}

/// Nobody reads: the producer must block with a bounded number of bytes accepted.
/// Then a slow reader gets every byte.
#[test]
fn xb_graph_full_pipe_blocks_and_loses_nothing() {
    const FRAME: usize = 64 * 1024;
    const FRAMES: usize = 2;
    let data = gen_bytes(21, 8 << 20);
    let want = data.clone();
    rt().block_on(async move {
        tokio::time::timeout(GUARD, async move {
            let (w, mut r) = tokio::io::duplex(4096);
            let (input, pipeline) =
                Pipeline::builder().channel_frames(FRAMES).build(Output::Xbstream { writer: Box::new(w), dest: "duplex".into() });
            let sent = Arc::new(AtomicU64::new(0));
            let sent2 = sent.clone();
            let producer = tokio::spawn(async move {
                let mut f = input.open(FileMeta::new(RelPath::new("db/t.ibd").expect("path"))).await?;
                for piece in data.chunks(FRAME) {
                    f.write(Bytes::copy_from_slice(piece)).await?;
                    sent2.fetch_add(piece.len() as u64, Ordering::SeqCst);
                }
                f.close().await?;
                drop(input);
                pipeline.finish().await
            });
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(!producer.is_finished(), "producer finished although nobody read: bytes were dropped or buffered without bound");
            // Bound: two edges of FRAMES frames, one frame in each of three tasks' hands,
            // the 1 MiB output buffer and the pipe.
            let bound = (2 * FRAMES + 3) as u64 * FRAME as u64 + (1 << 20) + 4096 + FRAME as u64;
            let s = sent.load(Ordering::SeqCst);
            eprintln!("xb_graph_full_pipe_blocks_and_loses_nothing: {s} bytes accepted while stalled (bound {bound})");
            assert!(s > 0 && s <= bound, "{s} bytes accepted with a stalled reader (bound {bound})");
            // Now read slowly, in small pieces.
            let mut got = Vec::new();
            let mut buf = vec![0u8; 1000];
            let mut reads = 0u64;
            loop {
                let n = r.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                reads += 1;
                if reads % 256 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let report = producer.await.expect("task").expect("pipeline");
            assert_eq!(report.bytes_in, want.len() as u64);
            let files = files_of(&got);
            assert!(files.get("db/t.ibd") == Some(&want), "content differs after backpressure");
            assert!(files.contains_key(MANIFEST_NAME));
        })
        .await
        .expect("hang guard");
    });
}

/// The reading end goes away mid-stream: the producer's writes fail and `finish()`
/// returns the I/O error naming the destination.
#[test]
fn xb_graph_closed_output_is_an_io_error() {
    rt().block_on(async {
        tokio::time::timeout(GUARD, async {
            let (w, mut r) = tokio::io::duplex(8192);
            let (input, pipeline) = Pipeline::builder().build(Output::Xbstream {
                writer: Box::new(w),
                dest: "test-pipe".into(),
            });
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 50_000];
                r.read_exact(&mut buf).await.expect("first bytes");
                drop(r);
            });
            let data = gen_bytes(31, 1 << 20);
            let mut f = input
                .open(FileMeta::new(RelPath::new("f").expect("path")))
                .await
                .expect("open");
            let mut write_err = None;
            for _ in 0..64 {
                if let Err(e) = f.write(Bytes::from(data.clone())).await {
                    write_err = Some(e);
                    break;
                }
            }
            reader.await.expect("reader");
            let write_err = write_err.expect("64 MiB were accepted after the reader went away");
            assert!(write_err.is_closed(), "{write_err}");
            drop(f);
            drop(input);
            let err = pipeline.finish().await.expect_err("finish must fail");
            assert!(matches!(err, sink::Error::Io { .. }), "{err:?}");
            assert_eq!(err.class(), ErrorClass::Io);
            assert!(err.to_string().contains("test-pipe"), "{err}");
        })
        .await
        .expect("hang guard");
    });
}

/// Drive `total` bytes (fresh 1 MiB allocations) through a pipe whose reader sleeps
/// 1 ms per MiB; returns the largest gap between bytes accepted and bytes read, and
/// calls `sample` after every MiB read.
async fn slow_pipe(total: usize, mut sample: impl FnMut()) -> u64 {
    const FRAME: usize = 1 << 20;
    let (w, mut r) = tokio::io::duplex(64 * 1024);
    let (input, pipeline) = Pipeline::builder().manifest(false).build(Output::Xbstream {
        writer: Box::new(w),
        dest: "duplex".into(),
    });
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    let producer = tokio::spawn(async move {
        let mut f = input
            .open(FileMeta::new(RelPath::new("big").expect("path")))
            .await?;
        let mut x = 0u8;
        for _ in 0..total / FRAME {
            x = x.wrapping_add(1);
            f.write(Bytes::from(vec![x; FRAME])).await?;
            sent2.fetch_add(FRAME as u64, Ordering::SeqCst);
        }
        f.close().await?;
        drop(input);
        pipeline.finish().await
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    let mut next_mark = FRAME as u64;
    let mut max_gap = 0u64;
    loop {
        let n = r.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        read += n as u64;
        max_gap = max_gap.max(sent.load(Ordering::SeqCst).saturating_sub(read));
        if read >= next_mark {
            next_mark += FRAME as u64;
            sample();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let report = producer.await.expect("task").expect("pipeline");
    assert_eq!(report.bytes_in, (total / FRAME * FRAME) as u64);
    assert!(read > report.bytes_in, "headers missing");
    max_gap
}

/// In-process structural check: the bytes in flight stay under the graph's documented bound.
#[test]
fn xb_graph_memory_bounded_in_flight() {
    let gap = rt().block_on(async {
        tokio::time::timeout(GUARD, slow_pipe(200 << 20, || {}))
            .await
            .expect("hang guard")
    });
    // DEFAULT_CHANNEL_FRAMES frames on each of the 2 edges, one frame per task, 1 MiB buffer.
    let bound = (2 * sink::DEFAULT_CHANNEL_FRAMES as u64 + 4) << 20;
    eprintln!(
        "xb_graph_memory_bounded_in_flight: at most {} KiB in flight",
        gap >> 10
    );
    assert!(
        gap <= bound,
        "{} MiB in flight (bound {} MiB)",
        gap >> 20,
        bound >> 20
    );
}

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// RSS check, run alone in a child process so other tests' memory does not count.
#[test]
fn xb_graph_memory_bounded_rss() {
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([
            "xb_graph::rss_probe",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("HOTBAK_RSS_PROBE", "1")
        .output()
        .expect("run the probe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "probe failed:\n{text}");
    assert!(text.contains("1 passed"), "probe did not run:\n{text}");
    if let Some(i) = text.find("rss_probe: base") {
        eprintln!("{}", text[i..].lines().next().unwrap_or_default());
    }
}

#[test]
#[ignore = "run by xb_graph_memory_bounded_rss in a child process"]
fn rss_probe() {
    if std::env::var("HOTBAK_RSS_PROBE").as_deref() != Ok("1") {
        return;
    }
    let rt = rt();
    let base = vm_rss_kib();
    let peak = Arc::new(AtomicU64::new(base));
    let p2 = peak.clone();
    rt.block_on(async move {
        tokio::time::timeout(
            GUARD,
            slow_pipe(200 << 20, move || {
                p2.fetch_max(vm_rss_kib(), Ordering::Relaxed);
            }),
        )
        .await
        .expect("hang guard")
    });
    let grew = peak.load(Ordering::Relaxed).saturating_sub(base);
    println!("rss_probe: base {base} KiB, growth {grew} KiB");
    assert!(
        grew < 100 * 1024,
        "RSS grew by {} MiB while 200 MiB crossed a slow pipe",
        grew / 1024
    );
}

/// Produce `files` through a pipeline (with zstd when `zstd`) and extract the
/// stream with every decoder installed; returns the summary and the tree.
async fn chain_round_trip(
    files: Vec<(String, Vec<u8>)>,
    zstd: bool,
) -> (extract::Summary, BTreeMap<String, Vec<u8>>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let (w, r) = tokio::io::duplex(64 * 1024);
    let mut b = Pipeline::builder();
    if zstd {
        let z = hotbak::compress::ZstdCompress::new(1).expect("level 1");
        b = b.stage(z, 2, |m| m.compress);
    }
    let (input, pipeline) = b.build(Output::Xbstream {
        writer: Box::new(w),
        dest: "duplex".into(),
    });
    let producer = tokio::spawn(async move {
        produce(input, files, vec![5000], false).await?;
        pipeline.finish().await
    });
    let mut p = plan(&out, 2);
    extract::install_decoders(&mut p.decode, None, None).expect("decoders");
    let summary = extract::extract(&p, r, "duplex").await.expect("extract");
    producer.await.expect("producer task").expect("pipeline");
    (summary, read_tree(&out))
}

/// xbextract decodes a hotbak stream by the chain its stream info records,
/// not by suffixes: with no compression stage, files named like compressed
/// ones are kept byte for byte; with zstd, only the stage's own suffix goes.
#[test]
fn xb_graph_inverse_chain_comes_from_the_stream_info() {
    let files = vec![
        (
            "notes.zst".to_owned(),
            b"plain text, not a zstd frame".to_vec(),
        ),
        ("db/t.lz4".to_owned(), gen_bytes(3, 20_000)),
        ("db/t.ibd".to_owned(), gen_bytes(4, 30_000)),
    ];
    let want: BTreeMap<String, Vec<u8>> = files.iter().cloned().collect();
    for zstd in [false, true] {
        let (summary, mut got) = rt()
            .block_on(async {
                tokio::time::timeout(GUARD, chain_round_trip(files.clone(), zstd)).await
            })
            .expect("hang guard");
        assert!(summary.verified, "zstd {zstd}");
        assert!(got.remove(MANIFEST_NAME).is_some());
        assert!(got.remove(STREAM_INFO_NAME).is_some());
        assert_eq!(got, want, "zstd {zstd}");
    }
}
